"""Citizen login with the mini-program login code, and token refresh."""

from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.openapi import JSON_BODY_ERRORS, public_operation
from services import auth, tokens

blp = Blueprint("auth", __name__, description="Logging in and renewing tokens")


class MiniProgramLoginSchema(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=128))


class RefreshSchema(Schema):
    refresh_token = fields.String(
        required=True, validate=validate.Length(min=1, max=2048)
    )


class TokenPairSchema(Schema):
    access_token = fields.String()
    refresh_token = fields.String()
    token_type = fields.String()
    expires_in = fields.Integer()


@blp.route("/auth/miniprogram-login", methods=["POST"])
@public_operation(blp, 401, 502, *JSON_BODY_ERRORS)
@blp.arguments(MiniProgramLoginSchema)
@blp.response(200, TokenPairSchema)
def miniprogram_login(data):
    """Log in with the mini-program login code; returns a token pair"""
    return auth.login_with_code(data["code"])


@blp.route("/auth/refresh", methods=["POST"])
@public_operation(blp, 401, *JSON_BODY_ERRORS)
@blp.arguments(RefreshSchema)
@blp.response(200, TokenPairSchema)
def refresh(data):
    """Spend a refresh token for a new token pair"""
    return tokens.refresh_pair(data["refresh_token"])

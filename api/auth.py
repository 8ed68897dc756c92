"""Logging in: citizens with the mini-program code, staff with a password."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import limits
from api.openapi import JSON_BODY_ERRORS, bearer_operation, public_operation
from api.security import caller_required
from services import auth, staff, tokens

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


class StaffTokenPairSchema(TokenPairSchema):
    must_change_password = fields.Boolean(
        metadata={
            "description": "True for a one-time password: change it before "
            "anything else (POST /auth/password)"
        }
    )


class StaffLoginSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(
        required=True, validate=validate.Length(min=1, max=staff.MAX_PASSWORD_LENGTH)
    )


class PasswordChangeSchema(Schema):
    old_password = fields.String(
        required=True, validate=validate.Length(min=1, max=staff.MAX_PASSWORD_LENGTH)
    )
    new_password = fields.String(
        required=True,
        validate=validate.Length(min=1, max=staff.MAX_PASSWORD_LENGTH),
        metadata={
            "description": f"{staff.MIN_PASSWORD_LENGTH} to "
            f"{staff.MAX_PASSWORD_LENGTH} characters, not containing the username"
        },
    )


class OrganisationView(Schema):
    organisation_id = fields.Integer(attribute="id")
    kind = fields.String()
    name = fields.String()
    credit_code = fields.String(allow_none=True)
    service_org = fields.String(attribute="utility.service_org", allow_none=True)


class MeSchema(Schema):
    role = fields.String(
        metadata={"description": "citizen, agent, service, window, utility or admin"}
    )
    role_label = fields.String()
    display_name = fields.String(
        metadata={"description": "The caller's own name, unmasked"}
    )
    username = fields.String(allow_none=True)
    organisation = fields.Nested(OrganisationView, allow_none=True)
    must_change_password = fields.Boolean()


@blp.route("/auth/miniprogram-login", methods=["POST"])
@limits.login_per_address
@public_operation(blp, 401, 429, 502, *JSON_BODY_ERRORS)
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


@blp.route("/auth/login", methods=["POST"])
@limits.login_per_address
@limits.login_per_username
@public_operation(blp, 401, 429, *JSON_BODY_ERRORS)
@blp.arguments(StaffLoginSchema)
@blp.response(200, StaffTokenPairSchema)
def staff_login(data):
    """Log in as staff: agent, window, customer service, utility or operator"""
    return staff.login(data["username"], data["password"])


@blp.route("/auth/password", methods=["POST"])
@caller_required(*staff.ROLES, allow_password_change=True)
@limits.password_change_per_caller
@bearer_operation(blp, 429, *JSON_BODY_ERRORS)
@blp.arguments(PasswordChangeSchema)
@blp.response(200, StaffTokenPairSchema)
def change_password(data):
    """Change my password; other sessions end and a new token pair is returned"""
    return staff.change_password(
        g.caller.staff, data["old_password"], data["new_password"]
    )


@blp.route("/auth/me", methods=["GET"])
@caller_required("citizen", *staff.ROLES, allow_password_change=True)
@bearer_operation(blp)
@blp.response(200, MeSchema)
def who_am_i():
    """Show who I am logged in as: role, organisation, name"""
    caller = g.caller
    if caller.citizen is not None:
        return {
            "role": "citizen",
            "role_label": "业主",
            "display_name": caller.citizen.name,
            "username": None,
            "organisation": None,
            "must_change_password": False,
        }
    member = caller.staff
    return {
        "role": member.role,
        "role_label": staff.ROLES[member.role],
        "display_name": member.display_name,
        "username": member.username,
        "organisation": member.organisation,
        "must_change_password": member.must_change_password,
    }


@blp.route("/auth/logout", methods=["POST"])
@caller_required("citizen", *staff.ROLES, allow_password_change=True)
@bearer_operation(blp)
@blp.response(204)
def logout():
    """End this session: its access and refresh tokens stop working at once"""
    tokens.revoke_family(g.token_claims["fam"])
    return ""

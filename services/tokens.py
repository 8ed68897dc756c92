"""JWT access and refresh tokens, by RFC 8725 practice.

The server fixes one algorithm (HS256) and never reads it from the token.
Expiry, issuer, audience and the token kind (`typ` claim) are always checked.
Refresh tokens are single use: each refresh replaces the pair, and a refresh
token presented twice is rejected.
"""

import logging
import uuid
from datetime import timedelta

import jwt
from flask import current_app

from models import Citizen, RefreshToken
from models.base import parse_id, utcnow
from models.db import transaction
from services.errors import Unauthorized

log = logging.getLogger(__name__)

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["exp", "iat", "iss", "aud", "sub", "typ", "jti", "fam"]


def _encode(subject, kind, seconds, jti, family):
    now = utcnow()
    claims = {
        "iss": current_app.config["JWT_ISSUER"],
        "aud": current_app.config["JWT_AUDIENCE"],
        "sub": subject,
        "typ": kind,
        "jti": jti,
        "fam": family,
        "iat": now,
        "exp": now + timedelta(seconds=seconds),
    }
    return jwt.encode(claims, current_app.config["SECRET_KEY"], algorithm=ALGORITHM)


def issue_pair(citizen, family=None):
    """Return a new access and refresh token for `citizen`.

    A login starts a new token family; a refresh passes the family on.
    """
    config = current_app.config
    refresh_jti = uuid.uuid4().hex
    family = family or uuid.uuid4().hex
    RefreshToken.create(
        jti=refresh_jti,
        citizen=citizen,
        family=family,
        expires_at=utcnow() + timedelta(seconds=config["REFRESH_TOKEN_SECONDS"]),
    )
    subject = f"citizen:{citizen.id}"
    return {
        "access_token": _encode(
            subject,
            "access",
            config["ACCESS_TOKEN_SECONDS"],
            uuid.uuid4().hex,
            family,
        ),
        "refresh_token": _encode(
            subject, "refresh", config["REFRESH_TOKEN_SECONDS"], refresh_jti, family
        ),
        "token_type": "Bearer",
        "expires_in": config["ACCESS_TOKEN_SECONDS"],
    }


def decode(token, kind):
    """Return the claims of a valid token of `kind`, or raise Unauthorized."""
    try:
        claims = jwt.decode(
            token,
            current_app.config["SECRET_KEY"],
            algorithms=[ALGORITHM],
            audience=current_app.config["JWT_AUDIENCE"],
            issuer=current_app.config["JWT_ISSUER"],
            options={"require": REQUIRED_CLAIMS},
        )
    except jwt.ExpiredSignatureError:
        raise Unauthorized("token_expired", "登录已过期，请刷新或重新登录。") from None
    except jwt.PyJWTError as error:
        log.info("token rejected reason=%s", type(error).__name__)
        raise Unauthorized("token_invalid", "登录凭证无效，请重新登录。") from None
    if claims["typ"] != kind:
        raise Unauthorized("token_invalid", "登录凭证类型不符，请重新登录。")
    return claims


def citizen_from_access_token(token):
    """Return the citizen an access token names."""
    claims = decode(token, "access")
    citizen = _citizen(claims["sub"])
    _check_family(claims)
    return citizen


def _check_family(claims):
    revoked = (
        RefreshToken.select()
        .where(
            (RefreshToken.family == str(claims["fam"]))
            & RefreshToken.revoked_at.is_null(False)
        )
        .exists()
    )
    if revoked:
        raise Unauthorized("token_revoked", "登录凭证已失效，请重新登录。")


def _citizen(subject):
    kind, _, raw_id = str(subject).partition(":")
    citizen_id = parse_id(raw_id)
    citizen = None
    if kind == "citizen" and citizen_id is not None:
        citizen = Citizen.get_or_none(Citizen.id == citizen_id)
    if citizen is None:
        raise Unauthorized("token_invalid", "登录凭证无效，请重新登录。")
    return citizen


def refresh_pair(token):
    """Spend a refresh token and return a new pair."""
    claims = decode(token, "refresh")
    citizen = _citizen(claims["sub"])
    _check_family(claims)
    with transaction():
        spent = (
            RefreshToken.update(used_at=utcnow())
            .where(
                (RefreshToken.jti == claims["jti"])
                & (RefreshToken.citizen == citizen)
                & RefreshToken.used_at.is_null()
            )
            .execute()
        )
        if spent == 1:
            return issue_pair(citizen, family=claims["fam"])
        # A refresh token used twice was copied, so the whole family is revoked
        # and the copy used first loses access too.
        RefreshToken.update(revoked_at=utcnow()).where(
            (RefreshToken.family == str(claims["fam"]))
            & RefreshToken.revoked_at.is_null()
        ).execute()
    log.warning("refresh token reused; family revoked citizen=%s", citizen.id)
    raise Unauthorized("token_reused", "登录凭证已使用过，请重新登录。")

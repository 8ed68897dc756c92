"""JWT access and refresh tokens, by RFC 8725 practice.

The server fixes one algorithm (HS256) and never reads it from the token.
Expiry, issuer, audience and the token kind (`typ` claim) are always checked.
Citizens and staff share the scheme; `sub` names which (`citizen:ID` or
`staff:ID`). Refresh tokens are single use: each refresh replaces the pair,
and a refresh token presented twice is rejected.
"""

import logging
import threading
import time
import uuid
from datetime import timedelta

import jwt
from flask import current_app

from models import Citizen, RefreshToken, Staff
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


def subject_of(holder):
    """Return the `sub` claim for a citizen or a staff member."""
    kind = "staff" if isinstance(holder, Staff) else "citizen"
    return f"{kind}:{holder.id}"


def _owned_by(holder):
    if isinstance(holder, Staff):
        return RefreshToken.staff_id == holder.id
    return RefreshToken.citizen == holder


def issue_pair(holder, family=None):
    """Return a new access and refresh token for a citizen or staff member.

    A login starts a new token family; a refresh passes the family on.
    """
    config = current_app.config
    refresh_jti = uuid.uuid4().hex
    family = family or uuid.uuid4().hex
    is_staff = isinstance(holder, Staff)
    RefreshToken.create(
        jti=refresh_jti,
        citizen=None if is_staff else holder,
        staff_id=holder.id if is_staff else None,
        family=family,
        expires_at=utcnow() + timedelta(seconds=config["REFRESH_TOKEN_SECONDS"]),
    )
    subject = subject_of(holder)
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


class VerifiedTokens:
    """Claims of tokens whose signature and claims this process has checked.

    Checking a signature costs more than the rest of a cached request, and a
    page sends the same token with every call. The token's text is the key,
    so only the very token that was checked is found. Its expiry is compared
    with the clock on every use. Revocation is not cached: callers still look
    the token's family up in the database.
    """

    def __init__(self, size):
        self.size = size
        self._claims = {}
        self._lock = threading.Lock()

    def get(self, token, kind):
        claims = self._claims.get((token, kind))
        # PyJWT treats a token as expired from the second its `exp` names.
        if claims is None or claims["exp"] <= time.time():
            return None
        return claims

    def add(self, token, kind, claims):
        if self.size <= 0:
            return
        with self._lock:
            if len(self._claims) >= self.size:
                # Dicts keep insertion order, so this drops the oldest entry.
                del self._claims[next(iter(self._claims))]
            self._claims[(token, kind)] = claims


def verified_tokens():
    extensions = current_app.extensions
    if "lianban_verified_tokens" not in extensions:
        size = current_app.config["VERIFIED_TOKEN_CACHE_SIZE"]
        extensions["lianban_verified_tokens"] = VerifiedTokens(size)
    return extensions["lianban_verified_tokens"]


def decode(token, kind):
    """Return the claims of a valid token of `kind`, or raise Unauthorized."""
    known = verified_tokens().get(token, kind)
    if known is not None:
        return known
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
    verified_tokens().add(token, kind, claims)
    return claims


def holder_of_access_token(token):
    """Return the citizen or staff member an access token names, and its claims."""
    claims = decode(token, "access")
    holder = _holder(claims["sub"])
    _check_family(claims)
    return holder, claims


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


def _holder(subject):
    kind, _, raw_id = str(subject).partition(":")
    holder_id = parse_id(raw_id)
    holder = None
    if kind == "citizen" and holder_id is not None:
        holder = Citizen.get_or_none(Citizen.id == holder_id)
    elif kind == "staff" and holder_id is not None:
        holder = Staff.get_or_none((Staff.id == holder_id) & (Staff.active == True))  # noqa: E712
    if holder is None:
        raise Unauthorized("token_invalid", "登录凭证无效，请重新登录。")
    return holder


def refresh_pair(token):
    """Spend a refresh token and return a new pair."""
    claims = decode(token, "refresh")
    holder = _holder(claims["sub"])
    _check_family(claims)
    with transaction():
        spent = (
            RefreshToken.update(used_at=utcnow())
            .where(
                (RefreshToken.jti == claims["jti"])
                & _owned_by(holder)
                & RefreshToken.used_at.is_null()
            )
            .execute()
        )
        if spent == 1:
            return issue_pair(holder, family=claims["fam"])
        # A refresh token used twice was copied, so the whole family is revoked
        # and the copy used first loses access too.
        RefreshToken.update(revoked_at=utcnow()).where(
            (RefreshToken.family == str(claims["fam"]))
            & RefreshToken.revoked_at.is_null()
        ).execute()
    log.warning("refresh token reused; family revoked sub=%s", subject_of(holder))
    raise Unauthorized("token_reused", "登录凭证已使用过，请重新登录。")


def revoke_all(holder):
    """Revoke every token family of `holder`, ending each of its sessions."""
    families = RefreshToken.select(RefreshToken.family).where(_owned_by(holder))
    return (
        RefreshToken.update(revoked_at=utcnow())
        .where(RefreshToken.family.in_(families) & RefreshToken.revoked_at.is_null())
        .execute()
    )


def revoke_family(family):
    """Revoke one login's tokens, as logging out does."""
    with transaction():
        RefreshToken.update(revoked_at=utcnow()).where(
            (RefreshToken.family == str(family)) & RefreshToken.revoked_at.is_null()
        ).execute()
    log.info("token family revoked by logout")

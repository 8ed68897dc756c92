"""Caller authentication: people by bearer token, partners by signature."""

import functools
import logging

import peewee
from flask import g, request

from models import PartnerMessage, Utility
from partners.signing import (
    MESSAGE_ID_HEADER,
    PARTNER_HEADER,
    SignatureError,
    read_headers,
    verify_signature,
)
from services import access, partner_keys, tokens
from services import staff as staff_service
from services.errors import Forbidden, Unauthorized

log = logging.getLogger(__name__)


def bearer_token():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "token_missing", "请先登录：缺少 Authorization: Bearer 令牌。"
        )
    return token.strip()


def caller_required(*roles, allow_password_change=False):
    """Load the caller into `g.caller`, or raise 401 or 403.

    A missing or invalid token gets 401, and a role not in `roles` gets 403. Staff
    whose password is a one-time one may do nothing but change it.
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            holder, g.token_claims = tokens.holder_of_access_token(bearer_token())
            g.caller = access.caller_for(holder)
            if g.caller.role not in roles:
                log.info("role rejected role=%s roles=%s", g.caller.role, roles)
                raise Forbidden(
                    "role_forbidden",
                    f"您的身份（{ROLE_LABELS.get(g.caller.role, g.caller.role)}）"
                    "不能使用此功能。",
                )
            staff = g.caller.staff
            if staff is not None and staff.must_change_password:
                if not allow_password_change:
                    raise Forbidden(
                        "password_change_required",
                        "首次登录或密码被重置后，请先修改密码"
                        "（POST /api/v1/auth/password）。",
                    )
            return view(*args, **kwargs)

        return wrapper

    return decorate


ROLE_LABELS = {"citizen": "业主", **staff_service.ROLES}

# Roles that act on a case through the citizen endpoints.
CASE_ROLES = ("citizen", "agent", "window")


def utility_caller_required(view):
    """Let a utility in by its system's signature or by its staff's bearer token.

    A request that carries the X-Lianban-Partner header is checked as signed
    by that utility, and `g.partner` is set to its code. Any other request needs
    the token of a staff member with the utility role, loaded into
    `g.caller`. Either way `g.utility` is the utility acting.
    """

    @functools.wraps(view)
    def as_staff(*args, **kwargs):
        g.utility = g.caller.organisation.utility
        if g.utility is None:
            log.error("utility staff without a utility staff=%s", g.caller.staff.id)
            raise Forbidden(
                "role_forbidden", "您的机构未关联服务机构，不能使用此功能。"
            )
        return view(*args, **kwargs)

    staff_view = caller_required("utility")(as_staff)

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        if PARTNER_HEADER not in request.headers:
            return staff_view(*args, **kwargs)
        g.partner = verify_partner(("utility",))
        g.caller = None
        g.utility = Utility.get_or_none(Utility.code == g.partner)
        if g.utility is None:
            log.error("signed partner has no utility row partner=%s", g.partner)
            raise Unauthorized("partner_unknown", "合作方未登记为服务机构。")
        return view(*args, **kwargs)

    return wrapper


def signed_by(*partner_kinds):
    """Require a valid partner signature; the partner code lands in `g.partner`.

    `partner_kinds` limits who may call: "registry" or "utility".
    """

    def decorate(view):
        @functools.wraps(view)
        def wrapper(*args, **kwargs):
            g.partner = verify_partner(partner_kinds)
            return view(*args, **kwargs)

        return wrapper

    return decorate


def verify_partner(partner_kinds):
    try:
        signed = read_headers(request.headers)
        secrets = _secrets_for(signed.partner, partner_kinds)
        path = request.path
        if request.query_string:
            path += "?" + request.query_string.decode("utf-8", "replace")
        verify_signature(signed, secrets, request.method, path, request.get_data())
        _check_message_id(signed.message_id)
    except SignatureError as error:
        log.warning("partner signature rejected code=%s", error.code)
        raise Unauthorized(
            error.code, "合作方签名校验失败。", errors={"signature": [error.message]}
        ) from None
    _reject_replay(signed)
    return signed.partner


def _secrets_for(partner, partner_kinds):
    kind = "registry" if partner == "registry" else "utility"
    if (
        kind == "utility"
        and not Utility.select().where(Utility.code == partner).exists()
    ):
        secrets = []
    else:
        secrets = partner_keys.active_keys(partner)
    if not secrets or kind not in partner_kinds:
        raise SignatureError(
            "partner_unknown", f"Partner {partner!r} may not call this endpoint."
        )
    return secrets


def _check_message_id(message_id):
    # The id is stored to reject replays, so it must fit its column.
    limit = PartnerMessage.message_id.max_length
    if len(message_id) > limit:
        raise SignatureError(
            "message_id_invalid",
            f"{MESSAGE_ID_HEADER} must be at most {limit} characters; "
            f"got {len(message_id)}.",
        )


def _reject_replay(signed):
    try:
        PartnerMessage.create(message_id=signed.message_id, partner=signed.partner)
    except peewee.IntegrityError:
        log.warning(
            "partner message replayed partner=%s message_id=%s",
            signed.partner,
            signed.message_id,
        )
        raise Unauthorized(
            "message_replayed",
            "该消息编号已使用过，请用新的 X-Lianban-Message-Id 重新签名。",
        ) from None

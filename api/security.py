"""Caller authentication: citizens by bearer token, partners by signature."""

import functools
import logging

import peewee
from flask import current_app, g, request

from models import PartnerMessage
from partners.signing import (
    MESSAGE_ID_HEADER,
    SignatureError,
    read_headers,
    verify_signature,
)
from services import tokens
from services.errors import Unauthorized

log = logging.getLogger(__name__)


def bearer_token():
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized(
            "token_missing", "请先登录：缺少 Authorization: Bearer 令牌。"
        )
    return token.strip()


def citizen_required(view):
    """Load the calling citizen into `g.citizen`, or raise 401."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        g.citizen = tokens.citizen_from_access_token(bearer_token())
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
    secrets = current_app.config["PARTNER_SECRETS"].get(partner)
    kind = "registry" if partner == "registry" else "utility"
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

"""Citizen login with the mini-program login code."""

import logging

from flask import current_app

from domain.identifiers import InvalidIdentifier, normalise_id_number
from models import Citizen
from models.base import utcnow
from models.db import transaction
from models.fields import data_keys
from partners.http import PartnerError
from partners.identity import IdentityClient, LoginCodeRejected
from services import tokens
from services.errors import PartnerUnavailable, Unauthorized

log = logging.getLogger(__name__)


def identity_client():
    config = current_app.config
    return IdentityClient(
        config["IDP_URL"],
        config["IDP_APPID"],
        config["IDP_SECRET"],
        timeout=(config["PARTNER_CONNECT_TIMEOUT"], config["PARTNER_READ_TIMEOUT"]),
    )


def login_with_code(code):
    """Exchange a login code for the citizen's identity and a token pair."""
    try:
        identity = identity_client().exchange_code(code)
    except LoginCodeRejected as error:
        raise Unauthorized(
            "login_code_rejected",
            "登录码无效、已使用或已过期，请在小程序中重新登录。",
            errors={"code": [f"identity provider: {error}"]},
        ) from None
    except PartnerError:
        raise PartnerUnavailable(
            "identity_provider_unavailable", "实名认证服务暂时不可用，请稍后再试。"
        ) from None

    try:
        id_number = normalise_id_number(identity.id_type, identity.id_number).value
    except InvalidIdentifier:
        log.warning(
            "identity provider sent an invalid id number openid=%s", identity.openid
        )
        raise PartnerUnavailable(
            "identity_invalid", "实名认证服务返回的证件信息无效，请联系客服。"
        ) from None

    with transaction():
        citizen = Citizen.get_or_none(Citizen.openid == identity.openid)
        if citizen is None:
            citizen = Citizen(openid=identity.openid)
        citizen.name = identity.name
        citizen.id_type = identity.id_type
        citizen.id_number = id_number
        citizen.id_index = data_keys.blind_index(id_number)
        # A login that shares no number keeps the one shared before, which
        # the citizen's SMS notices go to.
        if identity.phone:
            citizen.phone = identity.phone
        citizen.verified_at = utcnow()
        citizen.save()
        pair = tokens.issue_pair(citizen)
    log.info("citizen logged in citizen=%s", citizen.id)
    return pair

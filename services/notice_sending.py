"""Sending notices through the subscribe-message platform and the SMS gateway.

The outbox worker calls `send_notice` for each `send_notice` message. A
failure that trying later may fix is raised as PartnerError, so that the
outbox records it and retries with backoff. A rejected subscribe message
writes the SMS notice in its place.
"""

import logging
from datetime import UTC

from flask import current_app

from models import Citizen, Notice, Party, Staff, SubscribeChoice
from models.base import utcnow
from models.db import transaction
from partners.http import PartnerError
from partners.sms import SmsClient
from partners.subscribe import USER_REFUSED, NotDelivered, SubscribeClient
from services import delivery
from services.notice_choices import opt_out_token
from services.notifications import (
    SHANGHAI,
    SMS,
    SUBSCRIBE,
    TEMPLATES,
    Recipient,
    log_skip,
    recipient_phone,
    sms_allowed,
    sms_params,
    subscribe_data,
    write_notice,
)

log = logging.getLogger(__name__)


def send_notice(message):
    """Send one notice; raise PartnerError for delivery to record a failure."""
    notice = Notice.get_or_none(Notice.id == message.ref_id)
    # A failed notice is sent again when an operator retries its message.
    if notice is None or notice.state not in ("pending", "failed"):
        delivery.mark_done(message)
        return
    recipient = recipient_of(notice)
    if notice.channel == SUBSCRIBE:
        _send_subscribe(message, notice, recipient)
    else:
        _send_sms(message, notice, recipient)


def recipient_of(notice):
    if notice.recipient.startswith("staff:"):
        staff = Staff.get_or_none(Staff.id == int(notice.recipient.split(":")[1]))
        return Recipient(notice.recipient, "agent", staff=staff)
    index = notice.recipient.removeprefix("p:")
    party = (
        Party.select()
        .where((Party.business == notice.case.business_id) & (Party.id_index == index))
        .order_by(Party.role, Party.position)
        .first()
    )
    citizen = Citizen.get_or_none(Citizen.id_index == index)
    phone = party.phone if party else None
    return Recipient(notice.recipient, notice.role, citizen=citizen, phone=phone)


def _send_subscribe(message, notice, recipient):
    template = TEMPLATES[notice.template]
    config = current_app.config
    client = SubscribeClient(
        config["SUBSCRIBE_URL"],
        config["IDP_APPID"],
        config["IDP_SECRET"],
        timeout=(config["PARTNER_CONNECT_TIMEOUT"], config["PARTNER_READ_TIMEOUT"]),
    )
    ref = f"notice:{notice.id}"
    try:
        msgid = client.send(
            recipient.citizen.openid,
            template.subscribe_id,
            subscribe_data(notice),
            template.page,
            ref=ref,
        )
    except NotDelivered as error:
        # NOTE: the platform has no way to look a message up, so a long-term
        # template's message resent after a worker crash arrives twice.
        if message.claimed_at is not None and error.code == USER_REFUSED:
            # An earlier attempt that left no record may have used the last
            # one-time subscription, so an SMS now could tell the person twice.
            _record_unconfirmed(message, notice, error)
            return
        _fall_back(message, notice, recipient, error)
        return
    except PartnerError as error:
        _fail_unless_retryable(notice, error)
        raise
    _mark_sent(message, notice, msgid)


def _fall_back(message, notice, recipient, error):
    """Record a refused subscribe message and write its SMS instead."""
    with transaction():
        Notice.update(state="refused", detail=f"errcode {error.code}").where(
            Notice.id == notice.id
        ).execute()
        if recipient.citizen is not None and error.code == USER_REFUSED:
            # The platform has no subscription, so the count here was stale.
            SubscribeChoice.update(remaining=0, updated_at=utcnow()).where(
                (SubscribeChoice.citizen == recipient.citizen)
                & (SubscribeChoice.template == notice.template)
            ).execute()
        delivery.mark_done(message)
        allowed, reason = sms_allowed(recipient)
        if allowed:
            write_notice(
                notice.case,
                notice.event,
                recipient,
                SMS,
                notice.template,
                notice.params,
            )
        else:
            log_skip(notice.case, notice.event, recipient, SMS, reason)
    log.info(
        "subscribe message rejected; sending SMS instead notice=%s case=%s errcode=%s",
        notice.id,
        notice.case_id,
        error.code,
    )


def _record_unconfirmed(message, notice, error):
    with transaction():
        Notice.update(state="unconfirmed", detail=f"errcode {error.code}").where(
            Notice.id == notice.id
        ).execute()
        delivery.mark_done(message)
    log.warning(
        "subscribe message rejected after an unrecorded attempt; no SMS sent "
        "notice=%s case=%s",
        notice.id,
        notice.case_id,
    )


def _send_sms(message, notice, recipient):
    allowed, reason = sms_allowed(recipient)
    if not allowed:
        with transaction():
            Notice.update(state="skipped", detail=reason).where(
                Notice.id == notice.id
            ).execute()
            delivery.mark_done(message)
        log_skip(notice.case, notice.event, recipient, SMS, reason)
        return
    phone = recipient_phone(recipient)
    config = current_app.config
    client = SmsClient(
        config["SMS_URL"],
        config["SMS_ACCESS_KEY_ID"],
        config["SMS_ACCESS_KEY_SECRET"],
        config["SMS_SIGN_NAME"],
        timeout=(config["PARTNER_CONNECT_TIMEOUT"], config["PARTNER_READ_TIMEOUT"]),
    )
    token = opt_out_token(phone)
    ref = f"notice:{notice.id}"
    try:
        biz_id = _sent_before(client, message, phone, ref)
        if biz_id is None:
            biz_id = client.send(
                phone,
                TEMPLATES[notice.template].sms_code,
                sms_params(notice, token),
                ref=ref,
            )
    except PartnerError as error:
        _fail_unless_retryable(notice, error)
        raise
    _mark_sent(message, notice, biz_id)


def _sent_before(client, message, phone, ref):
    """Return the BizId of an earlier attempt that reached the gateway, or None.

    `claimed_at` is the previous claim's time as `delivery.claim` read it. A
    worker that died after the gateway took the message left no record, so
    the gateway's send details are asked before sending again.
    """
    if message.claimed_at is None:
        return None
    days = {_china_day(message.claimed_at), _china_day(utcnow())}
    for day in sorted(days):
        biz_id = client.find_sent(phone, day, ref)
        if biz_id is not None:
            log.info(
                "notice found sent by an earlier attempt ref=%s biz_id=%s", ref, biz_id
            )
            return biz_id
    return None


def _china_day(value):
    return value.replace(tzinfo=UTC).astimezone(SHANGHAI).date()


def _fail_unless_retryable(notice, error):
    if error.retryable:
        return
    Notice.update(state="failed", detail=str(error.code or error)[:64]).where(
        Notice.id == notice.id
    ).execute()
    log.error(
        "notice failed notice=%s case=%s channel=%s code=%s",
        notice.id,
        notice.case_id,
        notice.channel,
        error.code,
    )


def _mark_sent(message, notice, partner_ref):
    with transaction():
        Notice.update(
            state="sent", sent_at=utcnow(), partner_ref=str(partner_ref or "")[:64]
        ).where(Notice.id == notice.id).execute()
        delivery.mark_done(message)
    log.info(
        "notice sent notice=%s case=%s event=%s channel=%s ref=%s",
        notice.id,
        notice.case_id,
        notice.event,
        notice.channel,
        partner_ref,
    )

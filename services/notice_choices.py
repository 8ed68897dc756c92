"""The channel choices people make: subscribe results, SMS opt-in and opt-out."""

import hmac
import logging

import peewee
from flask import current_app

from domain.identifiers import normalise_mobile
from models import SmsSetting, SubscribeChoice
from models.base import utcnow
from models.db import transaction
from services.errors import Invalid
from services.notifications import TEMPLATE_BY_ID, TEMPLATES, phone_index, sms_setting

log = logging.getLogger(__name__)


def opt_out_token(phone):
    """Return the token of the opt-out link for a number, recording it once."""
    index = phone_index(phone)
    token = hmac.new(
        current_app.config["SECRET_KEY"].encode(),
        f"sms-opt-out:{index}".encode(),
        "sha256",
    ).hexdigest()[:24]
    subject = f"phone:{index}"
    try:
        with transaction():
            SmsSetting.get_or_create(subject=subject, defaults={"opt_out_token": token})
    except peewee.IntegrityError:
        log.info("opt-out token recorded concurrently")
    return token


def opt_out_by_token(token):
    """Opt a number out of SMS by its link's token; return whether it was known."""
    changed = (
        SmsSetting.update(opted_in=False, decided_by="link", updated_at=utcnow())
        .where(SmsSetting.opt_out_token == token)
        .execute()
    )
    log.info("sms opt-out by link known=%s", bool(changed))
    return bool(changed)


def record_subscribe_results(citizen, results):
    """Record what wx.requestSubscribeMessage returned, template id by result.

    Each accept of a one-time template adds one message; reject and ban stop
    the template until a later accept. Unknown template ids are ignored.
    """
    with transaction():
        for template_id, result in results.items():
            key = TEMPLATE_BY_ID.get(template_id)
            if key is None or result not in ("accept", "reject", "ban"):
                continue
            choice, _ = SubscribeChoice.get_or_create(
                citizen=citizen, template=key, defaults={"decision": result}
            )
            if result == "accept":
                choice.remaining = (
                    0 if choice.decision != "accept" else choice.remaining
                )
                choice.remaining += 1
            else:
                choice.remaining = 0
            choice.decision = result
            choice.updated_at = utcnow()
            choice.save()
    log.info(
        "subscribe choices recorded citizen=%s templates=%d", citizen.id, len(results)
    )
    return choices_of(citizen)


def choices_of(citizen):
    found = {
        choice.template: choice
        for choice in SubscribeChoice.select().where(SubscribeChoice.citizen == citizen)
    }
    return [
        {
            "template": key,
            "template_id": template.subscribe_id,
            "long_term": template.long_term,
            "decision": found[key].decision if key in found else None,
            "remaining": found[key].remaining if key in found else 0,
        }
        for key, template in TEMPLATES.items()
    ]


def set_sms_choice(caller, opted_in, phone=None):
    """Record a citizen's or agency staff member's SMS choice; return it."""
    if caller.citizen is not None:
        if phone is not None:
            raise Invalid(
                "validation_failed",
                "短信发送至您小程序登录时的手机号，请不要填写 phone。",
                errors={"phone": ["Only agency staff send a phone number."]},
            )
        subject = f"citizen:{caller.citizen.id}"
        decided_by = "citizen"
    else:
        subject = f"staff:{caller.staff.id}"
        decided_by = "staff"
    if phone is not None:
        phone = normalise_mobile(phone, field="phone")
    with transaction():
        setting, _ = SmsSetting.get_or_create(subject=subject)
        setting.opted_in = opted_in
        setting.decided_by = decided_by
        if phone is not None:
            setting.phone = phone
        setting.updated_at = utcnow()
        setting.save()
    log.info("sms choice recorded subject=%s opted_in=%s", subject, opted_in)
    return setting


def sms_choice_of(caller):
    subject = (
        f"citizen:{caller.citizen.id}"
        if caller.citizen is not None
        else f"staff:{caller.staff.id}"
    )
    return sms_setting(subject)

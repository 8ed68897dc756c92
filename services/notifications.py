"""Notices to the buyers, sellers and agents of a case on every change.

A change calls one hook here inside its own transaction (`on_timeline`, or
`on_deadline_passed` for a passed deadline). The hook writes one Notice row
per person on the channel that person allows, and an outbox message for it,
so the notice commits with the change or not at all. The unique key (case,
event, recipient, channel) keeps a repeated change from writing a second
notice. The outbox worker then calls `send_notice`.

Channels: a mini-program subscribe message when the person is a citizen with
an accepted subscription for the template, otherwise SMS to the number the
registry gave for the business (or a citizen's own number once opted in),
unless opted out. A subscribe message the platform rejects falls back to SMS.
Agency staff get SMS only, once they gave a number and opted in.
"""

import logging
from dataclasses import dataclass
from datetime import UTC
from zoneinfo import ZoneInfo

import peewee
from flask import current_app, g, has_app_context

from models import (
    Citizen,
    Delegation,
    Notice,
    Organisation,
    OutboxMessage,
    Party,
    PaymentShare,
    Refund,
    ReleaseNotice,
    SmsSetting,
    Staff,
    SubscribeChoice,
    Transfer,
)
from models.base import utcnow
from models.db import database
from models.fields import data_keys

log = logging.getLogger(__name__)

NOTICE = "send_notice"
SUBSCRIBE = "subscribe"
SMS = "sms"
SHANGHAI = ZoneInfo("Asia/Shanghai")


@dataclass(frozen=True)
class Template:
    subscribe_id: str
    long_term: bool
    sms_code: str
    page: str


# The templates approved for the mini-program and the SMS signature.
TEMPLATES = {
    "transfer_status": Template(
        "LBzTransferStatus0000000000000000000000001",
        False,
        "SMS_LB_STATUS",
        "pages/case/index",
    ),
    "release_notice": Template(
        "LBzReleaseNotice00000000000000000000000002",
        True,
        "SMS_LB_RELEASE",
        "pages/release/index",
    ),
}
TEMPLATE_BY_ID = {t.subscribe_id: key for key, t in TEMPLATES.items()}

# Timeline entries that produce a notice, and the notice's event name.
EVENTS = {
    "opened": "opened",
    "pushed": "pushed",
    "collected": "pushed",
    "completed": "completed",
    "returned": "returned",
    "arrears_paid": "paid",
    "overpaid_refunded": "refunded",
    "withdrawn": "withdrawn",
}
# Each event's status word (at most 5 Chinese characters, as a phrase field
# allows) and the line that follows it.
WORDING = {
    "opened": ("已创建", "联办事项已创建，请确认户号"),
    "pushed": ("已推送", "已推送至服务机构办理"),
    "completed": ("已办结", "户号已过户至新户主"),
    "returned": ("已退件", "退件原因："),
    "paid": ("已缴费", "欠费已缴清"),
    "refunded": ("已退款", "欠费已在服务机构结清，多缴金额原路退回"),
    "overdue": ("已超期", "已超过办理时限，已督办"),
    "withdrawn": ("已撤回", "联办事项已撤回，已缴费用原路退回"),
}
ALL_ROLES = ("owner", "previous_owner", "agent")


@dataclass
class Recipient:
    key: str
    role: str
    citizen: Citizen | None = None
    phone: str | None = None
    staff: Staff | None = None


# Hooks called by the services that change a case.


def on_timeline(transfer, status, return_reason=None):
    """Queue the notices for a timeline entry, inside the caller's transaction."""
    event = EVENTS.get(status)
    if event is None:
        return
    # A case opens, or is withdrawn, with an entry per transfer, and an
    # account added later gets one too, so only the first transfer's counts.
    whole_case = event in ("opened", "withdrawn")
    if whole_case and not _is_first_transfer(transfer):
        return
    key = event if whole_case else f"{event}:transfer:{transfer.id}"
    queue_notices(
        transfer.case,
        key,
        "transfer_status",
        _status_params(transfer, event, return_reason),
    )
    if event == "completed":
        issue_release_notice(transfer.case)


def _is_first_transfer(transfer):
    first = (
        Transfer.select(Transfer.id)
        .where(Transfer.case == transfer.case_id)
        .order_by(Transfer.id)
        .first()
    )
    return first is not None and first.id == transfer.id


def on_deadline_passed(transfer):
    """Queue the notices that a transfer passed its deadline.

    Call it inside the transaction that records the passed deadline; a
    second call for the same transfer writes nothing.
    """
    params = _status_params(transfer, "overdue", None)
    queue_notices(
        transfer.case, f"overdue:transfer:{transfer.id}", "transfer_status", params
    )


# Texts.


def local_time(value):
    return value.replace(tzinfo=UTC).astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _status_params(transfer, event, return_reason):
    word, line = WORDING[event]
    if event == "opened":
        utility = "水电气热视户号"
    else:
        utility = transfer.utility.service_org
    if event == "returned":
        line = f"{line}{return_reason or '未说明'}"
    elif event == "paid":
        line = _paid_line(transfer) or line
    elif event == "refunded":
        line = _refund_line(transfer) or line
    return {
        "utility": utility,
        "status": word,
        "detail": line,
        "business_no": transfer.case.business.business_no,
        "time": local_time(utcnow()),
    }


def _paid_line(transfer):
    share = (
        PaymentShare.select()
        .where(
            (PaymentShare.transfer == transfer) & (PaymentShare.status == "credited")
        )
        .order_by(PaymentShare.id.desc())
        .first()
    )
    if share is None:
        return None
    return f"欠费{share.amount_fen / 100:.2f}元已缴清"


def _refund_line(transfer):
    refund = (
        Refund.select()
        .join(PaymentShare)
        .where(PaymentShare.transfer == transfer)
        .order_by(Refund.id.desc())
        .first()
    )
    if refund is None:
        return None
    return f"多缴{refund.amount_fen / 100:.2f}元已原路退回"


def _clip(text, limit):
    return text if len(text) <= limit else text[: limit - 1] + "…"


def subscribe_data(notice):
    """Return the subscribe message's data fields, within their length rules."""
    params = notice.params
    if notice.template == "release_notice":
        return {
            "thing1": "户号已全部过户",
            "character_string2": params["business_no"][:32],
            "time3": params["time"],
            "thing4": _clip(f"共{len(params['items'])}个户号，点击查看证明", 20),
        }
    return {
        "thing1": _clip(params["utility"], 20),
        "phrase2": params["status"],
        "thing3": _clip(params["detail"], 20),
        "time4": params["time"],
        "character_string5": params["business_no"][:32],
    }


def sms_params(notice, token):
    """Return the SMS template's variables, within the gateway's length rule."""
    params = notice.params
    if notice.template == "release_notice":
        items = "；".join(
            f"{item['service_org']}户号{item['account_no']}于{item['completed_at']}办结"
            for item in params["items"]
        )
        return {
            "business_no": params["business_no"],
            "items": _clip(items, 300),
            "token": token,
        }
    return {
        "utility": _clip(params["utility"], 35),
        "status": params["status"],
        "detail": _clip(params["detail"] + "。", 35),
        "business_no": params["business_no"][:35],
        "token": token,
    }


# Recipients and their channels.


def phone_index(phone):
    return data_keys.blind_index(f"phone:{phone}")


def recipients(case, roles=ALL_ROLES):
    """Return the people of a case to tell, one per person, in a stable order."""
    found = {}
    parties = (
        Party.select()
        .where((Party.business == case.business_id) & Party.role.in_(roles))
        .order_by(Party.role, Party.position)
    )
    for party in parties:
        key = f"p:{party.id_index}"
        if key in found:
            continue
        citizen = Citizen.get_or_none(Citizen.id_index == party.id_index)
        found[key] = Recipient(key, party.role, citizen=citizen, phone=party.phone)
    if "agent" in roles:
        for staff in _agency_staff(case):
            found[f"staff:{staff.id}"] = Recipient(
                f"staff:{staff.id}", "agent", staff=staff
            )
    return list(found.values())


def _agency_staff(case):
    codes = Delegation.select(Delegation.agency_credit_code).where(
        (Delegation.business == case.business_id)
        & Delegation.revoked_at.is_null()
        & (Delegation.expires_at > utcnow())
    )
    return list(
        Staff.select()
        .join(Organisation)
        .where(
            Organisation.credit_code.in_(codes)
            & (Staff.role == "agent")
            & (Staff.active == True)  # noqa: E712
        )
        .order_by(Staff.id)
    )


def sms_setting(subject):
    return SmsSetting.get_or_none(SmsSetting.subject == subject)


def recipient_phone(recipient):
    """Return the number SMS goes to, or None.

    The number the registry recorded for the business comes first. A
    citizen's number from the identity provider is used only after the
    citizen opted in, and an agency staff member's only after opting in
    with it.
    """
    if recipient.staff is not None:
        setting = sms_setting(f"staff:{recipient.staff.id}")
        return setting.phone if setting and setting.opted_in else None
    if recipient.phone:
        return recipient.phone
    if recipient.citizen is not None:
        setting = sms_setting(f"citizen:{recipient.citizen.id}")
        if setting is not None and setting.opted_in:
            return recipient.citizen.phone
    return None


def sms_allowed(recipient):
    """Return (allowed, reason): whether SMS may go to this person now.

    A number given to the registry for the business counts as consent to
    service notices about it until someone opts out: the citizen or agency
    staff member in their settings, or anyone holding the number by the link
    in an SMS. Between a person's own choice and the link's opt-out, the
    later one counts. When both carry the same time, the opt-out wins.
    """
    if _channel_url(SMS) is None:
        return False, "channel_not_configured"
    phone = recipient_phone(recipient)
    if not phone:
        return False, "no_phone"
    own = None
    if recipient.staff is not None:
        own = sms_setting(f"staff:{recipient.staff.id}")
    elif recipient.citizen is not None:
        own = sms_setting(f"citizen:{recipient.citizen.id}")
    if sms_decision(own, phone) is False:
        return False, "opted_out"
    return True, None


def sms_decision(own, phone):
    """Return the decision that counts for SMS to `phone`, or None if none was made.

    `own` is the person's own setting, if any. Between it and the link's
    opt-out for the number, the later one counts.
    """
    decisions = [own] if own is not None and own.opted_in is not None else []
    by_link = sms_setting(f"phone:{phone_index(phone)}") if phone else None
    if by_link is not None and by_link.opted_in is False:
        decisions.append(by_link)
    if not decisions:
        return None
    latest = max(
        decisions,
        key=lambda setting: (setting.updated_at, setting.decided_by == "link"),
    )
    return latest.opted_in


def reserve_subscription(recipient, template_key):
    """Use one accepted subscription of the template; return (reserved, reason)."""
    if _channel_url(SUBSCRIBE) is None:
        return False, "channel_not_configured"
    if recipient.citizen is None:
        return False, "no_openid"
    choice = SubscribeChoice.get_or_none(
        (SubscribeChoice.citizen == recipient.citizen)
        & (SubscribeChoice.template == template_key)
    )
    if choice is None:
        return False, "no_subscription"
    if choice.decision != "accept":
        return False, "subscription_refused"
    if TEMPLATES[template_key].long_term:
        return True, None
    used = (
        SubscribeChoice.update(remaining=SubscribeChoice.remaining - 1)
        .where((SubscribeChoice.id == choice.id) & (SubscribeChoice.remaining > 0))
        .execute()
    )
    return (True, None) if used else (False, "subscription_used")


def _channel_url(channel):
    key = "SUBSCRIBE_URL" if channel == SUBSCRIBE else "SMS_URL"
    return current_app.config.get(key)


# Writing notices.


def queue_notices(case, event, template_key, params, roles=ALL_ROLES):
    """Write a notice of `event` for each person of the case; return the notices."""
    written = []
    for recipient in recipients(case, roles):
        if _already_noticed(case, event, recipient.key):
            continue
        channel = _choose_channel(case, event, recipient, template_key)
        if channel is None:
            continue
        notice = write_notice(case, event, recipient, channel, template_key, params)
        if notice is not None:
            written.append(notice)
    return written


def _already_noticed(case, event, recipient_key):
    return (
        Notice.select()
        .where(
            (Notice.case == case)
            & (Notice.event == event)
            & (Notice.recipient == recipient_key)
        )
        .exists()
    )


def _choose_channel(case, event, recipient, template_key):
    if recipient.staff is None:
        reserved, reason = reserve_subscription(recipient, template_key)
        if reserved:
            return SUBSCRIBE
        log_skip(case, event, recipient, SUBSCRIBE, reason)
    allowed, reason = sms_allowed(recipient)
    if allowed:
        return SMS
    log_skip(case, event, recipient, SMS, reason)
    return None


def log_skip(case, event, recipient, channel, reason):
    log.info(
        "notice channel skipped case=%s event=%s role=%s recipient=%s "
        "channel=%s reason=%s",
        case.id,
        event,
        recipient.role,
        _short(recipient.key),
        channel,
        reason,
    )


def _short(recipient_key):
    # A blind index is not personal data, but 64 characters bury the line.
    return recipient_key[:14]


def write_notice(case, event, recipient, channel, template_key, params):
    """Write one notice and its outbox message, in a savepoint.

    A concurrent change that wrote the same notice first makes the insert
    fail on the unique key. The first notice is kept and this one dropped.
    """
    try:
        with database.atomic():
            notice = Notice.create(
                case=case,
                event=event,
                recipient=recipient.key,
                role=recipient.role,
                channel=channel,
                template=template_key,
                params=params,
            )
            message = OutboxMessage.create(
                kind=NOTICE, ref_id=notice.id, utility_code=channel, payload={}
            )
    except peewee.IntegrityError:
        log.info(
            "notice already written case=%s event=%s channel=%s",
            case.id,
            event,
            channel,
        )
        return None
    _send_after_commit(message.id)
    log.info(
        "notice queued notice=%s case=%s event=%s role=%s channel=%s",
        notice.id,
        case.id,
        event,
        recipient.role,
        channel,
    )
    return notice


def _send_after_commit(message_id):
    if has_app_context():
        g.setdefault("notice_messages", []).append(message_id)


def send_written(exc=None):
    """Queue the sending of the notices written in this app context.

    Runs at the end of the app context, after the change's commit. The
    message of a change that rolled back does not exist, so nothing is sent.
    A message whose queueing fails here is sent by the minute's sweep.
    """
    written = g.pop("notice_messages", None)
    if not written:
        return
    from services import queue

    for message_id in written:
        try:
            queue.deliver_message(message_id)
        except Exception as error:  # noqa: BLE001 - the sweep sends it later
            log.warning(
                "could not queue a notice; the sweep will send it message=%s error=%s",
                message_id,
                type(error).__name__,
            )


# The release notice.


def issue_release_notice(case):
    """Write the sellers' release notice once every transfer of the case is 办结."""
    transfers = list(
        Transfer.select().where(Transfer.case == case).order_by(Transfer.id)
    )
    if not transfers or any(t.status != "completed" for t in transfers):
        return None
    if ReleaseNotice.select().where(ReleaseNotice.case == case).exists():
        return None
    items = [
        {
            "utility": t.utility.code,
            "service_org": t.utility.service_org,
            "account_no": t.account_no,
            "completed_at": local_time(t.updated_at),
        }
        for t in transfers
    ]
    release = ReleaseNotice.create(case=case, business=case.business_id, items=items)
    params = {
        "business_no": case.business.business_no,
        "items": items,
        "time": local_time(release.issued_at),
        "release_id": release.id,
    }
    queue_notices(case, "released", "release_notice", params, roles=("previous_owner",))
    log.info("release notice issued release=%s case=%s", release.id, case.id)
    return release


def send_notice(message):
    """Send one notice for the outbox worker; see services/notice_sending.py."""
    from services import notice_sending

    notice_sending.send_notice(message)

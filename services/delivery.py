"""Pushes to utilities and payment reports, through the outbox.

Each message is written in the same transaction as the change that needs it,
then sent by the worker, so a crash between the two loses nothing. A message
is retried with exponential backoff until the utility takes it.
"""

import logging
import random
import uuid
from datetime import timedelta

from flask import current_app

from models import OutboxMessage, PartnerMessage, Party, Payment, Transfer
from models.base import utcnow
from models.db import transaction
from partners.http import PartnerError
from partners.signing import WINDOW_SECONDS
from partners.utilities import UtilityClient
from payments.errors import PaymentError
from services import partner_keys, timeline

log = logging.getLogger(__name__)

PUSH = "push_transfer"
PAYMENT_REPORT = "report_payment"

# Set after a commit that wrote outbox messages, so the worker wakes at once.
# How long a claimed attempt may take before another task may try again.
LEASE_SECONDS = 60


def _parties(business, role):
    query = (
        Party.select()
        .where((Party.business == business) & (Party.role == role))
        .order_by(Party.position)
    )
    return [
        {"name": p.name, "id_type": p.id_type, "id_number": p.id_number} for p in query
    ]


def _decimal_text(value):
    return None if value is None else f"{value:.2f}"


def build_push(transfer):
    """Return the Annex 2 fields for one transfer, as the utility receives them.

    `transfer_check` adds the utility's own answer, before submission, on
    whether the account could transfer, as the applicant saw it.
    """
    from services import transfer_checks

    business = transfer.case.business
    account = transfer.account
    return {
        "transfer_id": str(transfer.id),
        "business_no": business.business_no,
        "business_type": business.business_type,
        "certificate_no": business.certificate_no,
        "unit_code": business.unit.unit_code,
        "location": business.location,
        "usage": business.usage,
        "building_area": _decimal_text(business.building_area),
        "inner_area": _decimal_text(business.inner_area),
        "owners": _parties(business, "owner"),
        "previous_owners": _parties(business, "previous_owner"),
        "service_org": transfer.utility.service_org,
        "account_no": transfer.account_no,
        "account_address": account.account_address if account else None,
        "arrears_fen": transfer.arrears_fen or 0,
        "account_confirmed": transfer.account_confirmed,
        "agreement_accepted": transfer.agreement_accepted_at is not None,
        "agreement_version": transfer.agreement.version if transfer.agreement else None,
        "transfer_check": transfer_checks.push_fields(transfer),
    }


def queue_case_pushes(case):
    """Write one push per transfer of a submitted case whose registration is done.

    Runs inside the caller's transaction.
    """
    from services import meter_readings

    transfers = list(Transfer.select().where(Transfer.case == case))
    for transfer in transfers:
        timeline.record(transfer, "registered", "registry")
        channel = transfer.utility.connection == "channel"
        OutboxMessage.create(
            kind=PUSH,
            ref_id=transfer.id,
            utility_code=transfer.utility.code,
            payload=build_push(transfer),
            state="awaiting_collection" if channel else "pending",
        )
        timeline.record(
            transfer, "awaiting_collection" if channel else "queued", "system"
        )
    meter_readings.queue_requests(case)
    case.status = "in_progress"
    case.save()
    log.info("pushes queued case=%s transfers=%d", case.id, len(transfers))


def queue_payment_report(payment):
    """Write the message that reports a settled payment to the utility."""
    transfer = payment.transfer
    OutboxMessage.create(
        kind=PAYMENT_REPORT,
        ref_id=payment.id,
        utility_code=transfer.utility.code,
        payload={
            "account_no": transfer.account_no,
            "payment_id": payment.out_trade_no,
            "amount_fen": payment.amount_fen,
            "paid_at": payment.paid_at.isoformat() + "Z",
        },
    )


def utility_client(utility):
    config = current_app.config
    secret = partner_keys.signing_key(utility.code)
    if not secret or not utility.base_url:
        raise PartnerError(
            utility.code, "no base URL or shared secret configured", retryable=False
        )
    return UtilityClient(
        utility.code,
        utility.base_url,
        secret,
        timeout=(config["PARTNER_CONNECT_TIMEOUT"], config["PARTNER_READ_TIMEOUT"]),
    )


def due_ids(limit=500):
    """Return the ids of pending messages whose next attempt is due."""
    query = (
        OutboxMessage.select(OutboxMessage.id)
        .where(
            (OutboxMessage.state == "pending")
            & (OutboxMessage.next_attempt_at <= utcnow())
        )
        .order_by(OutboxMessage.next_attempt_at)
        .limit(limit)
    )
    return [row.id for row in query]


def claim(message_id):
    """Claim a due message for one attempt; return it, or None if not due.

    The conditional update moves the next attempt past a lease, so that two
    tasks for one message never send the same attempt.
    """
    message = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    now = utcnow()
    if message is None or message.state != "pending" or message.next_attempt_at > now:
        return None
    won = (
        OutboxMessage.update(next_attempt_at=now + timedelta(seconds=LEASE_SECONDS))
        .where(
            (OutboxMessage.id == message.id)
            & (OutboxMessage.next_attempt_at == message.next_attempt_at)
            & (OutboxMessage.state == "pending")
        )
        .execute()
    )
    return message if won else None


def next_attempt(message_id):
    """Return when a failed message is due again, or None if it will not be."""
    message = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    if message is None or message.state != "pending":
        return None
    return message.next_attempt_at


def wake():
    """Queue the messages that are due, after a commit that wrote some."""
    from services import queue

    queue.send_due()


def deliver(message):
    """Send one message; return 1 if the partner took it, else record the failure."""
    from services import meter_readings, settlement, withdrawal

    handlers = {
        meter_readings.READ_METER: meter_readings.send_request,
        meter_readings.SEND_DISPUTE: meter_readings.send_dispute,
        PUSH: _send_push,
        PAYMENT_REPORT: _send_payment_report,
        settlement.REFUND: settlement.send_refund,
        withdrawal.CLOSE_PAYMENT: withdrawal.send_close_payment,
        withdrawal.REVERSE_PAYMENT: withdrawal.send_payment_reversal,
    }
    try:
        handlers[message.kind](message)
    except (PartnerError, PaymentError) as error:
        _record_failure(message, error)
        return 0
    return 1


def _send_push(message):
    transfer = Transfer.get_by_id(message.ref_id)
    answer = utility_client(transfer.utility).push_transfer(
        message.payload, message_id=uuid.uuid4().hex
    )
    with transaction():
        mark_done(message)
        if transfer.status in ("queued", "push_failed", "awaiting_collection"):
            timeline.record(
                transfer,
                "pushed",
                "system",
                note=f"服务机构受理编号 {answer.get('utility_ref', '-')}",
            )
    log.info(
        "push delivered transfer=%s case=%s attempts=%d",
        transfer.id,
        transfer.case_id,
        message.attempts + 1,
    )


def _send_payment_report(message):
    payment = Payment.get_by_id(message.ref_id)
    payload = message.payload
    utility_client(payment.transfer.utility).report_payment(
        payload["account_no"],
        payload["payment_id"],
        payload["amount_fen"],
        payload["paid_at"],
    )
    with transaction():
        mark_done(message)
        Payment.update(reported_at=utcnow()).where(Payment.id == payment.id).execute()
    log.info("payment reported payment=%s transfer=%s", payment.id, payment.transfer_id)


def mark_done(message):
    OutboxMessage.update(
        state="done",
        done_at=utcnow(),
        attempts=OutboxMessage.attempts + 1,
        last_error=None,
    ).where(OutboxMessage.id == message.id).execute()


def backoff_seconds(attempts):
    """Return the wait before attempt `attempts + 1`: doubling, capped, jittered."""
    cap = current_app.config["OUTBOX_MAX_BACKOFF_SECONDS"]
    base = min(cap, 2 ** min(attempts, 20))
    return base * random.uniform(0.5, 1.0)


def _record_failure(message, error):
    attempts = message.attempts + 1
    if not getattr(error, "retryable", True):
        with transaction():
            OutboxMessage.update(
                state="failed", attempts=attempts, last_error=str(error)
            ).where(OutboxMessage.id == message.id).execute()
            if message.kind == PUSH:
                transfer = Transfer.get_by_id(message.ref_id)
                timeline.record(
                    transfer, "push_failed", "system", note=f"服务机构拒收推送：{error}"
                )
        log.error(
            "outbox message rejected by partner kind=%s ref=%s utility=%s error=%s",
            message.kind,
            message.ref_id,
            message.utility_code,
            error,
        )
        return
    wait = backoff_seconds(attempts)
    OutboxMessage.update(
        attempts=attempts,
        last_error=str(error),
        next_attempt_at=utcnow() + timedelta(seconds=wait),
    ).where(OutboxMessage.id == message.id).execute()
    log.warning(
        "outbox message will be retried kind=%s ref=%s utility=%s "
        "attempts=%d wait_s=%.1f error=%s",
        message.kind,
        message.ref_id,
        message.utility_code,
        attempts,
        wait,
        error,
    )


def collect_exports(utility):
    """Hand a channel utility its waiting transfers and mark them collected."""
    with transaction():
        waiting = list(
            OutboxMessage.select()
            .where(
                (OutboxMessage.kind == PUSH)
                & (OutboxMessage.utility_code == utility.code)
                & (OutboxMessage.state == "awaiting_collection")
            )
            .order_by(OutboxMessage.id)
        )
        for message in waiting:
            mark_done(message)
            transfer = Transfer.get_by_id(message.ref_id)
            timeline.record(transfer, "collected", "utility")
    log.info("exports collected utility=%s count=%d", utility.code, len(waiting))
    return [message.payload for message in waiting]


def forget_old_message_ids():
    """Drop seen partner message ids once their timestamps fall outside the window.

    A replay of such a message is rejected by its stale timestamp instead.
    """
    horizon = utcnow() - timedelta(seconds=2 * WINDOW_SECONDS)
    PartnerMessage.delete().where(PartnerMessage.received_at < horizon).execute()

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

from models import OutboxMessage, PartnerMessage, Party, PaymentShare, Transfer
from models.base import utcnow
from models.db import locked, transaction
from partners.http import PartnerError
from partners.signing import WINDOW_SECONDS
from partners.utilities import UtilityClient
from payments.errors import PaymentError
from services import evidence, partner_keys, timeline

log = logging.getLogger(__name__)

PUSH = "push_transfer"
PAYMENT_REPORT = "report_payment"

# How long a claimed attempt may take before another task may try again, unless
# OUTBOX_LEASE_SECONDS sets another value.
LEASE_SECONDS = 60

# Transfer states in which no push has been recorded as delivered yet.
UNDELIVERED = ("queued", "push_failed", "awaiting_collection")


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

    `transfer_check` adds the utility's own result, before submission, on
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


def queue_payment_report(share):
    """Write the message that reports a settled share of a payment to its utility."""
    transfer = share.transfer
    OutboxMessage.create(
        kind=PAYMENT_REPORT,
        ref_id=share.id,
        utility_code=transfer.utility.code,
        payload={
            "account_no": transfer.account_no,
            "payment_id": share.utility_payment_id,
            "amount_fen": share.amount_fen,
            "paid_at": share.payment.paid_at.isoformat() + "Z",
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


def lease_seconds():
    return current_app.config.get("OUTBOX_LEASE_SECONDS", LEASE_SECONDS)


def claim(message_id):
    """Claim a due message for one attempt; return it, or None if not due.

    The conditional update moves the next attempt past a lease, so that two
    tasks for one message never send the same attempt. A worker that dies
    holding the lease leaves the message pending, and it is due again when
    the lease ends.
    """
    message = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    now = utcnow()
    if message is None or message.state != "pending" or message.next_attempt_at > now:
        return None
    won = (
        OutboxMessage.update(
            next_attempt_at=now + timedelta(seconds=lease_seconds()), claimed_at=now
        )
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


def handlers():
    """Return the function that sends each kind of outbox message."""
    from services import meter_readings, notifications, settlement, withdrawal

    return {
        PUSH: _send_push,
        PAYMENT_REPORT: _send_payment_report,
        settlement.REFUND: settlement.send_refund,
        withdrawal.CLOSE_PAYMENT: withdrawal.send_close_payment,
        withdrawal.REVERSE_PAYMENT: withdrawal.send_payment_reversal,
        meter_readings.READ_METER: meter_readings.send_request,
        meter_readings.SEND_DISPUTE: meter_readings.send_dispute,
        notifications.NOTICE: notifications.send_notice,
    }


def deliver(message):
    """Send one message; return 1 if the partner took it, else record the failure."""
    try:
        handlers()[message.kind](message)
    except (PartnerError, PaymentError) as error:
        _record_failure(message, error)
        return 0
    return 1


def _send_push(message):
    transfer = Transfer.get_by_id(message.ref_id)
    answer = utility_client(transfer.utility).push_transfer(
        message.payload, message_id=uuid.uuid4().hex
    )
    record_push_response(message, answer)


def record_push_response(message, response):
    """Record that the utility accepted a push, unless its feedback recorded it first.

    The utility may report on the transfer before this runs, and its report
    has then marked the message done and moved the transfer on. The transfer
    is read again under a lock, so that a report committed meanwhile is kept.
    """
    with transaction():
        transfer = locked(Transfer.select().where(Transfer.id == message.ref_id)).get()
        marked = mark_done(message, unless_done=True)
        if marked and transfer.status in UNDELIVERED:
            timeline.record(
                transfer,
                "pushed",
                "system",
                note=f"服务机构受理编号 {response.get('utility_ref', '-')}",
            )
        evidence.record_push(transfer, message.payload, response)
    if not marked:
        log.info(
            "push response recorded after feedback transfer=%s case=%s status=%s",
            transfer.id,
            transfer.case_id,
            transfer.status,
        )
        return
    log.info(
        "push delivered transfer=%s case=%s attempts=%d",
        transfer.id,
        transfer.case_id,
        message.attempts + 1,
    )


def mark_delivered_by_feedback(transfer, utility):
    """Record that a utility reporting on a transfer has its push; return whether.

    A report proves receipt even if the push's response was never recorded,
    because the worker may have died after sending, or the response may still
    be on its way. Only a push claimed for sending at least once counts, so a report on
    a transfer that never left the hub is still rejected. Runs inside the
    caller's transaction, with the transfer locked.
    """
    message = locked(
        OutboxMessage.select().where(
            (OutboxMessage.kind == PUSH)
            & (OutboxMessage.ref_id == transfer.id)
            & (OutboxMessage.utility_code == utility.code)
        )
    ).get_or_none()
    if message is None or message.claimed_at is None or message.state == "done":
        return False
    # `attempts` keeps counting only the attempts whose response was recorded.
    OutboxMessage.update(state="done", done_at=utcnow(), last_error=None).where(
        OutboxMessage.id == message.id
    ).execute()
    timeline.record(
        transfer, "pushed", "system", note="服务机构已反馈办理状态，推送已送达"
    )
    log.info(
        "push marked delivered by feedback transfer=%s case=%s message=%s state=%s",
        transfer.id,
        transfer.case_id,
        message.id,
        message.state,
    )
    return True


def _send_payment_report(message):
    from services import settlement

    share = PaymentShare.get_by_id(message.ref_id)
    payload = message.payload
    answer = utility_client(share.transfer.utility).report_payment(
        payload["account_no"],
        payload["payment_id"],
        payload["amount_fen"],
        payload["paid_at"],
    )
    applied_fen = _applied_fen(answer, share, message.utility_code)
    arrears_fen = answer.get("arrears_fen")
    if isinstance(arrears_fen, bool) or not isinstance(arrears_fen, int):
        arrears_fen = None
    with transaction():
        mark_done(message)
        if arrears_fen is not None and arrears_fen >= 0:
            # What the utility states now, for the case view and the push.
            Transfer.update(arrears_fen=arrears_fen, arrears_checked_at=utcnow()).where(
                Transfer.id == share.transfer_id
            ).execute()
        # A share the utility could apply none of goes back whole.
        status = "refunded" if applied_fen == 0 else PaymentShare.status
        recorded = (
            PaymentShare.update(
                reported_at=utcnow(), applied_fen=applied_fen, status=status
            )
            .where((PaymentShare.id == share.id) & PaymentShare.reported_at.is_null())
            .execute()
        )
        excess = recorded and applied_fen < share.amount_fen
        if excess:
            settlement.refund_excess(share, share.amount_fen - applied_fen)
    if excess:
        wake()
    log.info(
        "payment reported payment=%s share=%s transfer=%s applied_fen=%d",
        share.payment_id,
        share.id,
        share.transfer_id,
        applied_fen,
    )


def _applied_fen(answer, share, partner):
    """Return how much of the share the utility took off the debt.

    A response without `applied_fen` means all of it. A value outside 0 to
    the share's amount is invalid, so the report is sent again later.
    """
    applied = answer.get("applied_fen")
    if applied is None:
        return share.amount_fen
    if (
        isinstance(applied, bool)
        or not isinstance(applied, int)
        or not 0 <= applied <= share.amount_fen
    ):
        log.warning(
            "partner sent an invalid applied_fen partner=%s share=%s",
            partner,
            share.id,
        )
        raise PartnerError(partner, "applied_fen is not between 0 and the amount")
    return applied


def mark_done(message, unless_done=False):
    """Mark a message sent; return whether a row changed.

    With `unless_done`, a message that something else already marked done,
    such as a utility's feedback, is left as it is.
    """
    query = OutboxMessage.update(
        state="done",
        done_at=utcnow(),
        attempts=OutboxMessage.attempts + 1,
        last_error=None,
    ).where(OutboxMessage.id == message.id)
    if unless_done:
        query = query.where(OutboxMessage.state != "done")
    return query.execute() > 0


def backoff_seconds(attempts):
    """Return the wait before attempt `attempts + 1`: doubling, capped, jittered."""
    cap = current_app.config["OUTBOX_MAX_BACKOFF_SECONDS"]
    base = min(cap, 2 ** min(attempts, 20))
    return base * random.uniform(0.5, 1.0)


def _record_failure(message, error):
    """Record a failed attempt, unless the message was finished meanwhile.

    A utility's feedback can mark a push done while an attempt at it is still
    running, and that attempt's failure must then not undo the report.
    """
    attempts = message.attempts + 1
    still_pending = (OutboxMessage.id == message.id) & (
        OutboxMessage.state == "pending"
    )
    if not getattr(error, "retryable", True):
        with transaction():
            # The transfer is locked before the message, in the order feedback
            # takes them, so that the two cannot deadlock.
            transfer = None
            if message.kind == PUSH:
                transfer = locked(
                    Transfer.select().where(Transfer.id == message.ref_id)
                ).get()
            changed = (
                OutboxMessage.update(
                    state="failed", attempts=attempts, last_error=str(error)
                )
                .where(still_pending)
                .execute()
            )
            if changed and transfer is not None:
                timeline.record(
                    transfer, "push_failed", "system", note=f"服务机构拒收推送：{error}"
                )
        if not changed:
            _log_failure_after_done(message, error)
            return
        log.error(
            "outbox message rejected by partner kind=%s ref=%s utility=%s error=%s",
            message.kind,
            message.ref_id,
            message.utility_code,
            error,
        )
        return
    wait = backoff_seconds(attempts)
    changed = (
        OutboxMessage.update(
            attempts=attempts,
            last_error=str(error),
            next_attempt_at=utcnow() + timedelta(seconds=wait),
        )
        .where(still_pending)
        .execute()
    )
    if not changed:
        _log_failure_after_done(message, error)
        return
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


def _log_failure_after_done(message, error):
    log.info(
        "attempt failed after the message was finished kind=%s ref=%s utility=%s "
        "error=%s",
        message.kind,
        message.ref_id,
        message.utility_code,
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

"""Crediting payments exactly once, and returning money that must go back.

A provider may report the same payment many times, at once, by notification
and by query. Each report goes through `settle`, and a conditional update
from pending to paid lets exactly one of them credit the debt. A payment
that lands on an order already closed or replaced, on a debt already paid,
or on a withdrawn case, is kept and refunded.
"""

import logging
import secrets
from datetime import UTC, datetime

from peewee import fn

from models import Case, OutboxMessage, Payment, PaymentShare, Refund
from models.base import utcnow
from models.db import locked, transaction
from payments.errors import PaymentError
from services import delivery, evidence, timeline

log = logging.getLogger(__name__)

REFUND = "refund_payment"

# The outcome of one report of a payment.
CREDITED = "credited"
DUPLICATE = "duplicate"
REFUNDING = "refunding"
FLAGGED = "flagged"
UNKNOWN = "unknown"


def settle(out_trade_no, transaction_id, amount_fen, paid_at):
    """Apply one provider report that an order was paid; return the outcome."""
    payment = Payment.get_or_none(Payment.out_trade_no == out_trade_no)
    if payment is None:
        log.error("payment report for unknown order out_trade_no=%s", out_trade_no)
        return UNKNOWN
    if amount_fen != payment.amount_fen:
        return _flag_amount(payment, amount_fen)
    paid_at = (paid_at or datetime.now(UTC)).astimezone(UTC).replace(tzinfo=None)
    outcome = _settle_paid(payment, transaction_id, paid_at)
    if outcome in (CREDITED, REFUNDING):
        # The report or refund message is committed; have it sent now.
        delivery.wake()
    return outcome


def _settle_paid(payment, transaction_id, paid_at):
    with transaction():
        # The case is locked first, as a withdrawal locks it. A payment that
        # settles while its case is withdrawn is then either found by the
        # withdrawal and refunded there, or finds the case withdrawn here.
        case = locked(Case.select().where(Case.id == payment.case_id)).get()
        if case.status == "withdrawn" and _mark_paid(
            payment, "pending", "paid_late", transaction_id, paid_at
        ):
            log.warning("payment landed on a withdrawn case payment=%s", payment.id)
            _refund_late(payment, "联办事项已撤回")
            return REFUNDING
        if _mark_paid(payment, "pending", "paid", transaction_id, paid_at):
            return _credit(Payment.get_by_id(payment.id))
        current = Payment.get_by_id(payment.id)
        if current.status in ("paid", "paid_late", "paid_twice"):
            log.info("payment report repeated payment=%s", payment.id)
            return DUPLICATE
        if _mark_paid(payment, current.status, "paid_late", transaction_id, paid_at):
            log.warning(
                "payment landed on a %s order payment=%s", current.status, payment.id
            )
            _refund_late(payment, "订单已关闭或已替换")
            return REFUNDING
    return DUPLICATE


def _mark_paid(payment, from_status, to_status, transaction_id, paid_at):
    return (
        Payment.update(status=to_status, transaction_id=transaction_id, paid_at=paid_at)
        .where((Payment.id == payment.id) & (Payment.status == from_status))
        .execute()
    )


def _refund_late(payment, reason):
    PaymentShare.update(status="paid_late").where(
        PaymentShare.payment == payment
    ).execute()
    queue_refund(Payment.get_by_id(payment.id), reason)


def _credit(payment):
    """Book each share of a payment that won the race.

    A share whose debt another payment already settled is refunded; the rest
    go against their debts and are reported to their utilities. The debt an
    order was made for is the one its utility stated when the order was
    created, so only another payment that the utility had not booked by then
    can have paid it. A payment booked earlier paid an earlier debt.
    """
    credited = 0
    for share in payment.shares.order_by(PaymentShare.id):
        already_paid = (
            PaymentShare.select()
            .where(
                (PaymentShare.transfer == share.transfer_id)
                & (PaymentShare.id != share.id)
                & (PaymentShare.status == "credited")
                & (
                    PaymentShare.reported_at.is_null()
                    | (PaymentShare.reported_at >= payment.created_at)
                )
            )
            .exists()
        )
        if already_paid:
            _set_share(share, "paid_twice")
            queue_refund(payment, "欠费已由另一笔缴费结清", share=share)
            log.warning(
                "debt paid twice payment=%s share=%s transfer=%s",
                payment.id,
                share.id,
                share.transfer_id,
            )
            continue
        _set_share(share, "credited")
        credited += 1
        transfer = share.transfer
        timeline.record(
            transfer,
            "arrears_paid",
            "applicant",
            note=f"{timeline.NOTES['arrears_paid']}（{share.amount_fen / 100:.2f} 元）",
        )
        delivery.queue_payment_report(share)
        evidence.record_payment(payment, share)
    if not credited:
        Payment.update(status="paid_twice").where(Payment.id == payment.id).execute()
        return REFUNDING
    log.info(
        "payment settled payment=%s case=%s shares_credited=%d",
        payment.id,
        payment.case_id,
        credited,
    )
    return CREDITED


def _set_share(share, status):
    PaymentShare.update(status=status).where(PaymentShare.id == share.id).execute()


def _flag_amount(payment, amount_fen):
    note = (
        f"amount_mismatch: provider reported {amount_fen} fen, "
        f"order is {payment.amount_fen}"
    )
    Payment.update(flag=note).where(
        (Payment.id == payment.id) & Payment.flag.is_null()
    ).execute()
    log.error(
        "payment amount mismatch payment=%s expected=%d got=%d",
        payment.id,
        payment.amount_fen,
        amount_fen,
    )
    return FLAGGED


def refundable_fen(payment, share=None):
    """Return what is left to refund of an order, or of one of its shares."""
    refunds = Refund.select(fn.COALESCE(fn.SUM(Refund.amount_fen), 0)).where(
        (Refund.payment == payment) & (Refund.status != "failed")
    )
    if share is not None:
        refunds = refunds.where(Refund.share == share)
        return share.amount_fen - refunds.scalar()
    return payment.amount_fen - refunds.scalar()


def queue_refund(payment, reason, share=None, amount_fen=None):
    """Record a refund and write the message that sends it.

    Without `amount_fen` it refunds what is left of the share, or of the
    whole order without a share. Return the refund, or None if nothing is left.
    """
    if amount_fen is None:
        amount_fen = refundable_fen(payment, share)
    if amount_fen <= 0:
        log.info("nothing left to refund payment=%s", payment.id)
        return None
    refund = Refund.create(
        payment=payment,
        share=share,
        out_refund_no=f"RF{payment.out_trade_no[2:]}{secrets.token_hex(2).upper()}",
        amount_fen=amount_fen,
        reason=reason,
    )
    transfer = share.transfer if share else _first_transfer(payment)
    OutboxMessage.create(
        kind=REFUND,
        ref_id=refund.id,
        utility_code=transfer.utility.code,
        payload={"out_refund_no": refund.out_refund_no},
    )
    evidence.record_refund(refund)
    log.info(
        "refund queued refund=%s payment=%s amount_fen=%d",
        refund.id,
        payment.id,
        amount_fen,
    )
    return refund


def refund_excess(share, amount_fen):
    """Refund the part of a share that the utility could not apply to the debt.

    The debt was paid in part or in full at the utility's counter after the
    order was made. Call it inside the transaction that records the report.
    """
    reason = "欠费已在服务机构结清"
    queue_refund(share.payment, reason, share=share, amount_fen=amount_fen)
    note = f"{timeline.NOTES['overpaid_refunded']}（{amount_fen / 100:.2f} 元）"
    timeline.record(share.transfer, "overpaid_refunded", "utility", note=note)
    log.info(
        "share paid beyond the debt payment=%s share=%s excess_fen=%d",
        share.payment_id,
        share.id,
        amount_fen,
    )


def _first_transfer(payment):
    return payment.shares.order_by(PaymentShare.id).first().transfer


def send_refund(message):
    """Ask the provider to refund; the out_refund_no makes a resend harmless."""
    from services import wallets

    refund = Refund.get_by_id(message.ref_id)
    payment = refund.payment
    outcome = wallets.refund(
        payment, refund.out_refund_no, refund.amount_fen, refund.reason
    )
    with transaction():
        delivery.mark_done(message)
        Refund.update(
            status="succeeded" if outcome.done else "processing",
            provider_refund_id=outcome.provider_refund_id,
            done_at=utcnow() if outcome.done else None,
        ).where(Refund.id == refund.id).execute()
    log.info(
        "refund sent refund=%s payment=%s done=%s",
        refund.id,
        payment.id,
        outcome.done,
    )


def poll_refunds(limit=20):
    """Ask WeChat Pay about refunds still processing; return how many finished."""
    processing = list(
        Refund.select()
        .join(Payment)
        .where((Refund.status == "processing") & (Payment.provider == "wechatpay"))
        .order_by(Refund.id)
        .limit(limit)
    )
    return sum(check_refund(refund) for refund in processing)


def check_refund(refund):
    """Ask the provider whether a refund in processing finished; return 1 if so."""
    from services import wallets

    if refund.status != "processing":
        return 0
    try:
        done = wallets.refund_done(refund.payment, refund.out_refund_no)
    except PaymentError as error:
        log.warning("refund query failed refund=%s error=%s", refund.id, error)
        return 0
    if done is None:
        return 0
    Refund.update(status="succeeded" if done else "failed", done_at=utcnow()).where(
        (Refund.id == refund.id) & (Refund.status == "processing")
    ).execute()
    log.info("refund finished refund=%s succeeded=%s", refund.id, done)
    return 1

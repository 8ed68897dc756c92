"""Withdrawing a case before its registration completes, and undoing its money.

A case is withdrawn when the registry withdraws its business (the sale fell
through) or when an owner withdraws the joint handling. Either way, one
transaction makes the case and its open transfers 已撤回, with the reason on
each timeline, and cancels the pushes not yet sent. It also queues a message
that closes each open payment order at its provider, and for each share of
a payment already credited a refund to the payer and a reversal at its
utility. A
payment that arrives later for the case is refunded when it settles (see
`services.settlement`).
"""

import logging

from models import Case, OutboxMessage, Payment, PaymentShare, Transfer
from models.base import utcnow
from models.db import locked, transaction
from partners.http import PartnerError
from payments.errors import PaymentError
from services import access, delivery, timeline
from services.errors import Conflict

log = logging.getLogger(__name__)

CLOSE_PAYMENT = "close_payment"
REVERSE_PAYMENT = "reverse_payment"
REFUND_REASON = "联办事项已撤回"


def withdraw_by_owner(case, reason):
    """Withdraw a case for its owner or their agent; raise Conflict when too late."""
    note = f"申请人撤回联办：{reason}" if reason else "申请人撤回联办"
    with transaction():
        case = locked(Case.select().where(Case.id == case.id)).get()
        if case.status == "withdrawn":
            raise Conflict("case_withdrawn", "该联办事项已撤回。")
        if case.business.registration_status == "completed":
            raise Conflict(
                "registration_completed",
                "不动产登记已登簿，过户已推送至服务机构，不能撤回；"
                "如需变更请联系各服务机构。",
            )
        if case.status not in ("open", "submitted"):
            raise Conflict("case_closed", "该联办事项已办结，不能撤回。")
        _withdraw(case, note)
        access.record_action(case, "withdraw", reason=reason or None)
    delivery.wake()
    log.info("case withdrawn by its applicant case=%s", case.id)
    return Case.get_by_id(case.id)


def withdraw_with_business(case):
    """Withdraw a case because the registry withdrew its business.

    Runs inside the registry's transaction. A case already ended is left as
    it is.
    """
    case = locked(Case.select().where(Case.id == case.id)).get()
    if case.status not in ("open", "submitted"):
        return False
    _withdraw(case, "不动产登记业务已撤回")
    log.info("case withdrawn with its business case=%s", case.id)
    return True


def _withdraw(case, note):
    case.status = "withdrawn"
    case.closed_at = utcnow()
    case.save()
    transfers = list(case.transfers.order_by(Transfer.id))
    for transfer in transfers:
        if not timeline.is_final(transfer.status):
            timeline.record(transfer, "withdrawn", note=note)
    transfer_ids = [transfer.id for transfer in transfers]
    if not transfer_ids:
        return
    stopped = (
        OutboxMessage.update(state="cancelled", done_at=utcnow())
        .where(
            (OutboxMessage.kind == delivery.PUSH)
            & OutboxMessage.ref_id.in_(transfer_ids)
            & (OutboxMessage.state.in_(["pending", "awaiting_collection", "failed"]))
        )
        .execute()
    )
    if stopped:
        log.info("pushes stopped by withdrawal case=%s count=%d", case.id, stopped)
    for payment in list(Payment.select().where(Payment.case == case)):
        _undo_payment(payment)


def _undo_payment(payment):
    from services import settlement

    if payment.status in ("creating", "pending"):
        utility = payment.shares.order_by(PaymentShare.id).first().transfer.utility
        payload = {"out_trade_no": payment.out_trade_no}
        _queue(CLOSE_PAYMENT, payment.id, utility, payload)
        return
    if payment.status != "paid":
        return
    credited = payment.shares.where(PaymentShare.status == "credited")
    for share in list(credited.order_by(PaymentShare.id)):
        refund = settlement.queue_refund(payment, REFUND_REASON, share=share)
        if refund is not None:
            amount = f"（{refund.amount_fen / 100:.2f} 元）"
            note = timeline.NOTES["payment_refunded"] + amount
            timeline.record(share.transfer, "payment_refunded", "system", note=note)
        PaymentShare.update(status="refunded").where(
            PaymentShare.id == share.id
        ).execute()
        transfer = share.transfer
        _queue(
            REVERSE_PAYMENT,
            share.id,
            transfer.utility,
            {
                "account_no": transfer.account_no,
                "payment_id": share.utility_payment_id,
                "amount_fen": share.amount_fen,
            },
        )


def _queue(kind, ref_id, utility, payload):
    OutboxMessage.create(
        kind=kind, ref_id=ref_id, utility_code=utility.code, payload=payload
    )
    log.info("%s queued ref=%s", kind, ref_id)


def send_close_payment(message):
    """Close a withdrawn case's open order at its provider.

    An order that cannot be closed because it was paid meanwhile is settled,
    and settling a payment of a withdrawn case refunds it.
    """
    from services import payments, wallets

    payment = Payment.get_by_id(message.ref_id)
    if payment.status in ("creating", "pending"):
        try:
            wallets.close_order(payment)
        except PaymentError as error:
            log.warning(
                "closing a withdrawn case's order failed payment=%s error=%s",
                payment.id,
                error,
            )
            if payments.refresh_payment(payment).status in ("creating", "pending"):
                raise
        Payment.update(status="closed").where(
            (Payment.id == payment.id) & Payment.status.in_(["creating", "pending"])
        ).execute()
    with transaction():
        delivery.mark_done(message)
    log.info("withdrawn case's order closed payment=%s", payment.id)


def send_payment_reversal(message):
    """Report to the utility that a reported payment was returned to the payer.

    The reversal waits for the share's report, so that the utility never
    receives a reversal of a payment it has no record of.
    """
    share = PaymentShare.get_by_id(message.ref_id)
    report = OutboxMessage.get_or_none(
        (OutboxMessage.kind == delivery.PAYMENT_REPORT)
        & (OutboxMessage.ref_id == share.id)
    )
    if report is not None and report.state == "pending":
        raise PartnerError(
            message.utility_code,
            "the payment's report is not delivered yet; the reversal waits for it",
        )
    if report is not None and report.state == "done":
        payload = message.payload
        delivery.utility_client(share.transfer.utility).reverse_payment(
            payload["account_no"], payload["payment_id"], payload["amount_fen"]
        )
    else:
        log.info(
            "payment was never reported; no reversal sent payment=%s share=%s",
            share.payment_id,
            share.id,
        )
    with transaction():
        delivery.mark_done(message)
    log.info("payment reversal done payment=%s share=%s", share.payment_id, share.id)

"""Daily reconciliation: each provider's trade bill against the hub's payments.

Every payment and refund of the day must appear on both sides with the same
amount. Each mismatch is listed for staff; nothing is changed automatically.
"""

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from zoneinfo import ZoneInfo

from models import Payment, Refund
from services import wallets

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")
PAID_STATES = ("paid", "paid_late", "paid_twice")


@dataclass(frozen=True)
class Difference:
    kind: str
    reference: str
    detail: str


def _utc_bounds(bill_date):
    start = datetime.combine(bill_date, time(0), SHANGHAI)
    end = start + timedelta(days=1)
    return (
        start.astimezone(UTC).replace(tzinfo=None),
        end.astimezone(UTC).replace(tzinfo=None),
    )


def reconcile(provider, bill_date):
    """Return every difference between a provider's bill for a day and the hub."""
    rows = wallets.download_bill(provider, bill_date)
    start, end = _utc_bounds(bill_date)
    differences = _compare_payments(
        [row for row in rows if row.trade_state == "SUCCESS"],
        Payment.select().where(
            (Payment.provider == provider)
            & Payment.status.in_(PAID_STATES)
            & (Payment.paid_at >= start)
            & (Payment.paid_at < end)
        ),
    )
    differences += _compare_refunds(
        [row for row in rows if row.trade_state == "REFUND"],
        Refund.select()
        .join(Payment)
        .where(
            (Payment.provider == provider)
            & (Refund.status == "succeeded")
            & (Refund.done_at >= start)
            & (Refund.done_at < end)
        ),
    )
    log.info(
        "reconciliation done provider=%s date=%s bill_rows=%d differences=%d",
        provider,
        bill_date,
        len(rows),
        len(differences),
    )
    return differences


def _compare_payments(bill_rows, payments):
    billed = {row.out_trade_no: row for row in bill_rows}
    booked = {payment.out_trade_no: payment for payment in payments}
    differences = []
    for out_trade_no, row in billed.items():
        payment = booked.get(out_trade_no)
        if payment is None:
            stored = Payment.get_or_none(Payment.out_trade_no == out_trade_no)
            state = stored.status if stored else "unknown to the hub"
            differences.append(
                Difference(
                    "paid_at_provider_only",
                    out_trade_no,
                    f"bill shows {row.amount_fen} fen paid; hub has {state}",
                )
            )
        elif payment.amount_fen != row.amount_fen:
            differences.append(
                Difference(
                    "amount_differs",
                    out_trade_no,
                    f"bill {row.amount_fen} fen, hub {payment.amount_fen} fen",
                )
            )
    for out_trade_no, payment in booked.items():
        if out_trade_no not in billed:
            differences.append(
                Difference(
                    "paid_at_hub_only",
                    out_trade_no,
                    f"hub booked {payment.amount_fen} fen; not on the bill",
                )
            )
    return differences


def _compare_refunds(bill_rows, refunds):
    billed = {row.out_refund_no: row for row in bill_rows}
    booked = {refund.out_refund_no: refund for refund in refunds}
    differences = []
    for out_refund_no, row in billed.items():
        refund = booked.get(out_refund_no)
        if refund is None:
            differences.append(
                Difference(
                    "refunded_at_provider_only",
                    out_refund_no or row.out_trade_no,
                    f"bill shows {row.refund_fen} fen refunded; hub has none finished",
                )
            )
        elif refund.amount_fen != row.refund_fen:
            differences.append(
                Difference(
                    "refund_amount_differs",
                    out_refund_no,
                    f"bill {row.refund_fen} fen, hub {refund.amount_fen} fen",
                )
            )
    for out_refund_no, refund in booked.items():
        if out_refund_no not in billed:
            differences.append(
                Difference(
                    "refunded_at_hub_only",
                    out_refund_no,
                    f"hub finished a {refund.amount_fen} fen refund; the bill has none",
                )
            )
    return differences

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
    def state_at_hub(out_trade_no):
        stored = Payment.get_or_none(Payment.out_trade_no == out_trade_no)
        return stored.status if stored else "unknown to the hub"

    return _compare(
        {row.out_trade_no: row.amount_fen for row in bill_rows},
        {payment.out_trade_no: payment.amount_fen for payment in payments},
        ("paid_at_provider_only", "amount_differs", "paid_at_hub_only"),
        lambda ref, fen: f"bill shows {fen} fen paid; hub has {state_at_hub(ref)}",
        lambda ref, fen: f"hub booked {fen} fen; not on the bill",
    )


def _compare_refunds(bill_rows, refunds):
    return _compare(
        {row.out_refund_no or row.out_trade_no: row.refund_fen for row in bill_rows},
        {refund.out_refund_no: refund.amount_fen for refund in refunds},
        ("refunded_at_provider_only", "refund_amount_differs", "refunded_at_hub_only"),
        lambda ref, fen: f"bill shows {fen} fen refunded; hub has none finished",
        lambda ref, fen: f"hub finished a {fen} fen refund; the bill has none",
    )


def _compare(billed, booked, kinds, provider_only_detail, hub_only_detail):
    """List the references whose amounts in fen differ between bill and hub.

    `billed` and `booked` map a reference to its amount, and `kinds` names
    the three outcomes: only on the bill, amounts differ, only at the hub.
    """
    provider_only, differs, hub_only = kinds
    differences = []
    for reference, bill_fen in billed.items():
        if reference not in booked:
            detail = provider_only_detail(reference, bill_fen)
            differences.append(Difference(provider_only, reference, detail))
        elif booked[reference] != bill_fen:
            detail = f"bill {bill_fen} fen, hub {booked[reference]} fen"
            differences.append(Difference(differs, reference, detail))
    for reference, hub_fen in booked.items():
        if reference not in billed:
            detail = hub_only_detail(reference, hub_fen)
            differences.append(Difference(hub_only, reference, detail))
    return differences

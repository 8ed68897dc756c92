"""Paying arrears by QR code, with WeChat Pay or Alipay.

One order pays one account's arrears or, from the case, every account's at
once: the order is split into a share per transfer, and each share is
reported to its own utility.
"""

import logging
import secrets
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import peewee
from flask import current_app

from models import Case, Payment, PaymentShare, Transfer
from models.base import is_storable_id, utcnow
from models.db import locked, transaction
from partners.http import PartnerError
from payments.errors import PaymentError
from services import access, delivery, settlement, wallets
from services.errors import Conflict, Invalid, NotFound, PartnerUnavailable

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
OPEN_STATES = ("creating", "pending")
SETTLING = ("payment_settling", "已缴费，正在通知服务机构销账，请勿重复缴费。")
IN_FLIGHT = ("payment_in_flight", "缴费二维码正在生成，请稍后刷新。")


def new_trade_no():
    # The wallets' bills run by China time, so the number's date does too.
    stamp = datetime.now(CHINA).strftime("%Y%m%d%H%M%S")
    return f"LB{stamp}{secrets.token_hex(6).upper()}"


def start_payment(transfer, provider="wechatpay"):
    """Return a payable order for one transfer's arrears, and whether it is new."""
    _require_payable_case(transfer.case)
    read_at = utcnow()
    arrears = _live_arrears(transfer)
    if arrears == 0:
        raise Conflict("nothing_to_pay", "该户号没有欠费，无需缴费。")
    return _order_for(transfer.case, [(transfer, arrears)], read_at, provider)


def start_case_payment(case, provider="wechatpay", transfer_ids=None):
    """Return one payable order for the arrears of several accounts of a case.

    Without `transfer_ids` the order covers every account that has a debt
    and whose utility takes payments online. Accounts whose payment is still
    being settled are left out. Named transfers must each be payable.
    """
    _require_payable_case(case)
    transfers = list(case.transfers.order_by(Transfer.id))
    if transfer_ids is not None:
        transfers = _named(transfers, transfer_ids)
    else:
        transfers = [
            transfer
            for transfer in transfers
            if transfer.utility.connection == "system"
            and not _has_unreported_payment(transfer)
        ]
    read_at = utcnow()
    owed = []
    for transfer in transfers:
        arrears = _live_arrears(transfer)
        if arrears > 0:
            owed.append((transfer, arrears))
    if not owed:
        raise Conflict("nothing_to_pay", "所选户号均没有欠费，无需缴费。")
    return _order_for(case, owed, read_at, provider)


def _require_payable_case(case):
    if case.status in ("closed", "withdrawn"):
        raise Conflict("case_closed", "联办事项已关闭，不能再缴费。")


def _named(transfers, transfer_ids):
    by_id = {transfer.id: transfer for transfer in transfers}
    unknown = [tid for tid in transfer_ids if tid not in by_id]
    if unknown:
        raise Invalid(
            "unknown_transfer",
            "所选户号不属于该联办事项，请刷新页面后重新选择。",
            errors={"transfer_ids": [f"not a transfer of this case: {unknown}"]},
        )
    if len(set(transfer_ids)) != len(transfer_ids):
        raise Invalid(
            "duplicate_transfer",
            "同一户号只能选择一次。",
            errors={"transfer_ids": ["each transfer_id may appear once"]},
        )
    return [by_id[tid] for tid in sorted(transfer_ids)]


def _require_within_limit(owed):
    limit = current_app.config["PAYMENT_MAX_FEN"]
    total = sum(arrears for _, arrears in owed)
    if total <= limit:
        return
    log.warning("order over the limit total_fen=%d limit_fen=%d", total, limit)
    hint = "请分户缴纳或" if len(owed) > 1 else "请"
    raise Conflict(
        "amount_over_limit",
        f"欠费合计 {total / 100:.2f} 元，超过线上缴费上限 {limit / 100:.2f} 元，"
        f"{hint}到服务机构窗口缴纳。",
    )


def _order_for(case, owed, read_at, provider):
    """Reuse the open order for exactly these debts, or replace it with a new one.

    A pending order for the same debts and provider that has not expired is
    reused, so a repeated tap does not create a second payable code. Any
    other open order touching these transfers is closed at the provider
    first, so that only one code can ever be paid for a debt.
    """
    _require_within_limit(owed)
    debts = {transfer.id: arrears for transfer, arrears in owed}
    for payment in _pending(debts):
        reusable = _debts(payment) == debts and payment.provider == provider
        if reusable and payment.expires_at > utcnow():
            return payment, False
        close_payment(payment)
    return _create(case, owed, read_at, provider), True


def _debts(payment):
    return {share.transfer_id: share.amount_fen for share in payment.shares}


def _live_arrears(transfer):
    utility = transfer.utility
    if utility.connection != "system":
        raise Conflict(
            "utility_not_connected",
            f"{utility.service_org}未接入线上缴费，请到其窗口缴费。",
        )
    if _has_unreported_payment(transfer):
        raise Conflict(*SETTLING)
    try:
        arrears = delivery.utility_client(utility).get_arrears(transfer.account_no)
    except PartnerError:
        raise PartnerUnavailable(
            "utility_unavailable",
            f"{utility.service_org}系统暂时无法查询欠费，请稍后再试。",
        ) from None
    with transaction():
        Transfer.update(arrears_fen=arrears, arrears_checked_at=utcnow()).where(
            Transfer.id == transfer.id
        ).execute()
    return arrears


def _credited(transfer):
    return PaymentShare.select().where(
        (PaymentShare.transfer == transfer) & (PaymentShare.status == "credited")
    )


def _paid_since(transfer, read_at):
    """Say whether a payment was booked after the arrears were read at `read_at`.

    Such a reading may still include the debt that payment settled.
    """
    return (
        _credited(transfer)
        .where(
            PaymentShare.reported_at.is_null() | (PaymentShare.reported_at >= read_at)
        )
        .exists()
    )


def _has_unreported_payment(transfer):
    return _credited(transfer).where(PaymentShare.reported_at.is_null()).exists()


def _open_orders(transfer_ids, states):
    return list(
        Payment.select()
        .join(PaymentShare)
        .where(
            PaymentShare.transfer.in_(list(transfer_ids)) & Payment.status.in_(states)
        )
        .distinct()
        .order_by(Payment.id)
    )


def _pending(transfer_ids):
    return _open_orders(transfer_ids, ("pending",))


def _description(case, owed):
    if len(owed) == 1:
        transfer = owed[0][0]
        return f"{transfer.utility.service_org}欠费 户号{transfer.account_no}"[:40]
    return f"联办欠费 {len(owed)}个户号 业务号{case.business.business_no}"[:40]


def _create(case, owed, read_at, provider):
    ttl = current_app.config["PAYMENT_TTL_SECONDS"]
    expires_at = utcnow() + timedelta(seconds=ttl)
    amount_fen = sum(arrears for _, arrears in owed)
    single = owed[0][0] if len(owed) == 1 else None
    # The order is recorded before the provider hears of it, so a payment
    # can never arrive for an order the hub does not know.
    try:
        with transaction():
            # Orders of one case are made one at a time. The partial unique
            # index also keeps one open single-account order per transfer.
            locked(Case.select().where(Case.id == case.id)).get()
            transfer_ids = [transfer.id for transfer, _ in owed]
            # Checked again here, because an earlier order may have been paid
            # and reported since the arrears were read, or another request
            # may have opened an order for the same debts meanwhile.
            if any(_paid_since(transfer, read_at) for transfer, _ in owed):
                raise Conflict(*SETTLING)
            if _open_orders(transfer_ids, OPEN_STATES):
                raise Conflict(*IN_FLIGHT)
            payment = Payment.create(
                case=case,
                transfer=single,
                provider=provider,
                out_trade_no=new_trade_no(),
                amount_fen=amount_fen,
                description=_description(case, owed),
                expires_at=expires_at,
                status="creating",
            )
            for number, (transfer, arrears) in enumerate(owed, start=1):
                PaymentShare.create(
                    payment=payment,
                    transfer=transfer,
                    amount_fen=arrears,
                    utility_payment_id=(
                        payment.out_trade_no
                        if single
                        else f"{payment.out_trade_no}-{number}"
                    ),
                )
                access.record_action(
                    case,
                    "pay",
                    transfer,
                    payment=payment.id,
                    provider=provider,
                    amount_fen=arrears,
                )
    except peewee.IntegrityError:
        # A concurrent request is creating an order for this debt already.
        raise Conflict(*IN_FLIGHT) from None
    try:
        code_url = wallets.create_order(payment)
    except (PaymentError, ValueError) as error:
        # A ValueError is the client refusing the order before sending it.
        log.warning(
            "payment order rejected case=%s payment=%s error=%s",
            case.id,
            payment.id,
            error,
        )
        Payment.update(status="failed").where(Payment.id == payment.id).execute()
        raise PartnerUnavailable(
            "payment_provider_error", "支付下单失败，请稍后再试。"
        ) from None
    Payment.update(code_url=code_url, status="pending").where(
        Payment.id == payment.id
    ).execute()
    payment = Payment.get_by_id(payment.id)
    log.info(
        "payment created payment=%s case=%s shares=%d amount_fen=%d",
        payment.id,
        case.id,
        len(owed),
        amount_fen,
    )
    return payment


def close_payment(payment):
    """Close an order at the provider before it is replaced, then locally."""
    try:
        wallets.close_order(payment)
    except PaymentError as error:
        log.warning("payment close failed payment=%s error=%s", payment.id, error)
        # An order paid in the meantime must be settled, not replaced.
        refresh_payment(payment)
        raise Conflict(
            "payment_in_flight", "上一笔缴费正在处理中，请稍后刷新。"
        ) from None
    Payment.update(status="closed").where(
        (Payment.id == payment.id) & (Payment.status == "pending")
    ).execute()
    log.info("payment closed payment=%s", payment.id)


def load_payment(caller, payment_id):
    payment = None
    if is_storable_id(payment_id):
        payment = Payment.get_or_none(Payment.id == payment_id)
    if payment is None:
        raise NotFound("payment_not_found", "缴费记录不存在。")
    try:
        access.case_for(caller, payment.case_id)
    except NotFound:
        raise NotFound("payment_not_found", "缴费记录不存在。") from None
    return payment


def refresh_payment(payment):
    """Ask the provider about a pending order, so a lost notification still settles."""
    if payment.status != "pending":
        return payment
    try:
        order = wallets.query_order(payment)
    except PaymentError as error:
        log.warning("payment query failed payment=%s error=%s", payment.id, error)
        return payment
    if order.trade_state == "SUCCESS":
        settlement.settle(
            payment.out_trade_no,
            order.transaction_id,
            order.amount_fen,
            order.success_time,
        )
    elif order.trade_state == "CLOSED":
        Payment.update(status="closed").where(
            (Payment.id == payment.id) & (Payment.status == "pending")
        ).execute()
    elif order.trade_state == "NOTPAY" and payment.expires_at <= utcnow():
        close_payment(payment)
    elif order.trade_state not in ("NOTPAY", "USERPAYING"):
        log.warning(
            "pending order in provider state %s payment=%s",
            order.trade_state,
            payment.id,
        )
        Payment.update(flag=f"provider_state: {order.trade_state}").where(
            (Payment.id == payment.id) & Payment.flag.is_null()
        ).execute()
    return Payment.get_by_id(payment.id)


def fail_stalled_orders(older_than_seconds=600):
    """Mark failed the orders left in `creating`, so that they block no new order.

    An order is `creating` only while its request waits for the provider's
    code. One still there after `older_than_seconds` lost its request, as
    when the process died, so its code was never shown. Return how many.
    """
    cutoff = utcnow() - timedelta(seconds=older_than_seconds)
    stalled = list(
        Payment.select(Payment.id).where(
            (Payment.status == "creating") & (Payment.created_at <= cutoff)
        )
    )
    for payment in stalled:
        Payment.update(status="failed").where(
            (Payment.id == payment.id) & (Payment.status == "creating")
        ).execute()
        log.warning("stalled order marked failed payment=%s", payment.id)
    return len(stalled)


def poll_pending(min_age_seconds=60, every_seconds=60, limit=20):
    """Ask the provider about pending orders that no notification has settled.

    Each order is queried at most once per `every_seconds`, because the
    conditional update of `checked_at` lets one worker claim it. Expired
    unpaid orders are closed at the provider. Returns how many were queried.
    """
    now = utcnow()
    due = list(
        Payment.select()
        .where(
            (Payment.status == "pending")
            & (Payment.created_at <= now - timedelta(seconds=min_age_seconds))
            & (
                Payment.checked_at.is_null()
                | (Payment.checked_at <= now - timedelta(seconds=every_seconds))
            )
        )
        .order_by(Payment.id)
        .limit(limit)
    )
    queried = 0
    for payment in due:
        if payment.checked_at is None:
            unchanged = Payment.checked_at.is_null()
        else:
            unchanged = Payment.checked_at == payment.checked_at
        # Of several workers, only the one whose update lands sends the query.
        claimed = (
            Payment.update(checked_at=now)
            .where((Payment.id == payment.id) & unchanged)
            .execute()
        )
        if not claimed:
            continue
        queried += 1
        try:
            refresh_payment(payment)
        except Conflict as error:
            log.warning(
                "pending order poll failed payment=%s code=%s", payment.id, error.code
            )
    return queried


def of_case(case):
    """Return a query of the case's orders, newest first."""
    return (
        Payment.select()
        .where((Payment.case == case) & (Payment.status != "creating"))
        .order_by(Payment.id.desc())
    )

"""Paying a transfer's arrears by QR code, with WeChat Pay or Alipay."""

import logging
import secrets
from datetime import UTC, datetime, timedelta

import peewee
from flask import current_app

from models import Payment, Transfer
from models.base import is_storable_id, utcnow
from models.db import transaction
from partners.http import PartnerError
from payments.errors import PaymentError
from services import access, delivery, settlement, wallets
from services.errors import Conflict, NotFound, PartnerUnavailable

log = logging.getLogger(__name__)


def new_trade_no():
    stamp = datetime.now(UTC).strftime("%Y%m%d%H%M%S")
    return f"LB{stamp}{secrets.token_hex(6).upper()}"


def start_payment(transfer, provider="wechatpay"):
    """Return a payable order for the transfer's arrears, and whether it is new.

    A pending order for the same amount that has not expired is reused, so a
    repeated tap does not create a second payable code. Any other pending
    order is closed at the provider first.
    """
    if transfer.case.status in ("closed", "withdrawn"):
        raise Conflict("case_closed", "联办事项已关闭，不能再缴费。")
    read_at = utcnow()
    arrears = _live_arrears(transfer)
    if arrears == 0:
        raise Conflict("nothing_to_pay", "该户号没有欠费，无需缴费。")
    for payment in _pending(transfer):
        reusable = payment.amount_fen == arrears and payment.provider == provider
        if reusable and payment.expires_at > utcnow():
            return payment, False
        # A code for the other wallet, an old amount or an expired code is
        # closed first, so that only one code can ever be paid.
        close_payment(payment)
    return _create(transfer, arrears, read_at, provider), True


def _live_arrears(transfer):
    utility = transfer.utility
    if utility.connection != "system":
        raise Conflict(
            "utility_not_connected", "该服务机构未接入线上缴费，请到其窗口缴费。"
        )
    if _has_unreported_payment(transfer):
        raise Conflict(
            "payment_settling", "已缴费，正在通知服务机构销账，请勿重复缴费。"
        )
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


def _paid_since(transfer, read_at):
    """Say whether a payment was booked after the arrears were read at `read_at`.

    Such a reading may still include the debt that payment settled.
    """
    return (
        Payment.select()
        .where(
            (Payment.transfer == transfer)
            & (Payment.status == "paid")
            & (Payment.reported_at.is_null() | (Payment.reported_at >= read_at))
        )
        .exists()
    )


def _has_unreported_payment(transfer):
    return (
        Payment.select()
        .where(
            (Payment.transfer == transfer)
            & (Payment.status == "paid")
            & Payment.reported_at.is_null()
        )
        .exists()
    )


def _pending(transfer):
    return list(
        Payment.select().where(
            (Payment.transfer == transfer) & (Payment.status == "pending")
        )
    )


def _create(transfer, amount_fen, read_at, provider):
    ttl = current_app.config["PAYMENT_TTL_SECONDS"]
    expires_at = utcnow() + timedelta(seconds=ttl)
    description = f"{transfer.utility.service_org}欠费 户号{transfer.account_no}"
    # The order is recorded before the provider hears of it, so a payment
    # can never arrive for an order the hub does not know.
    try:
        with transaction():
            # Checked again here, because an earlier order may have been paid
            # and reported since the arrears were read.
            if _paid_since(transfer, read_at):
                raise Conflict(
                    "payment_settling",
                    "已缴费，正在通知服务机构销账，请勿重复缴费。",
                )
            payment = Payment.create(
                transfer=transfer,
                provider=provider,
                out_trade_no=new_trade_no(),
                amount_fen=amount_fen,
                description=description[:40],
                expires_at=expires_at,
                status="creating",
            )
            access.record_action(
                transfer.case,
                "pay",
                transfer,
                payment=payment.id,
                provider=provider,
                amount_fen=amount_fen,
            )
    except peewee.IntegrityError:
        # The partial unique index allows one open order per transfer, so a
        # concurrent request is creating the order already.
        raise Conflict(
            "payment_in_flight", "缴费二维码正在生成，请稍后刷新。"
        ) from None
    try:
        code_url = wallets.create_order(payment)
    except PaymentError as error:
        log.warning("payment order rejected transfer=%s error=%s", transfer.id, error)
        Payment.update(status="failed").where(Payment.id == payment.id).execute()
        raise PartnerUnavailable(
            "payment_provider_error", "支付下单失败，请稍后再试。"
        ) from None
    Payment.update(code_url=code_url, status="pending").where(
        Payment.id == payment.id
    ).execute()
    payment = Payment.get_by_id(payment.id)
    log.info(
        "payment created payment=%s transfer=%s amount_fen=%d",
        payment.id,
        transfer.id,
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
        access.case_for(caller, payment.transfer.case_id)
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

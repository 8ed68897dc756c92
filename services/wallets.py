"""The two wallets behind one interface: create, query, close and refund orders.

WeChat Pay and Alipay name things differently. The hub uses one vocabulary:
an order's QR content, its state (NOTPAY, SUCCESS, CLOSED) and refunds by
the hub's own refund number.
"""

import logging
from dataclasses import dataclass

from flask import current_app

from payments import alipay, wechatpay

log = logging.getLogger(__name__)

PROVIDERS = ("wechatpay", "alipay")


@dataclass(frozen=True)
class RefundOutcome:
    provider_refund_id: str | None
    done: bool


def _timeout():
    config = current_app.config
    return (config["PARTNER_CONNECT_TIMEOUT"], config["PARTNER_READ_TIMEOUT"])


def _notify_url(provider):
    base = current_app.config["PUBLIC_URL"].rstrip("/")
    return f"{base}/api/v1/payments/notify/{provider}"


def wechatpay_client():
    config = current_app.config
    settings = wechatpay.WechatPayConfig.from_keys_dir(
        config["WECHATPAY_KEYS_DIR"],
        base_url=config["WECHATPAY_URL"],
        notify_url=_notify_url("wechatpay"),
    )
    return wechatpay.WechatPayClient(settings, timeout=_timeout())


def alipay_client():
    config = current_app.config
    settings = alipay.AlipayConfig.from_keys_dir(
        config["ALIPAY_KEYS_DIR"],
        gateway_url=config["ALIPAY_URL"].rstrip("/") + "/gateway.do",
        notify_url=_notify_url("alipay"),
    )
    return alipay.AlipayClient(settings, timeout=_timeout())


def create_order(payment):
    """Create the provider's order for `payment`; return the QR content."""
    expires = payment.expires_at_aware
    if payment.provider == "alipay":
        return alipay_client().precreate(
            payment.out_trade_no, payment.description, payment.amount_fen, expires
        )
    return wechatpay_client().create_native_order(
        payment.out_trade_no, payment.description, payment.amount_fen, expires
    )


def query_order(payment):
    """Return the provider's view of the order, with a WeChat-style trade_state.

    An Alipay order that no payer has scanned yet does not exist there,
    which means it is unpaid.
    """
    if payment.provider == "alipay":
        try:
            return alipay_client().query(payment.out_trade_no)
        except alipay.AlipayTradeNotExist:
            return _unpaid(payment)
    return wechatpay_client().query_order(payment.out_trade_no)


def _unpaid(payment):
    return alipay.OrderState(
        out_trade_no=payment.out_trade_no,
        trade_state="NOTPAY",
        trade_status="WAIT_BUYER_PAY",
        transaction_id="",
        amount_fen=payment.amount_fen,
        success_time=None,
        buyer_id=None,
    )


def close_order(payment):
    if payment.provider == "alipay":
        try:
            alipay_client().close(payment.out_trade_no)
        except alipay.AlipayTradeNotExist:
            log.info(
                "alipay order never scanned; nothing to close payment=%s", payment.id
            )
        return
    wechatpay_client().close_order(payment.out_trade_no)


def refund(payment, out_refund_no, amount_fen, reason):
    """Ask the provider to refund; the same out_refund_no again refunds nothing more."""
    if payment.provider == "alipay":
        result = alipay_client().refund(
            payment.out_trade_no, out_refund_no, amount_fen, reason
        )
        return RefundOutcome(provider_refund_id=result.transaction_id, done=True)
    state = wechatpay_client().refund(
        payment.out_trade_no, out_refund_no, amount_fen, payment.amount_fen, reason
    )
    return RefundOutcome(
        provider_refund_id=state.refund_id, done=state.status == "SUCCESS"
    )


def refund_done(payment, out_refund_no):
    """Say whether the provider finished the refund; None while it is processing.

    Alipay finishes a refund within the refund call, so only WeChat Pay refunds
    are ever asked about.
    """
    state = wechatpay_client().query_refund(out_refund_no)
    if state.status == "SUCCESS":
        return True
    if state.status in ("CLOSED", "ABNORMAL"):
        log.error(
            "refund ended badly payment=%s out_refund_no=%s status=%s",
            payment.id,
            out_refund_no,
            state.status,
        )
        return False
    return None


def download_bill(provider, bill_date):
    """Return the provider's payment and refund lines for one day."""
    if provider == "alipay":
        return alipay_client().download_bill(bill_date)
    return wechatpay_client().download_trade_bill(bill_date)

"""Payment status, the QR code images, and the provider's notification."""

import logging

from flask import Response, g, jsonify, request
from flask_smorest import Blueprint

from api import views
from api.security import citizen_required
from payments import qr, wechatpay
from payments.errors import InvalidNotification, QRContentTooLong
from services import payments
from services.errors import Conflict, Invalid

log = logging.getLogger(__name__)

blp = Blueprint("payments", __name__, description="Paying arrears by QR code")


@blp.route("/payments/<int:payment_id>", methods=["GET"])
@citizen_required
@blp.response(200, views.PaymentSchema)
def get_payment(payment_id):
    """Show a payment's status, asking the provider while it is pending"""
    payment = payments.load_payment(g.citizen, payment_id)
    return payments.refresh_payment(payment)


def _qr_content(payment_id):
    payment = payments.load_payment(g.citizen, payment_id)
    if payment.status != "pending" or not payment.code_url:
        raise Conflict(
            "payment_not_payable",
            f"该笔缴费状态为 {payment.status}，没有可扫描的二维码。",
        )
    return payment.code_url


def _draw(render, payment_id):
    try:
        return render(_qr_content(payment_id))
    except QRContentTooLong as error:
        raise Invalid(
            "qr_content_too_long",
            "二维码内容过长，无法生成。",
            errors={"code_url": [str(error)]},
        ) from None


@blp.route("/payments/<int:payment_id>/qr.png", methods=["GET"])
@citizen_required
@blp.response(200, content_type="image/png")
def get_qr_png(payment_id):
    """Draw the payment QR code as PNG"""
    image = _draw(qr.render_png, payment_id)
    return Response(
        image, mimetype="image/png", headers={"Cache-Control": "private, max-age=300"}
    )


@blp.route("/payments/<int:payment_id>/qr.svg", methods=["GET"])
@citizen_required
@blp.response(200, content_type="image/svg+xml")
def get_qr_svg(payment_id):
    """Draw the payment QR code as SVG"""
    image = _draw(qr.render_svg, payment_id)
    return Response(
        image,
        mimetype="image/svg+xml",
        headers={"Cache-Control": "private, max-age=300"},
    )


@blp.route("/payments/notify/wechatpay", methods=["POST"])
@blp.response(204)
def wechatpay_notification():
    """Receive WeChat Pay's payment notification (signed by the platform)"""
    client = payments.wechatpay_client()
    try:
        transaction = client.parse_notification(request.headers, request.get_data())
    except InvalidNotification as error:
        log.warning("payment notification rejected reason=%s", error)
        body, status = wechatpay.notification_nack(str(error), status=401)
        return jsonify(body), status
    if transaction.trade_state == "SUCCESS":
        payments.settle(
            transaction.out_trade_no,
            transaction.transaction_id,
            transaction.amount_fen,
            transaction.success_time,
        )
    return Response(status=204)

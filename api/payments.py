"""Payment status, the QR code images, and the provider's notification."""

import logging

from flask import Response, g, jsonify, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import views
from api.errors import takes_raw_body
from api.openapi import bearer_operation, public_operation
from api.security import CASE_ROLES, caller_required
from payments import alipay, qr, wechatpay
from payments.errors import InvalidNotification, QRContentTooLong
from services import payments, settlement, wallets
from services.errors import Conflict, Invalid

log = logging.getLogger(__name__)

blp = Blueprint("payments", __name__, description="Paying arrears by QR code")


class NotificationResourceSchema(Schema):
    algorithm = fields.String(
        required=True, metadata={"description": "AEAD_AES_256_GCM"}
    )
    ciphertext = fields.String(
        required=True,
        metadata={"description": "Base64 of the encrypted transaction and GCM tag"},
    )
    nonce = fields.String(required=True)
    associated_data = fields.String()
    original_type = fields.String(metadata={"description": "transaction"})


class NotificationSchema(Schema):
    """WeChat Pay's notification event, for the document only.

    payments.wechatpay parses the body itself, after checking its signature.
    """

    id = fields.String()
    create_time = fields.String()
    event_type = fields.String(metadata={"description": "Such as TRANSACTION.SUCCESS"})
    resource_type = fields.String(
        required=True, metadata={"description": "encrypt-resource"}
    )
    summary = fields.String()
    resource = fields.Nested(NotificationResourceSchema, required=True)


class NotificationRejectionSchema(Schema):
    code = fields.String(metadata={"description": "FAIL"})
    message = fields.String(metadata={"description": "The check that failed"})


NOTIFICATION_HEADERS = [
    {
        "name": name,
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": description,
    }
    for name, description in (
        (wechatpay.HEADER_TIMESTAMP, "Unix seconds of the signature"),
        (wechatpay.HEADER_NONCE, "A random string in the signed text"),
        (wechatpay.HEADER_SIGNATURE, "Base64 RSA-SHA256 signature"),
        (wechatpay.HEADER_SERIAL, "Serial of the platform certificate"),
    )
]

NOTIFICATION_BODY = {
    "required": True,
    "description": "The notification event. Its encrypted resource is the transaction.",
    "content": {"application/json": {"schema": NotificationSchema}},
}


@blp.route("/payments/<int:payment_id>", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, views.PaymentSchema)
def get_payment(payment_id):
    """Show a payment's status, asking the provider while it is pending"""
    payment = payments.load_payment(g.caller, payment_id)
    return payments.refresh_payment(payment)


def _qr_content(payment_id):
    payment = payments.load_payment(g.caller, payment_id)
    if payment.status != "pending" or not payment.code_url:
        state = views.PAYMENT_STATES.get(payment.status, payment.status)
        # A payer who has paid is not asked to pay again.
        paid = payment.status in ("paid", "paid_late", "paid_twice")
        next_step = "无需再扫码。" if paid else "请重新发起缴费。"
        raise Conflict(
            "payment_not_payable",
            f"该笔缴费{state}，二维码已不能使用，{next_step}",
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
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 409, 422)
@blp.response(
    200,
    {"type": "string", "format": "binary"},
    content_type="image/png",
    description="The QR code as a PNG image",
)
def get_qr_png(payment_id):
    """Draw the payment QR code as PNG"""
    image = _draw(qr.render_png, payment_id)
    return Response(
        image, mimetype="image/png", headers={"Cache-Control": "private, max-age=300"}
    )


@blp.route("/payments/<int:payment_id>/qr.svg", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 409, 422)
@blp.response(
    200,
    {"type": "string"},
    content_type="image/svg+xml",
    description="The QR code as an SVG document",
)
def get_qr_svg(payment_id):
    """Draw the payment QR code as SVG"""
    image = _draw(qr.render_svg, payment_id)
    return Response(
        image,
        mimetype="image/svg+xml",
        headers={"Cache-Control": "private, max-age=300"},
    )


def wechatpay_error(status, description):
    body, status = wechatpay.notification_nack(description or "rejected", status=status)
    return jsonify(body), status


def alipay_error(status, description):
    body, status, headers = alipay.notification_nack(status=status)
    return Response(body, status=status, headers=headers)


@takes_raw_body(wechatpay_error)
@blp.route("/payments/notify/wechatpay", methods=["POST"])
@public_operation(blp, 413, 415)
@blp.doc(parameters=NOTIFICATION_HEADERS, requestBody=NOTIFICATION_BODY)
@blp.response(204, description="Accepted, so WeChat Pay stops sending it")
@blp.alt_response(
    401,
    schema=NotificationRejectionSchema,
    description="The notification failed a check, so WeChat Pay sends it again",
)
def wechatpay_notification():
    """Receive WeChat Pay's payment notification (signed by the platform)

    WeChat Pay calls this address, not a client, so it takes no bearer token
    or partner signature. The platform signs `TIMESTAMP\\nNONCE\\nBODY\\n`
    with RSA-SHA256 in the Wechatpay-* headers, and the transaction in
    `resource` is encrypted with AES-256-GCM under the merchant's APIv3 key.
    The endpoint returns 401 for a notification that fails any check
    (signature, timestamp, decryption, merchant ids, transaction fields), so
    WeChat Pay sends it again. It returns 204 for a verified notification,
    whatever its trade state.
    """
    client = wallets.wechatpay_client()
    try:
        transaction = client.parse_notification(request.headers, request.get_data())
    except InvalidNotification as error:
        log.warning("payment notification rejected reason=%s", error)
        body, status = wechatpay.notification_nack(str(error), status=401)
        return jsonify(body), status
    if transaction.trade_state == "SUCCESS":
        settlement.settle(
            transaction.out_trade_no,
            transaction.transaction_id,
            transaction.amount_fen,
            transaction.success_time,
        )
    return Response(status=204)


ALIPAY_TEXT = {
    "text/plain": {"schema": {"type": "string", "enum": ["success", "fail"]}}
}


@takes_raw_body(alipay_error)
@blp.route("/payments/notify/alipay", methods=["POST"])
@blp.doc(security=[])
@blp.doc(
    requestBody={
        "content": {
            "application/x-www-form-urlencoded": {
                "schema": {"type": "object", "additionalProperties": {"type": "string"}}
            }
        },
        "description": "Alipay's payment notification, signed RSA2 over the sorted "
        "fields without sign and sign_type.",
    },
    responses={
        "200": {
            "description": "`success`: accepted, so Alipay stops sending it",
            "content": ALIPAY_TEXT,
        },
        "400": {
            "description": "`fail`: the notification failed a check, so Alipay "
            "sends it again",
            "content": ALIPAY_TEXT,
        },
        "413": {
            "description": "`fail`: the body is larger than MAX_CONTENT_LENGTH",
            "content": ALIPAY_TEXT,
        },
        "500": {
            "description": "`fail`: the hub could not record it, so Alipay "
            "sends it again",
            "content": ALIPAY_TEXT,
        },
    },
)
def alipay_notification():
    """Receive Alipay's payment notification (signed by Alipay)"""
    try:
        transaction = wallets.alipay_client().parse_notification(request.form.to_dict())
    except InvalidNotification as error:
        log.warning("alipay notification rejected reason=%s", error)
        body, status, headers = alipay.notification_nack(status=400)
        return Response(body, status=status, headers=headers)
    if transaction.trade_state == "SUCCESS":
        settlement.settle(
            transaction.out_trade_no,
            transaction.transaction_id,
            transaction.amount_fen,
            transaction.success_time,
        )
    body, status, headers = alipay.notification_ack()
    return Response(body, status=status, headers=headers)

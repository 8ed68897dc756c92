"""Sandbox of the Alipay open platform gateway for face-to-face QR payments.

`POST /gateway.do` serves alipay.trade.precreate, query, close and refund,
and alipay.data.dataservice.bill.downloadurl.query for the daily trade bill,
which it serves as a ZIP at /_sandbox/bills/<token>.zip. It verifies the
app's RSA2 signature, stores orders in memory and signs every response with
the Alipay platform key. In place of the buyer's phone, a test
calls /_sandbox/scan and /_sandbox/pay, and paying sends the signed form
notification to the order's notify_url. docs/partners.md is the contract, and
docs/payments.md shows how to pay an order by hand.

As in Alipay, a precreated order has no trade until the buyer scans its QR
code, so query and close return ACQ.TRADE_NOT_EXIST before the scan.

The signing here is written independently of payments/alipay.py, so that a
mistake in the client shows up as a failed exchange instead of being mirrored
by the sandbox.

Run it with

    python -m peers.alipay_sandbox --port 0 --port-file PORT_FILE --keys DIR

It reads DIR/alipay/alipay.json, app_public.pem and alipay_private.pem, and
peers.devkeys creates them first if they are missing.
"""

import argparse
import base64
import binascii
import csv
import io
import ipaddress
import json
import logging
import re
import secrets
import string
import threading
import time
import zipfile
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from peers.common import add_server_arguments, configure_logging, serve
from peers.devkeys import ensure_dev_keys

log = logging.getLogger(__name__)

CHINA_STANDARD_TIME = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
TIME_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}")
# NOTE: the gateway's tolerance for a request timestamp is assumed. Ten
# minutes accepts clock drift but catches a timestamp sent in UTC.
TIMESTAMP_WINDOW = timedelta(minutes=10)

OUT_TRADE_NO_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
OUT_REQUEST_NO_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
YUAN_PATTERN = re.compile(r"[0-9]+(\.[0-9]{1,2})?")
SUBJECT_MAX_CHARS = 256
REFUND_REASON_MAX_CHARS = 256
NOTIFY_URL_MAX_CHARS = 256
MAX_TOTAL_FEN = 100_000_000 * 100
# NOTE: the two-hour default for an order without time_expire is assumed, not
# checked against the real gateway.
DEFAULT_ORDER_LIFETIME = timedelta(hours=2)

WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_CLOSED = "TRADE_CLOSED"

QR_CODE_PREFIX = "https://qr.alipay.com/bax0"
LOWERCASE_ALPHANUMERIC = string.ascii_lowercase + string.digits
ALPHANUMERIC = string.ascii_letters + string.digits

BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"
METHODS = (
    "alipay.trade.precreate",
    "alipay.trade.query",
    "alipay.trade.close",
    "alipay.trade.refund",
    BILL_METHOD,
)

# Alipay's bill_download_url stops working 30 seconds after the query, as its
# reference for the bill method states.
BILL_URL_LIFETIME = timedelta(seconds=30)
BILL_DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
# Columns of the trade bill's detail CSV (业务明细) in Alipay's order.
BILL_HEADER = (
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
)
BILL_RULE = "-" * 41


@dataclass(frozen=True)
class SandboxConfig:
    """The app the sandbox serves and the Alipay key it signs with.

    `notify_delays` are the seconds to wait before each retry of a
    notification that the merchant did not accept, so a notification is sent
    at most 1 + len(notify_delays) times.
    """

    app_id: str
    seller_id: str
    app_public_key: object = field(repr=False)
    alipay_private_key: object = field(repr=False)
    notify_delays: tuple = (0.2, 0.5, 1.0, 2.0, 4.0)
    notify_timeout: tuple = (2.0, 5.0)
    buyer_id: str = "2088102177846880"
    buyer_logon_id: str = "159****5620"

    @classmethod
    def from_keys_dir(cls, keys_dir, **options):
        """Load the sandbox's settings and keys from `keys_dir/alipay/`."""
        folder = Path(keys_dir) / "alipay"
        settings = json.loads((folder / "alipay.json").read_text("utf-8"))
        app_public_key = serialization.load_pem_public_key(
            (folder / "app_public.pem").read_bytes()
        )
        alipay_private_key = serialization.load_pem_private_key(
            (folder / "alipay_private.pem").read_bytes(), password=None
        )
        return cls(
            app_id=settings["app_id"],
            seller_id=settings["seller_id"],
            app_public_key=app_public_key,
            alipay_private_key=alipay_private_key,
            **options,
        )


class GatewayError(Exception):
    """A gateway response whose code is not 10000.

    `extra` contains fields that Alipay adds to some error responses, such as
    the refund_fee of a rejected refund. `error_response` puts the response
    under `error_response` instead of the method's own member.
    """

    def __init__(self, code, msg, sub_code, sub_msg, extra=None, error_response=False):
        super().__init__(sub_msg)
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg
        self.extra = extra or {}
        self.error_response = error_response


def missing_argument(name):
    return GatewayError(
        "40001", "Missing Required Arguments", f"isv.missing-{name}", f"缺少{name}参数"
    )


def invalid_argument(sub_code, sub_msg):
    return GatewayError("40002", "Invalid Arguments", sub_code, sub_msg)


def business_failed(sub_code, sub_msg, **extra):
    return GatewayError("40004", "Business Failed", sub_code, sub_msg, extra)


def invalid_parameter(detail):
    return business_failed("ACQ.INVALID_PARAMETER", f"参数无效: {detail}")


class SandboxError(Exception):
    """An error of a /_sandbox/ route, returned as `{"code", "message"}`."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Refund:
    """One refund request, stored by its out_request_no."""

    amount_fen: int
    reason: str
    refunded_at: datetime


@dataclass
class Order:
    """One precreated order and what happened to it.

    `trade_status` stays None until the buyer scans the QR code, because the
    trade exists in Alipay only from then on.
    """

    out_trade_no: str
    subject: str
    total_fen: int
    time_expire: datetime
    time_expire_text: str | None
    notify_url: str | None
    qr_code: str
    created_at: datetime
    trade_no: str | None = None
    trade_status: str | None = None
    # Set when the merchant closed the order before anyone scanned it.
    closed_before_scan: bool = False
    buyer_id: str | None = None
    buyer_logon_id: str | None = None
    paid_at: datetime | None = None
    refunds: dict = field(default_factory=dict)
    refunded_fen: int = 0
    notification_form: dict | None = None
    notification_accepted: bool = False
    notification_attempts: list = field(default_factory=list)

    def status_at(self, now):
        """Return trade_status at `now`: a trade unpaid past time_expire is closed."""
        if self.trade_status == WAIT_BUYER_PAY and now >= self.time_expire:
            return TRADE_CLOSED
        return self.trade_status

    def rejection_for_payment(self, now):
        """Return (sub_code, message) that stops a payment now, or None."""
        status = self.status_at(now)
        if self.paid_at is not None:
            return "ACQ.TRADE_HAS_SUCCESS", "order is already paid"
        if self.closed_before_scan or status == TRADE_CLOSED or now >= self.time_expire:
            return "ACQ.TRADE_HAS_CLOSE", "order is closed or past its time_expire"
        return None


class OrderBook:
    """Orders by out_trade_no, trade_no and qr_code, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_out_trade_no = {}
        self.by_trade_no = {}
        self.by_qr_code = {}
        # Bill ZIP files by download token: token -> (expires_at, content).
        self.bills = {}

    def new_qr_code(self):
        """Return a qr_code that no stored order uses. Call with the lock held."""
        while True:
            token = "".join(secrets.choice(LOWERCASE_ALPHANUMERIC) for _ in range(20))
            qr_code = QR_CODE_PREFIX + token
            if qr_code not in self.by_qr_code:
                return qr_code


def now_cst():
    return datetime.now(CHINA_STANDARD_TIME).replace(microsecond=0)


def format_time(moment):
    return moment.astimezone(CHINA_STANDARD_TIME).strftime(TIME_FORMAT)


def read_time(text):
    """Return "YYYY-MM-DD HH:MM:SS" in China Standard Time as a datetime, or None."""
    if not isinstance(text, str) or not TIME_PATTERN.fullmatch(text):
        return None
    try:
        moment = datetime.strptime(text, TIME_FORMAT)
    except ValueError:
        return None
    return moment.replace(tzinfo=CHINA_STANDARD_TIME)


def to_yuan(fen):
    return f"{fen // 100}.{fen % 100:02d}"


def parse_yuan(text, name):
    """Return integer fen for a yuan string, or raise ACQ.INVALID_PARAMETER."""
    if not isinstance(text, str) or not YUAN_PATTERN.fullmatch(text):
        raise invalid_parameter(f"{name} must be yuan with at most two decimals")
    whole, _, decimals = text.partition(".")
    return int(whole) * 100 + int(decimals.ljust(2, "0"))


# Signatures: SHA256withRSA over sorted name=value pairs joined by "&",
# with empty values left out.


def content_to_sign(params, left_out):
    names = sorted(
        name for name, value in params.items() if value and name not in left_out
    )
    return "&".join(f"{name}={params[name]}" for name in names)


def sign_with_alipay_key(config, text):
    signature = config.alipay_private_key.sign(
        text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
    )
    return base64.b64encode(signature).decode("ascii")


def app_signature_valid(config, params):
    try:
        signature = base64.b64decode(params["sign"], validate=True)
    except (binascii.Error, ValueError):
        return False
    text = content_to_sign(params, left_out={"sign"})
    try:
        config.app_public_key.verify(
            signature, text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


def signed_response(config, member, payload):
    """Return the gateway body: `member` and a sign over its exact JSON text."""
    member_text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    signature = sign_with_alipay_key(config, member_text)
    body = (
        "{"
        + json.dumps(member)
        + ":"
        + member_text
        + ',"sign":'
        + json.dumps(signature)
        + "}"
    )
    return Response(body, content_type="application/json;charset=utf-8")


# Gateway request checks.


def read_gateway_params():
    """Return the request's parameters from the query string and the form.

    A name given more than once is rejected, because the signed text would be
    ambiguous.
    """
    params = {}
    for source in (request.args, request.form):
        for name, values in source.lists():
            if name in params or len(values) > 1:
                raise invalid_argument(
                    "isv.invalid-parameter", f"参数{name}重复 (parameter repeated)"
                )
            params[name] = values[0]
    return params


def check_common_params(config, params, now):
    """Return the method after checking the common parameters and the sign.

    Raises GatewayError naming the first parameter that is missing or invalid.
    """
    method = params.get("method")
    if not method:
        raise missing_argument("method")
    if method not in METHODS:
        raise GatewayError(
            "40002",
            "Invalid Arguments",
            "isv.invalid-method",
            f"不存在的方法名 {method}",
            error_response=True,
        )
    for name in ("app_id", "sign_type", "sign", "timestamp", "version", "charset"):
        if not params.get(name):
            raise missing_argument(name.replace("_", "-"))

    if params["app_id"] != config.app_id:
        raise invalid_argument("isv.invalid-app-id", "无效的AppID参数")
    if params["charset"].lower() != "utf-8":
        raise invalid_argument(
            "isv.invalid-charset", "字符集错误: the sandbox supports utf-8 only"
        )
    if params["sign_type"] != "RSA2":
        raise invalid_argument(
            "isv.invalid-signature-type", "无效的签名类型: the sandbox supports RSA2"
        )
    if params["version"] != "1.0":
        raise invalid_argument("isv.invalid-version", "版本号错误: use 1.0")
    check_timestamp(params["timestamp"], now)

    if not app_signature_valid(config, params):
        raise invalid_argument(
            "isv.invalid-signature",
            "验签出错: sign the sorted name=value pairs, without sign, "
            "with the app private key",
        )
    notify_url = params.get("notify_url")
    if notify_url:
        validate_notify_url(notify_url)
    return method


def check_timestamp(timestamp, now):
    moment = read_time(timestamp)
    if moment is None:
        raise invalid_argument(
            "isv.invalid-timestamp", "非法的时间戳参数: use YYYY-MM-DD HH:MM:SS"
        )
    if abs(moment - now) > TIMESTAMP_WINDOW:
        raise invalid_argument(
            "isv.invalid-timestamp",
            f"非法的时间戳参数: {timestamp} is more than 10 minutes from the "
            "gateway clock in China Standard Time",
        )


def read_biz_content(params):
    text = params.get("biz_content")
    if not text:
        raise missing_argument("biz-content")
    try:
        biz = json.loads(text)
    except ValueError:
        raise invalid_argument(
            "isv.invalid-biz-content", "biz_content is not JSON"
        ) from None
    if not isinstance(biz, dict):
        raise invalid_argument(
            "isv.invalid-biz-content", "biz_content is not a JSON object"
        )
    return biz


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_notify_url(notify_url):
    if len(notify_url) > NOTIFY_URL_MAX_CHARS:
        raise invalid_argument(
            "isv.invalid-notify-url",
            f"notify_url is longer than {NOTIFY_URL_MAX_CHARS}",
        )
    parts = urlsplit(notify_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise invalid_argument("isv.invalid-notify-url", "notify_url must be http(s)")
    # The sandbox runs beside the merchant, so it delivers only to loopback.
    if not _is_loopback(parts.hostname):
        raise invalid_argument(
            "isv.invalid-notify-url",
            "the sandbox delivers notifications only to loopback hosts "
            "(127.0.0.0/8, ::1, localhost)",
        )


def require_biz_string(biz, name, pattern=None, max_chars=None):
    value = biz.get(name)
    if value is None or value == "":
        raise invalid_parameter(f"{name} is required")
    if not isinstance(value, str):
        raise invalid_parameter(f"{name} must be a string")
    if pattern is not None and not pattern.fullmatch(value):
        raise invalid_parameter(f"{name} must be 1 to 64 letters, digits or _")
    if max_chars is not None and len(value) > max_chars:
        raise invalid_parameter(f"{name} is longer than {max_chars} characters")
    return value


def validate_precreate(biz, now):
    """Return the order's fields from a precreate biz_content, or raise."""
    out_trade_no = require_biz_string(biz, "out_trade_no", OUT_TRADE_NO_PATTERN)
    subject = require_biz_string(biz, "subject", max_chars=SUBJECT_MAX_CHARS)
    if any(char in subject for char in "/=&"):
        raise invalid_parameter("subject must not contain / = or &")
    total_fen = parse_yuan(biz.get("total_amount"), "total_amount")
    if not 0 < total_fen <= MAX_TOTAL_FEN:
        raise invalid_parameter("total_amount must be from 0.01 to 100000000")
    product_code = biz.get("product_code", "FACE_TO_FACE_PAYMENT")
    if product_code != "FACE_TO_FACE_PAYMENT":
        raise invalid_parameter("product_code must be FACE_TO_FACE_PAYMENT")

    time_expire_text = biz.get("time_expire")
    if time_expire_text is None:
        time_expire = now + DEFAULT_ORDER_LIFETIME
    else:
        time_expire = read_time(time_expire_text)
        if time_expire is None:
            raise invalid_parameter("time_expire must be YYYY-MM-DD HH:MM:SS")
        if time_expire <= now:
            raise invalid_parameter("time_expire must be in the future")
    return {
        "out_trade_no": out_trade_no,
        "subject": subject,
        "total_fen": total_fen,
        "time_expire": time_expire,
        "time_expire_text": time_expire_text,
    }


# Views of an order.


def trade_fields(order, now):
    """Return the fields of a scanned order that alipay.trade.query returns."""
    status = order.status_at(now)
    paid = order.paid_at is not None
    paid_amount = to_yuan(order.total_fen) if paid else "0.00"
    fields = {
        "trade_no": order.trade_no,
        "out_trade_no": order.out_trade_no,
        "buyer_logon_id": order.buyer_logon_id,
        "trade_status": status,
        "total_amount": to_yuan(order.total_fen),
        "buyer_pay_amount": paid_amount,
        "point_amount": "0.00",
        "invoice_amount": paid_amount,
        "receipt_amount": paid_amount,
        "buyer_user_id": order.buyer_id,
        "buyer_user_type": "PRIVATE",
    }
    if paid:
        fields["send_pay_date"] = format_time(order.paid_at)
    return fields


def order_inspection(order, now):
    """Return everything the sandbox stores for an order, for tests."""
    return {
        "out_trade_no": order.out_trade_no,
        "subject": order.subject,
        "total_amount": to_yuan(order.total_fen),
        "qr_code": order.qr_code,
        "notify_url": order.notify_url,
        "time_expire": format_time(order.time_expire),
        "created_at": format_time(order.created_at),
        "scanned": order.trade_status is not None,
        "closed_before_scan": order.closed_before_scan,
        "trade_no": order.trade_no,
        "trade_status": order.status_at(now),
        "paid_at": format_time(order.paid_at) if order.paid_at else None,
        "refunded_amount": to_yuan(order.refunded_fen),
        "refunds": {
            out_request_no: {
                "refund_amount": to_yuan(refund.amount_fen),
                "refund_reason": refund.reason,
                "refunded_at": format_time(refund.refunded_at),
            }
            for out_request_no, refund in order.refunds.items()
        },
        "notify_id": (order.notification_form or {}).get("notify_id"),
        "notification_accepted": order.notification_accepted,
        "notification_attempts": list(order.notification_attempts),
    }


# Payment notifications.


def build_notification(config, order):
    """Return the signed form fields of the TRADE_SUCCESS notification."""
    amount = to_yuan(order.total_fen)
    form = {
        "notify_time": format_time(order.paid_at),
        "notify_type": "trade_status_sync",
        "notify_id": secrets.token_hex(16),
        "charset": "utf-8",
        "version": "1.0",
        "app_id": config.app_id,
        "auth_app_id": config.app_id,
        "seller_id": config.seller_id,
        "trade_no": order.trade_no,
        "out_trade_no": order.out_trade_no,
        "buyer_id": order.buyer_id,
        "buyer_logon_id": order.buyer_logon_id,
        "trade_status": TRADE_SUCCESS,
        "total_amount": amount,
        "receipt_amount": amount,
        "invoice_amount": amount,
        "buyer_pay_amount": amount,
        "point_amount": "0.00",
        "subject": order.subject,
        "gmt_create": format_time(order.created_at),
        "gmt_payment": format_time(order.paid_at),
        "fund_bill_list": json.dumps(
            [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}],
            separators=(",", ":"),
        ),
    }
    form["sign"] = sign_with_alipay_key(
        config, content_to_sign(form, left_out={"sign", "sign_type"})
    )
    form["sign_type"] = "RSA2"
    return form


class Notifier:
    """Sends notifications from background threads, retrying unaccepted ones."""

    def __init__(self, config, book):
        self.config = config
        self.book = book

    def start(self, out_trade_no):
        thread = threading.Thread(
            target=self.deliver,
            args=(out_trade_no,),
            name=f"notify-{out_trade_no}",
            daemon=True,
        )
        thread.start()

    def deliver(self, out_trade_no):
        """Send the order's notification until the merchant accepts it.

        The merchant accepts with HTTP 200 and the body `success`, exactly.
        Every other response, and every connection error, is retried after the
        next of config.notify_delays. Each attempt sends the same fields.
        """
        with self.book.lock:
            order = self.book.by_out_trade_no[out_trade_no]
            form = dict(order.notification_form)
            notify_url = order.notify_url
        notify_id = form["notify_id"]
        attempts = 1 + len(self.config.notify_delays)
        for attempt in range(1, attempts + 1):
            outcome, accepted = self._send_once(notify_url, form)
            with self.book.lock:
                order.notification_attempts.append(
                    {
                        "attempt": attempt,
                        "outcome": outcome,
                        "at": format_time(now_cst()),
                    }
                )
                if accepted:
                    order.notification_accepted = True
            if accepted:
                log.info(
                    "notification accepted out_trade_no=%s notify_id=%s attempt=%s",
                    out_trade_no,
                    notify_id,
                    attempt,
                )
                return
            if attempt == attempts:
                break
            delay = self.config.notify_delays[attempt - 1]
            log.warning(
                "notification not accepted out_trade_no=%s notify_id=%s attempt=%s "
                "outcome=%s retry_in=%ss",
                out_trade_no,
                notify_id,
                attempt,
                outcome,
                delay,
            )
            time.sleep(delay)
        log.error(
            "notification abandoned out_trade_no=%s notify_id=%s attempts=%s "
            "last_outcome=%s",
            out_trade_no,
            notify_id,
            attempts,
            outcome,
        )

    def _send_once(self, notify_url, form):
        """Return (outcome, accepted): the status and body start, or the error."""
        try:
            response = requests.post(
                notify_url,
                data=form,
                headers={"User-Agent": "Mozilla/4.0 (Alipay sandbox)"},
                timeout=self.config.notify_timeout,
            )
        except requests.RequestException as error:
            return type(error).__name__, False
        body = response.content[:32].decode("utf-8", errors="replace")
        accepted = response.status_code == 200 and response.content == b"success"
        return f"{response.status_code} {body!r}", accepted


# The application.


def create_app(config: SandboxConfig) -> Flask:
    """Build the sandbox's Flask application for `config`."""
    app = Flask(__name__)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    book = OrderBook()
    notifier = Notifier(config, book)
    app.extensions["alipay_sandbox"] = {"book": book, "notifier": notifier}

    @app.errorhandler(SandboxError)
    def sandbox_error(error):
        return jsonify(code=error.code, message=error.message), error.status

    @app.errorhandler(HTTPException)
    def http_error(error):
        code = "NOT_FOUND" if error.code == 404 else "INVALID_REQUEST"
        return jsonify(code=code, message=error.description), error.code

    _add_gateway_route(app, config, book)
    _add_sandbox_routes(app, config, book, notifier)
    return app


def _add_gateway_route(app, config, book):
    handlers = {
        "alipay.trade.precreate": _precreate,
        "alipay.trade.query": _query,
        "alipay.trade.close": _close,
        "alipay.trade.refund": _refund,
        BILL_METHOD: _bill_download_url,
    }

    @app.post("/gateway.do")
    def gateway():
        now = now_cst()
        method = None
        try:
            params = read_gateway_params()
            method = params.get("method")
            method = check_common_params(config, params, now)
            biz = read_biz_content(params)
            payload = handlers[method](config, book, biz, params, now)
        except GatewayError as error:
            return _error_response(config, method, error)
        answer = {"code": "10000", "msg": "Success", **payload}
        return signed_response(config, _member_name(method), answer)


def _member_name(method):
    return method.replace(".", "_") + "_response"


def _error_response(config, method, error):
    log.warning(
        "gateway request rejected method=%s code=%s sub_code=%s sub_msg=%s",
        method,
        error.code,
        error.sub_code,
        error.sub_msg,
    )
    payload = {
        "code": error.code,
        "msg": error.msg,
        "sub_code": error.sub_code,
        "sub_msg": error.sub_msg,
        **error.extra,
    }
    if error.error_response or method not in METHODS:
        member = "error_response"
    else:
        member = _member_name(method)
    return signed_response(config, member, payload)


def _find_trade(book, biz):
    """Return the scanned order that biz_content names, or raise TRADE_NOT_EXIST."""
    out_trade_no = biz.get("out_trade_no")
    trade_no = biz.get("trade_no")
    if not out_trade_no and not trade_no:
        raise invalid_parameter("out_trade_no or trade_no is required")
    if out_trade_no:
        order = book.by_out_trade_no.get(out_trade_no)
    else:
        order = book.by_trade_no.get(trade_no)
    if order is None or order.trade_status is None:
        raise business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
    return order


def _precreate(config, book, biz, params, now):
    fields = validate_precreate(biz, now)
    out_trade_no = fields["out_trade_no"]
    notify_url = params.get("notify_url") or None
    with book.lock:
        existing = book.by_out_trade_no.get(out_trade_no)
        if existing is not None:
            return _repeat_precreate(existing, fields, now)
        order = Order(
            notify_url=notify_url,
            qr_code=book.new_qr_code(),
            created_at=now,
            **fields,
        )
        book.by_out_trade_no[out_trade_no] = order
        book.by_qr_code[order.qr_code] = order
    log.info(
        "order precreated out_trade_no=%s amount_fen=%s time_expire=%s",
        out_trade_no,
        order.total_fen,
        format_time(order.time_expire),
    )
    return {"out_trade_no": out_trade_no, "qr_code": order.qr_code}


def _repeat_precreate(order, fields, now):
    """Return the response to a precreate for an out_trade_no already used."""
    rejection = order.rejection_for_payment(now)
    if rejection is not None:
        sub_code, _ = rejection
        sub_msg = "交易已支付" if sub_code == "ACQ.TRADE_HAS_SUCCESS" else "交易已关闭"
        raise business_failed(sub_code, sub_msg)
    same = (
        order.subject == fields["subject"]
        and order.total_fen == fields["total_fen"]
        and order.time_expire_text == fields["time_expire_text"]
    )
    if not same:
        raise business_failed(
            "ACQ.CONTEXT_INCONSISTENT",
            "交易信息被篡改: out_trade_no is already used with other parameters",
        )
    return {"out_trade_no": order.out_trade_no, "qr_code": order.qr_code}


def _query(config, book, biz, params, now):
    with book.lock:
        order = _find_trade(book, biz)
        return trade_fields(order, now)


def _close(config, book, biz, params, now):
    with book.lock:
        out_trade_no = biz.get("out_trade_no")
        order = book.by_out_trade_no.get(out_trade_no) if out_trade_no else None
        if order is not None and order.trade_status is None:
            # NOTE: merchants report that closing an order before the scan
            # fails with ACQ.TRADE_NOT_EXIST yet stops the QR code from being
            # paid. Alipay does not document it, and the sandbox follows the
            # reports.
            order.closed_before_scan = True
            log.info("close before scan out_trade_no=%s", out_trade_no)
            raise business_failed("ACQ.TRADE_NOT_EXIST", "交易不存在")
        order = _find_trade(book, biz)
        status = order.status_at(now)
        if order.paid_at is not None:
            raise business_failed("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
        # NOTE: closing a trade that is already closed succeeds here. The
        # real gateway's response in that case is not checked.
        order.trade_status = TRADE_CLOSED
        log.info("order closed out_trade_no=%s previous=%s", order.out_trade_no, status)
        return {"trade_no": order.trade_no, "out_trade_no": order.out_trade_no}


def _refund(config, book, biz, params, now):
    refund_fen = parse_yuan(biz.get("refund_amount"), "refund_amount")
    if refund_fen <= 0:
        raise invalid_parameter("refund_amount must be positive")
    reason = biz.get("refund_reason") or ""
    if not isinstance(reason, str) or len(reason) > REFUND_REASON_MAX_CHARS:
        raise invalid_parameter(
            f"refund_reason must be a string of at most {REFUND_REASON_MAX_CHARS}"
        )
    out_request_no = biz.get("out_request_no")
    if out_request_no is not None and (
        not isinstance(out_request_no, str)
        or not OUT_REQUEST_NO_PATTERN.fullmatch(out_request_no)
    ):
        raise invalid_parameter("out_request_no must be 1 to 64 letters, digits or _")

    with book.lock:
        order = _find_trade(book, biz)
        rejected_fields = {
            "refund_fee": to_yuan(order.refunded_fen),
            "send_back_fee": "0.00",
        }
        if out_request_no is None:
            # Without out_request_no Alipay takes the request as a refund of
            # the whole trade, keyed by the trade itself.
            if refund_fen != order.total_fen:
                raise business_failed(
                    "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL",
                    "撤销或退款金额与订单金额不一致",
                    **rejected_fields,
                )
            out_request_no = order.out_trade_no

        existing = order.refunds.get(out_request_no)
        if existing is not None:
            if existing.amount_fen != refund_fen:
                # NOTE: the real gateway's response to a reused out_request_no
                # with another amount is not checked.
                raise invalid_parameter(
                    f"out_request_no {out_request_no} was used for "
                    f"{to_yuan(existing.amount_fen)} yuan"
                )
            log.info(
                "refund repeated out_trade_no=%s out_request_no=%s",
                order.out_trade_no,
                out_request_no,
            )
            return _refund_answer(order, existing, fund_change="N", send_back_fen=0)

        if order.status_at(now) != TRADE_SUCCESS:
            raise business_failed(
                "ACQ.TRADE_STATUS_ERROR", "交易状态不合法", **rejected_fields
            )
        if order.refunded_fen + refund_fen > order.total_fen:
            raise business_failed(
                "ACQ.REASON_TRADE_REFUND_FEE_ERR",
                "退款金额无效: refunds would exceed the paid amount",
                **rejected_fields,
            )
        refund = Refund(amount_fen=refund_fen, reason=reason, refunded_at=now)
        order.refunds[out_request_no] = refund
        order.refunded_fen += refund_fen
        if order.refunded_fen == order.total_fen:
            # A trade refunded in full reads TRADE_CLOSED, as Alipay documents.
            order.trade_status = TRADE_CLOSED
        log.info(
            "refund done out_trade_no=%s out_request_no=%s amount_fen=%s "
            "refunded_fen=%s",
            order.out_trade_no,
            out_request_no,
            refund_fen,
            order.refunded_fen,
        )
        return _refund_answer(order, refund, fund_change="Y", send_back_fen=refund_fen)


def _refund_answer(order, refund, fund_change, send_back_fen):
    return {
        "trade_no": order.trade_no,
        "out_trade_no": order.out_trade_no,
        "buyer_logon_id": order.buyer_logon_id,
        "fund_change": fund_change,
        "refund_fee": to_yuan(order.refunded_fen),
        "gmt_refund_pay": format_time(refund.refunded_at),
        "buyer_user_id": order.buyer_id,
        "send_back_fee": to_yuan(send_back_fen),
    }


# The daily trade bill.


def _bill_download_url(config, book, biz, params, now):
    bill_type = biz.get("bill_type")
    if bill_type != "trade":
        raise invalid_argument(
            "isv.invalid-arguments", "bill_type must be trade in the sandbox"
        )
    bill_date = _read_bill_date(biz.get("bill_date"), now)
    with book.lock:
        lines = bill_lines(book, bill_date)
        if not lines:
            raise business_failed("isp.bill_not_exist", "账单不存在")
        content = build_bill_zip(config, bill_date, lines, now)
        token = secrets.token_urlsafe(24)
        book.bills = {key: value for key, value in book.bills.items() if value[0] > now}
        book.bills[token] = (now + BILL_URL_LIFETIME, content)
    log.info(
        "bill download url issued bill_date=%s lines=%s",
        bill_date.isoformat(),
        len(lines),
    )
    return {"bill_download_url": f"{request.host_url}_sandbox/bills/{token}.zip"}


def _read_bill_date(text, now):
    """Return bill_date as a date, or raise 40002 for a bad or future date.

    NOTE: the real gateway returns an error for today's bill, because a
    day's bill exists only from the next day. The sandbox serves today's
    bill so that a test can pay and reconcile at once.
    """
    if not isinstance(text, str) or not BILL_DATE_PATTERN.fullmatch(text):
        raise invalid_argument(
            "isv.invalid-arguments", "bill_date must be YYYY-MM-DD in the sandbox"
        )
    try:
        bill_date = date.fromisoformat(text)
    except ValueError:
        raise invalid_argument(
            "isv.invalid-arguments", f"bill_date {text} is not a calendar date"
        ) from None
    if bill_date > now.date():
        raise invalid_argument(
            "isv.invalid-arguments", f"bill_date {text} is in the future"
        )
    return bill_date


def bill_lines(book, bill_date):
    """Return the detail lines of `bill_date`, each a list of BILL_HEADER values.

    A paid order gives a 交易 line on the day it was paid, and each refund a
    退款 line with negative amounts on the day it was refunded, both in
    China Standard Time. Ids end with a tab, as in Alipay's files. Call with
    the lock held.
    """
    lines = []
    for order in book.by_out_trade_no.values():
        if order.paid_at is not None and order.paid_at.date() == bill_date:
            lines.append(
                (
                    order.paid_at,
                    _bill_line(order, "交易", order.paid_at, order.total_fen),
                )
            )
        for out_request_no, refund in order.refunds.items():
            if refund.refunded_at.date() == bill_date:
                line = _bill_line(
                    order,
                    "退款",
                    refund.refunded_at,
                    -refund.amount_fen,
                    out_request_no,
                )
                lines.append((refund.refunded_at, line))
    lines.sort(key=lambda item: item[0])
    return [line for _, line in lines]


def _bill_line(order, business_type, finished_at, amount_fen, out_request_no=""):
    amount = ("-" if amount_fen < 0 else "") + to_yuan(abs(amount_fen))
    values = dict.fromkeys(BILL_HEADER, "")
    values.update(
        {
            "支付宝交易号": order.trade_no + "\t",
            "商户订单号": order.out_trade_no + "\t",
            "业务类型": business_type,
            "商品名称": order.subject,
            "创建时间": format_time(order.created_at),
            "完成时间": format_time(finished_at),
            "对方账户": (order.buyer_logon_id or "") + "\t",
            "订单金额（元）": amount,
            "商家实收（元）": amount,
            "退款批次号/请求号": out_request_no + "\t" if out_request_no else "",
        }
    )
    for name in BILL_HEADER:
        if name.endswith("（元）") and not values[name]:
            values[name] = "0.00"
    return [values[name] for name in BILL_HEADER]


def _signed_total(lines, business_type):
    """Return (count, 商家实收 total as signed yuan text) of one business type."""
    received = BILL_HEADER.index("商家实收（元）")
    kind = BILL_HEADER.index("业务类型")
    amounts = [
        -parse_yuan(line[received][1:], "商家实收")
        if line[received].startswith("-")
        else parse_yuan(line[received], "商家实收")
        for line in lines
        if line[kind] == business_type
    ]
    total = sum(amounts)
    return len(amounts), ("-" if total < 0 else "") + to_yuan(abs(total))


def build_bill_zip(config, bill_date, lines, now):
    """Return the bill as Alipay packs it: a ZIP of GBK detail and summary CSVs.

    NOTE: Alipay stores the member names in GBK without the ZIP UTF-8 flag.
    Python's zipfile writes non-ASCII names in UTF-8 with the flag, so the
    client's GBK name handling is covered by its own tests instead.
    """
    day = bill_date.strftime("%Y%m%d")
    start = bill_date.strftime("%Y年%m月%d日 00:00:00")
    end = (bill_date + timedelta(days=1)).strftime("%Y年%m月%d日 00:00:00")
    exported = now.strftime("%Y年%m月%d日 %H:%M:%S")
    payments, payment_total = _signed_total(lines, "交易")
    refunds, refund_total = _signed_total(lines, "退款")

    detail = io.StringIO()
    detail.write("#支付宝业务明细查询\r\n")
    detail.write(f"#账号：[{config.seller_id}]\r\n")
    detail.write(f"#起始日期：[{start}]   终止日期：[{end}]\r\n")
    detail.write(f"#{BILL_RULE}业务明细列表{BILL_RULE}\r\n")
    writer = csv.writer(detail, lineterminator="\r\n")
    writer.writerow(BILL_HEADER)
    writer.writerows(lines)
    detail.write(f"#{BILL_RULE}业务明细列表结束{BILL_RULE}\r\n")
    detail.write(
        f"#交易合计：{payments}笔，商家实收共{payment_total}元，商家优惠共0.00元\r\n"
    )
    detail.write(
        f"#退款合计：{refunds}笔，商家实收退款共{refund_total}元，商家优惠退款共0.00元\r\n"
    )
    detail.write(f"#导出时间：[{exported}]\r\n")

    summary = io.StringIO()
    summary.write("#支付宝业务汇总查询\r\n")
    summary.write(f"#账号：[{config.seller_id}]\r\n")
    writer = csv.writer(summary, lineterminator="\r\n")
    writer.writerow(("门店编号", "门店名称", "交易订单总笔数", "退款订单总笔数"))
    writer.writerow(("", "", payments, refunds))
    summary.write(f"#导出时间：[{exported}]\r\n")

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        prefix = f"{config.seller_id}_{day}"
        archive.writestr(f"{prefix}_业务明细.csv", detail.getvalue().encode("gbk"))
        archive.writestr(
            f"{prefix}_业务明细(汇总).csv", summary.getvalue().encode("gbk")
        )
    return buffer.getvalue()


# Routes that stand in for the buyer's phone and let tests look inside.


def _sandbox_json_body():
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise SandboxError(400, "INVALID_REQUEST", "body must be a JSON object")
    return payload


def _order_by_qr_code(book, payload):
    qr_code = payload.get("qr_code")
    if not isinstance(qr_code, str) or not qr_code:
        raise SandboxError(400, "INVALID_REQUEST", "qr_code is required")
    order = book.by_qr_code.get(qr_code)
    if order is None:
        raise SandboxError(
            400, "ACQ.TRADE_NOT_EXIST", "no order has this qr_code; precreate one"
        )
    return order


def _scan(config, book, order, buyer_id, now):
    """Create the order's trade as a buyer's scan does. Call with the lock held."""
    rejection = order.rejection_for_payment(now)
    if rejection is not None:
        raise SandboxError(400, *rejection)
    if order.trade_status is None:
        order.trade_status = WAIT_BUYER_PAY
        order.trade_no = _new_trade_no(now)
        order.buyer_id = buyer_id
        order.buyer_logon_id = config.buyer_logon_id
        book.by_trade_no[order.trade_no] = order
        log.info(
            "order scanned out_trade_no=%s trade_no=%s",
            order.out_trade_no,
            order.trade_no,
        )


def _buyer_id(config, payload):
    buyer_id = payload.get("buyer_id") or config.buyer_id
    if not isinstance(buyer_id, str):
        raise SandboxError(400, "INVALID_REQUEST", "buyer_id must be a string")
    return buyer_id


def _add_sandbox_routes(app, config, book, notifier):
    @app.get("/_sandbox/health")
    def health():
        return {"status": "ok"}

    @app.post("/_sandbox/scan")
    def scan():
        payload = _sandbox_json_body()
        buyer_id = _buyer_id(config, payload)
        now = now_cst()
        with book.lock:
            order = _order_by_qr_code(book, payload)
            _scan(config, book, order, buyer_id, now)
            return {
                "out_trade_no": order.out_trade_no,
                "trade_no": order.trade_no,
                "trade_status": order.status_at(now),
            }

    @app.post("/_sandbox/pay")
    def pay():
        payload = _sandbox_json_body()
        buyer_id = _buyer_id(config, payload)
        now = now_cst()
        with book.lock:
            order = _order_by_qr_code(book, payload)
            _scan(config, book, order, buyer_id, now)
            order.trade_status = TRADE_SUCCESS
            order.paid_at = now
            order.notification_form = build_notification(config, order)
            answer = {
                "out_trade_no": order.out_trade_no,
                "trade_no": order.trade_no,
                "trade_status": TRADE_SUCCESS,
            }
        log.info(
            "order paid out_trade_no=%s trade_no=%s amount_fen=%s",
            order.out_trade_no,
            order.trade_no,
            order.total_fen,
        )
        if order.notify_url:
            notifier.start(order.out_trade_no)
        else:
            log.warning(
                "order has no notify_url, no notification sent out_trade_no=%s",
                order.out_trade_no,
            )
        return answer

    @app.post("/_sandbox/notify-again")
    def notify_again():
        out_trade_no = _sandbox_json_body().get("out_trade_no")
        if not isinstance(out_trade_no, str) or not out_trade_no:
            raise SandboxError(400, "INVALID_REQUEST", "out_trade_no is required")
        with book.lock:
            order = book.by_out_trade_no.get(out_trade_no)
            if order is None:
                raise SandboxError(
                    404, "ACQ.TRADE_NOT_EXIST", f"order {out_trade_no} does not exist"
                )
            if order.notification_form is None or not order.notify_url:
                raise SandboxError(
                    400,
                    "INVALID_REQUEST",
                    f"order {out_trade_no} is not paid or has no notify_url, "
                    "so it has no notification",
                )
            notify_id = order.notification_form["notify_id"]
        log.info(
            "notification resent out_trade_no=%s notify_id=%s", out_trade_no, notify_id
        )
        notifier.start(out_trade_no)
        return {"out_trade_no": out_trade_no, "notify_id": notify_id}, 202

    @app.get("/_sandbox/bills/<token>.zip")
    def download_bill(token):
        now = now_cst()
        with book.lock:
            entry = book.bills.get(token)
        if entry is None or entry[0] <= now:
            log.warning("bill download rejected token=%s: unknown or expired", token)
            raise SandboxError(
                404,
                "NOT_FOUND",
                "bill download link is unknown or expired; query a new "
                "bill_download_url",
            )
        return Response(entry[1], content_type="application/zip")

    @app.get("/_sandbox/orders/<out_trade_no>")
    def inspect_order(out_trade_no):
        with book.lock:
            order = book.by_out_trade_no.get(out_trade_no)
            if order is None:
                raise SandboxError(
                    404, "ACQ.TRADE_NOT_EXIST", f"order {out_trade_no} does not exist"
                )
            return order_inspection(order, now_cst())


def _new_trade_no(now):
    # 28 digits that start with the date, like the documentation's example
    # 2013112011001004330000121536.
    return (
        now.strftime("%Y%m%d")
        + "22001"
        + "".join(secrets.choice(string.digits) for _ in range(15))
    )


# Command line.


def _parse_delays(text):
    try:
        delays = tuple(float(item) for item in text.split(",") if item.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid delays {text!r}: give seconds separated by commas, like 0.2,0.5"
        ) from None
    if any(delay < 0 for delay in delays):
        raise argparse.ArgumentTypeError("delays must not be negative")
    return delays


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m peers.alipay_sandbox",
        description="Run the Alipay face-to-face payment gateway sandbox.",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--notify-delays",
        type=_parse_delays,
        default=SandboxConfig.notify_delays,
        help="seconds to wait before each notification retry, comma-separated "
        "(default 0.2,0.5,1,2,4)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    ensure_dev_keys(args.keys)
    config = SandboxConfig.from_keys_dir(args.keys, notify_delays=args.notify_delays)
    serve(create_app(config), "alipay sandbox", args.host, args.port, args.port_file)


if __name__ == "__main__":
    main()

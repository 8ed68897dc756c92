"""Sandbox of the WeChat Pay API v3 Native payment endpoints.

It verifies the merchant's Authorization signature, stores orders in memory
and signs every response with the platform key. When a test pays an order
through /_sandbox/pay, it sends the encrypted and signed payment notification
to the order's notify_url. docs/partners.md is the contract, and
docs/payments.md shows how to pay an order by hand.

The signing and encryption here are written independently of
payments/wechatpay.py, so that a mistake in the client shows up as a failed
exchange instead of being mirrored by the sandbox.

Run it with

    python -m peers.wechatpay_sandbox --port 0 --port-file PORT_FILE --keys DIR

It reads DIR/wechatpay/wechatpay.json, merchant_public.pem and
platform_private.pem, and peers.devkeys creates them first if they are missing.
"""

import argparse
import base64
import binascii
import ipaddress
import json
import logging
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from peers.common import add_server_arguments, configure_logging, serve
from peers.devkeys import ensure_dev_keys

log = logging.getLogger(__name__)

AUTHORIZATION_SCHEME = "WECHATPAY2-SHA256-RSA2048"
TIMESTAMP_WINDOW_SECONDS = 300
CHINA_STANDARD_TIME = timezone(timedelta(hours=8))

OUT_TRADE_NO_PATTERN = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")
# RFC 3339 with seconds and a numeric UTC offset, as the API requires.
TIME_EXPIRE_PATTERN = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?[+-]\d{2}:\d{2}"
)
DESCRIPTION_MAX_BYTES = 127
ATTACH_MAX_CHARS = 128
NOTIFY_URL_MAX_CHARS = 256
# NOTE: the two-hour default for an order without time_expire is assumed, not
# checked against the real gateway.
DEFAULT_ORDER_LIFETIME = timedelta(hours=2)

NOTPAY = "NOTPAY"
SUCCESS = "SUCCESS"
CLOSED = "CLOSED"
TRADE_STATE_DESCRIPTIONS = {NOTPAY: "未支付", SUCCESS: "支付成功", CLOSED: "已关闭"}

CODE_URL_PREFIX = "weixin://wxpay/bizpayurl?pr="
ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True)
class SandboxConfig:
    """The merchant the sandbox serves and the platform keys it signs with.

    `notify_delays` are the seconds to wait before each retry of a
    notification that the merchant did not accept, so a notification is sent
    at most 1 + len(notify_delays) times.
    """

    mchid: str
    appid: str
    merchant_serial: str
    merchant_public_key: object = field(repr=False)
    platform_serial: str
    platform_private_key: object = field(repr=False)
    apiv3_key: bytes = field(repr=False)
    notify_delays: tuple = (0.2, 0.5, 1.0, 2.0, 4.0)
    notify_timeout: tuple = (2.0, 5.0)
    payer_openid: str = "o-sandbox-payer-0001"

    @classmethod
    def from_keys_dir(cls, keys_dir, **options):
        """Load the sandbox's settings and keys from `keys_dir/wechatpay/`."""
        folder = Path(keys_dir) / "wechatpay"
        settings = json.loads((folder / "wechatpay.json").read_text("utf-8"))
        merchant_public_key = serialization.load_pem_public_key(
            (folder / "merchant_public.pem").read_bytes()
        )
        platform_private_key = serialization.load_pem_private_key(
            (folder / "platform_private.pem").read_bytes(), password=None
        )
        return cls(
            mchid=settings["mchid"],
            appid=settings["appid"],
            merchant_serial=settings["merchant_serial"].upper(),
            merchant_public_key=merchant_public_key,
            platform_serial=settings["platform_serial"].upper(),
            platform_private_key=platform_private_key,
            apiv3_key=settings["apiv3_key"].encode("ascii"),
            **options,
        )


class ApiError(Exception):
    """An error response in the gateway's `{"code", "message"}` form."""

    def __init__(self, status, code, message):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class Order:
    """One Native order and what happened to it."""

    fields: dict
    time_expire: datetime
    code_url: str
    created_at: datetime
    trade_state: str = NOTPAY
    transaction_id: str | None = None
    success_time: datetime | None = None
    openid: str | None = None
    notification_id: str | None = None
    notification_body: bytes | None = None
    notification_accepted: bool = False
    notification_attempts: list = field(default_factory=list)

    @property
    def out_trade_no(self):
        return self.fields["out_trade_no"]

    @property
    def amount_fen(self):
        return self.fields["amount"]["total"]

    def state_at(self, now):
        """Return trade_state at `now`: an unpaid order past time_expire is CLOSED."""
        if self.trade_state == NOTPAY and now >= self.time_expire:
            return CLOSED
        return self.trade_state


class OrderBook:
    """Orders by out_trade_no and by code_url, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_out_trade_no = {}
        self.by_code_url = {}

    def new_code_url(self):
        """Return a code_url that no stored order uses. Call with the lock held."""
        while True:
            token = "".join(secrets.choice(ALPHANUMERIC) for _ in range(12))
            code_url = CODE_URL_PREFIX + token
            if code_url not in self.by_code_url:
                return code_url


def now_cst():
    return datetime.now(CHINA_STANDARD_TIME).replace(microsecond=0)


def format_time(moment):
    return moment.astimezone(CHINA_STANDARD_TIME).isoformat(timespec="seconds")


def random_nonce(length=32):
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def platform_signature_headers(config, body):
    """Return the Wechatpay-* headers that sign `body` with the platform key."""
    timestamp = str(int(time.time()))
    nonce = random_nonce()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = config.platform_private_key.sign(
        message, padding.PKCS1v15(), hashes.SHA256()
    )
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode("ascii"),
        "Wechatpay-Serial": config.platform_serial,
        "Wechatpay-Signature-Type": AUTHORIZATION_SCHEME,
    }


# Merchant request verification.


def _parse_authorization(header):
    if not header or not header.startswith(AUTHORIZATION_SCHEME + " "):
        raise ApiError(
            401,
            "SIGN_ERROR",
            f"Authorization header is missing or does not use {AUTHORIZATION_SCHEME}",
        )
    params = dict(
        re.findall(r'(\w+)="([^"]*)"', header[len(AUTHORIZATION_SCHEME) + 1 :])
    )
    missing = [
        name
        for name in ("mchid", "nonce_str", "signature", "timestamp", "serial_no")
        if not params.get(name)
    ]
    if missing:
        raise ApiError(
            401,
            "SIGN_ERROR",
            f"Authorization header is missing {', '.join(missing)}",
        )
    return params


def verify_merchant_request(config):
    """Raise ApiError(401, SIGN_ERROR) unless the request is signed by the merchant."""
    params = _parse_authorization(request.headers.get("Authorization"))
    if params["mchid"] != config.mchid:
        raise ApiError(
            401, "SIGN_ERROR", f"mchid {params['mchid']} in Authorization is unknown"
        )
    if params["serial_no"].upper() != config.merchant_serial:
        raise ApiError(
            401,
            "SIGN_ERROR",
            f"serial_no {params['serial_no']} is not the merchant key's serial",
        )
    try:
        timestamp = int(params["timestamp"])
    except ValueError:
        raise ApiError(
            401, "SIGN_ERROR", "timestamp in Authorization is not Unix seconds"
        ) from None
    if abs(time.time() - timestamp) > TIMESTAMP_WINDOW_SECONDS:
        raise ApiError(
            401,
            "SIGN_ERROR",
            f"timestamp {timestamp} is more than {TIMESTAMP_WINDOW_SECONDS} "
            "seconds from the gateway clock",
        )
    try:
        signature = base64.b64decode(params["signature"], validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(
            401, "SIGN_ERROR", "signature in Authorization is not base64"
        ) from None

    # The merchant signs the URL as sent, before any percent-decoding.
    signed_url = request.environ.get("REQUEST_URI") or request.full_path.rstrip("?")
    message = (
        (
            f"{request.method}\n{signed_url}\n{params['timestamp']}\n"
            f"{params['nonce_str']}\n"
        ).encode()
        + request.get_data()
        + b"\n"
    )
    try:
        config.merchant_public_key.verify(
            signature, message, padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        raise ApiError(
            401,
            "SIGN_ERROR",
            "signature does not verify with the merchant public key; sign "
            "METHOD\\nURL\\nTIMESTAMP\\nNONCE\\nBODY\\n with the exact bytes sent",
        ) from None

    if not request.headers.get("User-Agent"):
        raise ApiError(400, "INVALID_REQUEST", "User-Agent header is required")


def _json_body():
    if request.mimetype != "application/json":
        raise ApiError(400, "INVALID_REQUEST", "Content-Type must be application/json")
    try:
        payload = json.loads(request.get_data())
    except ValueError:
        raise ApiError(400, "PARAM_ERROR", "body is not valid JSON") from None
    if not isinstance(payload, dict):
        raise ApiError(400, "PARAM_ERROR", "body must be a JSON object")
    return payload


def _require_mchid(config, mchid):
    if not isinstance(mchid, str) or not mchid:
        raise ApiError(400, "PARAM_ERROR", "mchid is required")
    if mchid != config.mchid:
        raise ApiError(400, "MCH_NOT_EXISTS", f"mchid {mchid} does not exist")


# Order validation, following the API's field rules.


def _require_string(payload, name):
    value = payload.get(name)
    if value is None or value == "":
        raise ApiError(400, "PARAM_ERROR", f"{name} is required")
    if not isinstance(value, str):
        raise ApiError(400, "PARAM_ERROR", f"{name} must be a string")
    return value


def _is_loopback(host):
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_notify_url(notify_url):
    if len(notify_url) > NOTIFY_URL_MAX_CHARS:
        raise ApiError(
            400, "PARAM_ERROR", f"notify_url is longer than {NOTIFY_URL_MAX_CHARS}"
        )
    parts = urlsplit(notify_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ApiError(400, "PARAM_ERROR", "notify_url must be an http(s) URL")
    if parts.query:
        raise ApiError(400, "PARAM_ERROR", "notify_url must not have a query string")
    # The sandbox runs beside the merchant, so it delivers only to loopback.
    if not _is_loopback(parts.hostname):
        raise ApiError(
            400,
            "PARAM_ERROR",
            "the sandbox delivers notifications only to loopback hosts "
            "(127.0.0.0/8, ::1, localhost)",
        )


def _validate_amount(amount):
    if not isinstance(amount, dict):
        raise ApiError(400, "PARAM_ERROR", "amount is required and must be an object")
    total = amount.get("total")
    if isinstance(total, bool) or not isinstance(total, int):
        raise ApiError(400, "PARAM_ERROR", "amount.total must be an integer of fen")
    if total <= 0:
        raise ApiError(400, "PARAM_ERROR", "amount.total must be positive")
    currency = amount.get("currency", "CNY")
    if currency != "CNY":
        raise ApiError(400, "PARAM_ERROR", "amount.currency must be CNY")
    return {"total": total, "currency": currency}


def _validate_time_expire(text, now):
    if text is None:
        return None, now + DEFAULT_ORDER_LIFETIME
    if not isinstance(text, str) or not TIME_EXPIRE_PATTERN.fullmatch(text):
        raise ApiError(
            400,
            "PARAM_ERROR",
            "time_expire must be RFC 3339 with an offset, "
            "like 2026-12-04T10:30:00+08:00",
        )
    moment = datetime.fromisoformat(text)
    if moment <= now:
        raise ApiError(400, "PARAM_ERROR", "time_expire must be in the future")
    return text, moment


def validate_native_order(config, payload, now):
    """Return the order's normalized fields and time_expire, or raise ApiError."""
    appid = _require_string(payload, "appid")
    _require_mchid(config, payload.get("mchid"))
    if appid != config.appid:
        raise ApiError(
            400, "APPID_MCHID_NOT_MATCH", f"appid {appid} is not bound to the mchid"
        )

    description = _require_string(payload, "description")
    if len(description.encode("utf-8")) > DESCRIPTION_MAX_BYTES:
        raise ApiError(
            400,
            "PARAM_ERROR",
            f"description is longer than {DESCRIPTION_MAX_BYTES} bytes in UTF-8",
        )

    out_trade_no = _require_string(payload, "out_trade_no")
    if not OUT_TRADE_NO_PATTERN.fullmatch(out_trade_no):
        raise ApiError(
            400,
            "PARAM_ERROR",
            "out_trade_no must be 6 to 32 letters, digits or _-|*",
        )

    notify_url = _require_string(payload, "notify_url")
    _validate_notify_url(notify_url)
    amount = _validate_amount(payload.get("amount"))
    time_expire_text, time_expire = _validate_time_expire(
        payload.get("time_expire"), now
    )

    attach = payload.get("attach")
    if attach is not None and (
        not isinstance(attach, str) or len(attach) > ATTACH_MAX_CHARS
    ):
        raise ApiError(
            400,
            "PARAM_ERROR",
            f"attach must be a string of at most {ATTACH_MAX_CHARS} characters",
        )

    fields = {
        "appid": appid,
        "mchid": config.mchid,
        "description": description,
        "out_trade_no": out_trade_no,
        "time_expire": time_expire_text,
        "notify_url": notify_url,
        "amount": amount,
        "attach": attach,
    }
    return fields, time_expire


# Views of an order.


def order_resource(config, order, now):
    """Return the order as the query endpoint and the notification show it."""
    state = order.state_at(now)
    amount = {"total": order.amount_fen, "currency": "CNY"}
    resource = {
        "appid": order.fields["appid"],
        "mchid": config.mchid,
        "out_trade_no": order.out_trade_no,
        "trade_state": state,
        "trade_state_desc": TRADE_STATE_DESCRIPTIONS[state],
        "attach": order.fields["attach"] or "",
        "amount": amount,
    }
    if state == SUCCESS:
        amount["payer_total"] = order.amount_fen
        amount["payer_currency"] = "CNY"
        resource.update(
            transaction_id=order.transaction_id,
            trade_type="NATIVE",
            bank_type="OTHERS",
            success_time=format_time(order.success_time),
            payer={"openid": order.openid},
        )
    return resource


def order_inspection(config, order, now):
    """Return everything the sandbox stores for an order, for tests."""
    view = order_resource(config, order, now)
    view.update(
        description=order.fields["description"],
        notify_url=order.fields["notify_url"],
        time_expire=format_time(order.time_expire),
        code_url=order.code_url,
        created_at=format_time(order.created_at),
        notification_id=order.notification_id,
        notification_accepted=order.notification_accepted,
        notification_attempts=list(order.notification_attempts),
    )
    return view


# Payment notifications.


def build_notification(config, order):
    """Return the notification id and the JSON body for a paid order."""
    transaction = order_resource(config, order, order.success_time)
    plaintext = json.dumps(transaction, ensure_ascii=False).encode("utf-8")
    nonce = random_nonce(12)
    associated_data = "transaction"
    ciphertext = AESGCM(config.apiv3_key).encrypt(
        nonce.encode(), plaintext, associated_data.encode()
    )
    notification_id = "EV-" + secrets.token_hex(10)
    event = {
        "id": notification_id,
        "create_time": format_time(order.success_time),
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
            "associated_data": associated_data,
            "nonce": nonce,
        },
    }
    body = json.dumps(event, ensure_ascii=False).encode("utf-8")
    return notification_id, body


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

        The merchant accepts with 200 or 204. Every other status, and every
        connection error, is retried after the next of config.notify_delays.
        Each attempt is signed again with a fresh timestamp and nonce over the
        same body, so repeated deliveries carry the same notification id.
        """
        with self.book.lock:
            order = self.book.by_out_trade_no[out_trade_no]
            body = order.notification_body
            notify_url = order.fields["notify_url"]
            notification_id = order.notification_id
        attempts = 1 + len(self.config.notify_delays)
        for attempt in range(1, attempts + 1):
            outcome = self._send_once(notify_url, body)
            accepted = outcome in ("200", "204")
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
                    "notification accepted out_trade_no=%s notification_id=%s "
                    "attempt=%s",
                    out_trade_no,
                    notification_id,
                    attempt,
                )
                return
            if attempt == attempts:
                break
            delay = self.config.notify_delays[attempt - 1]
            log.warning(
                "notification not accepted out_trade_no=%s notification_id=%s "
                "attempt=%s outcome=%s retry_in=%ss",
                out_trade_no,
                notification_id,
                attempt,
                outcome,
                delay,
            )
            time.sleep(delay)
        log.error(
            "notification abandoned out_trade_no=%s notification_id=%s attempts=%s "
            "last_outcome=%s",
            out_trade_no,
            notification_id,
            attempts,
            outcome,
        )

    def _send_once(self, notify_url, body):
        """Return the response status as text, or the error class name."""
        headers = platform_signature_headers(self.config, body)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = "Mozilla/4.0 (WeChat Pay sandbox)"
        try:
            response = requests.post(
                notify_url,
                data=body,
                headers=headers,
                timeout=self.config.notify_timeout,
            )
        except requests.RequestException as error:
            return type(error).__name__
        return str(response.status_code)


# The application.


def create_app(config: SandboxConfig) -> Flask:
    """Build the sandbox's Flask application for `config`."""
    app = Flask(__name__)
    app.json.ensure_ascii = False
    app.json.sort_keys = False
    book = OrderBook()
    notifier = Notifier(config, book)
    app.extensions["wechatpay_sandbox"] = {"book": book, "notifier": notifier}

    @app.errorhandler(ApiError)
    def api_error(error):
        if error.status == 401:
            log.warning(
                "request rejected %s %s code=%s reason=%s",
                request.method,
                request.path,
                error.code,
                error.message,
            )
        return jsonify(code=error.code, message=error.message), error.status

    @app.errorhandler(HTTPException)
    def http_error(error):
        code = "NOT_FOUND" if error.code == 404 else "INVALID_REQUEST"
        return jsonify(code=code, message=error.description), error.code

    @app.before_request
    def authenticate():
        if request.path.startswith("/v3/"):
            verify_merchant_request(config)

    @app.after_request
    def sign_response(response):
        response.headers.update(platform_signature_headers(config, response.get_data()))
        return response

    _add_gateway_routes(app, config, book)
    _add_sandbox_routes(app, config, book, notifier)
    return app


def _add_gateway_routes(app, config, book):
    @app.post("/v3/pay/transactions/native")
    def create_native_order():
        now = now_cst()
        fields, time_expire = validate_native_order(config, _json_body(), now)
        out_trade_no = fields["out_trade_no"]
        with book.lock:
            existing = book.by_out_trade_no.get(out_trade_no)
            if existing is not None:
                return _repeat_order(existing, fields, now)
            order = Order(
                fields=fields,
                time_expire=time_expire,
                code_url=book.new_code_url(),
                created_at=now,
            )
            book.by_out_trade_no[out_trade_no] = order
            book.by_code_url[order.code_url] = order
        log.info(
            "order created out_trade_no=%s amount_fen=%s time_expire=%s",
            out_trade_no,
            order.amount_fen,
            format_time(time_expire),
        )
        return {"code_url": order.code_url}

    @app.get("/v3/pay/transactions/out-trade-no/<out_trade_no>")
    def query_order(out_trade_no):
        _require_mchid(config, request.args.get("mchid"))
        with book.lock:
            order = _find_order(book, out_trade_no)
            return order_resource(config, order, now_cst())

    @app.post("/v3/pay/transactions/out-trade-no/<out_trade_no>/close")
    def close_order(out_trade_no):
        _require_mchid(config, _json_body().get("mchid"))
        with book.lock:
            order = book.by_out_trade_no.get(out_trade_no)
            if order is None:
                # A merchant on the WeChat developer community reported 204 from
                # the real gateway for a mistyped out_trade_no, so this matches.
                log.info("close of unknown order out_trade_no=%s", out_trade_no)
                return "", 204
            if order.trade_state == SUCCESS:
                raise ApiError(400, "ORDERPAID", "order is paid and cannot be closed")
            order.trade_state = CLOSED
        log.info("order closed out_trade_no=%s", out_trade_no)
        return "", 204


def _repeat_order(order, fields, now):
    """Return the response to a create request for an existing out_trade_no."""
    state = order.state_at(now)
    if state == SUCCESS:
        raise ApiError(400, "ORDERPAID", "order is already paid")
    if state == CLOSED:
        raise ApiError(
            400,
            "ORDER_CLOSED",
            "order is closed, so create a new order with a new out_trade_no",
        )
    if order.fields != fields:
        # Merchants report the gateway's message "201 商户订单号重复" here.
        raise ApiError(
            400,
            "INVALID_REQUEST",
            "201 out_trade_no is already used with different parameters",
        )
    return {"code_url": order.code_url}


def _find_order(book, out_trade_no):
    order = book.by_out_trade_no.get(out_trade_no)
    if order is None:
        raise ApiError(404, "ORDER_NOT_EXIST", f"order {out_trade_no} does not exist")
    return order


def _sandbox_json_body():
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError(400, "PARAM_ERROR", "body must be a JSON object")
    return payload


def _add_sandbox_routes(app, config, book, notifier):
    @app.get("/_sandbox/health")
    def health():
        return {"status": "ok"}

    @app.post("/_sandbox/pay")
    def pay():
        payload = _sandbox_json_body()
        code_url = payload.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise ApiError(400, "PARAM_ERROR", "code_url is required")
        openid = payload.get("openid") or config.payer_openid
        if not isinstance(openid, str):
            raise ApiError(400, "PARAM_ERROR", "openid must be a string")
        now = now_cst()
        with book.lock:
            order = book.by_code_url.get(code_url)
            if order is None:
                raise ApiError(
                    400, "ORDER_NOT_EXIST", "no order has this code_url; create one"
                )
            state = order.state_at(now)
            if state == SUCCESS:
                raise ApiError(400, "ORDERPAID", "order is already paid")
            if state == CLOSED:
                raise ApiError(
                    400, "ORDER_CLOSED", "order is closed or past its time_expire"
                )
            order.trade_state = SUCCESS
            order.transaction_id = _new_transaction_id(now)
            order.success_time = now
            order.openid = openid
            order.notification_id, order.notification_body = build_notification(
                config, order
            )
            answer = {
                "out_trade_no": order.out_trade_no,
                "transaction_id": order.transaction_id,
                "trade_state": SUCCESS,
            }
        log.info(
            "order paid out_trade_no=%s transaction_id=%s amount_fen=%s",
            order.out_trade_no,
            order.transaction_id,
            order.amount_fen,
        )
        notifier.start(order.out_trade_no)
        return answer

    @app.post("/_sandbox/notify-again")
    def notify_again():
        out_trade_no = _sandbox_json_body().get("out_trade_no")
        if not isinstance(out_trade_no, str) or not out_trade_no:
            raise ApiError(400, "PARAM_ERROR", "out_trade_no is required")
        with book.lock:
            order = _find_order(book, out_trade_no)
            if order.notification_body is None:
                raise ApiError(
                    400,
                    "INVALID_REQUEST",
                    f"order {out_trade_no} is not paid, so it has no notification",
                )
            notification_id = order.notification_id
        log.info(
            "notification resent out_trade_no=%s notification_id=%s",
            out_trade_no,
            notification_id,
        )
        notifier.start(out_trade_no)
        return {"out_trade_no": out_trade_no, "notification_id": notification_id}, 202

    @app.get("/_sandbox/orders/<out_trade_no>")
    def inspect_order(out_trade_no):
        with book.lock:
            order = _find_order(book, out_trade_no)
            return order_inspection(config, order, now_cst())


def _new_transaction_id(now):
    # 28 digits with the payment date inside, like the API documentation's
    # example 1217752501201407033233368018.
    return (
        "42000"
        + "".join(secrets.choice(string.digits) for _ in range(5))
        + now.strftime("%Y%m%d")
        + "".join(secrets.choice(string.digits) for _ in range(10))
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
        prog="python -m peers.wechatpay_sandbox",
        description="Run the WeChat Pay API v3 Native sandbox.",
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
    serve(create_app(config), "wechatpay sandbox", args.host, args.port, args.port_file)


if __name__ == "__main__":
    main()

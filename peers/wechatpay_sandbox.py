"""Sandbox of the WeChat Pay API v3 Native payment endpoints.

It verifies the merchant's Authorization signature, stores orders and
refunds in memory and signs every response with the platform key. When a test
pays an order through /_sandbox/pay, it sends the encrypted and signed payment
notification to the order's notify_url. A refund completes after
--refund-delay seconds and then notifies the refund's notify_url. The sandbox
also builds the daily trade bill from its orders and refunds, lists its
platform certificates at /v3/certificates and rotates to a new platform key
on /_sandbox/rotate-platform-key. docs/partners.md is the contract, and
docs/payments.md shows how to pay an order by hand.

The signing and encryption here are written independently of
payments/wechatpay.py, so that a mistake in the client shows up as a failed
exchange instead of being mirrored by the sandbox.

Run it with

    python -m peers.wechatpay_sandbox --port 0 --port-file PORT_FILE --keys DIR

It reads DIR/wechatpay/wechatpay.json, merchant_public.pem and
platform_private.pem, and peers.devkeys creates them first if they are missing.
The self-signed certificate of each platform key is made in memory at startup
or rotation, so the key directory gets no new files.
"""

import argparse
import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID
from flask import Flask, Response, jsonify, request
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
# A paid order turns REFUND once a refund is accepted, as on the real gateway.
REFUND = "REFUND"
TRADE_STATE_DESCRIPTIONS = {
    NOTPAY: "未支付",
    SUCCESS: "支付成功",
    CLOSED: "已关闭",
    REFUND: "转入退款",
}
PAID_STATES = (SUCCESS, REFUND)

# Refund statuses. The sandbox moves a refund from PROCESSING to SUCCESS only.
REFUND_PROCESSING = "PROCESSING"
REFUND_SUCCESS = "SUCCESS"
OUT_REFUND_NO_PATTERN = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}")
REFUND_REASON_MAX_CHARS = 80
# The refund API allows at most 50 refunds of one order.
MAX_REFUNDS_PER_ORDER = 50
USER_RECEIVED_ACCOUNT = "支付用户零钱"

# Platform certificates last five years, like the real ones.
CERTIFICATE_LIFETIME = timedelta(days=5 * 365)

# Trade bills. The real gateway keeps bills for three months, and a
# download_url works for five minutes.
BILL_MAX_AGE = timedelta(days=92)
BILL_URL_LIFETIME_SECONDS = 300
BILL_DATE_PATTERN = re.compile(r"\d{4}-\d{2}-\d{2}")
BILL_DOWNLOAD_PATH = "/v3/billdownload/file"
BILL_TYPES = ("ALL", "SUCCESS", "REFUND")
BILL_HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,"
    "交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,"
    "商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
)
BILL_SUMMARY_HEADER = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,"
    "申请退款总金额"
)
# The fee rate only fills the bill's fee columns, which the client does not read.
BILL_FEE_RATE_PERCENT = "0.60"

CODE_URL_PREFIX = "weixin://wxpay/bizpayurl?pr="
ALPHANUMERIC = string.ascii_letters + string.digits


@dataclass(frozen=True)
class SandboxConfig:
    """The merchant the sandbox serves and the first platform key it signs with.

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
    # Seconds a refund stays PROCESSING before it turns SUCCESS.
    refund_delay: float = 1.0

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
    refunds: list = field(default_factory=list)

    @property
    def out_trade_no(self):
        return self.fields["out_trade_no"]

    @property
    def amount_fen(self):
        return self.fields["amount"]["total"]

    @property
    def notify_url(self):
        return self.fields["notify_url"]

    def refunded_fen(self):
        """Return the fen of all refunds of this order, processing ones included."""
        return sum(refund.amount_fen for refund in self.refunds)

    def state_at(self, now):
        """Return trade_state at `now`: an unpaid order past time_expire is CLOSED."""
        if self.trade_state == NOTPAY and now >= self.time_expire:
            return CLOSED
        return self.trade_state


@dataclass
class Refund:
    """One refund of a paid order and the notification it sends."""

    out_refund_no: str
    refund_id: str
    order: Order
    amount_fen: int
    reason: str | None
    notify_url: str | None
    created_at: datetime
    status: str = REFUND_PROCESSING
    success_time: datetime | None = None
    notification_id: str | None = None
    notification_body: bytes | None = None
    notification_accepted: bool = False
    notification_attempts: list = field(default_factory=list)


class OrderBook:
    """Orders, refunds and bill downloads in memory, guarded by one lock."""

    def __init__(self):
        self.lock = threading.Lock()
        self.by_out_trade_no = {}
        self.by_code_url = {}
        self.refunds = {}
        # Bill download token to (file bytes, time.monotonic() deadline).
        self.bills = {}

    def find_paid_order(self, out_trade_no, transaction_id):
        """Return the order named by either id, or None. Call with the lock held."""
        if out_trade_no is not None:
            return self.by_out_trade_no.get(out_trade_no)
        for order in self.by_out_trade_no.values():
            if order.transaction_id == transaction_id:
                return order
        return None

    def new_code_url(self):
        """Return a code_url that no stored order uses. Call with the lock held."""
        while True:
            token = "".join(secrets.choice(ALPHANUMERIC) for _ in range(12))
            code_url = CODE_URL_PREFIX + token
            if code_url not in self.by_code_url:
                return code_url


@dataclass(frozen=True)
class PlatformKey:
    """A platform private key, its serial and its self-signed certificate."""

    serial: str
    private_key: object = field(repr=False)
    certificate_pem: bytes = field(repr=False)
    effective_time: datetime
    expire_time: datetime


def make_platform_key(serial, private_key, now):
    """Return a PlatformKey with a new self-signed X.509 certificate for the key.

    The certificate's serial number is `serial` read as hex when it fits the
    159 bits that X.509 allows. peers.devkeys makes 160-bit random serials, so
    for about half of them the certificate gets a random serial number instead.
    Clients use the serial_no of the /v3/certificates listing, not the one in
    the certificate.
    """
    number = int(serial, 16)
    if number.bit_length() >= 160 or number == 0:
        number = x509.random_serial_number()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Lianban WeChat Pay sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"platform {serial}"),
        ]
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private_key.public_key())
        .serial_number(number)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .sign(private_key, hashes.SHA256())
    )
    return PlatformKey(
        serial=serial,
        private_key=private_key,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM),
        effective_time=now,
        expire_time=now + CERTIFICATE_LIFETIME,
    )


class PlatformKeyring:
    """The sandbox's platform keys, oldest first, guarded by one lock.

    The newest key signs responses and notifications. /v3/certificates lists
    every key. Its response is signed by the key before the newest, if there
    is one, so that a merchant who trusts only the previous key can still
    verify the listing that introduces the new one.
    """

    def __init__(self, first_key):
        self.lock = threading.Lock()
        self.keys = [first_key]
        self.certificate_downloads = 0

    def current(self):
        with self.lock:
            return self.keys[-1]

    def certificate_signer(self):
        # NOTE: the real gateway phases a new certificate in over several days
        # and may sign this listing with either key. Signing with the previous
        # key is a choice of the sandbox.
        with self.lock:
            return self.keys[-2] if len(self.keys) > 1 else self.keys[-1]

    def rotate(self):
        """Add a new key with a new serial and return it and the previous key."""
        private_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # 159 random bits, so the serial also fits an X.509 serial number.
        serial = f"{secrets.randbits(159):040X}"
        new_key = make_platform_key(serial, private_key, now_cst())
        with self.lock:
            previous = self.keys[-1]
            self.keys.append(new_key)
        return new_key, previous


def now_cst():
    return datetime.now(CHINA_STANDARD_TIME).replace(microsecond=0)


def format_time(moment):
    return moment.astimezone(CHINA_STANDARD_TIME).isoformat(timespec="seconds")


def random_nonce(length=32):
    return "".join(secrets.choice(ALPHANUMERIC) for _ in range(length))


def platform_signature_headers(platform_key, body):
    """Return the Wechatpay-* headers that sign `body` with a PlatformKey."""
    timestamp = str(int(time.time()))
    nonce = random_nonce()
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = platform_key.private_key.sign(
        message, padding.PKCS1v15(), hashes.SHA256()
    )
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode("ascii"),
        "Wechatpay-Serial": platform_key.serial,
        "Wechatpay-Signature-Type": AUTHORIZATION_SCHEME,
    }


def encrypt_resource(config, plaintext, associated_data):
    """Encrypt `plaintext` with the APIv3 key into an AEAD_AES_256_GCM object."""
    nonce = random_nonce(12)
    ciphertext = AESGCM(config.apiv3_key).encrypt(
        nonce.encode(), plaintext, associated_data.encode()
    )
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(ciphertext).decode("ascii"),
        "associated_data": associated_data,
        "nonce": nonce,
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


# Refund validation, following the API's field rules.


def validate_refund_request(payload):
    """Return the refund request's normalized fields, or raise ApiError."""
    out_refund_no = _require_string(payload, "out_refund_no")
    if not OUT_REFUND_NO_PATTERN.fullmatch(out_refund_no):
        raise ApiError(
            400,
            "PARAM_ERROR",
            "out_refund_no must be 1 to 64 letters, digits or _-|*@",
        )
    out_trade_no = payload.get("out_trade_no")
    transaction_id = payload.get("transaction_id")
    if not out_trade_no and not transaction_id:
        raise ApiError(400, "PARAM_ERROR", "out_trade_no or transaction_id is required")
    for name, value in (
        ("out_trade_no", out_trade_no),
        ("transaction_id", transaction_id),
    ):
        if value is not None and not isinstance(value, str):
            raise ApiError(400, "PARAM_ERROR", f"{name} must be a string")

    reason = payload.get("reason")
    if reason is not None and (
        not isinstance(reason, str)
        or not reason
        or len(reason) > REFUND_REASON_MAX_CHARS
    ):
        raise ApiError(
            400,
            "PARAM_ERROR",
            f"reason must be a string of 1 to {REFUND_REASON_MAX_CHARS} characters",
        )
    notify_url = payload.get("notify_url")
    if notify_url is not None:
        if not isinstance(notify_url, str) or not notify_url:
            raise ApiError(400, "PARAM_ERROR", "notify_url must be a string")
        _validate_notify_url(notify_url)

    amount = payload.get("amount")
    if not isinstance(amount, dict):
        raise ApiError(400, "PARAM_ERROR", "amount is required and must be an object")
    for name in ("refund", "total"):
        value = amount.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ApiError(
                400, "PARAM_ERROR", f"amount.{name} must be a positive integer of fen"
            )
    if amount.get("currency", "CNY") != "CNY":
        raise ApiError(400, "PARAM_ERROR", "amount.currency must be CNY")
    if amount["refund"] > amount["total"]:
        raise ApiError(
            400, "PARAM_ERROR", "amount.refund must not be more than amount.total"
        )
    return {
        "out_refund_no": out_refund_no,
        "out_trade_no": out_trade_no or None,
        "transaction_id": transaction_id or None,
        "reason": reason,
        "notify_url": notify_url,
        "refund_fen": amount["refund"],
        "total_fen": amount["total"],
    }


def check_refund_allowed(order, request_fields, now):
    """Raise ApiError unless `order` can take the requested refund."""
    # The API documents RESOURCE_NOT_EXISTS for an unknown or unpaid order and
    # INVALID_REQUEST for a request that breaks a business rule. NOTE: the 404
    # status, and INVALID_REQUEST for each rule below and in _repeat_refund,
    # are assumed.
    if order is None or order.state_at(now) not in PAID_STATES:
        raise ApiError(
            404,
            "RESOURCE_NOT_EXISTS",
            "order does not exist or is not paid, and only a paid order can be "
            "refunded",
        )
    if request_fields["total_fen"] != order.amount_fen:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"amount.total {request_fields['total_fen']} does not match the "
            f"order's total of {order.amount_fen} fen",
        )
    refunded = order.refunded_fen()
    if refunded + request_fields["refund_fen"] > order.amount_fen:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"refund of {request_fields['refund_fen']} fen would bring the refunded "
            f"total to {refunded + request_fields['refund_fen']} fen, more than the "
            f"{order.amount_fen} fen paid",
        )
    if len(order.refunds) >= MAX_REFUNDS_PER_ORDER:
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"order already has {MAX_REFUNDS_PER_ORDER} refunds, the maximum",
        )


def _repeat_refund(refund, request_fields):
    """Return the existing refund for a repeated out_refund_no, or raise ApiError."""
    order = refund.order
    same_order = request_fields["out_trade_no"] in (None, order.out_trade_no) and (
        request_fields["transaction_id"] in (None, order.transaction_id)
    )
    if not same_order or request_fields["refund_fen"] != refund.amount_fen:
        # The gateway refunds an out_refund_no once, whatever is sent again.
        raise ApiError(
            400,
            "INVALID_REQUEST",
            f"out_refund_no {refund.out_refund_no} is already used for another "
            "order or amount",
        )
    return refund


def _new_refund_id(now):
    # 29 digits, like the API documentation's example 50000000382019052709732678859.
    return (
        "503"
        + "".join(secrets.choice(string.digits) for _ in range(8))
        + now.strftime("%Y%m%d")
        + "".join(secrets.choice(string.digits) for _ in range(10))
    )


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
    if state in PAID_STATES:
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
        refunded_fen=order.refunded_fen(),
        out_refund_nos=[refund.out_refund_no for refund in order.refunds],
    )
    return view


def refund_resource(config, refund):
    """Return the refund as the refund and refund query endpoints show it."""
    order = refund.order
    resource = {
        "refund_id": refund.refund_id,
        "out_refund_no": refund.out_refund_no,
        "transaction_id": order.transaction_id,
        "out_trade_no": order.out_trade_no,
        "channel": "ORIGINAL",
        "user_received_account": USER_RECEIVED_ACCOUNT,
        "create_time": format_time(refund.created_at),
        "status": refund.status,
        "funds_account": "AVAILABLE",
        "amount": {
            "total": order.amount_fen,
            "refund": refund.amount_fen,
            "from": [],
            "payer_total": order.amount_fen,
            "payer_refund": refund.amount_fen,
            "settlement_refund": refund.amount_fen,
            "settlement_total": order.amount_fen,
            "discount_refund": 0,
            "currency": "CNY",
        },
        "promotion_detail": [],
    }
    if refund.success_time is not None:
        resource["success_time"] = format_time(refund.success_time)
    return resource


def refund_inspection(config, refund):
    """Return everything the sandbox stores for a refund, for tests."""
    view = refund_resource(config, refund)
    view.update(
        reason=refund.reason,
        notify_url=refund.notify_url,
        notification_id=refund.notification_id,
        notification_accepted=refund.notification_accepted,
        notification_attempts=list(refund.notification_attempts),
    )
    return view


# Trade bills. Each line puts a backtick before every value, as the real
# bill does so that spreadsheets keep long ids as text.


def _format_yuan(fen):
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _fee_fen(fen):
    # Half-up rounding of the fee to whole fen, keeping the sign of `fen`.
    magnitude = (abs(fen) * 6 + 500) // 1000
    return magnitude if fen >= 0 else -magnitude


def _bill_line(values):
    # Commas and line breaks would split a value, and descriptions are free text.
    cleaned = [str(value).replace("\r", " ").replace("\n", " ") for value in values]
    return ",".join("`" + value for value in cleaned)


def _bill_time(moment):
    return moment.astimezone(CHINA_STANDARD_TIME).strftime("%Y-%m-%d %H:%M:%S")


def _payment_bill_line(config, order):
    fee = _fee_fen(order.amount_fen)
    line = _bill_line(
        [
            _bill_time(order.success_time),
            order.fields["appid"],
            config.mchid,
            "0",
            "",
            order.transaction_id,
            order.out_trade_no,
            order.openid,
            "NATIVE",
            SUCCESS,
            "OTHERS",
            "CNY",
            _format_yuan(order.amount_fen),
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            order.fields["description"],
            order.fields["attach"] or "",
            f"{_format_yuan(fee)}000",
            f"{BILL_FEE_RATE_PERCENT}%",
            _format_yuan(order.amount_fen),
            "0.00",
            "",
        ]
    )
    return line, order.amount_fen, 0, fee, order.amount_fen, 0


def _refund_bill_line(config, refund):
    # NOTE: a refund line is dated by the refund's creation time, with a
    # settlement amount of 0.00. Both are assumptions about the real bill.
    order = refund.order
    fee = -_fee_fen(refund.amount_fen)
    line = _bill_line(
        [
            _bill_time(refund.created_at),
            order.fields["appid"],
            config.mchid,
            "0",
            "",
            order.transaction_id,
            order.out_trade_no,
            order.openid,
            "NATIVE",
            REFUND,
            "OTHERS",
            "CNY",
            "0.00",
            "0.00",
            refund.refund_id,
            refund.out_refund_no,
            _format_yuan(refund.amount_fen),
            "0.00",
            "ORIGINAL",
            refund.status,
            order.fields["description"],
            order.fields["attach"] or "",
            f"{_format_yuan(fee)}000",
            f"{BILL_FEE_RATE_PERCENT}%",
            _format_yuan(order.amount_fen),
            _format_yuan(refund.amount_fen),
            "",
        ]
    )
    return line, 0, refund.amount_fen, fee, order.amount_fen, refund.amount_fen


def build_trade_bill(config, orders, bill_date, bill_type):
    """Return the bill bytes for `bill_date` in China Standard Time, or None.

    Payment lines come from orders paid that day, and refund lines from
    refunds created that day. None means the day has no line of `bill_type`.
    """
    entries = []
    for order in orders:
        if bill_type in ("ALL", "SUCCESS") and order.success_time is not None:
            if order.success_time.date() == bill_date:
                entries.append((order.success_time, _payment_bill_line(config, order)))
        if bill_type in ("ALL", "REFUND"):
            for refund in order.refunds:
                if refund.created_at.date() == bill_date:
                    entries.append(
                        (refund.created_at, _refund_bill_line(config, refund))
                    )
    if not entries:
        return None
    entries.sort(key=lambda entry: entry[0])

    lines = [BILL_HEADER]
    totals = [0, 0, 0, 0, 0]
    for _, (line, *amounts) in entries:
        lines.append(line)
        totals = [total + amount for total, amount in zip(totals, amounts, strict=True)]
    settlement, refunded, fee, ordered, requested = totals
    lines.append(BILL_SUMMARY_HEADER)
    lines.append(
        _bill_line(
            [
                len(entries),
                _format_yuan(settlement),
                _format_yuan(refunded),
                "0.00",
                f"{_format_yuan(fee)}000",
                _format_yuan(ordered),
                _format_yuan(requested),
            ]
        )
    )
    return ("\r\n".join(lines) + "\r\n").encode("utf-8")


def _validate_bill_date(text, today):
    if not isinstance(text, str) or not BILL_DATE_PATTERN.fullmatch(text):
        raise ApiError(400, "PARAM_ERROR", "bill_date must be YYYY-MM-DD")
    try:
        bill_date = date.fromisoformat(text)
    except ValueError:
        raise ApiError(400, "PARAM_ERROR", f"bill_date {text} is not a date") from None
    # NOTE: the real gateway builds a day's bill the next morning and responds
    # with STATEMENT_CREATING until then. The sandbox serves today's
    # bill at once, so tests need not wait. The INVALID_REQUEST code for a
    # future or too old date is assumed.
    if bill_date > today:
        raise ApiError(400, "INVALID_REQUEST", f"bill_date {text} is in the future")
    if bill_date < today - BILL_MAX_AGE:
        raise ApiError(
            400, "INVALID_REQUEST", f"bill_date {text} is older than three months"
        )
    return bill_date


# Notifications.


def build_event(config, resource, event_type, summary, original_type, create_time):
    """Return a new notification id and the JSON body of an encrypted event."""
    plaintext = json.dumps(resource, ensure_ascii=False).encode("utf-8")
    encrypted = encrypt_resource(config, plaintext, original_type)
    notification_id = "EV-" + secrets.token_hex(10)
    event = {
        "id": notification_id,
        "create_time": format_time(create_time),
        "resource_type": "encrypt-resource",
        "event_type": event_type,
        "summary": summary,
        "resource": {"original_type": original_type, **encrypted},
    }
    return notification_id, json.dumps(event, ensure_ascii=False).encode("utf-8")


def build_notification(config, order):
    """Return the notification id and the JSON body for a paid order."""
    transaction = order_resource(config, order, order.success_time)
    return build_event(
        config,
        transaction,
        "TRANSACTION.SUCCESS",
        "支付成功",
        "transaction",
        order.success_time,
    )


def build_refund_notification(config, refund):
    """Return the notification id and the JSON body for a refund that succeeded.

    The decrypted resource has the fields of the API's refund notification.
    associated_data is "refund" here, but one WeChat Pay example shows it
    empty, so clients must use whatever value the event carries.
    """
    order = refund.order
    resource = {
        "mchid": config.mchid,
        "out_trade_no": order.out_trade_no,
        "transaction_id": order.transaction_id,
        "out_refund_no": refund.out_refund_no,
        "refund_id": refund.refund_id,
        "refund_status": refund.status,
        "success_time": format_time(refund.success_time),
        "user_received_account": USER_RECEIVED_ACCOUNT,
        "amount": {
            "total": order.amount_fen,
            "refund": refund.amount_fen,
            "payer_total": order.amount_fen,
            "payer_refund": refund.amount_fen,
        },
    }
    return build_event(
        config, resource, "REFUND.SUCCESS", "退款成功", "refund", refund.success_time
    )


class Notifier:
    """Sends notifications from background threads, retrying unaccepted ones."""

    def __init__(self, config, book, keyring):
        self.config = config
        self.book = book
        self.keyring = keyring

    def start(self, target, label):
        """Deliver the notification of an Order or Refund in a new thread.

        `label` names the target in logs, like `out_trade_no=LB0001`.
        """
        thread = threading.Thread(
            target=self.deliver,
            args=(target, label),
            name=f"notify-{label}",
            daemon=True,
        )
        thread.start()

    def deliver(self, target, label):
        """Send the target's notification until the merchant accepts it.

        The merchant accepts with 200 or 204. Every other status, and every
        connection error, is retried after the next of config.notify_delays.
        Each attempt is signed again with a fresh timestamp and nonce over the
        same body, so repeated deliveries carry the same notification id.
        Attempts are signed by the newest platform key at the time.
        """
        with self.book.lock:
            body = target.notification_body
            notify_url = target.notify_url
            notification_id = target.notification_id
        attempts = 1 + len(self.config.notify_delays)
        for attempt in range(1, attempts + 1):
            outcome = self._send_once(notify_url, body)
            accepted = outcome in ("200", "204")
            with self.book.lock:
                target.notification_attempts.append(
                    {
                        "attempt": attempt,
                        "outcome": outcome,
                        "at": format_time(now_cst()),
                    }
                )
                if accepted:
                    target.notification_accepted = True
            if accepted:
                log.info(
                    "notification accepted %s notification_id=%s attempt=%s",
                    label,
                    notification_id,
                    attempt,
                )
                return
            if attempt == attempts:
                break
            delay = self.config.notify_delays[attempt - 1]
            log.warning(
                "notification not accepted %s notification_id=%s "
                "attempt=%s outcome=%s retry_in=%ss",
                label,
                notification_id,
                attempt,
                outcome,
                delay,
            )
            time.sleep(delay)
        log.error(
            "notification abandoned %s notification_id=%s attempts=%s last_outcome=%s",
            label,
            notification_id,
            attempts,
            outcome,
        )

    def _send_once(self, notify_url, body):
        """Return the response status as text, or the error class name."""
        headers = platform_signature_headers(self.keyring.current(), body)
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
    keyring = PlatformKeyring(
        make_platform_key(
            config.platform_serial, config.platform_private_key, now_cst()
        )
    )
    notifier = Notifier(config, book, keyring)
    app.extensions["wechatpay_sandbox"] = {
        "book": book,
        "notifier": notifier,
        "keyring": keyring,
    }

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
        if request.path == BILL_DOWNLOAD_PATH and response.status_code == 200:
            # WeChat Pay documents that a bill file comes without a signature,
            # so the merchant checks the hash from the signed tradebill response.
            return response
        if request.path == "/v3/certificates":
            signer = keyring.certificate_signer()
        else:
            signer = keyring.current()
        response.headers.update(platform_signature_headers(signer, response.get_data()))
        return response

    _add_gateway_routes(app, config, book)
    _add_refund_routes(app, config, book, notifier)
    _add_bill_routes(app, config, book)
    _add_certificate_routes(app, config, keyring)
    _add_sandbox_routes(app, config, book, notifier, keyring)
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
            if order.trade_state in PAID_STATES:
                raise ApiError(400, "ORDERPAID", "order is paid and cannot be closed")
            order.trade_state = CLOSED
        log.info("order closed out_trade_no=%s", out_trade_no)
        return "", 204


def _repeat_order(order, fields, now):
    """Return the response to a create request for an existing out_trade_no."""
    state = order.state_at(now)
    if state in PAID_STATES:
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


def _find_refund(book, out_refund_no):
    refund = book.refunds.get(out_refund_no)
    if refund is None:
        raise ApiError(
            404, "RESOURCE_NOT_EXISTS", f"refund {out_refund_no} does not exist"
        )
    return refund


def _add_refund_routes(app, config, book, notifier):
    @app.post("/v3/refund/domestic/refunds")
    def create_refund():
        now = now_cst()
        fields = validate_refund_request(_json_body())
        with book.lock:
            existing = book.refunds.get(fields["out_refund_no"])
            if existing is not None:
                return refund_resource(config, _repeat_refund(existing, fields))
            order = book.find_paid_order(
                fields["out_trade_no"], fields["transaction_id"]
            )
            check_refund_allowed(order, fields, now)
            refund = Refund(
                out_refund_no=fields["out_refund_no"],
                refund_id=_new_refund_id(now),
                order=order,
                amount_fen=fields["refund_fen"],
                reason=fields["reason"],
                notify_url=fields["notify_url"],
                created_at=now,
            )
            book.refunds[refund.out_refund_no] = refund
            order.refunds.append(refund)
            order.trade_state = REFUND
            resource = refund_resource(config, refund)
        log.info(
            "refund accepted out_refund_no=%s out_trade_no=%s amount_fen=%s",
            refund.out_refund_no,
            order.out_trade_no,
            refund.amount_fen,
        )
        timer = threading.Timer(
            config.refund_delay, _complete_refund, args=(config, book, notifier, refund)
        )
        timer.daemon = True
        timer.start()
        return resource

    @app.get("/v3/refund/domestic/refunds/<out_refund_no>")
    def query_refund(out_refund_no):
        with book.lock:
            return refund_resource(config, _find_refund(book, out_refund_no))


def _complete_refund(config, book, notifier, refund):
    """Turn a PROCESSING refund to SUCCESS and send its notification, if any."""
    with book.lock:
        if refund.status != REFUND_PROCESSING:
            return
        refund.status = REFUND_SUCCESS
        refund.success_time = now_cst()
        if refund.notify_url is not None:
            refund.notification_id, refund.notification_body = (
                build_refund_notification(config, refund)
            )
    log.info(
        "refund succeeded out_refund_no=%s refund_id=%s",
        refund.out_refund_no,
        refund.refund_id,
    )
    if refund.notify_url is not None:
        notifier.start(refund, f"out_refund_no={refund.out_refund_no}")


def _add_bill_routes(app, config, book):
    @app.get("/v3/bill/tradebill")
    def apply_trade_bill():
        today = now_cst().date()
        bill_date = _validate_bill_date(request.args.get("bill_date"), today)
        bill_type = request.args.get("bill_type", "ALL")
        if bill_type not in BILL_TYPES:
            raise ApiError(
                400, "PARAM_ERROR", f"bill_type must be one of {', '.join(BILL_TYPES)}"
            )
        if request.args.get("tar_type"):
            raise ApiError(
                400, "PARAM_ERROR", "the sandbox serves uncompressed bills only"
            )
        with book.lock:
            content = build_trade_bill(
                config, list(book.by_out_trade_no.values()), bill_date, bill_type
            )
            if content is None:
                raise ApiError(
                    400,
                    "NO_STATEMENT_EXIST",
                    f"no bill for {bill_date}: nothing was paid or refunded that day",
                )
            clock = time.monotonic()
            expired = [token for token, (_, end) in book.bills.items() if end < clock]
            for token in expired:
                del book.bills[token]
            token = secrets.token_urlsafe(24)
            book.bills[token] = (content, clock + BILL_URL_LIFETIME_SECONDS)
        log.info(
            "trade bill prepared bill_date=%s bill_type=%s bytes=%s",
            bill_date,
            bill_type,
            len(content),
        )
        return {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(content).hexdigest(),
            "download_url": f"{request.host_url.rstrip('/')}{BILL_DOWNLOAD_PATH}"
            f"?token={token}",
        }

    @app.get(BILL_DOWNLOAD_PATH)
    def download_bill():
        token = request.args.get("token", "")
        with book.lock:
            entry = book.bills.get(token)
        if entry is None or entry[1] < time.monotonic():
            raise ApiError(
                400,
                "INVALID_REQUEST",
                "download_url is unknown or expired, so request the bill again",
            )
        return Response(entry[0], mimetype="application/octet-stream")


def _add_certificate_routes(app, config, keyring):
    @app.get("/v3/certificates")
    def certificates():
        now = now_cst()
        with keyring.lock:
            keys = list(keyring.keys)
            keyring.certificate_downloads += 1
        data = [
            {
                "serial_no": key.serial,
                "effective_time": format_time(key.effective_time),
                "expire_time": format_time(key.expire_time),
                "encrypt_certificate": encrypt_resource(
                    config, key.certificate_pem, "certificate"
                ),
            }
            for key in keys
            if key.expire_time > now
        ]
        return {"data": data}


def _sandbox_json_body():
    payload = request.get_json(silent=True)
    if not isinstance(payload, dict):
        raise ApiError(400, "PARAM_ERROR", "body must be a JSON object")
    return payload


def _add_sandbox_routes(app, config, book, notifier, keyring):
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
            if state in PAID_STATES:
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
        notifier.start(order, f"out_trade_no={order.out_trade_no}")
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
        notifier.start(order, f"out_trade_no={out_trade_no}")
        return {"out_trade_no": out_trade_no, "notification_id": notification_id}, 202

    @app.get("/_sandbox/orders/<out_trade_no>")
    def inspect_order(out_trade_no):
        with book.lock:
            order = _find_order(book, out_trade_no)
            return order_inspection(config, order, now_cst())

    @app.get("/_sandbox/refunds/<out_refund_no>")
    def inspect_refund(out_refund_no):
        with book.lock:
            return refund_inspection(config, _find_refund(book, out_refund_no))

    @app.post("/_sandbox/rotate-platform-key")
    def rotate_platform_key():
        new_key, previous = keyring.rotate()
        log.info(
            "platform key rotated serial=%s previous_serial=%s",
            new_key.serial,
            previous.serial,
        )
        return {"serial_no": new_key.serial, "previous_serial_no": previous.serial}

    @app.get("/_sandbox/platform-certificates")
    def inspect_platform_certificates():
        with keyring.lock:
            keys = list(keyring.keys)
            downloads = keyring.certificate_downloads
        return {
            "serials": [key.serial for key in keys],
            "signing_serial": keys[-1].serial,
            "certificates_signing_serial": keyring.certificate_signer().serial,
            "certificate_downloads": downloads,
        }


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


def _parse_seconds(text):
    try:
        seconds = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"invalid seconds {text!r}: give a number, like 0.5"
        ) from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("seconds must not be negative")
    return seconds


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
    parser.add_argument(
        "--refund-delay",
        type=_parse_seconds,
        default=SandboxConfig.refund_delay,
        help="seconds a refund stays PROCESSING before it succeeds (default 1)",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    ensure_dev_keys(args.keys)
    config = SandboxConfig.from_keys_dir(
        args.keys, notify_delays=args.notify_delays, refund_delay=args.refund_delay
    )
    serve(create_app(config), "wechatpay sandbox", args.host, args.port, args.port_file)


if __name__ == "__main__":
    main()

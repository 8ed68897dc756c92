"""Client of the WeChat Pay API v3 for Native (QR code) payments.

The client signs each request with the merchant's RSA key, verifies the
platform's signature on every 2xx response and decrypts payment and refund
notifications with the APIv3 key. It also refunds payments, downloads the
daily trade bill and refreshes the platform certificates when a response or
notification names a serial it does not trust yet. docs/partners.md describes
the protocol, and docs/payments.md explains why the project has its own client.

Amounts are integer fen. Times sent to WeChat Pay are RFC 3339 in China
Standard Time (UTC+08:00), the offset the gateway uses in its own responses.
"""

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from urllib.parse import quote, urlsplit

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from payments.errors import (
    InvalidNotification,
    PaymentError,
    WechatPayError,
    WechatPayInvalidResponse,
    WechatPayUnavailable,
)

log = logging.getLogger(__name__)

AUTHORIZATION_SCHEME = "WECHATPAY2-SHA256-RSA2048"
USER_AGENT = "lianban/0.1"

# Signed responses and notifications older or newer than this are rejected,
# which limits how long a captured message can be replayed.
TIMESTAMP_WINDOW_SECONDS = 300

CHINA_STANDARD_TIME = timezone(timedelta(hours=8))

# WeChat Pay allows 6 to 32 letters, digits and the characters _ - | *.
OUT_TRADE_NO_PATTERN = re.compile(r"[A-Za-z0-9_\-|*]{6,32}")
DESCRIPTION_MAX_BYTES = 127
APIV3_KEY_BYTES = 32

NOTIFICATION_ALGORITHM = "AEAD_AES_256_GCM"

# Values of trade_state that a Native order can take.
TRADE_STATE_SUCCESS = "SUCCESS"
TRADE_STATE_NOTPAY = "NOTPAY"
TRADE_STATE_CLOSED = "CLOSED"
TRADE_STATE_REFUND = "REFUND"
TRADE_STATE_PAYERROR = "PAYERROR"

# Values of a refund's status.
REFUND_STATUS_SUCCESS = "SUCCESS"
REFUND_STATUS_PROCESSING = "PROCESSING"
REFUND_STATUS_CLOSED = "CLOSED"
REFUND_STATUS_ABNORMAL = "ABNORMAL"

# WeChat Pay allows 1 to 64 letters, digits and the characters _ - | * @.
OUT_REFUND_NO_PATTERN = re.compile(r"[A-Za-z0-9_\-|*@]{1,64}")
# NOTE: the refund API documents reason as string[1,80] without saying whether
# it counts characters or UTF-8 bytes. This limit counts characters.
REFUND_REASON_MAX_CHARS = 80

# An unknown Wechatpay-Serial refreshes the platform certificates at most once
# in this many seconds, so a stream of forged notifications cannot make the
# client download the certificates on every request.
CERTIFICATE_REFRESH_INTERVAL_SECONDS = 60.0

BILL_HASH_TYPE = "SHA1"
# Hosts that may serve a bill's download_url besides the configured base_url.
BILL_DOWNLOAD_HOST_SUFFIX = ".mch.weixin.qq.com"

HEADER_TIMESTAMP = "Wechatpay-Timestamp"
HEADER_NONCE = "Wechatpay-Nonce"
HEADER_SIGNATURE = "Wechatpay-Signature"
HEADER_SERIAL = "Wechatpay-Serial"


def _load_private_key(value):
    if isinstance(value, str):
        value = value.encode("ascii")
    if isinstance(value, bytes):
        value = serialization.load_pem_private_key(value, password=None)
    if not isinstance(value, rsa.RSAPrivateKey):
        raise ValueError("merchant_private_key must be an RSA private key or its PEM")
    return value


def _load_public_key(value):
    if isinstance(value, str):
        value = value.encode("ascii")
    if isinstance(value, bytes):
        value = serialization.load_pem_public_key(value)
    if not isinstance(value, rsa.RSAPublicKey):
        raise ValueError("platform_public_key must be an RSA public key or its PEM")
    return value


@dataclass(frozen=True)
class WechatPayConfig:
    """Merchant identity, keys and endpoints for one WeChat Pay merchant.

    The private key and the public key may be given as PEM bytes or as loaded
    `cryptography` keys, and the APIv3 key as 32 ASCII characters or bytes.
    They are loaded when the config is created.
    """

    base_url: str
    mchid: str
    appid: str
    merchant_serial: str
    merchant_private_key: rsa.RSAPrivateKey | bytes = field(repr=False)
    platform_serial: str
    platform_public_key: rsa.RSAPublicKey | bytes = field(repr=False)
    apiv3_key: bytes | str = field(repr=False)
    notify_url: str

    def __post_init__(self):
        apiv3_key = self.apiv3_key
        if isinstance(apiv3_key, str):
            apiv3_key = apiv3_key.encode("ascii")
        if len(apiv3_key) != APIV3_KEY_BYTES:
            raise ValueError(
                f"apiv3_key must be {APIV3_KEY_BYTES} bytes, got {len(apiv3_key)}"
            )
        values = {
            "base_url": self.base_url.rstrip("/"),
            "merchant_serial": self.merchant_serial.upper(),
            "platform_serial": self.platform_serial.upper(),
            "merchant_private_key": _load_private_key(self.merchant_private_key),
            "platform_public_key": _load_public_key(self.platform_public_key),
            "apiv3_key": apiv3_key,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_keys_dir(
        cls, keys_dir: str | Path, base_url: str, notify_url: str
    ) -> "WechatPayConfig":
        """Load the merchant's settings and keys from `keys_dir/wechatpay/`.

        The folder contains `wechatpay.json` (mchid, appid, merchant_serial,
        platform_serial, apiv3_key), `merchant_private.pem` and
        `platform_public.pem`.
        """
        folder = Path(keys_dir) / "wechatpay"
        settings = json.loads((folder / "wechatpay.json").read_text("utf-8"))
        return cls(
            base_url=base_url,
            mchid=settings["mchid"],
            appid=settings["appid"],
            merchant_serial=settings["merchant_serial"],
            merchant_private_key=(folder / "merchant_private.pem").read_bytes(),
            platform_serial=settings["platform_serial"],
            platform_public_key=(folder / "platform_public.pem").read_bytes(),
            apiv3_key=settings["apiv3_key"],
            notify_url=notify_url,
        )


@dataclass(frozen=True)
class OrderState:
    """An order as WeChat Pay reports it when queried."""

    out_trade_no: str
    trade_state: str
    transaction_id: str | None
    amount_fen: int
    success_time: datetime | None
    openid: str | None


@dataclass(frozen=True)
class Transaction:
    """The decrypted transaction of one payment notification."""

    out_trade_no: str
    transaction_id: str
    trade_state: str
    amount_fen: int
    payer_total_fen: int | None
    success_time: datetime | None
    openid: str | None
    notification_id: str | None


@dataclass(frozen=True)
class RefundState:
    """A refund as a refund response, a refund query or a refund notification shows it.

    `status` is one of the REFUND_STATUS_* values. `amount_fen` is the amount
    refunded by this refund, and `total_fen` is the order's total.
    `notification_id` is set only on a refund read from a notification.
    """

    out_refund_no: str
    refund_id: str
    out_trade_no: str
    status: str
    amount_fen: int
    success_time: datetime | None
    transaction_id: str | None = None
    total_fen: int | None = None
    notification_id: str | None = None


@dataclass(frozen=True)
class BillRow:
    """One payment or refund line of a daily trade bill.

    `trade_state` is SUCCESS on a payment line and REFUND on a refund line.
    `amount_fen` is the bill's settlement amount (应结订单金额), which is the
    amount paid on a payment line. `refund_fen` is the amount refunded
    (退款金额), 0 on a payment line. The refund fields are None on a payment
    line. `trade_time` is the bill's 交易时间 at +08:00.
    """

    out_trade_no: str
    transaction_id: str
    trade_state: str
    amount_fen: int
    refund_fen: int
    out_refund_no: str | None
    trade_time: datetime
    refund_id: str | None = None
    refund_status: str | None = None


@dataclass(frozen=True)
class PlatformCertificate:
    """A platform certificate from /v3/certificates, decrypted and loaded."""

    serial_no: str
    effective_time: datetime
    expire_time: datetime
    public_key: rsa.RSAPublicKey = field(repr=False)
    certificate_pem: bytes = field(repr=False)


class PlatformCertificates:
    """Thread-safe store of the platform public keys a client trusts, by serial.

    It starts with the configured platform key, which never expires here.
    `WechatPayClient.refresh_platform_certificates` adds the keys listed by
    /v3/certificates until their expire_time. The store also records when the
    last refresh started, so that an unknown serial triggers a refresh at most
    once per `min_refresh_interval` seconds.
    """

    def __init__(
        self,
        platform_serial: str,
        platform_public_key: rsa.RSAPublicKey,
        min_refresh_interval: float = CERTIFICATE_REFRESH_INTERVAL_SECONDS,
    ):
        self.min_refresh_interval = min_refresh_interval
        # Held for a whole refresh, so concurrent callers with the same unknown
        # serial wait for one download instead of each starting one. It is
        # reentrant because a refresh for an unknown serial calls
        # refresh_platform_certificates, which takes it too.
        self.refresh_lock = threading.RLock()
        self._lock = threading.Lock()
        self._keys = {platform_serial.upper(): (platform_public_key, None)}
        self._last_refresh = None

    def public_key(self, serial: str, now: datetime | None = None):
        """Return the trusted key for `serial`, or None if unknown or expired."""
        with self._lock:
            entry = self._keys.get(serial.upper())
        if entry is None:
            return None
        public_key, expire_time = entry
        now = now or datetime.now(UTC)
        if expire_time is not None and now >= expire_time:
            return None
        return public_key

    def serials(self) -> list[str]:
        """Return the serials of the trusted keys, expired ones included."""
        with self._lock:
            return sorted(self._keys)

    def add(self, certificates: list[PlatformCertificate]) -> None:
        """Trust each certificate's key under its serial until its expire_time."""
        with self._lock:
            for certificate in certificates:
                self._keys[certificate.serial_no.upper()] = (
                    certificate.public_key,
                    certificate.expire_time,
                )

    def record_refresh(self) -> None:
        with self._lock:
            self._last_refresh = time.monotonic()

    def seconds_until_refresh(self) -> float:
        """Return how long an automatic refresh must still wait, 0 if it may run now."""
        with self._lock:
            if self._last_refresh is None:
                return 0.0
            elapsed = time.monotonic() - self._last_refresh
        return max(0.0, self.min_refresh_interval - elapsed)


# One store per merchant, base_url and configured platform key, shared by every
# client built from an equal config. The hub builds a client per request, and
# without sharing each request would forget the refreshed keys and the time of
# the last refresh.
_shared_certificates = {}
_shared_certificates_lock = threading.Lock()


def shared_platform_certificates(config: "WechatPayConfig") -> PlatformCertificates:
    """Return the process-wide PlatformCertificates for `config`."""
    key_der = config.platform_public_key.public_bytes(
        serialization.Encoding.DER,
        serialization.PublicFormat.SubjectPublicKeyInfo,
    )
    identity = (
        config.base_url,
        config.mchid,
        config.platform_serial,
        hashlib.sha256(key_der).hexdigest(),
    )
    with _shared_certificates_lock:
        store = _shared_certificates.get(identity)
        if store is None:
            store = PlatformCertificates(
                config.platform_serial, config.platform_public_key
            )
            _shared_certificates[identity] = store
        return store


# Input checks shared by the order calls. Each raises ValueError naming the value.


def validate_out_trade_no(out_trade_no):
    """Raise ValueError unless `out_trade_no` is 6 to 32 of [A-Za-z0-9_-|*]."""
    if not isinstance(out_trade_no, str) or not OUT_TRADE_NO_PATTERN.fullmatch(
        out_trade_no
    ):
        raise ValueError(
            f"out_trade_no {out_trade_no!r} is invalid: use 6 to 32 letters, "
            "digits or the characters _ - | *"
        )


def validate_description(description):
    """Raise ValueError unless `description` is non-blank and fits 127 bytes."""
    if not isinstance(description, str) or not description.strip():
        raise ValueError("description must be a non-empty string")
    size = len(description.encode("utf-8"))
    if size > DESCRIPTION_MAX_BYTES:
        raise ValueError(
            f"description is {size} bytes in UTF-8, more than the maximum of "
            f"{DESCRIPTION_MAX_BYTES}"
        )


def validate_amount_fen(amount_fen, name="amount_fen"):
    """Raise ValueError unless the amount is a positive int (bool rejected)."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise ValueError(f"{name} must be an integer number of fen, got {amount_fen!r}")
    if amount_fen <= 0:
        raise ValueError(f"{name} must be positive, got {amount_fen}")


def validate_out_refund_no(out_refund_no):
    """Raise ValueError unless `out_refund_no` is 1 to 64 of [A-Za-z0-9_-|*@]."""
    if not isinstance(out_refund_no, str) or not OUT_REFUND_NO_PATTERN.fullmatch(
        out_refund_no
    ):
        raise ValueError(
            f"out_refund_no {out_refund_no!r} is invalid: use 1 to 64 letters, "
            "digits or the characters _ - | * @"
        )


def validate_refund_reason(reason):
    """Raise ValueError unless `reason` is None or 1 to 80 non-blank characters."""
    if reason is None:
        return
    if not isinstance(reason, str) or not reason.strip():
        raise ValueError("reason must be None or a non-empty string")
    if len(reason) > REFUND_REASON_MAX_CHARS:
        raise ValueError(
            f"reason is {len(reason)} characters, more than the maximum of "
            f"{REFUND_REASON_MAX_CHARS}"
        )


def format_time_expire(time_expire: datetime) -> str:
    """Format an aware datetime as RFC 3339 seconds at +08:00."""
    if not isinstance(time_expire, datetime) or time_expire.utcoffset() is None:
        raise ValueError(
            f"time_expire must be a timezone-aware datetime, got {time_expire!r}"
        )
    return time_expire.astimezone(CHINA_STANDARD_TIME).isoformat(timespec="seconds")


def parse_rfc3339(text):
    """Parse an RFC 3339 time with an offset into an aware datetime."""
    if not isinstance(text, str):
        raise ValueError(f"time must be an RFC 3339 string, got {text!r}")
    parsed = datetime.fromisoformat(text)
    if parsed.utcoffset() is None:
        raise ValueError(f"time {text!r} has no UTC offset")
    return parsed


# Signatures. Both directions use RSA-SHA256 with PKCS#1 v1.5 padding over
# lines joined and ended by "\n", where the last line is the raw body.


def _signed_message(*lines, body):
    head = "".join(f"{line}\n" for line in lines).encode("utf-8")
    return head + body + b"\n"


def build_authorization(config, method, signed_url, body, timestamp=None, nonce=None):
    """Build the Authorization header value for one request.

    `signed_url` is the path with its query string, exactly as sent.
    """
    timestamp = str(int(time.time() if timestamp is None else timestamp))
    nonce = nonce or secrets.token_hex(16).upper()
    message = _signed_message(method.upper(), signed_url, timestamp, nonce, body=body)
    signature = config.merchant_private_key.sign(
        message, padding.PKCS1v15(), hashes.SHA256()
    )
    fields = {
        "mchid": config.mchid,
        "nonce_str": nonce,
        "signature": base64.b64encode(signature).decode("ascii"),
        "timestamp": timestamp,
        "serial_no": config.merchant_serial,
    }
    joined = ",".join(f'{name}="{value}"' for name, value in fields.items())
    return f"{AUTHORIZATION_SCHEME} {joined}"


class _SignatureRejected(Exception):
    """A platform signature that failed one check. The message names the check."""


class _UnknownSerial(_SignatureRejected):
    """A Wechatpay-Serial that names no trusted platform key."""

    def __init__(self, serial):
        super().__init__(f"{HEADER_SERIAL} {serial} is not a trusted platform serial")
        self.serial = serial


def _get_header(headers, name):
    # Werkzeug and requests headers ignore case, but a plain dict does not.
    value = headers.get(name)
    if value is None and isinstance(headers, Mapping):
        lowered = name.lower()
        for key, item in headers.items():
            if key.lower() == lowered:
                return item
    return value


def _check_signature(headers, body, find_public_key, now=None):
    """Check the Wechatpay-* headers over `body` with the key for their serial.

    `find_public_key(serial)` returns the trusted key or None. Raises
    _UnknownSerial when it returns None, and _SignatureRejected naming the
    check for a missing header, a timestamp more than TIMESTAMP_WINDOW_SECONDS
    from `now` or a signature that does not verify.
    """
    values = {}
    for name in (HEADER_TIMESTAMP, HEADER_NONCE, HEADER_SIGNATURE, HEADER_SERIAL):
        value = _get_header(headers, name)
        if not value:
            raise _SignatureRejected(f"missing header {name}")
        values[name] = value

    serial = values[HEADER_SERIAL]
    public_key = find_public_key(serial.upper())
    if public_key is None:
        raise _UnknownSerial(serial)

    timestamp_text = values[HEADER_TIMESTAMP]
    try:
        timestamp = int(timestamp_text)
    except ValueError:
        raise _SignatureRejected(
            f"{HEADER_TIMESTAMP} {timestamp_text!r} is not Unix seconds"
        ) from None
    now = time.time() if now is None else now
    if abs(now - timestamp) > TIMESTAMP_WINDOW_SECONDS:
        raise _SignatureRejected(
            f"{HEADER_TIMESTAMP} {timestamp} is more than "
            f"{TIMESTAMP_WINDOW_SECONDS} seconds from the local clock"
        )

    try:
        signature = base64.b64decode(values[HEADER_SIGNATURE], validate=True)
    except (binascii.Error, ValueError):
        raise _SignatureRejected(f"{HEADER_SIGNATURE} is not base64") from None
    message = _signed_message(timestamp_text, values[HEADER_NONCE], body=body)
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise _SignatureRejected(
            f"{HEADER_SIGNATURE} does not verify with the platform public key "
            f"of serial {serial}"
        ) from None


def verify_platform_signature(config, headers, body, now=None):
    """Check the Wechatpay-* headers of a response or notification over `body`.

    Only the configured platform key is trusted. Raises _SignatureRejected
    naming the failed check: a missing header, a serial other than the
    configured platform serial, a timestamp more than TIMESTAMP_WINDOW_SECONDS
    from `now`, or a signature that does not verify.
    """

    def find_public_key(serial):
        if serial == config.platform_serial:
            return config.platform_public_key
        return None

    try:
        _check_signature(headers, body, find_public_key, now)
    except _UnknownSerial as error:
        raise _SignatureRejected(
            f"{HEADER_SERIAL} {error.serial} is not the configured platform serial"
        ) from None


class WechatPayClient:
    """Native payments, refunds, bills and certificates through the WeChat Pay API v3.

    Every method raises ValueError for invalid input before any request,
    WechatPayError for a non-2xx response, WechatPayUnavailable when no
    response arrives, and WechatPayInvalidResponse for a 2xx response that
    fails verification.

    A response or notification signed under a serial that the client does not
    trust yet makes it refresh the platform certificates, at most once per
    `certificates.min_refresh_interval` (CERTIFICATE_REFRESH_INTERVAL_SECONDS
    by default). The trusted keys live in `certificates`, which by default is
    shared by all clients built from an equal config.
    """

    def __init__(
        self,
        config: WechatPayConfig,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 10),
        certificates: PlatformCertificates | None = None,
    ):
        self.config = config
        self.session = session or requests.Session()
        self.timeout = timeout
        self.certificates = certificates or shared_platform_certificates(config)
        # A base_url with a path prefix is part of the URL that gets signed.
        self._base_path = urlsplit(config.base_url).path.rstrip("/")

    # Orders.

    def create_native_order(
        self,
        out_trade_no: str,
        description: str,
        amount_fen: int,
        time_expire: datetime,
    ) -> str:
        """Create a Native order and return its code_url for the QR code.

        Creating the same order again with the same fields returns the same
        code_url. Different fields under the same out_trade_no raise
        WechatPayError, as does an order already paid (`ORDERPAID`) or closed.
        """
        validate_out_trade_no(out_trade_no)
        validate_description(description)
        validate_amount_fen(amount_fen)
        expire_text = format_time_expire(time_expire)
        payload = {
            "appid": self.config.appid,
            "mchid": self.config.mchid,
            "description": description,
            "out_trade_no": out_trade_no,
            "time_expire": expire_text,
            "notify_url": self.config.notify_url,
            "amount": {"total": amount_fen, "currency": "CNY"},
        }
        reference = f"out_trade_no={out_trade_no}"
        response = self._send(
            "POST", "/v3/pay/transactions/native", "create", reference, payload
        )
        data = self._read_json(response, "create", reference)
        code_url = data.get("code_url")
        if not isinstance(code_url, str) or not code_url:
            raise self._invalid_response("create", reference, "no code_url")
        log.info(
            "wechatpay order created out_trade_no=%s amount_fen=%s time_expire=%s",
            out_trade_no,
            amount_fen,
            expire_text,
        )
        return code_url

    def query_order(self, out_trade_no: str) -> OrderState:
        """Return the order's current OrderState.

        An order unknown to WeChat Pay raises WechatPayError with status 404
        and code `ORDER_NOT_EXIST`.
        """
        validate_out_trade_no(out_trade_no)
        path = (
            f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}"
            f"?mchid={quote(self.config.mchid, safe='')}"
        )
        reference = f"out_trade_no={out_trade_no}"
        response = self._send("GET", path, "query", reference)
        data = self._read_json(response, "query", reference)
        try:
            return self._parse_order(data, out_trade_no)
        except (KeyError, TypeError, ValueError) as error:
            raise self._invalid_response("query", reference, str(error)) from None

    def close_order(self, out_trade_no: str) -> None:
        """Close an unpaid order so its QR code can no longer be paid.

        Closing a paid order raises WechatPayError with code `ORDERPAID`.
        """
        validate_out_trade_no(out_trade_no)
        path = f"/v3/pay/transactions/out-trade-no/{quote(out_trade_no, safe='')}/close"
        reference = f"out_trade_no={out_trade_no}"
        self._send("POST", path, "close", reference, {"mchid": self.config.mchid})
        log.info("wechatpay order closed out_trade_no=%s", out_trade_no)

    # Refunds.

    def refund(
        self,
        out_trade_no: str,
        out_refund_no: str,
        amount_fen: int,
        total_fen: int,
        reason: str | None = None,
        notify_url: str | None = None,
    ) -> RefundState:
        """Refund `amount_fen` of a paid order and return the refund's RefundState.

        `total_fen` must be the order's total. The status is usually
        PROCESSING at first, so poll query_refund or wait for the refund
        notification. Sending the same out_refund_no again returns the
        existing refund instead of refunding twice, so a retry after
        WechatPayUnavailable must reuse the out_refund_no. `notify_url`
        receives the refund notification. Without it, WeChat Pay uses the
        refund URL configured on the merchant platform, if any.

        Refunding an unpaid or unknown order raises WechatPayError with code
        `RESOURCE_NOT_EXISTS`. A refund that would bring the refunded total
        above the amount paid raises WechatPayError as well.
        """
        validate_out_trade_no(out_trade_no)
        validate_out_refund_no(out_refund_no)
        validate_amount_fen(amount_fen)
        validate_amount_fen(total_fen, "total_fen")
        if amount_fen > total_fen:
            raise ValueError(
                f"amount_fen {amount_fen} is more than total_fen {total_fen}"
            )
        validate_refund_reason(reason)
        if notify_url is not None and (
            not isinstance(notify_url, str) or not notify_url
        ):
            raise ValueError("notify_url must be None or a non-empty URL")

        payload = {"out_trade_no": out_trade_no, "out_refund_no": out_refund_no}
        if reason is not None:
            payload["reason"] = reason
        if notify_url is not None:
            payload["notify_url"] = notify_url
        payload["amount"] = {
            "refund": amount_fen,
            "total": total_fen,
            "currency": "CNY",
        }
        reference = f"out_refund_no={out_refund_no}"
        response = self._send(
            "POST", "/v3/refund/domestic/refunds", "refund", reference, payload
        )
        state = self._read_refund_response(response, "refund", out_refund_no)
        if state.out_trade_no != out_trade_no:
            raise self._invalid_response(
                "refund", reference, f"out_trade_no is {state.out_trade_no!r}"
            )
        log.info(
            "wechatpay refund accepted out_refund_no=%s out_trade_no=%s "
            "amount_fen=%s status=%s",
            out_refund_no,
            out_trade_no,
            state.amount_fen,
            state.status,
        )
        return state

    def query_refund(self, out_refund_no: str) -> RefundState:
        """Return the refund's current RefundState.

        A refund unknown to WeChat Pay raises WechatPayError with code
        `RESOURCE_NOT_EXISTS`.
        """
        validate_out_refund_no(out_refund_no)
        path = f"/v3/refund/domestic/refunds/{quote(out_refund_no, safe='')}"
        response = self._send(
            "GET", path, "refund query", f"out_refund_no={out_refund_no}"
        )
        return self._read_refund_response(response, "refund query", out_refund_no)

    # Trade bill.

    def download_trade_bill(self, bill_date: date) -> list[BillRow]:
        """Download and parse the trade bill of all payments and refunds on `bill_date`.

        The bill covers one calendar day in China Standard Time. The request
        for the download_url is signed and verified like every call. The file
        itself comes unsigned, as WeChat Pay documents, so its SHA1 must match
        the hash_value of the signed response. Returns an empty list when
        WeChat Pay responds with `NO_STATEMENT_EXIST`, because nothing was paid
        or refunded that day. `STATEMENT_CREATING` (the bill is not ready yet)
        raises WechatPayError with `retryable` true. A bill whose hash, lines
        or totals do not check out raises WechatPayInvalidResponse.
        """
        if not isinstance(bill_date, date) or isinstance(bill_date, datetime):
            raise ValueError(f"bill_date must be a datetime.date, got {bill_date!r}")
        day = bill_date.isoformat()
        reference = f"bill_date={day}"
        path = f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL"
        try:
            response = self._send("GET", path, "trade bill", reference)
        except WechatPayError as error:
            if error.code == "NO_STATEMENT_EXIST":
                log.info("wechatpay trade bill empty bill_date=%s", day)
                return []
            raise
        data = self._read_json(response, "trade bill", reference)
        download_url = data.get("download_url")
        hash_type = data.get("hash_type")
        hash_value = data.get("hash_value")
        if not isinstance(download_url, str) or not download_url:
            raise self._invalid_response("trade bill", reference, "no download_url")
        if hash_type != BILL_HASH_TYPE or not isinstance(hash_value, str):
            raise self._invalid_response(
                "trade bill",
                reference,
                f"hash_type is {hash_type!r}, expected {BILL_HASH_TYPE} with a "
                "hash_value",
            )

        content = self._download(download_url, "bill download", reference)
        digest = hashlib.sha1(content).hexdigest()
        if not hmac.compare_digest(digest, hash_value.lower()):
            raise self._invalid_response(
                "bill download",
                reference,
                f"SHA1 of the file is {digest}, but hash_value is {hash_value}",
            )
        try:
            rows = parse_trade_bill(content)
        except ValueError as error:
            raise self._invalid_response(
                "bill download", reference, str(error)
            ) from None
        log.info("wechatpay trade bill downloaded bill_date=%s rows=%s", day, len(rows))
        return rows

    # Platform certificates.

    def refresh_platform_certificates(self) -> list[PlatformCertificate]:
        """Download the platform certificates and trust the keys of the valid ones.

        The /v3/certificates response must be signed by a key the client
        already trusts, under its own serial. A listing that no trusted key
        signed raises WechatPayInvalidResponse and adds nothing, because the
        certificates are what later signatures are checked against. Each
        certificate is decrypted with the APIv3 key. Certificates past their
        expire_time are skipped. Returns the listed certificates that are now
        trusted, including any that were trusted before.
        """
        reference = f"mchid={self.config.mchid}"
        with self.certificates.refresh_lock:
            self.certificates.record_refresh()
            # refresh=False: an unknown serial here must fail, not start
            # another refresh.
            response = self._send(
                "GET", "/v3/certificates", "certificates", reference, refresh=False
            )
            data = self._read_json(response, "certificates", reference)
            try:
                listed = [self._read_certificate(item) for item in data["data"]]
            except (KeyError, TypeError, ValueError) as error:
                raise self._invalid_response(
                    "certificates", reference, str(error)
                ) from None
            now = datetime.now(UTC)
            valid = [item for item in listed if item.expire_time > now]
            self.certificates.add(valid)
        log.info(
            "wechatpay platform certificates refreshed serials=%s skipped_expired=%s",
            ",".join(item.serial_no for item in valid),
            len(listed) - len(valid),
        )
        return valid

    def _read_certificate(self, item):
        serial_no = item["serial_no"]
        if not isinstance(serial_no, str) or not serial_no:
            raise ValueError(f"serial_no is {serial_no!r}")
        encrypted = item["encrypt_certificate"]
        if not isinstance(encrypted, dict):
            raise ValueError(f"encrypt_certificate of {serial_no} is not an object")
        pem = _open_aead_resource(
            self.config.apiv3_key, encrypted, "encrypt_certificate"
        )
        certificate = x509.load_pem_x509_certificate(pem)
        public_key = certificate.public_key()
        if not isinstance(public_key, rsa.RSAPublicKey):
            raise ValueError(f"certificate {serial_no} does not hold an RSA key")
        return PlatformCertificate(
            serial_no=serial_no.upper(),
            # The listing's times rule, because WeChat Pay documents that they
            # may differ from the validity inside the PEM during a rotation.
            effective_time=parse_rfc3339(item["effective_time"]),
            expire_time=parse_rfc3339(item["expire_time"]),
            public_key=public_key,
            certificate_pem=pem,
        )

    def _refresh_for_serial(self, serial, context):
        """Refresh the certificates because `serial` is unknown, unless done recently.

        Raises _SignatureRejected when the last refresh is too recent, and the
        PaymentError of the refresh when it fails.
        """
        with self.certificates.refresh_lock:
            if self.certificates.public_key(serial) is not None:
                # Another thread refreshed while this one waited for the lock.
                return
            wait = self.certificates.seconds_until_refresh()
            if wait > 0:
                log.warning(
                    "wechatpay certificate refresh skipped serial=%s context=%s "
                    "next_allowed_in=%.0fs",
                    serial,
                    context,
                    wait,
                )
                raise _SignatureRejected(
                    f"{HEADER_SERIAL} {serial} is not a trusted platform serial, and "
                    "the platform certificates were refreshed less than "
                    f"{self.certificates.min_refresh_interval:g} seconds ago"
                )
            log.info(
                "wechatpay certificate refresh started serial=%s context=%s",
                serial,
                context,
            )
            self.refresh_platform_certificates()

    def _check_signature_or_refresh(self, headers, body, context):
        """Check a platform signature, refreshing certificates once for a new serial.

        Raises _SignatureRejected, or the PaymentError of a failed refresh.
        """
        try:
            _check_signature(headers, body, self.certificates.public_key)
            return
        except _UnknownSerial as unknown:
            serial = unknown.serial
        self._refresh_for_serial(serial, context)
        try:
            _check_signature(headers, body, self.certificates.public_key)
        except _UnknownSerial:
            raise _SignatureRejected(
                f"{HEADER_SERIAL} {serial} is not listed by /v3/certificates"
            ) from None

    # Notifications.

    def parse_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> Transaction:
        """Verify and decrypt a payment notification, as parse_notification does.

        Unlike the module function, it also trusts the refreshed platform keys,
        and refreshes them once for a Wechatpay-Serial it does not know.
        """
        try:
            self._verify_notification_signature(headers, body)
            return _read_transaction_event(self.config, body)
        except InvalidNotification as error:
            log.warning("wechatpay notification rejected reason=%s", error.reason)
            raise

    def parse_refund_notification(
        self, headers: Mapping[str, str], body: bytes
    ) -> RefundState:
        """Verify and decrypt a refund notification (event_type REFUND.*).

        The checks match parse_notification, except that a refund carries no
        appid, so only the mchid is compared. Raises InvalidNotification naming
        the first check that failed.
        """
        try:
            self._verify_notification_signature(headers, body)
            return _read_refund_event(self.config, body)
        except InvalidNotification as error:
            log.warning(
                "wechatpay refund notification rejected reason=%s", error.reason
            )
            raise

    def _verify_notification_signature(self, headers, body):
        if not isinstance(body, bytes):
            raise InvalidNotification("body must be the raw request bytes")
        try:
            self._check_signature_or_refresh(headers, body, "notification")
        except _SignatureRejected as error:
            raise InvalidNotification(str(error)) from None
        except PaymentError as error:
            raise InvalidNotification(
                f"{HEADER_SERIAL} is not trusted and refreshing the platform "
                f"certificates failed: {error}"
            ) from None

    # Transport.

    def _send(self, method, path, operation, reference, payload=None, refresh=True):
        """Send one signed request and return the verified 2xx response.

        `reference` names the object of the call in logs and errors, such as
        `out_trade_no=LB0001`. With `refresh` false, a response under an
        unknown serial fails instead of refreshing the certificates.
        """
        body = b""
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
            body = body.encode("utf-8")
        response = self._request(
            method,
            self.config.base_url + path,
            self._base_path + path,
            body,
            operation,
            reference,
            json_body=payload is not None,
        )
        try:
            if refresh:
                self._check_signature_or_refresh(
                    response.headers, response.content, operation
                )
            else:
                _check_signature(
                    response.headers, response.content, self.certificates.public_key
                )
        except _SignatureRejected as error:
            raise self._invalid_response(operation, reference, str(error)) from None
        except PaymentError as error:
            raise self._invalid_response(
                operation,
                reference,
                f"the response serial is not trusted and refreshing the platform "
                f"certificates failed: {error}",
            ) from None
        return response

    def _download(self, url, operation, reference):
        """GET a download_url with a signed request and return the unverified body."""
        parts = urlsplit(url)
        base = urlsplit(self.config.base_url)
        same_origin = (parts.scheme, parts.netloc) == (base.scheme, base.netloc)
        wechat_host = parts.scheme == "https" and (parts.hostname or "").endswith(
            BILL_DOWNLOAD_HOST_SUFFIX
        )
        if not (same_origin or wechat_host):
            raise self._invalid_response(
                operation,
                reference,
                f"download_url host {parts.netloc!r} is neither the base_url host "
                f"nor a *{BILL_DOWNLOAD_HOST_SUFFIX} host",
            )
        signed_url = parts.path + (f"?{parts.query}" if parts.query else "")
        response = self._request(
            "GET", url, signed_url, b"", operation, reference, json_body=False
        )
        return response.content

    def _request(self, method, url, signed_url, body, operation, reference, json_body):
        """Send one signed request and return the 2xx response, unverified."""
        headers = {
            "Authorization": build_authorization(self.config, method, signed_url, body),
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        if json_body:
            headers["Content-Type"] = "application/json"
        try:
            response = self.session.request(
                method,
                url,
                data=body or None,
                headers=headers,
                timeout=self.timeout,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            log.warning(
                "wechatpay unavailable operation=%s %s error=%s",
                operation,
                reference,
                type(error).__name__,
            )
            raise WechatPayUnavailable(
                f"WeChat Pay {operation} for {reference} got no response: "
                f"{type(error).__name__}"
            ) from error

        if not 200 <= response.status_code < 300:
            raise self._api_error(response, operation, reference)
        return response

    def _api_error(self, response, operation, reference):
        code = f"HTTP_{response.status_code}"
        message = response.reason or ""
        try:
            data = response.json()
        except ValueError:
            data = None
        if isinstance(data, dict):
            if isinstance(data.get("code"), str):
                code = data["code"]
            if isinstance(data.get("message"), str):
                message = data["message"]
        log.warning(
            "wechatpay request rejected operation=%s %s status=%s code=%s",
            operation,
            reference,
            response.status_code,
            code,
        )
        return WechatPayError(code, message, response.status_code)

    def _invalid_response(self, operation, reference, reason):
        log.error(
            "wechatpay response invalid operation=%s %s reason=%s",
            operation,
            reference,
            reason,
        )
        return WechatPayInvalidResponse(
            f"WeChat Pay {operation} response for {reference} is invalid: {reason}"
        )

    def _read_json(self, response, operation, reference):
        try:
            data = response.json()
        except ValueError:
            raise self._invalid_response(
                operation, reference, "body is not JSON"
            ) from None
        if not isinstance(data, dict):
            raise self._invalid_response(
                operation, reference, "body is not a JSON object"
            )
        return data

    def _parse_order(self, data, out_trade_no):
        if data["out_trade_no"] != out_trade_no:
            raise ValueError(f"out_trade_no is {data['out_trade_no']!r}")
        if data.get("mchid", self.config.mchid) != self.config.mchid:
            raise ValueError(f"mchid is {data['mchid']!r}")
        trade_state = data["trade_state"]
        if not isinstance(trade_state, str):
            raise ValueError(f"trade_state is {trade_state!r}")
        success_time = data.get("success_time")
        return OrderState(
            out_trade_no=out_trade_no,
            trade_state=trade_state,
            transaction_id=data.get("transaction_id") or None,
            amount_fen=_read_fen(data["amount"], "total"),
            success_time=parse_rfc3339(success_time) if success_time else None,
            openid=_read_openid(data),
        )

    def _read_refund_response(self, response, operation, out_refund_no):
        reference = f"out_refund_no={out_refund_no}"
        data = self._read_json(response, operation, reference)
        try:
            state = _read_refund(data, status_field="status")
        except (KeyError, TypeError, ValueError) as error:
            raise self._invalid_response(operation, reference, str(error)) from None
        if state.out_refund_no != out_refund_no:
            raise self._invalid_response(
                operation, reference, f"out_refund_no is {state.out_refund_no!r}"
            )
        return state


def _read_openid(data):
    payer = data.get("payer")
    if isinstance(payer, dict) and isinstance(payer.get("openid"), str):
        return payer["openid"] or None
    return None


def _read_fen(amount, name):
    value = amount[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"amount.{name} is {value!r}, not an integer")
    return value


def parse_notification(
    config: WechatPayConfig, headers: Mapping[str, str], body: bytes
) -> Transaction:
    """Verify, decrypt and parse one payment notification.

    The Wechatpay-* headers must carry the configured platform serial, a
    timestamp within 300 seconds and an RSA signature over the raw `body`
    bytes. The `resource` is decrypted with AES-256-GCM under the APIv3 key,
    and the transaction must name this merchant's mchid and appid. Raises
    InvalidNotification naming the first check that failed. Use
    WechatPayClient.parse_notification to accept rotated platform keys too.
    """
    try:
        _verify_notification_with_config(config, headers, body)
        return _read_transaction_event(config, body)
    except InvalidNotification as error:
        log.warning("wechatpay notification rejected reason=%s", error.reason)
        raise


def parse_refund_notification(
    config: WechatPayConfig, headers: Mapping[str, str], body: bytes
) -> RefundState:
    """Verify, decrypt and parse one refund notification with the configured key only.

    WechatPayClient.parse_refund_notification describes the checks.
    """
    try:
        _verify_notification_with_config(config, headers, body)
        return _read_refund_event(config, body)
    except InvalidNotification as error:
        log.warning("wechatpay refund notification rejected reason=%s", error.reason)
        raise


def _verify_notification_with_config(config, headers, body):
    if not isinstance(body, bytes):
        raise InvalidNotification("body must be the raw request bytes")
    try:
        verify_platform_signature(config, headers, body)
    except _SignatureRejected as error:
        raise InvalidNotification(str(error)) from None


def _open_event(config, body):
    """Return the event and its decrypted resource as JSON objects."""
    try:
        event = json.loads(body)
    except ValueError:
        raise InvalidNotification("body is not JSON") from None
    if not isinstance(event, dict):
        raise InvalidNotification("body is not a JSON object")
    if event.get("resource_type") != "encrypt-resource":
        raise InvalidNotification(
            f"resource_type is {event.get('resource_type')!r}, not encrypt-resource"
        )
    resource = event.get("resource")
    if not isinstance(resource, dict):
        raise InvalidNotification("resource is missing")
    try:
        plaintext = _open_aead_resource(config.apiv3_key, resource, "resource")
    except ValueError as error:
        raise InvalidNotification(str(error)) from None

    try:
        data = json.loads(plaintext)
    except ValueError:
        raise InvalidNotification("decrypted resource is not JSON") from None
    if not isinstance(data, dict):
        raise InvalidNotification("decrypted resource is not a JSON object")
    if data.get("mchid") != config.mchid:
        raise InvalidNotification(
            f"mchid {data.get('mchid')!r} does not match the configured mchid"
        )
    return event, data


def _read_transaction_event(config, body):
    event, data = _open_event(config, body)
    if data.get("appid") != config.appid:
        raise InvalidNotification(
            f"appid {data.get('appid')!r} does not match the configured appid"
        )
    try:
        transaction = _read_transaction(data, event.get("id"))
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidNotification(f"transaction is malformed: {error}") from None
    log.info(
        "wechatpay notification verified out_trade_no=%s transaction_id=%s "
        "trade_state=%s notification_id=%s",
        transaction.out_trade_no,
        transaction.transaction_id,
        transaction.trade_state,
        transaction.notification_id,
    )
    return transaction


def _read_refund_event(config, body):
    event, data = _open_event(config, body)
    event_type = event.get("event_type")
    if not isinstance(event_type, str) or not event_type.startswith("REFUND."):
        raise InvalidNotification(f"event_type {event_type!r} is not a refund event")
    notification_id = event.get("id")
    try:
        refund = _read_refund(
            data,
            status_field="refund_status",
            notification_id=notification_id
            if isinstance(notification_id, str)
            else None,
        )
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidNotification(f"refund is malformed: {error}") from None
    log.info(
        "wechatpay refund notification verified out_refund_no=%s refund_id=%s "
        "status=%s notification_id=%s",
        refund.out_refund_no,
        refund.refund_id,
        refund.status,
        refund.notification_id,
    )
    return refund


def _open_aead_resource(apiv3_key, resource, name):
    """Decrypt an AEAD_AES_256_GCM object (`resource` or `encrypt_certificate`).

    Raises ValueError naming `name` and the failed check.
    """
    algorithm = resource.get("algorithm")
    if algorithm != NOTIFICATION_ALGORITHM:
        raise ValueError(f"{name} algorithm {algorithm!r} is unsupported")
    nonce = resource.get("nonce")
    ciphertext = resource.get("ciphertext")
    associated_data = resource.get("associated_data") or ""
    if not isinstance(nonce, str) or not isinstance(ciphertext, str):
        raise ValueError(f"{name} nonce or ciphertext is missing")
    if not isinstance(associated_data, str):
        raise ValueError(f"{name} associated_data is not a string")
    try:
        sealed = base64.b64decode(ciphertext, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{name} ciphertext is not base64") from None
    try:
        return AESGCM(apiv3_key).decrypt(
            nonce.encode("utf-8"), sealed, associated_data.encode("utf-8")
        )
    except (InvalidTag, ValueError):
        raise ValueError(f"{name} does not decrypt with the APIv3 key") from None


def _read_transaction(data, notification_id):
    out_trade_no = data["out_trade_no"]
    transaction_id = data["transaction_id"]
    trade_state = data["trade_state"]
    for name, value in (
        ("out_trade_no", out_trade_no),
        ("transaction_id", transaction_id),
        ("trade_state", trade_state),
    ):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} is {value!r}")
    amount = data["amount"]
    success_time = data.get("success_time")
    if trade_state == TRADE_STATE_SUCCESS and not success_time:
        raise ValueError("success_time is missing from a SUCCESS transaction")
    return Transaction(
        out_trade_no=out_trade_no,
        transaction_id=transaction_id,
        trade_state=trade_state,
        amount_fen=_read_fen(amount, "total"),
        payer_total_fen=_read_fen(amount, "payer_total")
        if "payer_total" in amount
        else None,
        success_time=parse_rfc3339(success_time) if success_time else None,
        openid=_read_openid(data),
        notification_id=notification_id if isinstance(notification_id, str) else None,
    )


def _read_refund(data, status_field, notification_id=None):
    """Build a RefundState from a refund response or a decrypted refund resource.

    The response names the status `status` and the notification names it
    `refund_status`. Raises KeyError, TypeError or ValueError naming the field.
    """
    values = {}
    for name in ("out_refund_no", "refund_id", "out_trade_no", status_field):
        value = data[name]
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name} is {value!r}")
        values[name] = value
    status = values[status_field]
    success_time = data.get("success_time")
    if status == REFUND_STATUS_SUCCESS and not success_time:
        raise ValueError("success_time is missing from a SUCCESS refund")
    transaction_id = data.get("transaction_id")
    amount = data["amount"]
    return RefundState(
        out_refund_no=values["out_refund_no"],
        refund_id=values["refund_id"],
        out_trade_no=values["out_trade_no"],
        status=status,
        amount_fen=_read_fen(amount, "refund"),
        success_time=parse_rfc3339(success_time) if success_time else None,
        transaction_id=transaction_id if isinstance(transaction_id, str) else None,
        total_fen=_read_fen(amount, "total") if "total" in amount else None,
        notification_id=notification_id,
    )


# Trade bill. The file is CSV-like: a header line of column names, one line per
# payment or refund with a backtick before every value, then a header line and
# a value line of totals. A description may contain commas, so lines are split
# on ",`" instead of ",".

BILL_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
BILL_SUMMARY_FIRST_COLUMN = "总交易单数"
BILL_AMOUNT_PATTERN = re.compile(r"-?\d+(\.\d{1,2})?")
# Column names of the ALL bill that parse_trade_bill reads.
BILL_COLUMNS = {
    "trade_time": "交易时间",
    "transaction_id": "微信订单号",
    "out_trade_no": "商户订单号",
    "trade_state": "交易状态",
    "amount": "应结订单金额",
    "refund_id": "微信退款单号",
    "out_refund_no": "商户退款单号",
    "refund": "退款金额",
    "refund_status": "退款状态",
}
BILL_SUMMARY_COLUMNS = {
    "count": "总交易单数",
    "amount": "应结订单总金额",
    "refund": "退款总金额",
}


def parse_trade_bill(content: bytes) -> list[BillRow]:
    """Parse a trade bill of type ALL into BillRows, checking it against its totals.

    Columns are found by name, so added or reordered columns do not matter.
    Raises ValueError naming the line when a line or amount is malformed, or
    when the row count, settlement total or refund total in the summary
    disagrees with the rows.
    """
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError("bill is not UTF-8") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        raise ValueError("bill is empty")
    header = lines[0].split(",")
    columns = _bill_column_indexes(header, BILL_COLUMNS, "bill header")

    summary_at = next(
        (
            index
            for index, line in enumerate(lines)
            if index > 0 and line.startswith(BILL_SUMMARY_FIRST_COLUMN)
        ),
        None,
    )
    if summary_at is None or summary_at + 1 >= len(lines):
        raise ValueError("bill has no summary lines")

    rows = []
    for index in range(1, summary_at):
        values = _split_bill_line(lines[index], len(header), index + 1)
        rows.append(_read_bill_row(values, columns, index + 1))

    _check_bill_summary(lines[summary_at], lines[summary_at + 1], summary_at + 2, rows)
    return rows


def _bill_column_indexes(header, expected_columns, line_name):
    missing = [name for name in expected_columns.values() if name not in header]
    if missing:
        raise ValueError(f"{line_name} lacks the columns {', '.join(missing)}")
    return {key: header.index(name) for key, name in expected_columns.items()}


def _split_bill_line(line, expected_count, line_number):
    if not line.startswith("`"):
        raise ValueError(f"bill line {line_number} does not start with a backtick")
    values = line[1:].split(",`")
    if len(values) != expected_count:
        raise ValueError(
            f"bill line {line_number} has {len(values)} values, "
            f"expected {expected_count}"
        )
    return values


def _read_bill_row(values, columns, line_number):
    def value(key):
        return values[columns[key]].strip()

    def optional(key):
        # A payment line shows 0 in the refund id columns.
        text = value(key)
        return None if text in ("", "0") else text

    try:
        trade_time = datetime.strptime(value("trade_time"), BILL_TIME_FORMAT)
    except ValueError:
        raise ValueError(
            f"bill line {line_number} has trade time {value('trade_time')!r}, "
            "not YYYY-MM-DD HH:MM:SS"
        ) from None
    for key in ("transaction_id", "out_trade_no", "trade_state"):
        if not value(key):
            raise ValueError(
                f"bill line {line_number} has an empty {BILL_COLUMNS[key]}"
            )
    return BillRow(
        out_trade_no=value("out_trade_no"),
        transaction_id=value("transaction_id"),
        trade_state=value("trade_state"),
        amount_fen=yuan_to_fen(value("amount"), BILL_COLUMNS["amount"], line_number),
        refund_fen=yuan_to_fen(value("refund"), BILL_COLUMNS["refund"], line_number),
        out_refund_no=optional("out_refund_no"),
        trade_time=trade_time.replace(tzinfo=CHINA_STANDARD_TIME),
        refund_id=optional("refund_id"),
        refund_status=value("refund_status") or None,
    )


def _check_bill_summary(header_line, values_line, line_number, rows):
    header = header_line.split(",")
    columns = _bill_column_indexes(header, BILL_SUMMARY_COLUMNS, "bill summary header")
    values = _split_bill_line(values_line, len(header), line_number)
    count_text = values[columns["count"]].strip()
    if not count_text.isdigit() or int(count_text) != len(rows):
        raise ValueError(
            f"bill summary counts {count_text!r} lines, but the bill has {len(rows)}"
        )
    for key, total in (
        ("amount", sum(row.amount_fen for row in rows)),
        ("refund", sum(row.refund_fen for row in rows)),
    ):
        name = BILL_SUMMARY_COLUMNS[key]
        stated = yuan_to_fen(values[columns[key]].strip(), name, line_number)
        if stated != total:
            raise ValueError(
                f"bill summary {name} is {stated} fen, but the lines add up to "
                f"{total} fen"
            )


def yuan_to_fen(text: str, name: str = "amount", line_number: int | None = None) -> int:
    """Convert a yuan amount with at most two decimals, such as "128.50", to fen.

    Raises ValueError for any other text, so no amount is rounded.
    """
    if not BILL_AMOUNT_PATTERN.fullmatch(text):
        where = f"bill line {line_number} " if line_number is not None else ""
        raise ValueError(
            f"{where}{name} {text!r} is not a yuan amount with at most two decimals"
        )
    return int(Decimal(text) * 100)


def notification_ack() -> tuple[str, int]:
    """Return the (body, status) that accepts a notification: empty, 204."""
    return "", 204


def notification_nack(message: str, status: int = 500) -> tuple[dict[str, str], int]:
    """Return the (body, status) that makes WeChat Pay send the notification again.

    The body is a dict so that Flask sends it as JSON:
    `{"code": "FAIL", "message": message}`. `status` must be 4xx or 5xx.
    """
    if not 400 <= status < 600:
        raise ValueError(f"status must be 4xx or 5xx to ask for a retry, got {status}")
    return {"code": "FAIL", "message": message}, status

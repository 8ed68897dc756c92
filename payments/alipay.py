"""Client of the Alipay open platform gateway for face-to-face (当面付) QR payments.

The client calls alipay.trade.precreate, query, close and refund through the
gateway (`gateway.do`) and downloads the daily trade bill. It signs each
request with the app's RSA key (SHA256withRSA, sign_type RSA2) and verifies
Alipay's signature on every response and payment notification.
docs/partners.md describes the protocol, and docs/payments.md explains why
the project does not use python-alipay-sdk.

Amounts are integer fen inside the project and yuan strings with two decimals
on the wire, converted exactly by `fen_to_yuan` and `yuan_to_fen`. Times on
the wire are "YYYY-MM-DD HH:MM:SS" in China Standard Time (UTC+08:00).
"""

import base64
import binascii
import csv
import io
import json
import logging
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from payments.errors import InvalidNotification, PaymentError
from payments.wechatpay import (
    TRADE_STATE_CLOSED,
    TRADE_STATE_NOTPAY,
    TRADE_STATE_REFUND,
    TRADE_STATE_SUCCESS,
    BillRow,
)

log = logging.getLogger(__name__)

USER_AGENT = "lianban/0.1"
SIGN_TYPE = "RSA2"
CHARSET = "utf-8"
API_VERSION = "1.0"
SUCCESS_CODE = "10000"
PRODUCT_CODE = "FACE_TO_FACE_PAYMENT"
FORM_CONTENT_TYPE = f"application/x-www-form-urlencoded;charset={CHARSET}"

# Alipay has kept UTC+08:00 without daylight saving time, so a fixed offset
# gives the same wall-clock strings as the Asia/Shanghai zone.
CHINA_STANDARD_TIME = timezone(timedelta(hours=8))
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

# Alipay's limits from the alipay.trade.precreate and alipay.trade.refund
# references: out_trade_no and out_request_no up to 64 letters, digits or
# underscores, subject and refund_reason up to 256 characters, and
# total_amount from 0.01 to 100000000 yuan.
OUT_TRADE_NO_PATTERN = re.compile(r"[A-Za-z0-9_]{1,64}")
OUT_REQUEST_NO_PATTERN = OUT_TRADE_NO_PATTERN
SUBJECT_MAX_CHARS = 256
SUBJECT_FORBIDDEN_CHARS = "/=&"
REFUND_REASON_MAX_CHARS = 256
MAX_AMOUNT_FEN = 100_000_000 * 100

# A yuan amount on the wire: ASCII digits with at most two decimals.
YUAN_PATTERN = re.compile(r"[0-9]+(\.[0-9]{1,2})?")

# Alipay's trade_status values mapped to the WeChat Pay trade_state
# vocabulary that the rest of the project uses. TRADE_FINISHED is a paid
# trade that can no longer be refunded. TRADE_CLOSED is an unpaid trade that
# expired or was closed, and also a paid trade that was refunded in full.
TRADE_STATES = {
    "WAIT_BUYER_PAY": TRADE_STATE_NOTPAY,
    "TRADE_SUCCESS": TRADE_STATE_SUCCESS,
    "TRADE_FINISHED": TRADE_STATE_SUCCESS,
    "TRADE_CLOSED": TRADE_STATE_CLOSED,
}

# The only response body that accepts a notification. Alipay sends the
# notification again after any other body.
NOTIFICATION_ACK_BODY = "success"

# Gateway codes and sub_codes that Alipay documents as temporary.
RETRYABLE_CODES = frozenset({"20000"})
RETRYABLE_SUB_CODES = frozenset(
    {"ACQ.SYSTEM_ERROR", "aop.ACQ.SYSTEM_ERROR", "isp.unknow-error"}
)
TRADE_NOT_EXIST_SUB_CODE = "ACQ.TRADE_NOT_EXIST"

BILL_METHOD = "alipay.data.dataservice.bill.downloadurl.query"
# NOTE: not checked against Alipay's own reference. Several published
# clients treat the sub_code isp.bill_not_exist as "no bill for that day".
BILL_NOT_EXIST_SUB_CODE = "isp.bill_not_exist"
# Hosts that may serve a bill_download_url besides the configured gateway.
# Production URLs seen in published clients are on dwbillcenter.alipay.com,
# over http as well as https.
BILL_DOWNLOAD_HOSTS = frozenset({"dwbillcenter.alipay.com"})
# Limits on the ZIP file and on the detail CSV inside it, so a corrupt or
# hostile file cannot exhaust memory. Both are estimates for one city's
# daily bill, not Alipay limits.
BILL_MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
BILL_MAX_CSV_BYTES = 256 * 1024 * 1024


class AlipayError(PaymentError):
    """A gateway response whose `code` is not 10000.

    `code` is the gateway code, such as 40002 (invalid arguments) or 40004
    (business failed), and `sub_code` the detailed reason, such as
    `ACQ.TRADE_HAS_SUCCESS` or `isv.invalid-signature`.
    """

    def __init__(self, code, msg, sub_code=None, sub_msg=None):
        detail = f" {sub_code}: {sub_msg}" if sub_code else ""
        super().__init__(f"Alipay returned {code} {msg}.{detail}")
        self.code = code
        self.msg = msg
        self.sub_code = sub_code
        self.sub_msg = sub_msg

    @property
    def retryable(self):
        """Whether sending the same request again later may succeed."""
        return self.code in RETRYABLE_CODES or self.sub_code in RETRYABLE_SUB_CODES


class AlipayTradeNotExist(AlipayError):
    """Alipay has no trade under the out_trade_no (sub_code ACQ.TRADE_NOT_EXIST).

    A precreated order gets a trade only when the buyer scans its QR code, so
    an order not scanned yet raises this too.
    """


class AlipayUnavailable(PaymentError):
    """A request that got no usable response: connection refused, reset,
    timed out, or an HTTP 5xx from the gateway.

    The request may or may not have reached Alipay, so the caller should query
    the order before it assumes either outcome.
    """


class AlipayInvalidResponse(PaymentError):
    """A response whose signature, body or fields are not valid.

    The response cannot be trusted, so the caller should treat the outcome as
    unknown, as for AlipayUnavailable.
    """


# Keys. Alipay's console shows keys as one line of base64 without PEM armour,
# so both forms are accepted.


def _key_bytes(value):
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("-----BEGIN"):
            return value.encode("ascii"), True
        try:
            return base64.b64decode(value, validate=True), False
        except (binascii.Error, ValueError):
            raise ValueError("key text is neither PEM nor base64 DER") from None
    if isinstance(value, bytes):
        return value, value.lstrip().startswith(b"-----BEGIN")
    return None, False


def _load_private_key(value):
    data, is_pem = _key_bytes(value)
    if data is not None:
        if is_pem:
            value = serialization.load_pem_private_key(data, password=None)
        else:
            value = serialization.load_der_private_key(data, password=None)
    if not isinstance(value, rsa.RSAPrivateKey):
        raise ValueError("app_private_key must be an RSA private key, PEM or base64")
    return value


def _load_public_key(value):
    data, is_pem = _key_bytes(value)
    if data is not None:
        if is_pem:
            value = serialization.load_pem_public_key(data)
        else:
            value = serialization.load_der_public_key(data)
    if not isinstance(value, rsa.RSAPublicKey):
        raise ValueError("alipay_public_key must be an RSA public key, PEM or base64")
    return value


@dataclass(frozen=True)
class AlipayConfig:
    """App identity, keys and endpoints for one Alipay app.

    `seller_id` is the merchant's Alipay user id (2088 and 12 digits) that
    notifications must name. The keys may be given as PEM, as one line of
    base64 DER or as loaded `cryptography` keys, and are loaded when the config
    is created.
    """

    gateway_url: str
    app_id: str
    app_private_key: rsa.RSAPrivateKey | bytes | str = field(repr=False)
    alipay_public_key: rsa.RSAPublicKey | bytes | str = field(repr=False)
    notify_url: str
    seller_id: str

    def __post_init__(self):
        for name in ("gateway_url", "app_id", "notify_url", "seller_id"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise ValueError(f"{name} must be a non-empty string, got {value!r}")
        values = {
            "app_private_key": _load_private_key(self.app_private_key),
            "alipay_public_key": _load_public_key(self.alipay_public_key),
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    @classmethod
    def from_keys_dir(
        cls, keys_dir: str | Path, gateway_url: str, notify_url: str
    ) -> "AlipayConfig":
        """Load the app's settings and keys from `keys_dir/alipay/`.

        The folder contains `alipay.json` (app_id, seller_id),
        `app_private.pem` and `alipay_public.pem`.
        """
        folder = Path(keys_dir) / "alipay"
        settings = json.loads((folder / "alipay.json").read_text("utf-8"))
        return cls(
            gateway_url=gateway_url,
            app_id=settings["app_id"],
            app_private_key=(folder / "app_private.pem").read_bytes(),
            alipay_public_key=(folder / "alipay_public.pem").read_bytes(),
            notify_url=notify_url,
            seller_id=settings["seller_id"],
        )


@dataclass(frozen=True)
class OrderState:
    """A trade as alipay.trade.query reports it.

    `trade_state` is NOTPAY, SUCCESS or CLOSED, as in the WeChat Pay client,
    and `trade_status` is Alipay's own value. `transaction_id` is Alipay's
    trade_no and `buyer_id` the buyer's Alipay user id.
    """

    out_trade_no: str
    trade_state: str
    trade_status: str
    transaction_id: str
    amount_fen: int
    success_time: datetime | None
    buyer_id: str | None


@dataclass(frozen=True)
class Transaction:
    """The verified fields of one payment notification.

    `refund_fee_fen` is the `refund_fee` of a notification that Alipay sends
    after a refund, and is None on a payment notification.
    """

    out_trade_no: str
    transaction_id: str
    trade_state: str
    trade_status: str
    amount_fen: int
    receipt_amount_fen: int | None
    refund_fee_fen: int | None
    success_time: datetime | None
    buyer_id: str | None
    notification_id: str | None


@dataclass(frozen=True)
class RefundResult:
    """The outcome of one alipay.trade.refund request.

    `amount_fen` is the amount this out_request_no refunds, and
    `refund_total_fen` the total refunded on the trade so far. `fund_change`
    is false when the request repeated an out_request_no that Alipay had
    already refunded, so no money moved this time.
    """

    out_trade_no: str
    transaction_id: str
    out_request_no: str
    amount_fen: int
    refund_total_fen: int
    fund_change: bool
    refunded_at: datetime | None


# Amounts and times.


def fen_to_yuan(amount_fen: int) -> str:
    """Format integer fen as a yuan string with two decimals: 12345 is "123.45"."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise ValueError(
            f"amount_fen must be an integer number of fen, got {amount_fen!r}"
        )
    if amount_fen < 0:
        raise ValueError(f"amount_fen must not be negative, got {amount_fen}")
    yuan, fen = divmod(amount_fen, 100)
    return f"{yuan}.{fen:02d}"


def yuan_to_fen(text: str) -> int:
    """Parse a yuan string such as "123.45" or "5" into integer fen, exactly.

    Raises ValueError unless `text` is ASCII digits with at most two decimals.
    """
    if not isinstance(text, str) or not YUAN_PATTERN.fullmatch(text):
        raise ValueError(
            f"amount {text!r} is invalid: expected yuan with at most two "
            "decimals, like 123.45"
        )
    whole, _, decimals = text.partition(".")
    return int(whole) * 100 + int(decimals.ljust(2, "0"))


def format_alipay_time(moment: datetime) -> str:
    """Format an aware datetime as "YYYY-MM-DD HH:MM:SS" at UTC+08:00."""
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        raise ValueError(f"time must be a timezone-aware datetime, got {moment!r}")
    return moment.astimezone(CHINA_STANDARD_TIME).strftime(TIME_FORMAT)


def parse_alipay_time(text: str) -> datetime:
    """Parse "YYYY-MM-DD HH:MM:SS" in China Standard Time into an aware datetime."""
    if not isinstance(text, str):
        raise ValueError(f"time must be a string, got {text!r}")
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=CHINA_STANDARD_TIME)


# Input checks shared by the calls. Each raises ValueError naming the value.


def validate_out_trade_no(out_trade_no):
    """Raise ValueError unless `out_trade_no` is 1 to 64 of [A-Za-z0-9_]."""
    if not isinstance(out_trade_no, str) or not OUT_TRADE_NO_PATTERN.fullmatch(
        out_trade_no
    ):
        raise ValueError(
            f"out_trade_no {out_trade_no!r} is invalid: use 1 to 64 letters, "
            "digits or underscores"
        )


def validate_out_request_no(out_request_no):
    """Raise ValueError unless `out_request_no` is 1 to 64 of [A-Za-z0-9_]."""
    if not isinstance(out_request_no, str) or not OUT_REQUEST_NO_PATTERN.fullmatch(
        out_request_no
    ):
        raise ValueError(
            f"out_request_no {out_request_no!r} is invalid: use 1 to 64 letters, "
            "digits or underscores"
        )


def validate_subject(subject):
    """Raise ValueError unless `subject` is non-blank, at most 256 characters
    and free of the characters / = & that Alipay forbids in a subject."""
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError("subject must be a non-empty string")
    if len(subject) > SUBJECT_MAX_CHARS:
        raise ValueError(
            f"subject is {len(subject)} characters, more than the maximum of "
            f"{SUBJECT_MAX_CHARS}"
        )
    forbidden = sorted(set(subject) & set(SUBJECT_FORBIDDEN_CHARS))
    if forbidden:
        raise ValueError(
            f"subject contains {' '.join(forbidden)}, which Alipay does not allow"
        )


def validate_amount_fen(amount_fen):
    """Raise ValueError unless `amount_fen` is an int from 1 to 10000000000."""
    if isinstance(amount_fen, bool) or not isinstance(amount_fen, int):
        raise ValueError(
            f"amount_fen must be an integer number of fen, got {amount_fen!r}"
        )
    if not 0 < amount_fen <= MAX_AMOUNT_FEN:
        raise ValueError(
            f"amount_fen must be from 1 to {MAX_AMOUNT_FEN}, got {amount_fen}"
        )


def validate_refund_reason(reason):
    """Raise ValueError unless `reason` is a string of at most 256 characters."""
    if not isinstance(reason, str):
        raise ValueError(f"reason must be a string, got {reason!r}")
    if len(reason) > REFUND_REASON_MAX_CHARS:
        raise ValueError(
            f"reason is {len(reason)} characters, more than the maximum of "
            f"{REFUND_REASON_MAX_CHARS}"
        )


# Signatures. Both directions use SHA256withRSA (PKCS#1 v1.5) in base64 over
# the parameters sorted by name, with empty values left out, written as
# name=value and joined by "&", without URL encoding.


def signing_content(params: Mapping[str, str], excluded=("sign",)) -> str:
    """Return the text that signs `params`, leaving out `excluded` names.

    Requests leave out `sign`. Notifications leave out `sign` and `sign_type`.
    """
    pairs = sorted(
        (name, value)
        for name, value in params.items()
        if name not in excluded and value not in (None, "")
    )
    return "&".join(f"{name}={value}" for name, value in pairs)


def sign_text(private_key: rsa.RSAPrivateKey, text: str) -> str:
    """Sign UTF-8 `text` with SHA256withRSA and return the base64 signature."""
    signature = private_key.sign(
        text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
    )
    return base64.b64encode(signature).decode("ascii")


def verify_text(public_key: rsa.RSAPublicKey, text: str, signature: str) -> bool:
    """Return whether `signature` (base64) signs UTF-8 `text` with the key."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(
            raw, text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256()
        )
    except InvalidSignature:
        return False
    return True


# Responses. Alipay signs the exact text of the `*_response` member, so the
# client cuts that member out of the body instead of serialising it again.

JSON_WHITESPACE = " \t\n\r"


def _skip_whitespace(text, index):
    while index < len(text) and text[index] in JSON_WHITESPACE:
        index += 1
    return index


def top_level_members(text: str) -> dict[str, tuple[int, int]]:
    """Return each top-level member of a JSON object with its value's span.

    The span is (start, end) in `text`, so `text[start:end]` is the value's
    exact text. Raises ValueError for text that is not one JSON object or that
    repeats a member name, because a repeated name makes it ambiguous which
    value was signed.
    """
    decoder = json.JSONDecoder()
    spans = {}
    index = _skip_whitespace(text, 0)
    if not text.startswith("{", index):
        raise ValueError("body is not a JSON object")
    index = _skip_whitespace(text, index + 1)
    if text.startswith("}", index):
        index += 1
    else:
        while True:
            name, length = decoder.raw_decode(text[index:])
            if not isinstance(name, str):
                raise ValueError("member name is not a string")
            index = _skip_whitespace(text, index + length)
            if not text.startswith(":", index):
                raise ValueError(f"no ':' after member {name!r}")
            start = _skip_whitespace(text, index + 1)
            _, length = decoder.raw_decode(text[start:])
            if name in spans:
                raise ValueError(f"member {name!r} appears twice")
            spans[name] = (start, start + length)
            index = _skip_whitespace(text, start + length)
            if text.startswith(",", index):
                index = _skip_whitespace(text, index + 1)
                continue
            if text.startswith("}", index):
                index += 1
                break
            raise ValueError(f"expected ',' or '}}' after member {name!r}")
    if _skip_whitespace(text, index) != len(text):
        raise ValueError("text follows the JSON object")
    return spans


class AlipayClient:
    """Precreates, queries, closes and refunds face-to-face trades, and
    downloads the daily trade bill.

    Every method raises ValueError for invalid input before any request,
    AlipayError for a gateway code other than 10000, AlipayUnavailable when
    no usable response arrives, and AlipayInvalidResponse for a response that
    fails verification.
    """

    def __init__(
        self,
        config: AlipayConfig,
        session: requests.Session | None = None,
        timeout: float | tuple[float, float] = (3.05, 10),
    ):
        self.config = config
        self.session = session or requests.Session()
        self.timeout = timeout

    def precreate(
        self,
        out_trade_no: str,
        subject: str,
        amount_fen: int,
        time_expire: datetime,
    ) -> str:
        """Precreate a trade and return its qr_code for the buyer to scan.

        The buyer must pay before `time_expire`, a timezone-aware datetime
        sent in whole seconds. A paid out_trade_no raises AlipayError with
        sub_code `ACQ.TRADE_HAS_SUCCESS`, and a closed one
        `ACQ.TRADE_HAS_CLOSE`.
        """
        validate_out_trade_no(out_trade_no)
        validate_subject(subject)
        validate_amount_fen(amount_fen)
        expire_text = format_alipay_time(time_expire)
        biz_content = {
            "out_trade_no": out_trade_no,
            "total_amount": fen_to_yuan(amount_fen),
            "subject": subject,
            "product_code": PRODUCT_CODE,
            "time_expire": expire_text,
        }
        data = self._call(
            "alipay.trade.precreate",
            biz_content,
            out_trade_no,
            notify_url=self.config.notify_url,
        )
        qr_code = data.get("qr_code")
        if not isinstance(qr_code, str) or not qr_code:
            raise self._invalid_response("precreate", out_trade_no, "no qr_code")
        if data.get("out_trade_no", out_trade_no) != out_trade_no:
            raise self._invalid_response(
                "precreate", out_trade_no, f"out_trade_no is {data['out_trade_no']!r}"
            )
        log.info(
            "alipay trade precreated out_trade_no=%s amount_fen=%s time_expire=%s",
            out_trade_no,
            amount_fen,
            expire_text,
        )
        return qr_code

    def query(self, out_trade_no: str) -> OrderState:
        """Return the trade's current OrderState.

        Raises AlipayTradeNotExist when Alipay has no trade under the
        out_trade_no, which includes a precreated order not scanned yet.
        """
        validate_out_trade_no(out_trade_no)
        data = self._call(
            "alipay.trade.query", {"out_trade_no": out_trade_no}, out_trade_no
        )
        try:
            return _read_order_state(data, out_trade_no)
        except (KeyError, TypeError, ValueError) as error:
            raise self._invalid_response("query", out_trade_no, str(error)) from None

    def close(self, out_trade_no: str) -> None:
        """Close an unpaid trade so that it can no longer be paid.

        A paid trade raises AlipayError with sub_code `ACQ.TRADE_STATUS_ERROR`.
        An order not scanned yet raises AlipayTradeNotExist, because Alipay
        has no trade to close yet. Merchants report that Alipay still stops
        its QR code from being paid after such a call, but Alipay does not
        document it, so keep time_expire short.
        """
        validate_out_trade_no(out_trade_no)
        self._call("alipay.trade.close", {"out_trade_no": out_trade_no}, out_trade_no)
        log.info("alipay trade closed out_trade_no=%s", out_trade_no)

    def refund(
        self,
        out_trade_no: str,
        out_request_no: str,
        amount_fen: int,
        reason: str,
    ) -> RefundResult:
        """Refund `amount_fen` of a paid trade and return the RefundResult.

        `out_request_no` identifies the refund. Sending it again with the same
        amount refunds nothing more and returns `fund_change` false, so a
        refund that ended in AlipayUnavailable can be retried with the same
        out_request_no. Refunds above the paid amount raise AlipayError with
        sub_code `ACQ.REASON_TRADE_REFUND_FEE_ERR`. An empty `reason` is not
        sent.
        """
        validate_out_trade_no(out_trade_no)
        validate_out_request_no(out_request_no)
        validate_amount_fen(amount_fen)
        validate_refund_reason(reason)
        biz_content = {
            "out_trade_no": out_trade_no,
            "refund_amount": fen_to_yuan(amount_fen),
            "out_request_no": out_request_no,
        }
        if reason:
            biz_content["refund_reason"] = reason
        data = self._call("alipay.trade.refund", biz_content, out_trade_no)
        try:
            result = _read_refund(data, out_trade_no, out_request_no, amount_fen)
        except (KeyError, TypeError, ValueError) as error:
            raise self._invalid_response("refund", out_trade_no, str(error)) from None
        log.info(
            "alipay refund succeeded out_trade_no=%s out_request_no=%s amount_fen=%s "
            "refund_total_fen=%s fund_change=%s",
            out_trade_no,
            out_request_no,
            amount_fen,
            result.refund_total_fen,
            result.fund_change,
        )
        return result

    def download_bill(self, bill_date: date) -> list[BillRow]:
        """Download and parse the trade bill of all payments and refunds on `bill_date`.

        The bill covers one calendar day in China Standard Time. The
        bill_download_url comes in a signed response, and the client fetches it
        only from the configured gateway's scheme, host and port or from a
        BILL_DOWNLOAD_HOSTS host, without following redirects. Returns an empty
        list when Alipay responds with sub_code isp.bill_not_exist, which it
        does for a day without trades and also for a bill not generated yet.
        A URL on another host, or a file whose rows or totals do not check out,
        raises AlipayInvalidResponse.
        """
        if not isinstance(bill_date, date) or isinstance(bill_date, datetime):
            raise ValueError(f"bill_date must be a datetime.date, got {bill_date!r}")
        day = bill_date.isoformat()
        reference = f"bill_date={day}"
        biz_content = {"bill_type": "trade", "bill_date": day}
        try:
            data = self._call(BILL_METHOD, biz_content, reference)
        except AlipayError as error:
            if error.sub_code == BILL_NOT_EXIST_SUB_CODE:
                log.info("alipay trade bill empty bill_date=%s", day)
                return []
            raise
        download_url = data.get("bill_download_url")
        if not isinstance(download_url, str) or not download_url:
            raise self._invalid_response(
                "bill query", reference, "no bill_download_url"
            )

        content = self._download_bill_file(download_url, reference)
        try:
            rows = parse_trade_bill_zip(content)
        except ValueError as error:
            raise self._invalid_response(
                "bill download", reference, str(error)
            ) from None
        log.info("alipay trade bill downloaded bill_date=%s rows=%s", day, len(rows))
        return rows

    def parse_notification(self, form: Mapping[str, str]) -> Transaction:
        """Verify and parse a payment notification, as parse_notification does."""
        return parse_notification(self.config, form)

    # Requests.

    def _request_params(self, method, biz_content, notify_url=None):
        params = {
            "app_id": self.config.app_id,
            "method": method,
            "format": "JSON",
            "charset": CHARSET,
            "sign_type": SIGN_TYPE,
            "timestamp": format_alipay_time(datetime.now(CHINA_STANDARD_TIME)),
            "version": API_VERSION,
            "biz_content": json.dumps(
                biz_content, ensure_ascii=False, separators=(",", ":")
            ),
        }
        if notify_url:
            params["notify_url"] = notify_url
        params["sign"] = sign_text(self.config.app_private_key, signing_content(params))
        return params

    def _call(self, method, biz_content, out_trade_no, notify_url=None):
        """Send one gateway request and return its verified response object."""
        operation = method.rsplit(".", 1)[-1]
        params = self._request_params(method, biz_content, notify_url)
        try:
            response = self.session.post(
                self.config.gateway_url,
                data=params,
                headers={
                    "Content-Type": FORM_CONTENT_TYPE,
                    "Accept": "application/json",
                    "User-Agent": USER_AGENT,
                },
                timeout=self.timeout,
            )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            log.warning(
                "alipay unavailable operation=%s out_trade_no=%s error=%s",
                operation,
                out_trade_no,
                type(error).__name__,
            )
            raise AlipayUnavailable(
                f"Alipay {operation} for {out_trade_no} got no response: "
                f"{type(error).__name__}"
            ) from error

        if response.status_code >= 500:
            log.warning(
                "alipay unavailable operation=%s out_trade_no=%s status=%s",
                operation,
                out_trade_no,
                response.status_code,
            )
            raise AlipayUnavailable(
                f"Alipay {operation} for {out_trade_no} returned HTTP "
                f"{response.status_code}"
            )
        if response.status_code != 200:
            raise self._invalid_response(
                operation, out_trade_no, f"HTTP status {response.status_code}"
            )
        data, signed = self._verified_response_object(
            response.content, method, operation, out_trade_no
        )
        if data.get("code") != SUCCESS_CODE:
            raise self._api_error(data, operation, out_trade_no, signed)
        return data

    def _download_bill_file(self, url, reference):
        """GET a bill_download_url and return the body, at most BILL_MAX_DOWNLOAD_BYTES.

        The file itself is unsigned, so the URL must point at the gateway's own
        origin or at a BILL_DOWNLOAD_HOSTS host.
        """
        operation = "bill download"
        parts = urlsplit(url)
        gateway = urlsplit(self.config.gateway_url)
        same_origin = (parts.scheme, parts.netloc) == (gateway.scheme, gateway.netloc)
        alipay_host = (
            parts.scheme in ("http", "https") and parts.hostname in BILL_DOWNLOAD_HOSTS
        )
        if not (same_origin or alipay_host):
            raise self._invalid_response(
                operation,
                reference,
                f"bill_download_url host {parts.netloc!r} is neither the gateway "
                f"host {gateway.netloc!r} nor one of {sorted(BILL_DOWNLOAD_HOSTS)}",
            )
        try:
            with self.session.get(
                url,
                headers={"User-Agent": USER_AGENT},
                timeout=self.timeout,
                allow_redirects=False,
                stream=True,
            ) as response:
                if response.status_code >= 500:
                    log.warning(
                        "alipay unavailable operation=%s %s status=%s",
                        operation,
                        reference,
                        response.status_code,
                    )
                    raise AlipayUnavailable(
                        f"Alipay {operation} for {reference} returned HTTP "
                        f"{response.status_code}"
                    )
                if response.status_code != 200:
                    raise self._invalid_response(
                        operation, reference, f"HTTP status {response.status_code}"
                    )
                content = bytearray()
                for chunk in response.iter_content(chunk_size=64 * 1024):
                    content.extend(chunk)
                    if len(content) > BILL_MAX_DOWNLOAD_BYTES:
                        raise self._invalid_response(
                            operation,
                            reference,
                            f"file is larger than {BILL_MAX_DOWNLOAD_BYTES} bytes",
                        )
        except (
            requests.ConnectionError,
            requests.Timeout,
            requests.exceptions.ChunkedEncodingError,
        ) as error:
            log.warning(
                "alipay unavailable operation=%s %s error=%s",
                operation,
                reference,
                type(error).__name__,
            )
            raise AlipayUnavailable(
                f"Alipay {operation} for {reference} got no response: "
                f"{type(error).__name__}"
            ) from error
        return bytes(content)

    def _verified_response_object(self, body, method, operation, out_trade_no):
        """Return the `*_response` object and whether it was signed.

        A response without `sign` is accepted only as an error, because
        gateway errors such as `error_response` may come unsigned, and an
        error grants nothing.
        """
        try:
            text = body.decode(CHARSET)
            spans = top_level_members(text)
        except (UnicodeDecodeError, ValueError) as error:
            raise self._invalid_response(operation, out_trade_no, str(error)) from None
        response_key = method.replace(".", "_") + "_response"
        if response_key not in spans:
            response_key = "error_response"
        if response_key not in spans:
            raise self._invalid_response(
                operation, out_trade_no, f"no {method.replace('.', '_')}_response"
            )
        start, end = spans[response_key]
        object_text = text[start:end]
        data = json.loads(object_text)
        if not isinstance(data, dict):
            raise self._invalid_response(
                operation, out_trade_no, f"{response_key} is not an object"
            )

        if "sign" not in spans:
            if data.get("code") == SUCCESS_CODE:
                raise self._invalid_response(
                    operation, out_trade_no, "successful response has no sign"
                )
            return data, False
        sign_start, sign_end = spans["sign"]
        signature = json.loads(text[sign_start:sign_end])
        if not isinstance(signature, str) or not verify_text(
            self.config.alipay_public_key, object_text, signature
        ):
            raise self._invalid_response(
                operation,
                out_trade_no,
                "sign does not verify with the Alipay public key",
            )
        return data, True

    def _api_error(self, data, operation, out_trade_no, signed):
        code = str(data.get("code") or "")
        msg = str(data.get("msg") or "")
        sub_code = (
            data.get("sub_code") if isinstance(data.get("sub_code"), str) else None
        )
        sub_msg = data.get("sub_msg") if isinstance(data.get("sub_msg"), str) else None
        log.warning(
            "alipay request rejected operation=%s out_trade_no=%s code=%s "
            "sub_code=%s signed=%s",
            operation,
            out_trade_no,
            code,
            sub_code,
            signed,
        )
        error_class = (
            AlipayTradeNotExist if sub_code == TRADE_NOT_EXIST_SUB_CODE else AlipayError
        )
        return error_class(code, msg, sub_code, sub_msg)

    def _invalid_response(self, operation, out_trade_no, reason):
        log.error(
            "alipay response invalid operation=%s out_trade_no=%s reason=%s",
            operation,
            out_trade_no,
            reason,
        )
        return AlipayInvalidResponse(
            f"Alipay {operation} response for {out_trade_no} is invalid: {reason}"
        )


def _read_string(data, name):
    value = data[name]
    if not isinstance(value, str) or not value:
        raise ValueError(f"{name} is {value!r}")
    return value


def _read_fen(data, name):
    value = data[name]
    try:
        return yuan_to_fen(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not a yuan amount") from None


def _read_optional_fen(data, name):
    return _read_fen(data, name) if data.get(name) not in (None, "") else None


def _read_optional_time(data, name):
    value = data.get(name)
    if value in (None, ""):
        return None
    try:
        return parse_alipay_time(value)
    except ValueError:
        raise ValueError(f"{name} {value!r} is not YYYY-MM-DD HH:MM:SS") from None


def _read_trade_status(data):
    trade_status = data["trade_status"]
    if trade_status not in TRADE_STATES:
        raise ValueError(f"trade_status {trade_status!r} is unknown")
    return trade_status


def _read_buyer_id(data):
    for name in ("buyer_user_id", "buyer_id", "buyer_open_id"):
        value = data.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def _read_order_state(data, out_trade_no):
    if data["out_trade_no"] != out_trade_no:
        raise ValueError(f"out_trade_no is {data['out_trade_no']!r}")
    trade_status = _read_trade_status(data)
    return OrderState(
        out_trade_no=out_trade_no,
        trade_state=TRADE_STATES[trade_status],
        trade_status=trade_status,
        transaction_id=_read_string(data, "trade_no"),
        amount_fen=_read_fen(data, "total_amount"),
        success_time=_read_optional_time(data, "send_pay_date"),
        buyer_id=_read_buyer_id(data),
    )


def _read_refund(data, out_trade_no, out_request_no, amount_fen):
    if data.get("out_trade_no", out_trade_no) != out_trade_no:
        raise ValueError(f"out_trade_no is {data['out_trade_no']!r}")
    fund_change = data["fund_change"]
    if fund_change not in ("Y", "N"):
        raise ValueError(f"fund_change is {fund_change!r}, not Y or N")
    return RefundResult(
        out_trade_no=out_trade_no,
        transaction_id=_read_string(data, "trade_no"),
        out_request_no=out_request_no,
        amount_fen=amount_fen,
        refund_total_fen=_read_fen(data, "refund_fee"),
        fund_change=fund_change == "Y",
        refunded_at=_read_optional_time(data, "gmt_refund_pay"),
    )


# Trade bill. The ZIP contains the detail CSV (业务明细) and a summary CSV
# (业务明细(汇总)), both GBK. The detail CSV has "#" comment lines before the
# header and after the rows, and the footer states the count and the 商家实收
# total of payment and refund lines. Alipay appends a tab to many values,
# such as ids, so that spreadsheets keep them as text.

BILL_DETAIL_SUFFIX = "业务明细.csv"
BILL_TIME_FORMAT = TIME_FORMAT
BILL_AMOUNT_PATTERN = re.compile(r"(-?)([0-9]+(?:\.[0-9]{1,2})?)")
# Column names of the trade bill's detail CSV, as published clients and
# Alipay's sample header spell them, with full-width brackets.
BILL_COLUMNS = {
    "transaction_id": "支付宝交易号",
    "out_trade_no": "商户订单号",
    "business_type": "业务类型",
    "finished_at": "完成时间",
    "order_amount": "订单金额（元）",
    "received_amount": "商家实收（元）",
    "out_request_no": "退款批次号/请求号",
}
BILL_PAYMENT_TYPE = "交易"
BILL_REFUND_TYPE = "退款"
# NOTE: the footer wording is taken from sample bills in published clients,
# not from an Alipay specification. A footer line that does not match is
# ignored, so only a matching line with other numbers fails the bill.
BILL_FOOTER_PATTERNS = {
    BILL_PAYMENT_TYPE: re.compile(r"#交易合计：(\d+)笔，商家实收共(-?[0-9.]+)元"),
    BILL_REFUND_TYPE: re.compile(r"#退款合计：(\d+)笔，商家实收退款共(-?[0-9.]+)元"),
}


def parse_trade_bill_zip(content: bytes) -> list[BillRow]:
    """Parse the ZIP of a trade bill into BillRows.

    Raises ValueError when the ZIP has no detail CSV, or for anything that
    parse_trade_bill_csv rejects.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
    except zipfile.BadZipFile:
        raise ValueError("bill file is not a ZIP archive") from None
    with archive:
        names = {_zip_member_name(info): info for info in archive.infolist()}
        detail = [name for name in names if name.endswith(BILL_DETAIL_SUFFIX)]
        if len(detail) != 1:
            raise ValueError(
                f"bill ZIP has {len(detail)} files named *{BILL_DETAIL_SUFFIX}, "
                f"expected 1; members are {sorted(names)}"
            )
        info = names[detail[0]]
        if info.file_size > BILL_MAX_CSV_BYTES:
            raise ValueError(
                f"bill CSV {detail[0]} is {info.file_size} bytes, more than "
                f"{BILL_MAX_CSV_BYTES}"
            )
        try:
            data = archive.read(info)
        except (zipfile.BadZipFile, OSError) as error:
            raise ValueError(f"bill CSV {detail[0]} cannot be read: {error}") from None
    try:
        text = data.decode("gbk")
    except UnicodeDecodeError:
        raise ValueError(f"bill CSV {detail[0]} is not GBK text") from None
    return parse_trade_bill_csv(text)


def _zip_member_name(info):
    # A name without the ZIP UTF-8 flag (bit 11) is decoded as cp437 by
    # zipfile, and Alipay's names are GBK, so undo that decoding.
    if info.flag_bits & 0x800:
        return info.filename
    try:
        return info.filename.encode("cp437").decode("gbk")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return info.filename


def parse_trade_bill_csv(text: str) -> list[BillRow]:
    """Parse the detail CSV (业务明细) of a trade bill into BillRows.

    A 交易 line becomes a SUCCESS row with `amount_fen` from 订单金额（元）.
    A 退款 line becomes a REFUND row with `amount_fen` 0, `refund_fen` from
    the negative 订单金额（元） and `out_refund_no` from 退款批次号/请求号.
    Columns are found by name. Raises ValueError naming the line for a
    malformed line, an unknown 业务类型, or footer totals that disagree with
    the lines.
    """
    lines = text.splitlines()
    data_lines = [
        (number, line)
        for number, line in enumerate(lines, start=1)
        if line.strip() and not line.startswith("#")
    ]
    if not data_lines:
        raise ValueError("bill CSV has no header line")
    header_number, header_line = data_lines[0]
    header = [name.strip() for name in next(csv.reader([header_line]))]
    missing = [name for name in BILL_COLUMNS.values() if name not in header]
    if missing:
        raise ValueError(
            f"bill header on line {header_number} lacks the columns "
            f"{', '.join(missing)}"
        )
    columns = {key: header.index(name) for key, name in BILL_COLUMNS.items()}

    rows = []
    received = {BILL_PAYMENT_TYPE: [], BILL_REFUND_TYPE: []}
    for number, line in data_lines[1:]:
        values = [value.strip() for value in next(csv.reader([line]))]
        if len(values) != len(header):
            raise ValueError(
                f"bill line {number} has {len(values)} values, expected {len(header)}"
            )
        row, business_type, received_fen = _read_bill_row(values, columns, number)
        rows.append(row)
        received[business_type].append(received_fen)

    footer = [line for line in lines if line.startswith("#")]
    _check_bill_footer(footer, received)
    return rows


def _bill_amount_fen(text, name, where):
    """Return signed fen for a bill amount such as "-30.00", exactly."""
    match = BILL_AMOUNT_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError(
            f"bill {where} has {name} {text!r}, not a yuan amount with at most "
            "two decimals"
        )
    sign, digits = match.groups()
    fen = yuan_to_fen(digits)
    return -fen if sign else fen


def _read_bill_row(values, columns, line_number):
    """Return (BillRow, 业务类型, signed 商家实收 fen) for one detail line."""

    def value(key):
        return values[columns[key]]

    for key in ("transaction_id", "out_trade_no", "business_type"):
        if not value(key):
            raise ValueError(
                f"bill line {line_number} has an empty {BILL_COLUMNS[key]}"
            )
    try:
        finished_at = datetime.strptime(value("finished_at"), BILL_TIME_FORMAT)
    except ValueError:
        raise ValueError(
            f"bill line {line_number} has 完成时间 {value('finished_at')!r}, "
            "not YYYY-MM-DD HH:MM:SS"
        ) from None
    order_fen = _bill_amount_fen(
        value("order_amount"), BILL_COLUMNS["order_amount"], f"line {line_number}"
    )
    received_fen = _bill_amount_fen(
        value("received_amount"),
        BILL_COLUMNS["received_amount"],
        f"line {line_number}",
    )
    business_type = value("business_type")
    common = {
        "out_trade_no": value("out_trade_no"),
        "transaction_id": value("transaction_id"),
        "trade_time": finished_at.replace(tzinfo=CHINA_STANDARD_TIME),
    }
    if business_type == BILL_PAYMENT_TYPE:
        if order_fen < 0:
            raise ValueError(
                f"bill line {line_number} is a payment with a negative "
                f"{BILL_COLUMNS['order_amount']} {value('order_amount')!r}"
            )
        row = BillRow(
            trade_state=TRADE_STATE_SUCCESS,
            amount_fen=order_fen,
            refund_fen=0,
            out_refund_no=None,
            **common,
        )
    elif business_type == BILL_REFUND_TYPE:
        if order_fen >= 0:
            raise ValueError(
                f"bill line {line_number} is a refund, but "
                f"{BILL_COLUMNS['order_amount']} {value('order_amount')!r} is not "
                "negative"
            )
        row = BillRow(
            trade_state=TRADE_STATE_REFUND,
            amount_fen=0,
            refund_fen=-order_fen,
            out_refund_no=value("out_request_no") or None,
            **common,
        )
    else:
        raise ValueError(
            f"bill line {line_number} has 业务类型 {business_type!r}, expected "
            f"{BILL_PAYMENT_TYPE} or {BILL_REFUND_TYPE}"
        )
    return row, business_type, received_fen


def _check_bill_footer(footer_lines, received):
    """Compare each footer total line that is present with the detail lines."""
    for business_type, pattern in BILL_FOOTER_PATTERNS.items():
        for line in footer_lines:
            match = pattern.match(line)
            if match is None:
                continue
            count = int(match.group(1))
            total_fen = _bill_amount_fen(
                match.group(2), "the total", f"footer {line!r}"
            )
            amounts = received[business_type]
            if count != len(amounts):
                raise ValueError(
                    f"bill footer counts {count} {business_type} lines, but the "
                    f"bill has {len(amounts)}"
                )
            if total_fen != sum(amounts):
                raise ValueError(
                    f"bill footer states {total_fen} fen 商家实收 for "
                    f"{business_type} lines, but the lines add up to "
                    f"{sum(amounts)} fen"
                )


# Notifications.


def parse_notification(config: AlipayConfig, form: Mapping[str, str]) -> Transaction:
    """Verify and parse one asynchronous notification from its form fields.

    `form` is the decoded form body, for example `request.form.to_dict()`.
    sign_type must be RSA2, and `sign` must verify with the Alipay public key
    over the other fields sorted by name, leaving out `sign`, `sign_type` and
    empty values. app_id and seller_id must be this app's, and amounts must be
    yuan with at most two decimals. Raises InvalidNotification naming the first
    check that failed.
    """
    try:
        return _parse_notification(config, form)
    except InvalidNotification as error:
        log.warning("alipay notification rejected reason=%s", error.reason)
        raise


def _parse_notification(config, form):
    if not isinstance(form, Mapping):
        raise InvalidNotification("notification form must be a mapping of fields")
    fields = dict(form)
    for name, value in fields.items():
        if not isinstance(name, str) or not isinstance(value, str):
            raise InvalidNotification(f"field {name!r} is not a string")

    sign_type = fields.get("sign_type")
    if sign_type != SIGN_TYPE:
        raise InvalidNotification(f"sign_type is {sign_type!r}, not {SIGN_TYPE}")
    signature = fields.get("sign")
    if not signature:
        raise InvalidNotification("sign is missing")
    content = signing_content(fields, excluded=("sign", "sign_type"))
    if not verify_text(config.alipay_public_key, content, signature):
        raise InvalidNotification("sign does not verify with the Alipay public key")

    charset = fields.get("charset")
    if charset and charset.lower() != CHARSET:
        raise InvalidNotification(f"charset is {charset!r}, not {CHARSET}")
    if fields.get("app_id") != config.app_id:
        raise InvalidNotification(
            f"app_id {fields.get('app_id')!r} does not match the configured app_id"
        )
    if fields.get("seller_id") != config.seller_id:
        raise InvalidNotification(
            f"seller_id {fields.get('seller_id')!r} does not match the configured "
            "seller_id"
        )
    try:
        transaction = _read_transaction(fields)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidNotification(f"notification is malformed: {error}") from None
    log.info(
        "alipay notification verified out_trade_no=%s transaction_id=%s "
        "trade_status=%s notification_id=%s",
        transaction.out_trade_no,
        transaction.transaction_id,
        transaction.trade_status,
        transaction.notification_id,
    )
    return transaction


def _read_transaction(fields):
    trade_status = _read_trade_status(fields)
    success_time = _read_optional_time(fields, "gmt_payment")
    if TRADE_STATES[trade_status] == TRADE_STATE_SUCCESS and success_time is None:
        raise ValueError(f"gmt_payment is missing from a {trade_status} notification")
    return Transaction(
        out_trade_no=_read_string(fields, "out_trade_no"),
        transaction_id=_read_string(fields, "trade_no"),
        trade_state=TRADE_STATES[trade_status],
        trade_status=trade_status,
        amount_fen=_read_fen(fields, "total_amount"),
        receipt_amount_fen=_read_optional_fen(fields, "receipt_amount"),
        refund_fee_fen=_read_optional_fen(fields, "refund_fee"),
        success_time=success_time,
        buyer_id=_read_buyer_id(fields),
        notification_id=fields.get("notify_id") or None,
    )


def notification_ack() -> tuple[str, int, dict[str, str]]:
    """Return the (body, status, headers) that accept a notification.

    Alipay accepts only the plain-text body `success`.
    """
    return NOTIFICATION_ACK_BODY, 200, {"Content-Type": "text/plain; charset=utf-8"}


def notification_nack(status: int = 500) -> tuple[str, int, dict[str, str]]:
    """Return the (body, status, headers) that make Alipay send the
    notification again: the plain-text body `fail`."""
    return "fail", status, {"Content-Type": "text/plain; charset=utf-8"}

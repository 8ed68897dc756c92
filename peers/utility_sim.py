"""Utility simulator: every utility of peers.common.UTILITIES under one port.

It implements the utility side of docs/partners.md. Each utility lives under
`/<code>`: account lookup, arrears, payment reports and transfer pushes, all
signed by the hub with that utility's secret. After accepting a transfer it
reports `办理中` and then `办结` or `退件` to the hub's feedback endpoint,
signed as the utility. Utilities connected by `channel` take no push and
collect their transfers from the hub's export instead.

The `/_sim/...` endpoints are an unsigned sandbox for tests and demos: they
load accounts, show what was received (`/_sim/pushes` lists every arrival
with its message id), change the delays of `SETTABLE` and trigger a
collection.

    python -m peers.utility_sim --port 0 --port-file PATH \\
        --hub-url http://127.0.0.1:N --keys DIR [--accounts FILE.json]

State lives in memory and is lost when the process stops. Logs carry
transfer ids and account numbers, never names, ID numbers or phone numbers.
"""

import argparse
import base64
import binascii
import datetime as dt
import hashlib
import heapq
import json
import logging
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from urllib.parse import urlsplit

import requests
from flask import Flask, jsonify, request

from domain.utilities import METER_UNITS
from partners.signing import (
    WINDOW_SECONDS,
    SignatureError,
    read_headers,
    sign_request,
    verify_signature,
)
from peers.common import (
    UTILITIES,
    UTILITY_BY_CODE,
    RequestError,
    Utility,
    add_server_arguments,
    configure_logging,
    install_json_errors,
    now_iso,
    parse_json_body,
    serve,
)
from peers.devkeys import ensure_dev_keys

# Named explicitly because __name__ is "__main__" under `python -m`.
logger = logging.getLogger("peers.utility_sim")

FEEDBACK_PATH = "/api/v1/partner/feedback"
EXPORTS_PATH = "/api/v1/partner/exports"

STATUS_IN_PROGRESS = "办理中"
STATUS_COMPLETED = "办结"
STATUS_RETURNED = "退件"

REASON_UNKNOWN_ACCOUNT = "户号不存在"
REASON_CLOSED = "该户号已销户"
REASON_DIRECT_DEBIT = "原户主银行代扣未解除"
REASON_ARREARS = "账户仍有欠费未结清"

PUSH_TEXT_FIELDS = (
    "transfer_id",
    "business_no",
    "business_type",
    "unit_code",
    "location",
    "service_org",
    "account_no",
)
# The registry or the hub may not know these, so they may be null, but the key
# must be present.
PUSH_NULLABLE_TEXT_FIELDS = (
    "certificate_no",
    "usage",
    "account_address",
)
PERSON_FIELDS = ("name", "id_type", "id_number")
UNIT_CODE_LENGTH = 28

# Delays, in seconds, that PUT /_sim/settings may change while running.
SETTABLE = ("push_delay", "feedback_delay")

# Hub status codes below 500 after which feedback is sent again: a conflict
# that may pass once the hub catches up, and rate limiting.
RETRIED_STATUSES = (409, 429)


class HubError(Exception):
    """The hub could not be reached or returned an unusable response."""


@dataclass
class Account:
    utility: str
    account_no: str
    holder_name: str
    holder_id_numbers: list[str]
    account_address: str
    arrears_fen: int
    status: str
    direct_debit: bool
    # Money paid in advance and not yet used, owed back to the holder.
    prepaid_fen: int = 0
    # Why the utility blocks the account from any transfer, if it does.
    block_reason: str | None = None
    # Whether the transfer check returns 503, as when that part of the
    # utility's system is down. A sandbox switch for tests of the hub.
    transfer_check_down: bool = False

    def to_json(self) -> dict:
        return {
            "account_no": self.account_no,
            "holder_name": self.holder_name,
            "holder_id_numbers": list(self.holder_id_numbers),
            "account_address": self.account_address,
            "status": self.status,
            "direct_debit": self.direct_debit,
        }

    def transfer_check(self) -> dict:
        """Return whether the account can move to a new holder, item by item."""
        items = [
            {
                "item": "arrears",
                "blocking": self.arrears_fen > 0,
                "amount_fen": self.arrears_fen,
            },
            {"item": "direct_debit", "blocking": self.direct_debit},
            {
                "item": "prepaid_balance",
                "blocking": False,
                "amount_fen": self.prepaid_fen,
            },
            {
                "item": "block",
                "blocking": self.block_reason is not None,
                "reason": self.block_reason,
            },
            {"item": "account_closed", "blocking": self.status == "closed"},
        ]
        return {
            "account_no": self.account_no,
            "transferable": not any(item["blocking"] for item in items),
            "items": items,
            "as_of": now_iso(),
        }


@dataclass
class Payment:
    account_no: str
    amount_fen: int
    response: dict
    # What the payment took off the arrears, which a reversal puts back.
    applied_fen: int = 0
    reversal: dict | None = None


@dataclass
class FeedbackMessage:
    status: str
    return_reason: str | None
    reported_at: str
    # pending, delivered, rejected (the hub returned 4xx), failed (retries used
    # up) or held (not sent because the message before it was not accepted).
    delivery: str = "pending"
    attempts: int = 0
    last_error: str | None = None


@dataclass
class TransferRecord:
    utility: str
    transfer_id: str
    utility_ref: str
    account_no: str
    received_via: str
    received_at: str
    push: dict
    outcome: str | None = None
    return_reason: str | None = None
    feedback: list[FeedbackMessage] = field(default_factory=list)

    def acknowledgement(self) -> dict:
        return {"transfer_id": self.transfer_id, "utility_ref": self.utility_ref}


def _invalid(name: str, rule: str) -> RequestError:
    return RequestError(400, "invalid_field", f"{name} {rule}.")


def _missing(name: str) -> RequestError:
    return RequestError(400, "missing_field", f"{name} is required.")


def _require_text(body: dict, name: str, prefix: str = "") -> str:
    if name not in body or body[name] is None:
        raise _missing(prefix + name)
    value = body[name]
    if not isinstance(value, str) or not value.strip():
        raise _invalid(prefix + name, "must be a non-empty string")
    return value


def _check_nullable_text(body: dict, name: str) -> None:
    if name not in body:
        raise _missing(name)
    if body[name] is not None and not isinstance(body[name], str):
        raise _invalid(name, "must be a string or null")


def _require_bool(body: dict, name: str) -> bool:
    if name not in body or body[name] is None:
        raise _missing(name)
    if not isinstance(body[name], bool):
        raise _invalid(name, "must be true or false")
    return body[name]


def _require_fen(body: dict, name: str, minimum: int) -> int:
    if name not in body or body[name] is None:
        raise _missing(name)
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(name, f"must be an integer number of fen >= {minimum}")
    return value


def _check_area(body: dict, name: str) -> None:
    """Accept null, a JSON number or a decimal string such as "89.50", in m²."""
    if name not in body:
        raise _missing(name)
    value = body[name]
    if value is None:
        return
    if isinstance(value, bool):
        raise _invalid(name, "must be a number of square metres")
    if isinstance(value, int | float):
        number = Decimal(str(value))
    elif isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            raise _invalid(name, "must be a number of square metres") from None
    else:
        raise _invalid(name, "must be a number of square metres")
    if not number.is_finite() or number < 0:
        raise _invalid(name, "must be a finite number of square metres >= 0")


def _check_people(body: dict, name: str, allow_empty: bool) -> None:
    if name not in body or body[name] is None:
        raise _missing(name)
    people = body[name]
    if not isinstance(people, list):
        raise _invalid(name, "must be a list of people")
    if not people and not allow_empty:
        raise _invalid(name, "must name at least one person")
    for index, person in enumerate(people):
        prefix = f"{name}[{index}]."
        if not isinstance(person, dict):
            raise _invalid(
                f"{name}[{index}]", "must be an object with " + ", ".join(PERSON_FIELDS)
            )
        for person_field in PERSON_FIELDS:
            _require_text(person, person_field, prefix)


def validate_push(body: object, utility: Utility) -> dict:
    """Check a transfer push for `utility` and return it, or raise RequestError 400.

    Messages name the field and the rule, never the value, because values may be
    personal data.
    """
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_request", "The push must be a JSON object.")
    for name in PUSH_TEXT_FIELDS:
        _require_text(body, name)
    for name in PUSH_NULLABLE_TEXT_FIELDS:
        _check_nullable_text(body, name)
    if len(body["unit_code"]) != UNIT_CODE_LENGTH:
        raise _invalid("unit_code", f"must be {UNIT_CODE_LENGTH} characters")
    if body["service_org"] != utility.service_org:
        raise RequestError(
            400,
            "service_org_mismatch",
            f"service_org must be {utility.service_org!r} for utility "
            f"{utility.code!r}; check that the push went to the right utility.",
        )
    _check_area(body, "building_area")
    _check_area(body, "inner_area")
    _check_people(body, "owners", allow_empty=False)
    # A first registration of a new home may have no earlier owner.
    _check_people(body, "previous_owners", allow_empty=True)
    _require_fen(body, "arrears_fen", minimum=0)
    _require_bool(body, "account_confirmed")
    version = body.get("agreement_version")
    if "agreement_version" not in body:
        raise RequestError(400, "missing_field", "agreement_version is required.")
    if _require_bool(body, "agreement_accepted") or version is not None:
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise _invalid("agreement_version", "must be a positive integer")
    return body


def parse_accounts(items: object) -> list[Account]:
    """Parse the sandbox account list, raising RequestError 400 on the first error."""
    if not isinstance(items, list):
        raise RequestError(
            400, "invalid_request", "The accounts must be a JSON list of objects."
        )
    accounts = []
    for index, item in enumerate(items):
        where = f"accounts[{index}]"
        if not isinstance(item, dict):
            raise _invalid(where, "must be a JSON object")
        prefix = where + "."
        code = item.get("utility")
        if code not in UTILITY_BY_CODE:
            raise _invalid(
                prefix + "utility", f"must be one of {', '.join(UTILITY_BY_CODE)}"
            )
        id_numbers = item.get("holder_id_numbers", [])
        if not isinstance(id_numbers, list) or not all(
            isinstance(number, str) and number.strip() for number in id_numbers
        ):
            raise _invalid(
                prefix + "holder_id_numbers", "must be a list of non-empty strings"
            )
        arrears_fen = item.get("arrears_fen", 0)
        if (
            isinstance(arrears_fen, bool)
            or not isinstance(arrears_fen, int)
            or arrears_fen < 0
        ):
            raise _invalid(prefix + "arrears_fen", "must be an integer >= 0")
        status = item.get("status", "active")
        if status not in ("active", "closed"):
            raise _invalid(prefix + "status", 'must be "active" or "closed"')
        direct_debit = item.get("direct_debit", False)
        if not isinstance(direct_debit, bool):
            raise _invalid(prefix + "direct_debit", "must be true or false")
        address = item.get("account_address")
        if not isinstance(address, str):
            raise _invalid(prefix + "account_address", "must be a string")
        prepaid_fen = item.get("prepaid_fen", 0)
        if (
            isinstance(prepaid_fen, bool)
            or not isinstance(prepaid_fen, int)
            or prepaid_fen < 0
        ):
            raise _invalid(prefix + "prepaid_fen", "must be an integer >= 0")
        transfer_check_down = item.get("transfer_check_down", False)
        if not isinstance(transfer_check_down, bool):
            raise _invalid(prefix + "transfer_check_down", "must be true or false")
        block_reason = item.get("block_reason")
        if block_reason is not None and not (
            isinstance(block_reason, str) and block_reason.strip()
        ):
            raise _invalid(
                prefix + "block_reason", "must be a non-empty string or null"
            )
        accounts.append(
            Account(
                utility=code,
                account_no=_require_text(item, "account_no", prefix),
                holder_name=_require_text(item, "holder_name", prefix),
                holder_id_numbers=list(id_numbers),
                account_address=address,
                arrears_fen=arrears_fen,
                status=status,
                direct_debit=direct_debit,
                prepaid_fen=prepaid_fen,
                block_reason=block_reason,
                transfer_check_down=transfer_check_down,
            )
        )
    return accounts


def _check_payment(body: object) -> tuple[str, int]:
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_request", "The payment must be a JSON object.")
    payment_id = _require_text(body, "payment_id")
    amount_fen = _require_fen(body, "amount_fen", minimum=1)
    paid_at = _require_text(body, "paid_at")
    try:
        dt.datetime.fromisoformat(paid_at)
    except ValueError:
        raise _invalid("paid_at", "must be an ISO 8601 date and time") from None
    return payment_id, amount_fen


def _retry_after_seconds(response: requests.Response) -> float:
    """Return the wait that a Retry-After header in seconds requests, or 0.

    The HTTP-date form of the header is not read, and counts as 0.
    """
    try:
        return max(0.0, float(response.headers.get("Retry-After", "")))
    except ValueError:
        return 0.0


def _signed_path_candidates() -> list[str]:
    """Return the forms of the current request path that a client may have signed.

    The first is the request target as sent, percent-encoding included. The
    second is the decoded path, for a client that signed the path before its
    HTTP library encoded it. Both are the same for ASCII paths.
    """
    query = request.query_string.decode("latin-1")
    decoded = f"{request.path}?{query}" if query else request.path
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw and raw != decoded:
        return [raw, decoded]
    return [decoded]


class UtilitySimulator:
    """In-memory state and behaviour of all simulated utilities.

    One lock guards the accounts, payments, transfers and seen message ids.
    Network calls to the hub happen outside it.
    """

    def __init__(self, config: dict):
        self.hub_url = config["hub_url"].rstrip("/")
        self.secrets = dict(config["utility_secrets"])
        missing = [u.code for u in UTILITIES if u.code not in self.secrets]
        if missing:
            raise ValueError(f"utility_secrets lacks {', '.join(missing)}.")
        self.feedback_delay = float(config.get("feedback_delay", 0.5))
        self.collect_interval = float(config.get("collect_interval", 0))
        self.retry_attempts = int(config.get("retry_attempts", 8))
        self.retry_base_delay = float(config.get("retry_base_delay", 0.5))
        self.retry_max_delay = float(config.get("retry_max_delay", 30))
        self.hub_timeout = float(config.get("hub_timeout", 5))
        self.push_delay = float(config.get("push_delay", 0))

        self._lock = threading.Lock()
        self._accounts: dict[tuple[str, str], Account] = {}
        self._payments: dict[tuple[str, str], Payment] = {}
        self._transfers: dict[tuple[str, str], TransferRecord] = {}
        # Every transfer received, repeats included, in arrival order.
        self._arrivals: list[dict] = []
        self._readings: dict[tuple[str, str], dict] = {}
        self._disputes: dict[tuple[str, str], dict] = {}
        # (expiry, partner, message_id) in a heap, so old ids leave in order.
        self._seen_expiry: list[tuple[float, str, str]] = []
        self._seen: set[tuple[str, str]] = set()
        self._stopping = threading.Event()
        self._collector: threading.Thread | None = None

    # Signed requests from the hub.

    def authenticate(self, utility: Utility) -> str:
        """Return the request's message id, or raise RequestError 401.

        Raises unless the current request is signed for `utility` with a
        message id not seen before.
        """
        body = request.get_data()
        try:
            signed = read_headers(request.headers)
            if signed.partner != utility.code:
                raise SignatureError(
                    "partner_mismatch",
                    f"X-Lianban-Partner is {signed.partner!r} but the request is "
                    f"for utility {utility.code!r}.",
                )
            self._verify_any_path(signed, utility, body)
        except SignatureError as error:
            logger.warning(
                "rejected request %s %s: %s", request.method, request.path, error.code
            )
            raise RequestError(401, error.code, error.message) from None
        if not self._remember_message(utility.code, signed):
            logger.warning(
                "rejected replayed message utility=%s message_id=%s",
                utility.code,
                signed.message_id,
            )
            raise RequestError(
                401,
                "message_replayed",
                f"Message id {signed.message_id} was already used; sign each "
                "request with a fresh message id.",
            )
        return signed.message_id

    def _verify_any_path(self, signed, utility: Utility, body: bytes) -> None:
        paths = _signed_path_candidates()
        for index, path in enumerate(paths):
            try:
                verify_signature(
                    signed, [self.secrets[utility.code]], request.method, path, body
                )
                return
            except SignatureError:
                if index == len(paths) - 1:
                    raise

    def _remember_message(self, partner: str, signed) -> bool:
        """Record a message id and return False if it was seen before."""
        now = time.time()
        key = (partner, signed.message_id)
        with self._lock:
            while self._seen_expiry and self._seen_expiry[0][0] < now:
                _, old_partner, old_id = heapq.heappop(self._seen_expiry)
                self._seen.discard((old_partner, old_id))
            if key in self._seen:
                return False
            self._seen.add(key)
            # After this moment the timestamp check rejects the message anyway.
            expiry = signed.timestamp + WINDOW_SECONDS + 1
            heapq.heappush(self._seen_expiry, (expiry, partner, signed.message_id))
            return True

    # Accounts and payments.

    def upsert_accounts(self, accounts: list[Account]) -> None:
        with self._lock:
            for account in accounts:
                self._accounts[(account.utility, account.account_no)] = account
        logger.info("loaded %d accounts", len(accounts))

    def _get_account(self, utility: Utility, account_no: str) -> Account:
        account = self._accounts.get((utility.code, account_no))
        if account is None:
            raise RequestError(
                404,
                "account_not_found",
                f"Account {account_no} does not exist at utility {utility.code}.",
            )
        return account

    def pay_at_counter(self, body: object) -> dict:
        """Take a payment at the utility's own counter, as a payer might do
        while an order in the app is still open."""
        if not isinstance(body, dict):
            raise RequestError(
                400, "invalid_request", "The counter payment must be a JSON object."
            )
        amount_fen = _require_fen(body, "amount_fen", minimum=1)
        utility = _utility_or_404(str(body.get("utility")))
        account_no = body.get("account_no")
        if not isinstance(account_no, str):
            raise RequestError(400, "invalid_request", "account_no must be a string.")
        with self._lock:
            account = self._get_account(utility, account_no)
            before = account.arrears_fen
            account.arrears_fen = max(0, before - amount_fen)
            after = account.arrears_fen
        logger.info(
            "counter payment utility=%s account_no=%s amount_fen=%d arrears_fen=%d->%d",
            utility.code,
            account_no,
            amount_fen,
            before,
            after,
        )
        return {"account_no": account_no, "arrears_fen": after}

    def account_json(self, utility: Utility, account_no: str) -> dict:
        with self._lock:
            return self._get_account(utility, account_no).to_json()

    def read_meter(self, utility: Utility, account_no: str, body: object) -> dict:
        """Return the account's reading for a transfer day, the same one each time.

        The reading is derived from the account number, so that a test can
        predict it, and grows by one unit a day from 2026-01-01.
        """
        unit = METER_UNITS.get(utility.kind)
        if unit is None:
            raise RequestError(
                400, "not_metered", f"Utility {utility.code} has no meters to read."
            )
        if not isinstance(body, dict):
            raise RequestError(
                400, "invalid_request", "The request must be a JSON object."
            )
        transfer_id = _require_text(body, "transfer_id")
        try:
            day = dt.date.fromisoformat(_require_text(body, "reading_date"))
        except ValueError:
            raise _invalid("reading_date", "must be a date as YYYY-MM-DD") from None
        with self._lock:
            self._get_account(utility, account_no)
            key = (utility.code, transfer_id)
            if key not in self._readings:
                base = sum(account_no.encode()) * 7 % 9000
                days = (day - dt.date(2026, 1, 1)).days
                serial = len(self._readings) + 1
                self._readings[key] = {
                    "reading_id": f"{utility.code.upper()}-MR-{serial:06d}",
                    "transfer_id": transfer_id,
                    "account_no": account_no,
                    "reading_date": day.isoformat(),
                    "value": f"{base + max(days, 0)}.{len(account_no) % 10}",
                    "unit": unit,
                    "read_at": now_iso(),
                    "method": "remote",
                }
            return dict(self._readings[key])

    def record_dispute(self, utility: Utility, reading_id: str, body: object) -> dict:
        """Keep a disputed reading's note and photo, once per photo."""
        if not isinstance(body, dict):
            raise RequestError(
                400, "invalid_request", "The dispute must be a JSON object."
            )
        note = _require_text(body, "note")
        digest = _require_text(body, "photo_sha256")
        try:
            photo = base64.b64decode(_require_text(body, "photo_base64"), validate=True)
        except binascii.Error:
            raise _invalid("photo_base64", "must be base64") from None
        if hashlib.sha256(photo).hexdigest() != digest:
            raise _invalid("photo_sha256", "does not match the photo")
        with self._lock:
            known = [
                r for r in self._readings.values() if r["reading_id"] == reading_id
            ]
            if not known:
                raise RequestError(
                    404, "reading_not_found", f"No reading {reading_id} was taken."
                )
            key = (reading_id, digest)
            if key not in self._disputes:
                serial = len(self._disputes) + 1
                self._disputes[key] = {
                    "dispute_id": f"{utility.code.upper()}-DS-{serial:06d}",
                    "reading_id": reading_id,
                    "note": note,
                    "photo_sha256": digest,
                    "photo_bytes": len(photo),
                    "received_at": now_iso(),
                }
            return dict(self._disputes[key])

    def readings_json(self, transfer_id: str | None) -> list[dict]:
        with self._lock:
            return [
                dict(reading)
                for reading in self._readings.values()
                if transfer_id is None or reading["transfer_id"] == transfer_id
            ]

    def disputes_json(self) -> list[dict]:
        with self._lock:
            return [dict(dispute) for dispute in self._disputes.values()]

    def transfer_check_json(self, utility: Utility, account_no: str) -> dict:
        with self._lock:
            account = self._get_account(utility, account_no)
            if account.transfer_check_down:
                raise RequestError(
                    503,
                    "check_unavailable",
                    f"The transfer check of account {account_no} is down.",
                )
            return account.transfer_check()

    def arrears_json(self, utility: Utility, account_no: str) -> dict:
        with self._lock:
            arrears_fen = self._get_account(utility, account_no).arrears_fen
        return {
            "account_no": account_no,
            "arrears_fen": arrears_fen,
            "as_of": now_iso(),
        }

    def record_payment(self, utility: Utility, account_no: str, body: object) -> dict:
        """Lower the arrears by a reported payment, once per payment_id."""
        payment_id, amount_fen = _check_payment(body)
        key = (utility.code, payment_id)
        with self._lock:
            account = self._get_account(utility, account_no)
            earlier = self._payments.get(key)
            if earlier is not None:
                if earlier.account_no != account_no or earlier.amount_fen != amount_fen:
                    raise RequestError(
                        409,
                        "payment_conflict",
                        f"payment_id {payment_id} was already reported for account "
                        f"{earlier.account_no} with amount_fen {earlier.amount_fen}.",
                    )
                repeated = True
                response = earlier.response
            else:
                repeated = False
                before = account.arrears_fen
                account.arrears_fen = max(0, before - amount_fen)
                response = {
                    "account_no": account_no,
                    "payment_id": payment_id,
                    "arrears_fen": account.arrears_fen,
                    # What went against the debt; the payer gets the rest back.
                    "applied_fen": before - account.arrears_fen,
                    "as_of": now_iso(),
                }
                self._payments[key] = Payment(
                    account_no, amount_fen, response, before - account.arrears_fen
                )
        if repeated:
            logger.info(
                "repeated payment utility=%s account_no=%s payment_id=%s",
                utility.code,
                account_no,
                payment_id,
            )
        else:
            logger.info(
                "payment utility=%s account_no=%s payment_id=%s amount_fen=%d "
                "arrears_fen=%d->%d",
                utility.code,
                account_no,
                payment_id,
                amount_fen,
                before,
                response["arrears_fen"],
            )
            if amount_fen > before:
                logger.warning(
                    "payment exceeds arrears utility=%s account_no=%s payment_id=%s "
                    "excess_fen=%d",
                    utility.code,
                    account_no,
                    payment_id,
                    amount_fen - before,
                )
        return dict(response)

    def reverse_payment(
        self, utility: Utility, account_no: str, payment_id: str, body: object
    ) -> dict:
        """Put a reported payment's amount back on the arrears, once."""
        if not isinstance(body, dict):
            raise RequestError(
                400, "invalid_request", "The reversal must be a JSON object."
            )
        amount_fen = _require_fen(body, "amount_fen", minimum=1)
        with self._lock:
            account = self._get_account(utility, account_no)
            payment = self._payments.get((utility.code, payment_id))
            if payment is None or payment.account_no != account_no:
                raise RequestError(
                    404,
                    "payment_not_found",
                    f"No payment {payment_id} was reported for account {account_no}.",
                )
            if payment.amount_fen != amount_fen:
                raise RequestError(
                    409,
                    "payment_conflict",
                    f"payment_id {payment_id} was reported with amount_fen "
                    f"{payment.amount_fen}, not {amount_fen}.",
                )
            if payment.reversal is None:
                account.arrears_fen += payment.applied_fen
                payment.reversal = {
                    "account_no": account_no,
                    "payment_id": payment_id,
                    "arrears_fen": account.arrears_fen,
                    "reversed_at": now_iso(),
                }
                logger.info(
                    "payment reversed utility=%s account_no=%s payment_id=%s",
                    utility.code,
                    account_no,
                    payment_id,
                )
            return dict(payment.reversal)

    # Transfers.

    def accept_transfer(
        self,
        utility: Utility,
        body: object,
        received_via: str,
        message_id: str | None = None,
    ) -> tuple[dict, bool]:
        """Store a valid transfer and start its processing once per transfer_id.

        Every arrival is logged with its message id, repeats included.
        Returns the acknowledgement and whether the transfer was new.
        """
        push = validate_push(body, utility)
        key = (utility.code, push["transfer_id"])
        with self._lock:
            existing = self._transfers.get(key)
            self._arrivals.append(
                {
                    "utility": utility.code,
                    "transfer_id": push["transfer_id"],
                    "message_id": message_id,
                    "received_via": received_via,
                    "received_at": now_iso(),
                    "new": existing is None,
                }
            )
            if existing is None:
                record = TransferRecord(
                    utility=utility.code,
                    transfer_id=push["transfer_id"],
                    utility_ref=f"{utility.code.upper()}-{uuid.uuid4().hex[:12].upper()}",
                    account_no=push["account_no"],
                    received_via=received_via,
                    received_at=now_iso(),
                    push=push,
                )
                self._transfers[key] = record
        if existing is not None:
            logger.info(
                "repeated transfer utility=%s transfer_id=%s message_id=%s via=%s",
                utility.code,
                push["transfer_id"],
                message_id,
                received_via,
            )
            return existing.acknowledgement(), False
        logger.info(
            "accepted transfer utility=%s transfer_id=%s account_no=%s via=%s "
            "utility_ref=%s",
            record.utility,
            record.transfer_id,
            record.account_no,
            received_via,
            record.utility_ref,
        )
        threading.Thread(
            target=self._process_transfer,
            args=(record,),
            name=f"transfer-{record.utility}-{record.transfer_id}",
            daemon=True,
        ).start()
        return record.acknowledgement(), True

    def _process_transfer(self, record: TransferRecord) -> None:
        """Report 办理中, transfer or return the account, then report the outcome.

        The outcome is sent only after the hub accepted 办理中, so the hub receives
        the two messages in order.

        NOTE: a message that ends rejected, failed or held is never sent again,
        so a hub that was down, or kept returning 409, for longer than the
        retry budget never learns the outcome. With the defaults (8 attempts,
        0.5 s doubling up to 30 s) the budget is about 60 s of waiting.
        /_sim/transfers shows such messages.
        """
        try:
            if self._stopping.wait(self.feedback_delay):
                return
            progress = self._add_feedback(record, STATUS_IN_PROGRESS, None)
            progress_delivered = self._deliver_feedback(record, progress)
            if self._stopping.wait(self.feedback_delay):
                return
            status, reason = self._decide(record)
            final = self._add_feedback(record, status, reason)
            if not progress_delivered:
                with self._lock:
                    final.delivery = "held"
                logger.error(
                    "holding feedback utility=%s transfer_id=%s account_no=%s "
                    "status=%s because the hub did not accept %s",
                    record.utility,
                    record.transfer_id,
                    record.account_no,
                    status,
                    STATUS_IN_PROGRESS,
                )
                return
            self._deliver_feedback(record, final)
        except Exception:
            # The thread has no caller to raise to, so record the failure here.
            logger.exception(
                "processing failed utility=%s transfer_id=%s account_no=%s",
                record.utility,
                record.transfer_id,
                record.account_no,
            )

    def _add_feedback(
        self, record: TransferRecord, status: str, reason: str | None
    ) -> FeedbackMessage:
        message = FeedbackMessage(status, reason, now_iso())
        with self._lock:
            record.feedback.append(message)
        return message

    def _decide(self, record: TransferRecord) -> tuple[str, str | None]:
        """Return the outcome for the account as it is now, applying a 办结."""
        with self._lock:
            account = self._accounts.get((record.utility, record.account_no))
            if account is None:
                reason = REASON_UNKNOWN_ACCOUNT
            elif account.status == "closed":
                reason = REASON_CLOSED
            elif account.direct_debit:
                reason = REASON_DIRECT_DEBIT
            elif account.arrears_fen > 0:
                reason = REASON_ARREARS
            else:
                reason = None
                # The utility transfers to the owner the registry pushes now,
                # regardless of who held the account before.
                new_holder = record.push["owners"][0]
                account.holder_name = new_holder["name"]
                account.holder_id_numbers = [new_holder["id_number"]]
                account.direct_debit = False
            status = STATUS_RETURNED if reason else STATUS_COMPLETED
            record.outcome = status
            record.return_reason = reason
        logger.info(
            "decided transfer utility=%s transfer_id=%s account_no=%s status=%s "
            "return_reason=%s",
            record.utility,
            record.transfer_id,
            record.account_no,
            status,
            reason,
        )
        return status, reason

    def _deliver_feedback(
        self, record: TransferRecord, message: FeedbackMessage
    ) -> bool:
        """Send one feedback message, retrying with backoff as a partner would.

        The hub being down, 5xx, 429 and 409 are retried: a 409 may mean the
        hub has not yet recorded the push that this report follows. The wait
        doubles, and is at least what a Retry-After header in seconds requests.
        Any other 4xx is final. Returns whether the hub accepted the message.
        """
        body = json.dumps(
            {
                "transfer_id": record.transfer_id,
                "account_no": record.account_no,
                "status": message.status,
                "return_reason": message.return_reason,
                "reported_at": message.reported_at,
                "service_org": UTILITY_BY_CODE[record.utility].service_org,
            },
            ensure_ascii=False,
        ).encode("utf-8")
        ids = (record.utility, record.transfer_id, record.account_no, message.status)

        for attempt in range(1, self.retry_attempts + 1):
            with self._lock:
                message.attempts = attempt
            retry_after = 0.0
            try:
                response = self._send_signed(
                    record.utility, "POST", self.hub_url + FEEDBACK_PATH, body
                )
            except requests.RequestException as error:
                problem = f"{type(error).__name__}: {error}"
            else:
                if 200 <= response.status_code < 300:
                    with self._lock:
                        message.delivery = "delivered"
                        message.last_error = None
                    logger.info(
                        "delivered feedback utility=%s transfer_id=%s account_no=%s "
                        "status=%s attempt=%d",
                        *ids,
                        attempt,
                    )
                    return True
                if response.status_code not in RETRIED_STATUSES and (
                    response.status_code < 500
                ):
                    problem = f"HTTP {response.status_code}: {response.text[:300]}"
                    with self._lock:
                        message.delivery = "rejected"
                        message.last_error = problem
                    logger.error(
                        "hub rejected feedback utility=%s transfer_id=%s "
                        "account_no=%s status=%s, not retrying: %s",
                        *ids,
                        problem,
                    )
                    return False
                problem = f"HTTP {response.status_code}"
                if response.status_code < 500:
                    problem += f": {response.text[:300]}"
                retry_after = _retry_after_seconds(response)

            with self._lock:
                message.last_error = problem
            if attempt == self.retry_attempts:
                break
            delay = min(
                max(self.retry_base_delay * 2 ** (attempt - 1), retry_after),
                self.retry_max_delay,
            )
            logger.warning(
                "feedback delivery failed utility=%s transfer_id=%s account_no=%s "
                "status=%s attempt=%d/%d, retrying in %.1f s: %s",
                *ids,
                attempt,
                self.retry_attempts,
                delay,
                problem,
            )
            if self._stopping.wait(delay):
                return False

        with self._lock:
            message.delivery = "failed"
        logger.error(
            "gave up delivering feedback utility=%s transfer_id=%s account_no=%s "
            "status=%s after %d attempts: %s",
            *ids,
            self.retry_attempts,
            problem,
        )
        return False

    def _send_signed(
        self, code: str, method: str, url: str, body: bytes
    ) -> requests.Response:
        parts = urlsplit(url)
        path = f"{parts.path}?{parts.query}" if parts.query else parts.path
        headers = sign_request(code, self.secrets[code], method, path, body)
        headers["Accept"] = "application/json"
        if body:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return requests.request(
            method,
            url,
            data=body or None,
            headers=headers,
            timeout=self.hub_timeout,
            allow_redirects=False,
        )

    # Collection by channel utilities.

    def collect_exports(self, utility: Utility) -> dict:
        """Fetch `utility`'s transfers from the hub's export and accept each one.

        Raises HubError when the hub cannot be reached or its response is unusable.
        """
        url = self.hub_url + EXPORTS_PATH
        try:
            response = self._send_signed(utility.code, "GET", url, b"")
        except requests.RequestException as error:
            raise HubError(f"GET {url} failed: {error}") from None
        if response.status_code != 200:
            raise HubError(
                f"GET {url} returned HTTP {response.status_code}: {response.text[:300]}"
            )
        try:
            content = response.json()
        except ValueError:
            raise HubError(f"GET {url} did not return JSON.") from None
        transfers = content.get("transfers") if isinstance(content, dict) else None
        if not isinstance(transfers, list):
            raise HubError(f'GET {url} returned no "transfers" list.')

        accepted, duplicates, invalid = [], [], []
        for index, item in enumerate(transfers):
            transfer_id = item.get("transfer_id") if isinstance(item, dict) else None
            try:
                acknowledgement, created = self.accept_transfer(
                    utility, item, received_via="export"
                )
            except RequestError as error:
                logger.error(
                    "rejected exported transfer utility=%s index=%d transfer_id=%s: %s",
                    utility.code,
                    index,
                    transfer_id,
                    error.message,
                )
                invalid.append(
                    {
                        "index": index,
                        "transfer_id": transfer_id,
                        "code": error.code,
                        "message": error.message,
                    }
                )
                continue
            if created:
                accepted.append(acknowledgement)
            else:
                duplicates.append(acknowledgement["transfer_id"])

        if transfers:
            logger.info(
                "collected exports utility=%s received=%d new=%d duplicates=%d "
                "invalid=%d",
                utility.code,
                len(transfers),
                len(accepted),
                len(duplicates),
                len(invalid),
            )
        return {
            "utility": utility.code,
            "received": len(transfers),
            "accepted": accepted,
            "duplicates": duplicates,
            "invalid": invalid,
        }

    def start_collector(self) -> None:
        """Poll the export of every channel utility every collect_interval seconds."""
        if self.collect_interval <= 0 or self._collector is not None:
            return
        self._collector = threading.Thread(
            target=self._collect_loop, name="export-collector", daemon=True
        )
        self._collector.start()
        logger.info("collecting exports every %.1f s", self.collect_interval)

    def _collect_loop(self) -> None:
        channel_utilities = [u for u in UTILITIES if u.connection == "channel"]
        last_problem: dict[str, str] = {}
        while not self._stopping.wait(self.collect_interval):
            for utility in channel_utilities:
                try:
                    self.collect_exports(utility)
                except Exception as error:
                    # Keep polling, but log a repeated identical failure once.
                    problem = f"{type(error).__name__}: {error}"
                    if last_problem.get(utility.code) != problem:
                        logger.warning(
                            "collecting exports failed utility=%s: %s",
                            utility.code,
                            problem,
                        )
                    last_problem[utility.code] = problem
                    continue
                if last_problem.pop(utility.code, None) is not None:
                    logger.info(
                        "collecting exports works again utility=%s", utility.code
                    )

    # Sandbox views and shutdown.

    def transfers_json(self, code: str | None, transfer_id: str | None) -> list[dict]:
        with self._lock:
            records = [
                record
                for record in self._transfers.values()
                if (code is None or record.utility == code)
                and (transfer_id is None or record.transfer_id == transfer_id)
            ]
            return [
                {
                    "utility": record.utility,
                    "transfer_id": record.transfer_id,
                    "utility_ref": record.utility_ref,
                    "account_no": record.account_no,
                    "received_via": record.received_via,
                    "received_at": record.received_at,
                    "outcome": record.outcome,
                    "return_reason": record.return_reason,
                    "feedback": [asdict(message) for message in record.feedback],
                    "push": record.push,
                }
                for record in records
            ]

    def arrivals_json(self, code: str | None, transfer_id: str | None) -> list[dict]:
        """Return every transfer received, by push or export, repeats included."""
        with self._lock:
            return [
                dict(arrival)
                for arrival in self._arrivals
                if (code is None or arrival["utility"] == code)
                and (transfer_id is None or arrival["transfer_id"] == transfer_id)
            ]

    def settings_json(self) -> dict:
        return {name: getattr(self, name) for name in SETTABLE}

    def change_settings(self, seconds_by_name: dict) -> None:
        for name, seconds in seconds_by_name.items():
            setattr(self, name, float(seconds))
        logger.info("settings changed %s", self.settings_json())

    def wait_before_answering_push(self) -> None:
        if self.push_delay > 0:
            self._stopping.wait(self.push_delay)

    def accounts_json(self, code: str | None) -> list[dict]:
        with self._lock:
            return [
                {
                    "utility": account.utility,
                    **account.to_json(),
                    "arrears_fen": account.arrears_fen,
                    "prepaid_fen": account.prepaid_fen,
                    "block_reason": account.block_reason,
                }
                for account in self._accounts.values()
                if code is None or account.utility == code
            ]

    def stop(self) -> None:
        """Stop the feedback and collector threads at their next wait."""
        self._stopping.set()
        with self._lock:
            undelivered = sum(
                1
                for record in self._transfers.values()
                if record.outcome is None
                or any(m.delivery != "delivered" for m in record.feedback)
            )
        if undelivered:
            logger.warning(
                "stopping with %d transfers whose feedback was not all delivered",
                undelivered,
            )


def _utility_or_404(code: str) -> Utility:
    utility = UTILITY_BY_CODE.get(code)
    if utility is None:
        raise RequestError(
            404,
            "utility_not_found",
            f"No utility {code!r}; known codes: {', '.join(UTILITY_BY_CODE)}.",
        )
    return utility


def create_app(config: dict) -> Flask:
    """Build the simulator app.

    `config` keys: `hub_url` and `utility_secrets` (code to secret) are
    required. Optional: `accounts` (the sandbox account list), `feedback_delay`,
    `push_delay` (before answering a push), `collect_interval`,
    `retry_attempts`, `retry_base_delay`, `retry_max_delay` and `hub_timeout`,
    all times in seconds. A positive `collect_interval` starts the export
    collector thread. Raises ValueError on an invalid account.
    """
    simulator = UtilitySimulator(config)
    try:
        simulator.upsert_accounts(parse_accounts(config.get("accounts", [])))
    except RequestError as error:
        raise ValueError(error.message) from None

    app = Flask("peers.utility_sim")
    app.json.ensure_ascii = False
    app.extensions["utility_sim"] = simulator
    install_json_errors(app)

    @app.get("/<code>/accounts/<account_no>")
    def get_account(code, account_no):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        return jsonify(simulator.account_json(utility, account_no))

    @app.post("/<code>/accounts/<account_no>/meter-readings")
    def post_meter_reading(code, account_no):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        body = parse_json_body(request.get_data())
        return jsonify(simulator.read_meter(utility, account_no, body))

    @app.post("/<code>/meter-readings/<reading_id>/disputes")
    def post_meter_dispute(code, reading_id):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        body = parse_json_body(request.get_data())
        return jsonify(simulator.record_dispute(utility, reading_id, body)), 202

    @app.get("/_sim/meter-readings")
    def sandbox_list_readings():
        readings = simulator.readings_json(request.args.get("transfer_id"))
        return jsonify({"readings": readings})

    @app.get("/_sim/meter-disputes")
    def sandbox_list_disputes():
        return jsonify({"disputes": simulator.disputes_json()})

    @app.get("/<code>/accounts/<account_no>/transfer-check")
    def get_transfer_check(code, account_no):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        return jsonify(simulator.transfer_check_json(utility, account_no))

    @app.get("/<code>/accounts/<account_no>/arrears")
    def get_arrears(code, account_no):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        return jsonify(simulator.arrears_json(utility, account_no))

    @app.post("/<code>/accounts/<account_no>/payments")
    def post_payment(code, account_no):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        body = parse_json_body(request.get_data())
        return jsonify(simulator.record_payment(utility, account_no, body))

    @app.post("/<code>/accounts/<account_no>/payments/<payment_id>/reversal")
    def post_payment_reversal(code, account_no, payment_id):
        utility = _utility_or_404(code)
        simulator.authenticate(utility)
        body = parse_json_body(request.get_data())
        return jsonify(simulator.reverse_payment(utility, account_no, payment_id, body))

    @app.post("/<code>/transfers")
    def post_transfer(code):
        utility = _utility_or_404(code)
        message_id = simulator.authenticate(utility)
        if utility.connection != "system":
            raise RequestError(
                404,
                "not_connected",
                f"Utility {code} is connected by {utility.connection} and takes no "
                "HTTP push; it collects its transfers from the hub's export.",
            )
        body = parse_json_body(request.get_data())
        acknowledgement, _ = simulator.accept_transfer(
            utility, body, "push", message_id
        )
        # The transfer is stored and its processing started before this wait,
        # so a slow response leaves the hub sending while the utility has it.
        simulator.wait_before_answering_push()
        return jsonify(acknowledgement), 202

    @app.post("/_sim/accounts")
    def sandbox_upsert_accounts():
        accounts = parse_accounts(parse_json_body(request.get_data()))
        simulator.upsert_accounts(accounts)
        return jsonify({"upserted": len(accounts)})

    @app.post("/_sim/counter-payments")
    def sandbox_counter_payment():
        return jsonify(simulator.pay_at_counter(parse_json_body(request.get_data())))

    @app.get("/_sim/accounts")
    def sandbox_list_accounts():
        return jsonify(
            {"accounts": simulator.accounts_json(request.args.get("utility"))}
        )

    @app.get("/_sim/transfers")
    def sandbox_list_transfers():
        transfers = simulator.transfers_json(
            request.args.get("utility"), request.args.get("transfer_id")
        )
        return jsonify({"transfers": transfers})

    @app.get("/_sim/pushes")
    def sandbox_list_pushes():
        arrivals = simulator.arrivals_json(
            request.args.get("utility"), request.args.get("transfer_id")
        )
        return jsonify({"pushes": arrivals})

    @app.get("/_sim/settings")
    def sandbox_get_settings():
        return jsonify(simulator.settings_json())

    @app.put("/_sim/settings")
    def sandbox_change_settings():
        body = parse_json_body(request.get_data())
        if not isinstance(body, dict) or not set(body) <= set(SETTABLE):
            raise RequestError(
                400,
                "invalid_request",
                f"Send a JSON object with any of {', '.join(SETTABLE)}.",
            )
        for name, seconds in body.items():
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, int | float)
                or not 0 <= seconds <= 60
            ):
                raise _invalid(name, "must be a number of seconds from 0 to 60")
        simulator.change_settings(body)
        return jsonify(simulator.settings_json())

    @app.post("/_sim/collect/<code>")
    def sandbox_collect(code):
        utility = _utility_or_404(code)
        if utility.connection != "channel":
            raise RequestError(
                400,
                "not_channel_utility",
                f"Utility {code} takes HTTP pushes; only utilities connected by "
                "channel collect exports.",
            )
        try:
            return jsonify(simulator.collect_exports(utility))
        except HubError as error:
            logger.error("collecting exports failed utility=%s: %s", code, error)
            raise RequestError(502, "hub_error", str(error)) from None

    @app.get("/_sim/health")
    def sandbox_health():
        return jsonify(
            {
                "status": "ok",
                "utilities": [u.code for u in UTILITIES],
                "hub_url": simulator.hub_url,
            }
        )

    simulator.start_collector()
    return app


def _load_accounts_file(path: Path) -> list:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read accounts file {path}: {error}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m peers.utility_sim",
        description="Simulate the utilities that Lianban transfers accounts with.",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--hub-url",
        required=True,
        help="Base URL of the hub that receives feedback, e.g. http://127.0.0.1:5000.",
    )
    parser.add_argument(
        "--accounts", type=Path, help="JSON file with the list of accounts to load."
    )
    parser.add_argument(
        "--feedback-delay",
        type=float,
        default=0.5,
        help="Seconds before each feedback message of a transfer (default 0.5).",
    )
    parser.add_argument(
        "--collect-interval",
        type=float,
        default=0,
        help="Seconds between export collections for channel utilities; "
        "0 turns polling off (default 0).",
    )
    parser.add_argument(
        "--retry-attempts",
        type=int,
        default=8,
        help="Maximum attempts to deliver one feedback message (default 8).",
    )
    parser.add_argument(
        "--retry-base-delay",
        type=float,
        default=0.5,
        help="Seconds before the first retry; doubles after each (default 0.5).",
    )
    parser.add_argument(
        "--retry-max-delay",
        type=float,
        default=30,
        help="Maximum seconds between two delivery attempts (default 30).",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    keys = ensure_dev_keys(args.keys)
    try:
        accounts = _load_accounts_file(args.accounts) if args.accounts else []
        app = create_app(
            {
                "hub_url": args.hub_url,
                "utility_secrets": keys.utility_secrets,
                "accounts": accounts,
                "feedback_delay": args.feedback_delay,
                "collect_interval": args.collect_interval,
                "retry_attempts": args.retry_attempts,
                "retry_base_delay": args.retry_base_delay,
                "retry_max_delay": args.retry_max_delay,
            }
        )
    except ValueError as error:
        logger.error("cannot start the utility simulator: %s", error)
        return 2

    try:
        serve(app, "utility simulator", args.host, args.port, args.port_file)
    finally:
        app.extensions["utility_sim"].stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Signed partner calls and payment notifications that the hub must reject."""

import base64
import json
import secrets
import time
from datetime import datetime, timedelta, timezone

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from models import Business, OutboxMessage, Payment, TransferEvent
from partners.signing import (
    MESSAGE_ID_HEADER,
    PARTNER_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    sign_request,
)
from services.delivery import PAYMENT_REPORT
from tests.hub.flows import assert_error, new_business, share_ids, signed_call

FEEDBACK = "/partner/feedback"
EXPORTS = "/partner/exports"
UNKNOWN_TRANSFER = {"transfer_id": "999999999", "account_no": "SW1", "status": "办结"}


def endpoint(name, homes):
    """Return (partner, method, path, body) for a valid call to endpoint `name`."""
    if name == "registry":
        business_no, payload = new_business(homes)
        return "registry", "PUT", f"/registry/businesses/{business_no}", payload
    if name == "feedback":
        return "water", "POST", FEEDBACK, UNKNOWN_TRANSFER
    return "water", "GET", EXPORTS, None


ENDPOINTS = ["registry", "feedback", "exports"]


def other_signature(stack, partner, method, path, body):
    """Return the partner's signature headers over another body."""
    secret = (
        stack.registry_secret
        if partner == "registry"
        else stack.peers.keys.utility_secret(partner)
    )
    other = json.dumps({"signed": "something else"}).encode()
    return sign_request(partner, secret, method, "/api/v1" + path, other)


# (case id, options for `send`, expected code)
FAILURES = [
    ("unsigned", {"unsigned": True}, "signature_missing"),
    ("no-signature", {"drop": SIGNATURE_HEADER}, "signature_missing"),
    ("no-timestamp", {"drop": TIMESTAMP_HEADER}, "signature_missing"),
    ("no-message-id", {"drop": MESSAGE_ID_HEADER}, "signature_missing"),
    ("wrong-secret", {"secret": "not-the-shared-secret"}, "signature_invalid"),
    ("stale", {"now": time.time() - 3600}, "signature_expired"),
    ("future", {"now": time.time() + 3600}, "signature_expired"),
    (
        "timestamp-text",
        {"headers": {TIMESTAMP_HEADER: "yesterday"}},
        "signature_invalid",
    ),
    ("other-body", {"other_body": True}, "signature_invalid"),
    ("unknown-partner", {"headers": {PARTNER_HEADER: "bank"}}, "partner_unknown"),
    ("long-message-id", {"message_id": "m" * 65}, "message_id_invalid"),
]


def send(stack, partner, method, path, body, options):
    """Send one partner call, signed or spoiled as `options` direct.

    `unsigned` sends no signature headers, `drop` blanks one header and
    `other_body` signs a different body. Other options go to signed_call.
    """
    options = dict(options)
    if options.pop("unsigned", False):
        raw = None if body is None else json.dumps(body).encode()
        return requests.request(
            method,
            stack.hub_url + "/api/v1" + path,
            data=raw,
            headers={"Content-Type": "application/json"},
            timeout=10,
        )
    if options.pop("other_body", False):
        options["headers"] = other_signature(stack, partner, method, path, body)
    drop = options.pop("drop", None)
    if drop:
        options["headers"] = {drop: ""}
    return signed_call(stack, partner, method, path, body, **options)


@pytest.mark.parametrize(
    ("options", "code"),
    [case[1:] for case in FAILURES],
    ids=[case[0] for case in FAILURES],
)
@pytest.mark.parametrize("name", ENDPOINTS)
def test_signature_rejected(stack, homes, app, name, options, code):
    partner, method, path, body = endpoint(name, homes)

    response = send(stack, partner, method, path, body, options)

    error = assert_error(response, 401, code)
    assert "errors" in error
    if name == "registry":
        business_no = path.rsplit("/", 1)[1]
        assert Business.get_or_none(Business.business_no == business_no) is None


@pytest.mark.parametrize(
    ("name", "caller"),
    [
        ("registry", "water"),
        ("registry", "tv"),
        ("feedback", "registry"),
        ("exports", "registry"),
    ],
)
def test_wrong_caller(stack, homes, app, name, caller):
    _, method, path, body = endpoint(name, homes)

    response = signed_call(stack, caller, method, path, body)

    assert_error(response, 401, "partner_unknown")
    if name == "registry":
        business_no = path.rsplit("/", 1)[1]
        assert Business.get_or_none(Business.business_no == business_no) is None


@pytest.mark.parametrize("name", ENDPOINTS)
def test_message_replayed(stack, homes, name):
    partner, method, path, body = endpoint(name, homes)
    message_id = secrets.token_hex(16)

    first = signed_call(stack, partner, method, path, body, message_id=message_id)
    second = signed_call(stack, partner, method, path, body, message_id=message_id)

    assert first.status_code in (200, 201, 404)
    assert_error(second, 401, "message_replayed")


def test_registry_replay_changes_nothing(stack, homes, app):
    partner, method, path, body = endpoint("registry", homes)
    message_id = secrets.token_hex(16)
    signed_call(stack, partner, method, path, body, message_id=message_id)
    before = Business.get(Business.business_no == path.rsplit("/", 1)[1])
    changed = dict(body, location="历下区燕子山路9号")

    response = signed_call(stack, partner, method, path, changed, message_id=message_id)

    assert_error(response, 401, "message_replayed")
    after = Business.get_by_id(before.id)
    assert after.location == before.location
    assert after.updated_at == before.updated_at


def test_feedback_on_other_utility(stack, client, homes):
    home = homes.make(accounts=[("water", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    water = case["transfers"][0]
    report = {
        "transfer_id": str(water["transfer_id"]),
        "account_no": water["account_no"],
        "status": "办结",
    }

    response = signed_call(stack, "gas", "POST", FEEDBACK, report)

    assert_error(response, 404, "transfer_not_found")
    after = client.call("GET", f"/cases/{case['case_id']}")["transfers"][0]
    assert after["status"] == "draft"


# --- WeChat Pay notifications -------------------------------------------------------

NOTIFY = "/api/v1/payments/notify/wechatpay"


@pytest.fixture
def pending(client, homes):
    """Start a payment for a water account that owes 18.00 yuan."""
    home = homes.make(accounts=[("water", {"arrears_fen": 1800})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    transfer_id = case["transfers"][0]["transfer_id"]
    return client.call(
        "POST", f"/cases/{case['case_id']}/transfers/{transfer_id}/payments", {}
    )


class Notifications:
    """Builder of WeChat Pay notifications signed with the sandbox's keys."""

    def __init__(self, keys):
        self.keys = keys
        self.platform_key = self._key(keys.platform_private_key_path)
        self.merchant_key = self._key(keys.merchant_private_key_path)

    @staticmethod
    def _key(path):
        return serialization.load_pem_private_key(path.read_bytes(), password=None)

    def body(self, payment, apiv3_key=None):
        """Return a notification body that reports `payment` as paid."""
        now = datetime.now(timezone(timedelta(hours=8)))
        transaction = {
            "appid": self.keys.wechatpay_appid,
            "mchid": self.keys.mchid,
            "out_trade_no": payment["out_trade_no"],
            "transaction_id": "4200000000" + f"{secrets.randbelow(10**18):018d}",
            "trade_type": "NATIVE",
            "trade_state": "SUCCESS",
            "success_time": now.isoformat(timespec="seconds"),
            "amount": {
                "total": payment["amount_fen"],
                "payer_total": payment["amount_fen"],
            },
            "payer": {"openid": "o-test"},
        }
        nonce = secrets.token_hex(6)
        key = (apiv3_key or self.keys.apiv3_key).encode()
        sealed = AESGCM(key).encrypt(
            nonce.encode(), json.dumps(transaction).encode(), b"transaction"
        )
        event = {
            "id": "EV-" + secrets.token_hex(10),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "resource": {
                "algorithm": "AEAD_AES_256_GCM",
                "ciphertext": base64.b64encode(sealed).decode(),
                "associated_data": "transaction",
                "nonce": nonce,
            },
        }
        return json.dumps(event).encode()

    def headers(self, body, key=None, timestamp=None, serial=None):
        """Return Wechatpay-* headers that sign `body` with `key`."""
        timestamp = str(int(timestamp if timestamp is not None else time.time()))
        nonce = secrets.token_hex(16)
        message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
        signature = (key or self.platform_key).sign(
            message, padding.PKCS1v15(), hashes.SHA256()
        )
        return {
            "Content-Type": "application/json",
            "Wechatpay-Timestamp": timestamp,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": base64.b64encode(signature).decode(),
            "Wechatpay-Serial": serial or self.keys.platform_serial,
        }


@pytest.fixture
def notifications(stack):
    return Notifications(stack.peers.keys)


def _forged(notifications, payment, case):
    body = notifications.body(payment)
    if case == "unsigned":
        return body, {"Content-Type": "application/json"}
    if case == "merchant-key":
        return body, notifications.headers(body, key=notifications.merchant_key)
    if case == "stale":
        return body, notifications.headers(body, timestamp=time.time() - 3600)
    if case == "other-serial":
        return body, notifications.headers(body, serial="5157F09EFDC096DE15EBE81A47")
    if case == "body-changed":
        headers = notifications.headers(body)
        return body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCEED"), headers
    if case == "signature-not-base64":
        headers = notifications.headers(body)
        headers["Wechatpay-Signature"] = "not base64!"
        return body, headers
    if case == "wrong-apiv3-key":
        forged = notifications.body(payment, apiv3_key="0" * 32)
        return forged, notifications.headers(forged)
    if case == "not-json":
        return b"SUCCESS", notifications.headers(b"SUCCESS")
    raise ValueError(case)


FORGERIES = [
    "unsigned",
    "merchant-key",
    "stale",
    "other-serial",
    "body-changed",
    "signature-not-base64",
    "wrong-apiv3-key",
    "not-json",
]


def paid_events(payment_id):
    transfer = Payment.get_by_id(payment_id).transfer
    return (
        TransferEvent.select()
        .where(
            (TransferEvent.transfer == transfer)
            & (TransferEvent.status == "arrears_paid")
        )
        .count()
    )


def payment_reports(payment_id):
    return (
        OutboxMessage.select()
        .where(
            (OutboxMessage.kind == PAYMENT_REPORT)
            & OutboxMessage.ref_id.in_(share_ids(payment_id))
        )
        .count()
    )


@pytest.mark.parametrize("case", FORGERIES)
def test_notification_forged(stack, app, pending, notifications, case):
    body, headers = _forged(notifications, pending, case)

    response = requests.post(stack.hub_url + NOTIFY, data=body, headers=headers)

    assert 400 <= response.status_code < 500
    assert response.json()["code"] == "FAIL"
    payment = Payment.get_by_id(pending["payment_id"])
    assert payment.status == "pending"
    assert payment.transaction_id is None
    assert paid_events(payment.id) == 0
    assert payment_reports(payment.id) == 0


def test_notification_signed_credits_once(stack, app, pending, notifications):
    body = notifications.body(pending)

    first = requests.post(
        stack.hub_url + NOTIFY, data=body, headers=notifications.headers(body)
    )
    second = requests.post(
        stack.hub_url + NOTIFY, data=body, headers=notifications.headers(body)
    )

    assert first.status_code == 204
    assert second.status_code == 204
    assert Payment.get_by_id(pending["payment_id"]).status == "paid"
    assert paid_events(pending["payment_id"]) == 1
    assert payment_reports(pending["payment_id"]) == 1


def _wait_for_notifications(stack, out_trade_no, count, seconds=10):
    url = f"{stack.peers.wechatpay_url}/_sandbox/orders/{out_trade_no}"
    deadline = time.monotonic() + seconds
    while True:
        attempts = requests.get(url, timeout=10).json()["notification_attempts"]
        accepted = [a for a in attempts if a["outcome"] in ("200", "204")]
        if len(accepted) >= count or time.monotonic() > deadline:
            return accepted
        time.sleep(0.1)


def test_notification_again_credits_once(stack, app, client, pending):
    client.pay_in_sandbox(pending["code_url"])
    assert len(_wait_for_notifications(stack, pending["out_trade_no"], 1)) == 1
    assert client.wait_for_payment(pending["payment_id"])["status"] == "paid"

    again = requests.post(
        stack.peers.wechatpay_url + "/_sandbox/notify-again",
        json={"out_trade_no": pending["out_trade_no"]},
        timeout=10,
    )

    assert again.status_code == 202
    assert len(_wait_for_notifications(stack, pending["out_trade_no"], 2)) == 2
    assert paid_events(pending["payment_id"]) == 1
    assert payment_reports(pending["payment_id"]) == 1
    assert client.call("GET", f"/payments/{pending['payment_id']}")["status"] == "paid"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/partner/exports", None),
        (
            "POST",
            "/partner/feedback",
            {"transfer_id": "1", "account_no": "SW1", "status": "办结"},
        ),
    ],
)
def test_partner_without_utility_row(stack, method, path, body):
    secrets = stack.app.config["PARTNER_SECRETS"]
    secrets["ghost"] = ["ghost-secret"]
    try:
        response = signed_call(
            stack, "ghost", method, path, body, secret="ghost-secret"
        )
    finally:
        del secrets["ghost"]

    assert_error(response, 401, "partner_unknown")


def _pushed_transfer(client, homes, stack):
    home = homes.make(accounts=[("tv", {})])
    from tests.hub.flows import drive_to_submission

    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    from demo import scenarios

    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    response = signed_call(stack, "tv", "GET", "/partner/exports")
    [pushed] = [
        t
        for t in response.json()["transfers"]
        if t["account_no"] == home.accounts[0].account_no
    ]
    return pushed


def test_feedback_cannot_move_back(client, homes, stack):
    pushed = _pushed_transfer(client, homes, stack)
    report = {"transfer_id": pushed["transfer_id"], "account_no": pushed["account_no"]}
    first = signed_call(
        stack, "tv", "POST", "/partner/feedback", {**report, "status": "办理中"}
    )
    assert first.status_code == 200

    late = signed_call(
        stack, "tv", "POST", "/partner/feedback", {**report, "status": "已受理"}
    )

    assert_error(late, 409, "feedback_out_of_order")


def test_blank_return_reason_rejected(client, homes, stack):
    pushed = _pushed_transfer(client, homes, stack)

    response = signed_call(
        stack,
        "tv",
        "POST",
        "/partner/feedback",
        {
            "transfer_id": pushed["transfer_id"],
            "account_no": pushed["account_no"],
            "status": "退件",
            "return_reason": "   ",
        },
    )

    assert_error(response, 422, "return_reason_missing")


def test_feedback_time_needs_offset(client, homes, stack):
    pushed = _pushed_transfer(client, homes, stack)

    response = signed_call(
        stack,
        "tv",
        "POST",
        "/partner/feedback",
        {
            "transfer_id": pushed["transfer_id"],
            "account_no": pushed["account_no"],
            "status": "办理中",
            "reported_at": "2026-12-05T01:06:00",
        },
    )

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["json"]["reported_at"]

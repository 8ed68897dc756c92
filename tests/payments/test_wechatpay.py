"""The WeChat Pay client against the sandbox running as its own process.

The notification receiver is a werkzeug server in a thread of the test
process. Notifications that the tests forge are signed and encrypted here
with the development platform key and APIv3 key. test_wechatpay_refunds.py
reuses the helpers of this module.
"""

import base64
import dataclasses
import json
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from payments.errors import (
    InvalidNotification,
    WechatPayError,
    WechatPayInvalidResponse,
    WechatPayUnavailable,
)
from payments.wechatpay import (
    PlatformCertificates,
    WechatPayClient,
    WechatPayConfig,
    format_time_expire,
    notification_ack,
    notification_nack,
    parse_notification,
)
from peers.devkeys import ensure_dev_keys

REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_URL_PREFIX = "weixin://wxpay/bizpayurl?pr="
NOTIFY_DELAYS = "0.1,0.2,0.3"


def new_out_trade_no():
    return "LB" + uuid.uuid4().hex[:20]


def expire_in(minutes=15):
    return datetime.now(UTC) + timedelta(minutes=minutes)


def new_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# Fixtures: keys, the sandbox process, the notification receiver.


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    ensure_dev_keys(directory)
    return directory


@pytest.fixture(scope="module")
def platform_private_key(keys_dir):
    pem = (keys_dir / "wechatpay" / "platform_private.pem").read_bytes()
    return serialization.load_pem_private_key(pem, password=None)


def _wait_for_port(process, port_file, log_path, timeout=15):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"sandbox exited early:\n{log_path.read_text()}")
        if port_file.exists() and port_file.read_text().strip():
            return int(port_file.read_text())
        time.sleep(0.05)
    pytest.fail(f"sandbox wrote no port file within {timeout} s")


@contextmanager
def run_sandbox(keys_dir, work_dir, *extra_args):
    """Run the sandbox as a subprocess on a free port and yield its base URL."""
    port_file = work_dir / "port"
    log_path = work_dir / "sandbox.log"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    command = [
        sys.executable,
        "-m",
        "peers.wechatpay_sandbox",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--keys",
        str(keys_dir),
        "--notify-delays",
        NOTIFY_DELAYS,
        *extra_args,
    ]
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            command, cwd=REPO_ROOT, env=env, stdout=log_file, stderr=log_file
        )
    try:
        port = _wait_for_port(process, port_file, log_path)
        url = f"http://127.0.0.1:{port}"
        assert requests.get(url + "/_sandbox/health", timeout=5).status_code == 200
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def sandbox_url(keys_dir, tmp_path_factory):
    with run_sandbox(keys_dir, tmp_path_factory.mktemp("sandbox")) as url:
        yield url


def read_event(config, body):
    """Return the event_type and the decrypted resource of a notification body.

    It checks no signature, so deliveries signed by a rotated key can be found
    before the test verifies them.
    """
    event = json.loads(body)
    resource = event["resource"]
    plaintext = AESGCM(config.apiv3_key).decrypt(
        resource["nonce"].encode(),
        base64.b64decode(resource["ciphertext"]),
        resource["associated_data"].encode(),
    )
    return event["event_type"], json.loads(plaintext)


class NotificationReceiver:
    """A merchant notify endpoint that records every request it gets.

    It responds with the statuses queued by `respond_next`, then with 204.
    """

    def __init__(self):
        self.requests = queue.Queue()
        self.planned_statuses = []
        self.lock = threading.Lock()

    def respond_next(self, *statuses):
        with self.lock:
            self.planned_statuses.extend(statuses)

    def __call__(self, environ, start_response):
        incoming = Request(environ)
        body = incoming.get_data()
        with self.lock:
            status = self.planned_statuses.pop(0) if self.planned_statuses else 204
        self.requests.put((dict(incoming.headers), body, status))
        if status == 204:
            response = Response(status=204)
        else:
            response = Response(
                json.dumps({"code": "FAIL", "message": "try later"}),
                status=status,
                mimetype="application/json",
            )
        return response(environ, start_response)

    def wait_for(self, config, out_trade_no=None, out_refund_no=None, timeout=5):
        """Return (headers, body, response status) of the next matching delivery.

        With `out_refund_no`, it waits for that refund's notification, and
        otherwise for the payment notification of `out_trade_no`. Deliveries
        for other orders and refunds, left over from earlier tests, are skipped.
        """
        expected_id = out_refund_no or out_trade_no
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no notification for {expected_id} within {timeout} s")
            try:
                headers, body, status = self.requests.get(timeout=remaining)
            except queue.Empty:
                continue
            event_type, data = read_event(config, body)
            if out_refund_no is not None:
                matches = event_type.startswith("REFUND.") and (
                    data["out_refund_no"] == out_refund_no
                )
            else:
                matches = event_type.startswith("TRANSACTION.") and (
                    data["out_trade_no"] == out_trade_no
                )
            if matches:
                return headers, body, status


@contextmanager
def serve_receiver():
    """Serve a NotificationReceiver on a free loopback port in a thread."""
    app = NotificationReceiver()
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}/wechatpay/notify"
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def receiver():
    with serve_receiver() as app:
        yield app


@pytest.fixture(scope="module")
def config(keys_dir, sandbox_url, receiver):
    return WechatPayConfig.from_keys_dir(keys_dir, sandbox_url, receiver.url)


@pytest.fixture
def client(config):
    return WechatPayClient(config, timeout=(2, 5))


def sandbox_pay(sandbox_url, code_url):
    return requests.post(
        sandbox_url + "/_sandbox/pay", json={"code_url": code_url}, timeout=5
    )


def sandbox_order(sandbox_url, out_trade_no):
    response = requests.get(f"{sandbox_url}/_sandbox/orders/{out_trade_no}", timeout=5)
    assert response.status_code == 200
    return response.json()


def create_order(client, amount_fen=12850, out_trade_no=None, time_expire=None):
    out_trade_no = out_trade_no or new_out_trade_no()
    code_url = client.create_native_order(
        out_trade_no,
        "历下区燕子山小区 水费欠费",
        amount_fen,
        time_expire or expire_in(),
    )
    return out_trade_no, code_url


# Orders.


def test_create_order_returns_code_url(client):
    _, code_url = create_order(client)

    assert code_url.startswith(CODE_URL_PREFIX)


def test_create_same_order_twice_same_code_url(client):
    out_trade_no = new_out_trade_no()
    time_expire = expire_in()
    first = client.create_native_order(out_trade_no, "水费", 100, time_expire)
    second = client.create_native_order(out_trade_no, "水费", 100, time_expire)

    assert second == first


def test_create_reused_out_trade_no_different_amount(client):
    out_trade_no = new_out_trade_no()
    time_expire = expire_in()
    client.create_native_order(out_trade_no, "水费", 100, time_expire)

    with pytest.raises(WechatPayError) as caught:
        client.create_native_order(out_trade_no, "水费", 200, time_expire)

    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"


def test_query_new_order_is_notpay(client):
    out_trade_no, _ = create_order(client, amount_fen=12850)

    state = client.query_order(out_trade_no)

    assert state.out_trade_no == out_trade_no
    assert state.trade_state == "NOTPAY"
    assert state.amount_fen == 12850
    assert state.transaction_id is None
    assert state.success_time is None
    assert state.openid is None


def test_query_unknown_order_not_found(client):
    with pytest.raises(WechatPayError) as caught:
        client.query_order(new_out_trade_no())

    assert caught.value.status == 404
    assert caught.value.code == "ORDER_NOT_EXIST"
    assert not caught.value.retryable


def test_out_trade_no_with_pipe_and_star(client):
    # | and * are percent-encoded in the path, and the encoded path is signed.
    out_trade_no = "LB|a*b-c_" + uuid.uuid4().hex[:8]
    create_order(client, amount_fen=500, out_trade_no=out_trade_no)

    state = client.query_order(out_trade_no)

    assert state.out_trade_no == out_trade_no
    assert state.trade_state == "NOTPAY"


def test_close_order_then_query_closed(client, sandbox_url):
    out_trade_no, code_url = create_order(client)

    client.close_order(out_trade_no)

    assert client.query_order(out_trade_no).trade_state == "CLOSED"
    paid = sandbox_pay(sandbox_url, code_url)
    assert paid.status_code == 400
    assert paid.json()["code"] == "ORDER_CLOSED"


def test_order_past_time_expire_reads_closed(client, sandbox_url):
    # The sandbox takes whole seconds, so the order expires 2 to 3 s from now.
    time_expire = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    out_trade_no, code_url = create_order(client, time_expire=time_expire)
    assert client.query_order(out_trade_no).trade_state == "NOTPAY"

    time.sleep(max(0.0, time_expire.timestamp() - time.time()) + 0.2)

    assert client.query_order(out_trade_no).trade_state == "CLOSED"
    paid = sandbox_pay(sandbox_url, code_url)
    assert paid.status_code == 400
    assert paid.json()["code"] == "ORDER_CLOSED"


# Payment and notifications.


def test_pay_sends_verifiable_notification(client, config, sandbox_url, receiver):
    out_trade_no, code_url = create_order(client, amount_fen=12850)

    paid = sandbox_pay(sandbox_url, code_url)
    assert paid.status_code == 200
    assert paid.json()["out_trade_no"] == out_trade_no
    assert paid.json()["trade_state"] == "SUCCESS"

    headers, body, status = receiver.wait_for(config, out_trade_no)
    transaction = client.parse_notification(headers, body)
    assert status == 204
    assert transaction.out_trade_no == out_trade_no
    assert transaction.transaction_id == paid.json()["transaction_id"]
    assert transaction.trade_state == "SUCCESS"
    assert transaction.amount_fen == 12850
    assert transaction.payer_total_fen == 12850
    assert transaction.success_time.utcoffset() == timedelta(hours=8)
    assert transaction.openid
    assert transaction.notification_id

    state = client.query_order(out_trade_no)
    assert state.trade_state == "SUCCESS"
    assert state.transaction_id == transaction.transaction_id
    assert state.amount_fen == 12850
    assert state.success_time == transaction.success_time
    assert state.openid == transaction.openid


def test_paid_order_cannot_be_closed_or_paid(client, config, sandbox_url, receiver):
    out_trade_no, code_url = create_order(client)
    assert sandbox_pay(sandbox_url, code_url).status_code == 200
    receiver.wait_for(config, out_trade_no)

    with pytest.raises(WechatPayError) as closed:
        client.close_order(out_trade_no)
    with pytest.raises(WechatPayError) as created:
        create_order(client, out_trade_no=out_trade_no)
    paid_again = sandbox_pay(sandbox_url, code_url)

    assert closed.value.code == "ORDERPAID"
    assert created.value.code == "ORDERPAID"
    assert paid_again.status_code == 400
    assert paid_again.json()["code"] == "ORDERPAID"


def test_notification_retried_until_accepted(client, config, sandbox_url, receiver):
    out_trade_no, code_url = create_order(client)
    receiver.respond_next(500, 503)

    assert sandbox_pay(sandbox_url, code_url).status_code == 200

    deliveries = [receiver.wait_for(config, out_trade_no) for _ in range(3)]
    assert [status for _, _, status in deliveries] == [500, 503, 204]
    assert deliveries[0][1] == deliveries[2][1]
    for headers, body, _ in deliveries:
        assert parse_notification(config, headers, body).out_trade_no == out_trade_no
    deadline = time.monotonic() + 5
    while not sandbox_order(sandbox_url, out_trade_no)["notification_accepted"]:
        assert time.monotonic() < deadline, "sandbox never recorded the acceptance"
        time.sleep(0.05)
    attempts = sandbox_order(sandbox_url, out_trade_no)["notification_attempts"]
    assert [attempt["outcome"] for attempt in attempts] == ["500", "503", "204"]


def test_notify_again_sends_same_notification(client, config, sandbox_url, receiver):
    out_trade_no, code_url = create_order(client)
    assert sandbox_pay(sandbox_url, code_url).status_code == 200
    _, first_body, _ = receiver.wait_for(config, out_trade_no)

    resent = requests.post(
        sandbox_url + "/_sandbox/notify-again",
        json={"out_trade_no": out_trade_no},
        timeout=5,
    )
    headers, second_body, _ = receiver.wait_for(config, out_trade_no)

    assert resent.status_code == 202
    assert second_body == first_body
    transaction = parse_notification(config, headers, second_body)
    assert transaction.notification_id == resent.json()["notification_id"]


def test_notify_again_unpaid_order_rejected(client, sandbox_url):
    out_trade_no, _ = create_order(client)

    resent = requests.post(
        sandbox_url + "/_sandbox/notify-again",
        json={"out_trade_no": out_trade_no},
        timeout=5,
    )

    assert resent.status_code == 400
    assert resent.json()["code"] == "INVALID_REQUEST"


def test_pay_unknown_code_url_rejected(sandbox_url):
    paid = sandbox_pay(sandbox_url, CODE_URL_PREFIX + "unknown")

    assert paid.status_code == 400
    assert paid.json()["code"] == "ORDER_NOT_EXIST"


# Notification verification. The forged notifications are signed and
# encrypted here, so each case fails only the check it names.


def sign_notification(private_key, serial, body, timestamp=None):
    timestamp = str(int(time.time() if timestamp is None else timestamp))
    nonce = uuid.uuid4().hex
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": base64.b64encode(signature).decode(),
        "Wechatpay-Serial": serial,
    }


def forge_notification(config, platform_private_key, apiv3_key=None, **changes):
    """Return (headers, body) of a signed notification for a made-up payment."""
    transaction = {
        "appid": config.appid,
        "mchid": config.mchid,
        "out_trade_no": "LBforged0001",
        "transaction_id": "4200000000202612040000000001",
        "trade_type": "NATIVE",
        "trade_state": "SUCCESS",
        "success_time": "2026-12-04T10:30:00+08:00",
        "payer": {"openid": "o-forged"},
        "amount": {"total": 12850, "payer_total": 12850, "currency": "CNY"},
    }
    transaction.update(changes)
    nonce = "a1b2c3d4e5f6"
    ciphertext = AESGCM(apiv3_key or config.apiv3_key).encrypt(
        nonce.encode(), json.dumps(transaction).encode(), b"transaction"
    )
    event = {
        "id": "EV-forged",
        "create_time": "2026-12-04T10:30:01+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "associated_data": "transaction",
            "nonce": nonce,
        },
    }
    body = json.dumps(event).encode()
    headers = sign_notification(platform_private_key, config.platform_serial, body)
    return headers, body


def test_forged_notification_control_passes(config, platform_private_key):
    headers, body = forge_notification(config, platform_private_key)

    transaction = parse_notification(config, headers, body)

    assert transaction.out_trade_no == "LBforged0001"
    assert transaction.amount_fen == 12850
    assert transaction.success_time == datetime(
        2026, 12, 4, 10, 30, tzinfo=timezone(timedelta(hours=8))
    )


def test_notification_headers_any_case(config, platform_private_key):
    headers, body = forge_notification(config, platform_private_key)
    lowered = {name.lower(): value for name, value in headers.items()}

    assert parse_notification(config, lowered, body).out_trade_no == "LBforged0001"


def _tamper_body(config, key, headers, body):
    return headers, body.replace(b"TRANSACTION.SUCCESS", b"TRANSACTION.SUCCEZZ")


def _wrong_signature(config, key, headers, body):
    other_headers = sign_notification(new_rsa_key(), config.platform_serial, body)
    return other_headers, body


def _old_timestamp(config, key, headers, body):
    old = time.time() - 301
    return sign_notification(key, config.platform_serial, body, timestamp=old), body


def _future_timestamp(config, key, headers, body):
    future = time.time() + 301
    return sign_notification(key, config.platform_serial, body, timestamp=future), body


def _wrong_serial(config, key, headers, body):
    return sign_notification(key, "0" * 40, body), body


def _missing_signature(config, key, headers, body):
    headers = dict(headers)
    del headers["Wechatpay-Signature"]
    return headers, body


def _wrong_mchid(config, key, headers, body):
    return forge_notification(config, key, mchid="1900000099")


def _wrong_appid(config, key, headers, body):
    return forge_notification(config, key, appid="wx0000000000000000")


def _wrong_apiv3_key(config, key, headers, body):
    return forge_notification(config, key, apiv3_key=b"k" * 32)


def _amount_not_integer(config, key, headers, body):
    return forge_notification(config, key, amount={"total": "12850"})


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_tamper_body, "does not verify"),
        (_wrong_signature, "does not verify"),
        (_old_timestamp, "seconds from the local clock"),
        (_future_timestamp, "seconds from the local clock"),
        (_wrong_serial, "not the configured platform serial"),
        (_missing_signature, "missing header Wechatpay-Signature"),
        (_wrong_mchid, "mchid"),
        (_wrong_appid, "appid"),
        (_wrong_apiv3_key, "does not decrypt"),
        (_amount_not_integer, "amount.total"),
    ],
    ids=lambda value: getattr(value, "__name__", "").lstrip("_") or None,
)
def test_invalid_notification_rejected(config, platform_private_key, change, reason):
    headers, body = forge_notification(config, platform_private_key)
    headers, body = change(config, platform_private_key, headers, body)

    with pytest.raises(InvalidNotification) as caught:
        parse_notification(config, headers, body)

    assert reason in caught.value.reason


def test_tampered_sandbox_notification_rejected(client, config, sandbox_url, receiver):
    out_trade_no, code_url = create_order(client, amount_fen=300)
    assert sandbox_pay(sandbox_url, code_url).status_code == 200
    headers, body, _ = receiver.wait_for(config, out_trade_no)
    event = json.loads(body)
    ciphertext = bytearray(base64.b64decode(event["resource"]["ciphertext"]))
    ciphertext[0] ^= 1
    event["resource"]["ciphertext"] = base64.b64encode(bytes(ciphertext)).decode()

    with pytest.raises(InvalidNotification) as caught:
        parse_notification(config, headers, json.dumps(event).encode())

    assert "does not verify" in caught.value.reason


def test_ack_and_nack_bodies():
    assert notification_ack() == ("", 204)
    assert notification_nack("database busy") == (
        {"code": "FAIL", "message": "database busy"},
        500,
    )
    with pytest.raises(ValueError):
        notification_nack("not an error status", status=200)


# Signing failures and transport failures.


def test_wrong_merchant_key_sign_error(config):
    client = WechatPayClient(
        dataclasses.replace(config, merchant_private_key=new_rsa_key())
    )

    with pytest.raises(WechatPayError) as caught:
        create_order(client)

    assert caught.value.status == 401
    assert caught.value.code == "SIGN_ERROR"


def test_wrong_merchant_serial_sign_error(config):
    client = WechatPayClient(dataclasses.replace(config, merchant_serial="A" * 40))

    with pytest.raises(WechatPayError) as caught:
        create_order(client)

    assert caught.value.status == 401
    assert caught.value.code == "SIGN_ERROR"


def test_unsigned_request_rejected_and_signed(config, sandbox_url):
    response = requests.get(
        f"{sandbox_url}/v3/pay/transactions/out-trade-no/LB000001",
        params={"mchid": config.mchid},
        timeout=5,
    )

    assert response.status_code == 401
    assert response.json()["code"] == "SIGN_ERROR"
    assert response.headers["Wechatpay-Serial"] == config.platform_serial


def test_wrong_platform_key_invalid_response(config):
    other_key = new_rsa_key().public_key()
    client = WechatPayClient(dataclasses.replace(config, platform_public_key=other_key))

    with pytest.raises(WechatPayInvalidResponse):
        create_order(client)


def test_wrong_platform_serial_invalid_response(config):
    client = WechatPayClient(dataclasses.replace(config, platform_serial="B" * 40))

    with pytest.raises(WechatPayInvalidResponse):
        create_order(client)


def closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_sandbox_down_unavailable(config):
    down = dataclasses.replace(config, base_url=f"http://127.0.0.1:{closed_port()}")
    client = WechatPayClient(down, timeout=(1, 1))

    with pytest.raises(WechatPayUnavailable):
        create_order(client)
    with pytest.raises(WechatPayUnavailable):
        client.query_order(new_out_trade_no())


# Platform certificates and rotation. Each client gets its own
# PlatformCertificates, so one test's refresh cannot help or block another.


def sandbox_certificates(sandbox_url):
    response = requests.get(sandbox_url + "/_sandbox/platform-certificates", timeout=5)
    assert response.status_code == 200
    return response.json()


def new_client(config, min_refresh_interval=60.0):
    certificates = PlatformCertificates(
        config.platform_serial, config.platform_public_key, min_refresh_interval
    )
    return WechatPayClient(config, timeout=(2, 5), certificates=certificates)


def test_refresh_lists_configured_certificate(config):
    client = new_client(config)

    certificates = client.refresh_platform_certificates()

    assert [item.serial_no for item in certificates] == [config.platform_serial]
    assert (
        certificates[0].public_key.public_numbers()
        == config.platform_public_key.public_numbers()
    )
    assert certificates[0].certificate_pem.startswith(b"-----BEGIN CERTIFICATE-----")
    assert certificates[0].expire_time > datetime.now(UTC) + timedelta(days=365)
    assert certificates[0].effective_time <= datetime.now(UTC)


def test_refresh_untrusted_signature_rejected(config):
    # Same serial, other key: the listing's signature cannot be verified.
    wrong_key = new_rsa_key().public_key()
    client = new_client(dataclasses.replace(config, platform_public_key=wrong_key))

    with pytest.raises(WechatPayInvalidResponse, match="does not verify"):
        client.refresh_platform_certificates()

    assert client.certificates.serials() == [config.platform_serial]
    assert client.certificates.public_key(config.platform_serial) is wrong_key


def test_refresh_unknown_signing_serial_rejected(config):
    # The right key under another serial: the listing names a serial that the
    # client does not trust, and refreshing cannot vouch for itself.
    client = new_client(dataclasses.replace(config, platform_serial="B" * 40))

    with pytest.raises(WechatPayInvalidResponse, match="not a trusted platform serial"):
        client.refresh_platform_certificates()

    assert client.certificates.serials() == ["B" * 40]


def test_refresh_wrong_apiv3_key_rejected(config):
    client = new_client(dataclasses.replace(config, apiv3_key=b"k" * 32))

    with pytest.raises(WechatPayInvalidResponse, match="does not decrypt"):
        client.refresh_platform_certificates()


def test_unknown_serial_refreshes_once(config, sandbox_url):
    client = new_client(config)
    key = new_rsa_key()
    downloads = sandbox_certificates(sandbox_url)["certificate_downloads"]

    headers, body = forge_notification(config, key)
    headers = sign_notification(key, "C" * 40, body)
    with pytest.raises(InvalidNotification) as first:
        client.parse_notification(headers, body)
    after_first = sandbox_certificates(sandbox_url)["certificate_downloads"]

    headers = sign_notification(key, "D" * 40, body)
    with pytest.raises(InvalidNotification) as second:
        client.parse_notification(headers, body)
    after_second = sandbox_certificates(sandbox_url)["certificate_downloads"]

    assert "not listed by /v3/certificates" in first.value.reason
    assert after_first == downloads + 1
    assert "refreshed less than 60 seconds ago" in second.value.reason
    assert after_second == after_first


def test_merchant_signed_notification_rejected(config, sandbox_url):
    # A notification signed with the merchant's own key proves nothing about
    # WeChat Pay, whichever serial it names.
    merchant_key = config.merchant_private_key
    headers, body = forge_notification(config, merchant_key)
    under_merchant_serial = sign_notification(
        merchant_key, config.merchant_serial, body
    )
    under_platform_serial = sign_notification(
        merchant_key, config.platform_serial, body
    )
    client = new_client(config)

    with pytest.raises(InvalidNotification) as merchant_serial:
        client.parse_notification(under_merchant_serial, body)
    with pytest.raises(InvalidNotification) as platform_serial:
        client.parse_notification(under_platform_serial, body)
    with pytest.raises(InvalidNotification) as module_level:
        parse_notification(config, under_merchant_serial, body)

    assert "not listed by /v3/certificates" in merchant_serial.value.reason
    assert "does not verify" in platform_serial.value.reason
    assert "not the configured platform serial" in module_level.value.reason
    assert config.merchant_serial not in client.certificates.serials()


@pytest.fixture
def rotating_sandbox(keys_dir, tmp_path):
    """A sandbox of its own, because rotating a key changes it for every test."""
    with run_sandbox(keys_dir, tmp_path) as url:
        yield url


def rotate_platform_key(sandbox_url):
    response = requests.post(sandbox_url + "/_sandbox/rotate-platform-key", timeout=10)
    assert response.status_code == 200
    return response.json()


def test_rotation_keeps_both_certificates(config, rotating_sandbox):
    rotating_config = dataclasses.replace(config, base_url=rotating_sandbox)
    client = new_client(rotating_config)

    rotated = rotate_platform_key(rotating_sandbox)
    certificates = client.refresh_platform_certificates()
    inspection = sandbox_certificates(rotating_sandbox)

    assert rotated["previous_serial_no"] == config.platform_serial
    assert [item.serial_no for item in certificates] == [
        config.platform_serial,
        rotated["serial_no"],
    ]
    assert inspection["signing_serial"] == rotated["serial_no"]
    assert inspection["certificates_signing_serial"] == config.platform_serial
    assert client.certificates.public_key(rotated["serial_no"]) is not None


def test_rotated_response_refreshes_certificates(config, rotating_sandbox):
    rotating_config = dataclasses.replace(config, base_url=rotating_sandbox)
    out_trade_no, _ = create_order(new_client(rotating_config), amount_fen=300)
    rotated = rotate_platform_key(rotating_sandbox)
    client = new_client(rotating_config)

    state = client.query_order(out_trade_no)

    assert state.trade_state == "NOTPAY"
    assert rotated["serial_no"] in client.certificates.serials()
    assert sandbox_certificates(rotating_sandbox)["certificate_downloads"] == 1


def test_rotated_notification_verified_after_refresh(
    config, rotating_sandbox, receiver
):
    rotating_config = dataclasses.replace(config, base_url=rotating_sandbox)
    creator = new_client(rotating_config)
    first_order, first_code_url = create_order(creator, amount_fen=101)
    second_order, second_code_url = create_order(creator, amount_fen=102)
    client = new_client(rotating_config)

    # The first rotation: the notification names the new serial, and one
    # refresh finds it.
    second_serial = rotate_platform_key(rotating_sandbox)["serial_no"]
    assert sandbox_pay(rotating_sandbox, first_code_url).status_code == 200
    headers, body, _ = receiver.wait_for(rotating_config, first_order)
    transaction = client.parse_notification(headers, body)
    assert headers["Wechatpay-Serial"] == second_serial
    assert transaction.out_trade_no == first_order
    with pytest.raises(InvalidNotification, match="not the configured"):
        parse_notification(rotating_config, headers, body)

    # The second rotation within the refresh interval: no new download.
    third_serial = rotate_platform_key(rotating_sandbox)["serial_no"]
    assert sandbox_pay(rotating_sandbox, second_code_url).status_code == 200
    headers, body, _ = receiver.wait_for(rotating_config, second_order)
    with pytest.raises(InvalidNotification, match="refreshed less than 60 seconds"):
        client.parse_notification(headers, body)
    assert headers["Wechatpay-Serial"] == third_serial
    assert sandbox_certificates(rotating_sandbox)["certificate_downloads"] == 1

    # Once a refresh is allowed again, the listing signed by the second key,
    # which the client now trusts, introduces the third.
    client.certificates.min_refresh_interval = 0
    transaction = client.parse_notification(headers, body)
    assert transaction.out_trade_no == second_order
    assert sandbox_certificates(rotating_sandbox)["certificate_downloads"] == 2

    # A client that trusts only the first key missed a whole rotation: no key
    # it trusts signed the current listing, so it rejects the notification.
    stale = new_client(rotating_config)
    with pytest.raises(InvalidNotification, match="refreshing the platform"):
        stale.parse_notification(headers, body)
    assert third_serial not in stale.certificates.serials()


# Input checks. The client points at a closed port, so an input that got past
# the checks would raise WechatPayUnavailable instead of ValueError.


@pytest.fixture
def offline_client(config):
    down = dataclasses.replace(config, base_url=f"http://127.0.0.1:{closed_port()}")
    return WechatPayClient(down, timeout=(1, 1))


@pytest.mark.parametrize("amount_fen", [0, -1, 12.5, "100", True, None])
def test_invalid_amount_rejected_before_request(offline_client, amount_fen):
    with pytest.raises(ValueError, match="amount_fen"):
        offline_client.create_native_order(
            new_out_trade_no(), "水费", amount_fen, expire_in()
        )


@pytest.mark.parametrize(
    "out_trade_no", ["abc12", "x" * 33, "LB 000001", "LB#000001", "订单000001", 123456]
)
def test_invalid_out_trade_no_rejected(offline_client, out_trade_no):
    with pytest.raises(ValueError, match="out_trade_no"):
        offline_client.create_native_order(out_trade_no, "水费", 100, expire_in())
    with pytest.raises(ValueError, match="out_trade_no"):
        offline_client.query_order(out_trade_no)
    with pytest.raises(ValueError, match="out_trade_no"):
        offline_client.close_order(out_trade_no)


@pytest.mark.parametrize("description", ["", "   ", "水" * 43, None])
def test_invalid_description_rejected(offline_client, description):
    with pytest.raises(ValueError, match="description"):
        offline_client.create_native_order(
            new_out_trade_no(), description, 100, expire_in()
        )


def test_description_of_127_bytes_accepted(client):
    # 42 characters of 3 bytes each plus one ASCII byte is exactly 127 bytes.
    description = "水" * 42 + "x"

    code_url = client.create_native_order(
        new_out_trade_no(), description, 100, expire_in()
    )

    assert code_url.startswith(CODE_URL_PREFIX)


@pytest.mark.parametrize("time_expire", [datetime(2026, 12, 4, 10, 30), "2026-12-04"])
def test_invalid_time_expire_rejected(offline_client, time_expire):
    with pytest.raises(ValueError, match="time_expire"):
        offline_client.create_native_order(new_out_trade_no(), "水费", 100, time_expire)


def test_time_expire_formatted_at_plus_eight():
    moment = datetime(2026, 12, 4, 2, 30, 15, 999, tzinfo=UTC)

    assert format_time_expire(moment) == "2026-12-04T10:30:15+08:00"


def test_config_repr_hides_secrets(config):
    text = repr(config)

    assert "apiv3_key" not in text
    assert "private" not in text
    assert config.mchid in text

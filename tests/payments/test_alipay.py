"""The Alipay client against the sandbox running as its own process.

Notifications arrive at a werkzeug server in a thread of the test process.
Notifications that the tests forge are signed here with the development
Alipay private key, so each forged case fails only the check it names.
"""

import dataclasses
import io
import os
import queue
import socket
import subprocess
import sys
import threading
import time
import uuid
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from payments.alipay import (
    MAX_AMOUNT_FEN,
    AlipayClient,
    AlipayConfig,
    AlipayError,
    AlipayInvalidResponse,
    AlipayTradeNotExist,
    AlipayUnavailable,
    fen_to_yuan,
    format_alipay_time,
    notification_ack,
    notification_nack,
    parse_notification,
    parse_trade_bill_csv,
    parse_trade_bill_zip,
    sign_text,
    signing_content,
    top_level_members,
    yuan_to_fen,
)
from payments.errors import InvalidNotification, PaymentError
from peers.devkeys import ensure_dev_keys
from peers.launch import start_peers

REPO_ROOT = Path(__file__).resolve().parents[2]
QR_CODE_PREFIX = "https://qr.alipay.com/bax0"
NOTIFY_DELAYS = "0.1,0.2,0.3"
CST = timezone(timedelta(hours=8))


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
def alipay_private_key(keys_dir):
    pem = (keys_dir / "alipay" / "alipay_private.pem").read_bytes()
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


@pytest.fixture(scope="module")
def sandbox_url(keys_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("alipay-sandbox")
    port_file = work / "port"
    log_path = work / "sandbox.log"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    command = [
        sys.executable,
        "-m",
        "peers.alipay_sandbox",
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--keys",
        str(keys_dir),
        "--notify-delays",
        NOTIFY_DELAYS,
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


class ScriptedServer:
    """A WSGI app that records each request and responds with queued responses.

    `answer_next` queues (status, body) pairs. Once the queue is empty, every
    request gets `default`.
    """

    def __init__(self, default):
        self.requests = queue.Queue()
        self.planned = []
        self.default = default
        self.lock = threading.Lock()

    def answer_next(self, *answers):
        with self.lock:
            self.planned.extend(answers)

    def __call__(self, environ, start_response):
        incoming = Request(environ)
        fields = list(incoming.form.items(multi=True))
        with self.lock:
            status, body = self.planned.pop(0) if self.planned else self.default
        self.requests.put((fields, status, body))
        response = Response(body, status=status, content_type="text/plain")
        return response(environ, start_response)

    def wait_for(self, out_trade_no, timeout=5):
        """Return (form pairs, status, body) of the next delivery for an order.

        Deliveries for other orders, left over from earlier tests, are skipped.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"no notification for {out_trade_no} within {timeout} s")
            try:
                fields, status, body = self.requests.get(timeout=remaining)
            except queue.Empty:
                continue
            if dict(fields).get("out_trade_no") == out_trade_no:
                return fields, status, body


@pytest.fixture(scope="module")
def start_scripted_server():
    servers = []

    def start(default):
        app = ScriptedServer(default)
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        app.base_url = f"http://127.0.0.1:{server.server_port}"
        return app

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def receiver(start_scripted_server):
    app = start_scripted_server((200, "success"))
    app.url = app.base_url + "/alipay/notify"
    return app


@pytest.fixture(scope="module")
def config(keys_dir, sandbox_url, receiver):
    return AlipayConfig.from_keys_dir(
        keys_dir, sandbox_url + "/gateway.do", receiver.url
    )


@pytest.fixture
def client(config):
    return AlipayClient(config, timeout=(2, 5))


def sandbox_post(sandbox_url, path, payload):
    return requests.post(sandbox_url + path, json=payload, timeout=5)


def sandbox_scan(sandbox_url, qr_code):
    response = sandbox_post(sandbox_url, "/_sandbox/scan", {"qr_code": qr_code})
    assert response.status_code == 200, response.text
    return response.json()


def sandbox_pay(sandbox_url, qr_code):
    return sandbox_post(sandbox_url, "/_sandbox/pay", {"qr_code": qr_code})


def sandbox_order(sandbox_url, out_trade_no):
    response = requests.get(f"{sandbox_url}/_sandbox/orders/{out_trade_no}", timeout=5)
    assert response.status_code == 200
    return response.json()


def precreate(client, amount_fen=12345, out_trade_no=None, time_expire=None):
    out_trade_no = out_trade_no or new_out_trade_no()
    qr_code = client.precreate(
        out_trade_no,
        "历下区燕子山小区 水费欠费",
        amount_fen,
        time_expire or expire_in(),
    )
    return out_trade_no, qr_code


def paid_order(client, sandbox_url, receiver, amount_fen=10000):
    """Precreate and pay an order, wait for its notification, return the ids."""
    out_trade_no, qr_code = precreate(client, amount_fen=amount_fen)
    paid = sandbox_pay(sandbox_url, qr_code)
    assert paid.status_code == 200, paid.text
    receiver.wait_for(out_trade_no)
    return out_trade_no, paid.json()["trade_no"]


# Precreate and query.


def test_precreate_returns_qr_code(client, sandbox_url):
    out_trade_no, qr_code = precreate(client, amount_fen=12345)

    assert qr_code.startswith(QR_CODE_PREFIX)
    stored = sandbox_order(sandbox_url, out_trade_no)
    assert stored["total_amount"] == "123.45"
    assert stored["scanned"] is False


def test_precreate_same_order_twice_same_qr_code(client):
    out_trade_no = new_out_trade_no()
    time_expire = expire_in()
    first = client.precreate(out_trade_no, "水费", 100, time_expire)
    second = client.precreate(out_trade_no, "水费", 100, time_expire)

    assert second == first


def test_precreate_reused_out_trade_no_other_amount(client):
    out_trade_no = new_out_trade_no()
    time_expire = expire_in()
    client.precreate(out_trade_no, "水费", 100, time_expire)

    with pytest.raises(AlipayError) as caught:
        client.precreate(out_trade_no, "水费", 200, time_expire)

    assert caught.value.code == "40004"
    assert caught.value.sub_code == "ACQ.CONTEXT_INCONSISTENT"
    assert not caught.value.retryable


def test_query_before_scan_trade_not_exist(client):
    out_trade_no, _ = precreate(client)

    with pytest.raises(AlipayTradeNotExist) as caught:
        client.query(out_trade_no)

    assert caught.value.code == "40004"
    assert caught.value.sub_code == "ACQ.TRADE_NOT_EXIST"
    assert caught.value.sub_msg == "交易不存在"


def test_query_after_scan_wait_buyer_pay(client, sandbox_url):
    out_trade_no, qr_code = precreate(client, amount_fen=12345)
    scanned = sandbox_scan(sandbox_url, qr_code)

    state = client.query(out_trade_no)

    assert state.out_trade_no == out_trade_no
    assert state.trade_status == "WAIT_BUYER_PAY"
    assert state.trade_state == "NOTPAY"
    assert state.transaction_id == scanned["trade_no"]
    assert state.amount_fen == 12345
    assert state.success_time is None
    assert state.buyer_id


# Payment and notifications.


def test_pay_sends_verifiable_notification(client, config, sandbox_url, receiver):
    out_trade_no, qr_code = precreate(client, amount_fen=12345)

    paid = sandbox_pay(sandbox_url, qr_code)
    assert paid.status_code == 200
    assert paid.json()["out_trade_no"] == out_trade_no
    assert paid.json()["trade_status"] == "TRADE_SUCCESS"

    fields, status, body = receiver.wait_for(out_trade_no)
    form = dict(fields)
    transaction = client.parse_notification(form)
    assert status == 200
    assert body == "success"
    assert form["total_amount"] == "123.45"
    assert form["sign_type"] == "RSA2"
    assert transaction.out_trade_no == out_trade_no
    assert transaction.transaction_id == paid.json()["trade_no"]
    assert transaction.trade_status == "TRADE_SUCCESS"
    assert transaction.trade_state == "SUCCESS"
    assert transaction.amount_fen == 12345
    assert transaction.receipt_amount_fen == 12345
    assert transaction.refund_fee_fen is None
    assert transaction.success_time.utcoffset() == timedelta(hours=8)
    assert transaction.buyer_id
    assert transaction.notification_id == form["notify_id"]

    state = client.query(out_trade_no)
    assert state.trade_state == "SUCCESS"
    assert state.trade_status == "TRADE_SUCCESS"
    assert state.transaction_id == transaction.transaction_id
    assert state.amount_fen == 12345
    assert state.success_time == transaction.success_time
    assert state.buyer_id == transaction.buyer_id


def test_paid_order_cannot_be_precreated_or_paid(client, sandbox_url, receiver):
    out_trade_no, qr_code = precreate(client)
    assert sandbox_pay(sandbox_url, qr_code).status_code == 200
    receiver.wait_for(out_trade_no)

    with pytest.raises(AlipayError) as created:
        precreate(client, out_trade_no=out_trade_no)
    paid_again = sandbox_pay(sandbox_url, qr_code)

    assert created.value.sub_code == "ACQ.TRADE_HAS_SUCCESS"
    assert paid_again.status_code == 400
    assert paid_again.json()["code"] == "ACQ.TRADE_HAS_SUCCESS"


def test_notification_retried_until_exact_success(client, sandbox_url, receiver):
    out_trade_no, qr_code = precreate(client)
    receiver.answer_next((200, "fail"), (200, "success\n"), (500, "success"))

    assert sandbox_pay(sandbox_url, qr_code).status_code == 200

    deliveries = [receiver.wait_for(out_trade_no) for _ in range(4)]
    assert [(status, body) for _, status, body in deliveries] == [
        (200, "fail"),
        (200, "success\n"),
        (500, "success"),
        (200, "success"),
    ]
    assert deliveries[0][0] == deliveries[3][0]
    deadline = time.monotonic() + 5
    while not sandbox_order(sandbox_url, out_trade_no)["notification_accepted"]:
        assert time.monotonic() < deadline, "sandbox never recorded the acceptance"
        time.sleep(0.05)
    attempts = sandbox_order(sandbox_url, out_trade_no)["notification_attempts"]
    assert len(attempts) == 4


def test_notify_again_sends_same_notification(client, sandbox_url, receiver):
    out_trade_no, qr_code = precreate(client)
    assert sandbox_pay(sandbox_url, qr_code).status_code == 200
    first, _, _ = receiver.wait_for(out_trade_no)

    resent = sandbox_post(
        sandbox_url, "/_sandbox/notify-again", {"out_trade_no": out_trade_no}
    )
    second, _, _ = receiver.wait_for(out_trade_no)

    assert resent.status_code == 202
    assert resent.json()["notify_id"] == dict(first)["notify_id"]
    assert second == first


def test_notify_again_unpaid_order_rejected(client, sandbox_url):
    out_trade_no, _ = precreate(client)

    resent = sandbox_post(
        sandbox_url, "/_sandbox/notify-again", {"out_trade_no": out_trade_no}
    )

    assert resent.status_code == 400
    assert resent.json()["code"] == "INVALID_REQUEST"


def test_pay_unknown_qr_code_rejected(sandbox_url):
    paid = sandbox_pay(sandbox_url, QR_CODE_PREFIX + "unknown")

    assert paid.status_code == 400
    assert paid.json()["code"] == "ACQ.TRADE_NOT_EXIST"


# Notification verification against a real sandbox notification.


@pytest.fixture(scope="module")
def sandbox_notification(config, sandbox_url, receiver):
    """Return the form pairs of one notification sent by the sandbox."""
    client = AlipayClient(config, timeout=(2, 5))
    out_trade_no, qr_code = precreate(client, amount_fen=12345)
    assert sandbox_pay(sandbox_url, qr_code).status_code == 200
    fields, _, _ = receiver.wait_for(out_trade_no)
    return fields


def test_notification_fields_in_any_order(config, sandbox_notification):
    reordered = dict(reversed(sandbox_notification))
    assert list(reordered) != [name for name, _ in sandbox_notification]

    transaction = parse_notification(config, reordered)

    assert transaction.amount_fen == 12345


def test_notification_empty_field_ignored(config, sandbox_notification):
    form = dict(sandbox_notification, passback_params="")

    assert parse_notification(config, form).amount_fen == 12345


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("total_amount", "123.46", "does not verify"),
        ("out_trade_no", "LBsomeoneelse0001", "does not verify"),
        ("trade_status", "TRADE_FINISHED", "does not verify"),
        ("notify_id", "", "does not verify"),
        ("sign", "c2lnbmF0dXJl", "does not verify"),
        ("sign", "not base64!", "does not verify"),
        ("sign_type", "RSA", "sign_type"),
    ],
)
def test_changed_notification_rejected(
    config, sandbox_notification, name, value, reason
):
    form = dict(sandbox_notification)
    form[name] = value

    with pytest.raises(InvalidNotification) as caught:
        parse_notification(config, form)

    assert reason in caught.value.reason


@pytest.mark.parametrize("name", ["sign", "sign_type"])
def test_notification_missing_field_rejected(config, sandbox_notification, name):
    form = dict(sandbox_notification)
    del form[name]

    with pytest.raises(InvalidNotification) as caught:
        parse_notification(config, form)

    assert name in caught.value.reason


# Forged notifications, signed here with the Alipay key.


def forge_notification(key, **changes):
    form = {
        "notify_time": "2026-12-04 10:30:01",
        "notify_type": "trade_status_sync",
        "notify_id": "forged0001",
        "charset": "utf-8",
        "version": "1.0",
        "app_id": None,
        "seller_id": None,
        "trade_no": "2026120422001000000000000001",
        "out_trade_no": "LBforged0001",
        "buyer_id": "2088000000000001",
        "trade_status": "TRADE_SUCCESS",
        "total_amount": "123.45",
        "receipt_amount": "123.45",
        "gmt_payment": "2026-12-04 10:30:00",
    }
    form.update(changes)
    form = {name: value for name, value in form.items() if value is not None}
    form["sign"] = sign_text(key, signing_content(form))
    form["sign_type"] = "RSA2"
    return form


@pytest.fixture
def forge(config, alipay_private_key):
    def make(key=None, **changes):
        changes.setdefault("app_id", config.app_id)
        changes.setdefault("seller_id", config.seller_id)
        return forge_notification(key or alipay_private_key, **changes)

    return make


def test_forged_notification_control_passes(config, forge):
    transaction = parse_notification(config, forge())

    assert transaction.out_trade_no == "LBforged0001"
    assert transaction.amount_fen == 12345
    assert transaction.success_time == datetime(2026, 12, 4, 10, 30, tzinfo=CST)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"app_id": "2021000000000000"}, "app_id"),
        ({"seller_id": "2088000000000000"}, "seller_id"),
        ({"app_id": ""}, "app_id"),
        ({"charset": "gbk"}, "charset"),
        ({"total_amount": "123.456"}, "total_amount"),
        ({"total_amount": "1e2"}, "total_amount"),
        ({"total_amount": "-1.00"}, "total_amount"),
        ({"total_amount": "１２３.45"}, "total_amount"),
        ({"total_amount": ""}, "total_amount"),
        ({"receipt_amount": "12.3.4"}, "receipt_amount"),
        ({"trade_status": "TRADE_PENDING"}, "trade_status"),
        ({"gmt_payment": ""}, "gmt_payment"),
        ({"gmt_payment": "2026-12-04T10:30:00"}, "gmt_payment"),
        ({"trade_no": ""}, "trade_no"),
    ],
)
def test_forged_notification_rejected(config, forge, changes, reason):
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(config, forge(**changes))

    assert reason in caught.value.reason


def test_notification_signed_by_other_key_rejected(config, forge):
    with pytest.raises(InvalidNotification) as caught:
        parse_notification(config, forge(key=new_rsa_key()))

    assert "does not verify" in caught.value.reason


def test_refund_notification_carries_refund_fee(config, forge):
    form = forge(refund_fee="20.00", gmt_refund="2026-12-05 09:00:00", out_biz_no="RF1")

    transaction = parse_notification(config, form)

    assert transaction.trade_state == "SUCCESS"
    assert transaction.refund_fee_fen == 2000
    assert transaction.amount_fen == 12345


def test_notification_not_mapping_rejected(config):
    with pytest.raises(InvalidNotification):
        parse_notification(config, [("sign", "x")])


def test_ack_and_nack():
    assert notification_ack() == (
        "success",
        200,
        {"Content-Type": "text/plain; charset=utf-8"},
    )
    body, status, _ = notification_nack()
    assert body != "success"
    assert status == 500


# Close.


def test_close_scanned_order_reads_closed(client, sandbox_url):
    out_trade_no, qr_code = precreate(client)
    sandbox_scan(sandbox_url, qr_code)

    client.close(out_trade_no)

    state = client.query(out_trade_no)
    assert state.trade_state == "CLOSED"
    assert state.trade_status == "TRADE_CLOSED"
    paid = sandbox_pay(sandbox_url, qr_code)
    assert paid.status_code == 400
    assert paid.json()["code"] == "ACQ.TRADE_HAS_CLOSE"


def test_close_before_scan_trade_not_exist(client, sandbox_url):
    out_trade_no, qr_code = precreate(client)

    with pytest.raises(AlipayTradeNotExist):
        client.close(out_trade_no)

    paid = sandbox_pay(sandbox_url, qr_code)
    assert paid.status_code == 400
    assert paid.json()["code"] == "ACQ.TRADE_HAS_CLOSE"


def test_close_paid_order_rejected(client, sandbox_url, receiver):
    out_trade_no, _ = paid_order(client, sandbox_url, receiver)

    with pytest.raises(AlipayError) as caught:
        client.close(out_trade_no)

    assert caught.value.sub_code == "ACQ.TRADE_STATUS_ERROR"
    assert client.query(out_trade_no).trade_state == "SUCCESS"


def test_order_past_time_expire_reads_closed(client, sandbox_url):
    # The gateway takes whole seconds, so the order expires 2 to 3 s from now.
    time_expire = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    out_trade_no, qr_code = precreate(client, time_expire=time_expire)
    sandbox_scan(sandbox_url, qr_code)
    assert client.query(out_trade_no).trade_state == "NOTPAY"

    time.sleep(max(0.0, time_expire.timestamp() - time.time()) + 0.2)

    state = client.query(out_trade_no)
    assert state.trade_state == "CLOSED"
    assert state.trade_status == "TRADE_CLOSED"
    paid = sandbox_pay(sandbox_url, qr_code)
    assert paid.status_code == 400
    assert paid.json()["code"] == "ACQ.TRADE_HAS_CLOSE"


# Refunds.


def test_refund_same_out_request_no_refunds_once(client, sandbox_url, receiver):
    out_trade_no, trade_no = paid_order(client, sandbox_url, receiver, 10000)

    first = client.refund(out_trade_no, "RF0001", 3000, "重复缴费退回")
    second = client.refund(out_trade_no, "RF0001", 3000, "重复缴费退回")

    assert first.fund_change is True
    assert first.amount_fen == 3000
    assert first.refund_total_fen == 3000
    assert first.transaction_id == trade_no
    assert first.refunded_at.utcoffset() == timedelta(hours=8)
    assert second.fund_change is False
    assert second.refund_total_fen == 3000
    stored = sandbox_order(sandbox_url, out_trade_no)
    assert stored["refunded_amount"] == "30.00"
    assert list(stored["refunds"]) == ["RF0001"]
    assert client.query(out_trade_no).trade_state == "SUCCESS"


def test_refund_above_paid_amount_rejected(client, sandbox_url, receiver):
    out_trade_no, _ = paid_order(client, sandbox_url, receiver, 10000)
    client.refund(out_trade_no, "RF0001", 6000, "")

    with pytest.raises(AlipayError) as caught:
        client.refund(out_trade_no, "RF0002", 4001, "")

    assert caught.value.sub_code == "ACQ.REASON_TRADE_REFUND_FEE_ERR"
    assert sandbox_order(sandbox_url, out_trade_no)["refunded_amount"] == "60.00"


def test_refund_rest_then_trade_closed(client, sandbox_url, receiver):
    out_trade_no, _ = paid_order(client, sandbox_url, receiver, 10000)
    client.refund(out_trade_no, "RF0001", 6000, "")

    result = client.refund(out_trade_no, "RF0002", 4000, "")

    assert result.refund_total_fen == 10000
    state = client.query(out_trade_no)
    assert state.trade_status == "TRADE_CLOSED"
    assert state.trade_state == "CLOSED"
    with pytest.raises(AlipayError) as caught:
        client.refund(out_trade_no, "RF0003", 1, "")
    assert caught.value.sub_code == "ACQ.TRADE_STATUS_ERROR"


def test_refund_unpaid_order_rejected(client, sandbox_url):
    out_trade_no, qr_code = precreate(client)
    sandbox_scan(sandbox_url, qr_code)

    with pytest.raises(AlipayError) as caught:
        client.refund(out_trade_no, "RF0001", 100, "")

    assert caught.value.sub_code == "ACQ.TRADE_STATUS_ERROR"


def test_refund_unscanned_order_not_exist(client):
    out_trade_no, _ = precreate(client)

    with pytest.raises(AlipayTradeNotExist):
        client.refund(out_trade_no, "RF0001", 100, "")


# Signing failures and transport failures.


def test_wrong_app_key_invalid_signature(config):
    client = AlipayClient(dataclasses.replace(config, app_private_key=new_rsa_key()))

    with pytest.raises(AlipayError) as caught:
        precreate(client)

    assert caught.value.code == "40002"
    assert caught.value.sub_code == "isv.invalid-signature"


def test_wrong_app_id_rejected(config):
    client = AlipayClient(dataclasses.replace(config, app_id="2021000000000000"))

    with pytest.raises(AlipayError) as caught:
        precreate(client)

    assert caught.value.sub_code == "isv.invalid-app-id"


def test_wrong_alipay_public_key_invalid_response(config):
    other_key = new_rsa_key().public_key()
    client = AlipayClient(dataclasses.replace(config, alipay_public_key=other_key))

    with pytest.raises(AlipayInvalidResponse):
        precreate(client)


def test_non_loopback_notify_url_rejected(config):
    remote = "http://192.0.2.10/alipay/notify"
    client = AlipayClient(dataclasses.replace(config, notify_url=remote))

    with pytest.raises(AlipayError) as caught:
        precreate(client)

    assert caught.value.sub_code == "isv.invalid-notify-url"


def _closed_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _offline_config(config):
    gateway_url = f"http://127.0.0.1:{_closed_port()}/gateway.do"
    return dataclasses.replace(config, gateway_url=gateway_url)


def test_sandbox_down_unavailable(config):
    client = AlipayClient(_offline_config(config), timeout=(1, 1))

    with pytest.raises(AlipayUnavailable):
        precreate(client)
    with pytest.raises(AlipayUnavailable):
        client.query(new_out_trade_no())
    with pytest.raises(AlipayUnavailable):
        client.refund(new_out_trade_no(), "RF0001", 100, "")
    assert issubclass(AlipayUnavailable, PaymentError)


# Responses from a scripted gateway, for responses the sandbox never sends.


@pytest.fixture(scope="module")
def scripted_gateway(start_scripted_server):
    return start_scripted_server((200, "{}"))


def _scripted_client(config, scripted_gateway, *answers):
    scripted_gateway.answer_next(*answers)
    gateway_url = scripted_gateway.base_url + "/gateway.do"
    return AlipayClient(dataclasses.replace(config, gateway_url=gateway_url))


def _signed_body(alipay_private_key, member_text, member="alipay_trade_query_response"):
    signature = sign_text(alipay_private_key, member_text)
    return f'{{"{member}" : {member_text},\n "sign":"{signature}"}}'


def test_response_signed_over_exact_text(config, scripted_gateway, alipay_private_key):
    # Spaces, an escaped slash and braces inside strings must be kept as sent.
    member_text = (
        '{ "code":"10000", "msg":"Success", "trade_no":"2026120422001000000000000002",'
        ' "out_trade_no":"LBexact0001", "trade_status":"WAIT_BUYER_PAY",'
        ' "total_amount":"0.01", "buyer_logon_id":"a\\/b}{" }'
    )
    body = _signed_body(alipay_private_key, member_text)
    client = _scripted_client(config, scripted_gateway, (200, body))

    state = client.query("LBexact0001")

    assert state.amount_fen == 1
    assert state.trade_state == "NOTPAY"


def test_unsigned_error_response_raises_error(config, scripted_gateway):
    body = (
        '{"error_response":{"code":"40002","msg":"Invalid Arguments",'
        '"sub_code":"isv.invalid-app-id","sub_msg":"无效的AppID参数"}}'
    )
    client = _scripted_client(config, scripted_gateway, (200, body))

    with pytest.raises(AlipayError) as caught:
        client.query(new_out_trade_no())

    assert caught.value.sub_code == "isv.invalid-app-id"


@pytest.mark.parametrize(
    "body",
    [
        '{"alipay_trade_query_response":{"code":"10000","msg":"Success"}}',
        "not json",
        '{"alipay_trade_query_response":{"code":"10000"},'
        '"alipay_trade_query_response":{"code":"10000"},"sign":"x"}',
        '{"alipay_trade_close_response":{"code":"10000"},"sign":"x"}',
    ],
    ids=["unsigned success", "not json", "member twice", "other member"],
)
def test_unusable_response_invalid(config, scripted_gateway, body):
    client = _scripted_client(config, scripted_gateway, (200, body))

    with pytest.raises(AlipayInvalidResponse):
        client.query(new_out_trade_no())


def test_gateway_5xx_unavailable(config, scripted_gateway):
    client = _scripted_client(config, scripted_gateway, (502, "Bad Gateway"))

    with pytest.raises(AlipayUnavailable):
        client.query(new_out_trade_no())


def test_top_level_members_spans():
    text = ' { "a_response" : {"x": "}{"} ,\n"sign": "s" } '

    spans = top_level_members(text)

    start, end = spans["a_response"]
    assert text[start:end] == '{"x": "}{"}'
    start, end = spans["sign"]
    assert text[start:end] == '"s"'


# Amounts.


@pytest.mark.parametrize(
    ("amount_fen", "yuan"),
    [
        (0, "0.00"),
        (1, "0.01"),
        (10, "0.10"),
        (99, "0.99"),
        (100, "1.00"),
        (12345, "123.45"),
        (99999999, "999999.99"),
        (MAX_AMOUNT_FEN, "100000000.00"),
    ],
)
def test_fen_yuan_round_trip(amount_fen, yuan):
    assert fen_to_yuan(amount_fen) == yuan
    assert yuan_to_fen(yuan) == amount_fen


@pytest.mark.parametrize(
    ("yuan", "amount_fen"),
    [("5", 500), ("5.5", 550), ("0.1", 10), ("007.00", 700)],
)
def test_yuan_short_forms(yuan, amount_fen):
    assert yuan_to_fen(yuan) == amount_fen


@pytest.mark.parametrize(
    "yuan",
    ["", "1.", ".5", "1.234", "-1", "+1", "1e2", " 1", "1 ", "1,00", "١", "NaN", 1.5],
)
def test_invalid_yuan_rejected(yuan):
    with pytest.raises(ValueError):
        yuan_to_fen(yuan)


@pytest.mark.parametrize("amount_fen", [-1, 1.5, True, "100", None])
def test_invalid_fen_rejected(amount_fen):
    with pytest.raises(ValueError):
        fen_to_yuan(amount_fen)


def test_precreate_sends_yuan_on_wire(client, sandbox_url):
    for amount_fen, yuan in [(1, "0.01"), (100, "1.00"), (99999999, "999999.99")]:
        out_trade_no, _ = precreate(client, amount_fen=amount_fen)
        assert sandbox_order(sandbox_url, out_trade_no)["total_amount"] == yuan


# Input checks. The client points at a closed port, so an input that got past
# the checks would raise AlipayUnavailable instead of ValueError.


@pytest.fixture
def offline_client(config):
    return AlipayClient(_offline_config(config), timeout=(1, 1))


@pytest.mark.parametrize(
    "amount_fen", [0, -1, 12.5, "100", True, None, MAX_AMOUNT_FEN + 1]
)
def test_invalid_amount_rejected_before_request(offline_client, amount_fen):
    with pytest.raises(ValueError, match="amount_fen"):
        offline_client.precreate(new_out_trade_no(), "水费", amount_fen, expire_in())
    with pytest.raises(ValueError, match="amount_fen"):
        offline_client.refund(new_out_trade_no(), "RF0001", amount_fen, "")


@pytest.mark.parametrize(
    "out_trade_no", ["", "x" * 65, "LB-000001", "LB 000001", "订单000001", 123456]
)
def test_invalid_out_trade_no_rejected(offline_client, out_trade_no):
    with pytest.raises(ValueError, match="out_trade_no"):
        offline_client.precreate(out_trade_no, "水费", 100, expire_in())
    with pytest.raises(ValueError, match="out_trade_no"):
        offline_client.query(out_trade_no)
    with pytest.raises(ValueError, match="out_trade_no"):
        offline_client.close(out_trade_no)


@pytest.mark.parametrize("subject", ["", "   ", "水" * 257, "a/b", "a=b", "a&b", None])
def test_invalid_subject_rejected(offline_client, subject):
    with pytest.raises(ValueError, match="subject"):
        offline_client.precreate(new_out_trade_no(), subject, 100, expire_in())


@pytest.mark.parametrize(
    ("out_request_no", "reason", "match"),
    [
        ("", "", "out_request_no"),
        ("RF-1", "", "out_request_no"),
        ("x" * 65, "", "out_request_no"),
        ("RF0001", "r" * 257, "reason"),
        ("RF0001", None, "reason"),
    ],
)
def test_invalid_refund_rejected(offline_client, out_request_no, reason, match):
    with pytest.raises(ValueError, match=match):
        offline_client.refund(new_out_trade_no(), out_request_no, 100, reason)


@pytest.mark.parametrize("time_expire", [datetime(2026, 12, 4, 10, 30), "2026-12-04"])
def test_invalid_time_expire_rejected(offline_client, time_expire):
    with pytest.raises(ValueError, match="time"):
        offline_client.precreate(new_out_trade_no(), "水费", 100, time_expire)


def test_subject_of_256_characters_accepted(client):
    qr_code = client.precreate(new_out_trade_no(), "水" * 256, 100, expire_in())

    assert qr_code.startswith(QR_CODE_PREFIX)


def test_time_formatted_in_china_standard_time():
    moment = datetime(2026, 12, 4, 2, 30, 15, 999, tzinfo=UTC)

    assert format_alipay_time(moment) == "2026-12-04 10:30:15"


def test_config_repr_hides_keys(config):
    text = repr(config)

    assert "private" not in text
    assert "public" not in text
    assert config.app_id in text


def test_config_accepts_base64_keys(keys_dir, config):
    folder = keys_dir / "alipay"
    private_pem = (folder / "app_private.pem").read_text()
    public_pem = (folder / "alipay_public.pem").read_text()

    def strip_armour(pem):
        return "".join(line for line in pem.splitlines() if "-----" not in line)

    loaded = dataclasses.replace(
        config,
        app_private_key=strip_armour(private_pem),
        alipay_public_key=strip_armour(public_pem),
    )

    assert loaded.app_private_key.private_numbers() == (
        config.app_private_key.private_numbers()
    )
    assert loaded.alipay_public_key.public_numbers() == (
        config.alipay_public_key.public_numbers()
    )


# The launcher.


def test_start_peers_runs_alipay_sandbox(tmp_path):
    with start_peers(tmp_path, "http://127.0.0.1:9", include_wechatpay=False) as peers:
        config = AlipayConfig.from_keys_dir(
            peers.keys.directory,
            peers.alipay_url + "/gateway.do",
            "http://127.0.0.1:9/alipay/notify",
        )
        qr_code = AlipayClient(config).precreate(
            new_out_trade_no(), "水费", 100, expire_in()
        )

    assert qr_code.startswith(QR_CODE_PREFIX)
    assert config.app_id == peers.keys.alipay_app_id
    assert config.seller_id == peers.keys.alipay_seller_id


def test_start_peers_without_alipay(tmp_path):
    with start_peers(
        tmp_path, "http://127.0.0.1:9", include_wechatpay=False, include_alipay=False
    ) as peers:
        assert "alipay" not in peers.processes
        with pytest.raises(RuntimeError, match="include_alipay=False"):
            _ = peers.alipay_url


# Daily trade bill.


def _today_cst():
    return datetime.now(CST).date()


def test_download_bill_payments_and_refund(client, sandbox_url, receiver):
    first, first_trade_no = paid_order(client, sandbox_url, receiver, 12345)
    second, second_trade_no = paid_order(client, sandbox_url, receiver, 10001)
    client.refund(second, "RFBILL0001", 2999, "部分退款")

    rows = client.download_bill(_today_cst())

    ours = [row for row in rows if row.out_trade_no in (first, second)]
    payments = {row.out_trade_no: row for row in ours if row.trade_state == "SUCCESS"}
    refunds = [row for row in ours if row.trade_state == "REFUND"]
    assert len(ours) == 3
    assert payments[first].amount_fen == 12345
    assert payments[first].transaction_id == first_trade_no
    assert payments[first].refund_fen == 0
    assert payments[first].out_refund_no is None
    assert payments[second].amount_fen == 10001
    assert payments[second].transaction_id == second_trade_no
    assert len(refunds) == 1
    assert refunds[0].out_trade_no == second
    assert refunds[0].transaction_id == second_trade_no
    assert refunds[0].refund_fen == 2999
    assert refunds[0].amount_fen == 0
    assert refunds[0].out_refund_no == "RFBILL0001"
    for row in ours:
        assert row.trade_time.utcoffset() == timedelta(hours=8)
        assert row.trade_time.date() == _today_cst()


def test_download_bill_empty_day(client):
    assert client.download_bill(date(2020, 1, 1)) == []


def test_download_bill_future_day_rejected(client):
    with pytest.raises(AlipayError) as caught:
        client.download_bill(_today_cst() + timedelta(days=2))

    assert caught.value.code == "40002"


def test_download_bill_datetime_rejected(client):
    with pytest.raises(ValueError, match="datetime.date"):
        client.download_bill(datetime.now(CST))


def test_sandbox_bill_unknown_token_not_found(sandbox_url):
    response = requests.get(f"{sandbox_url}/_sandbox/bills/unknown.zip", timeout=5)

    assert response.status_code == 404


def _bill_url_body(alipay_private_key, url):
    member_text = (
        '{"code":"10000","msg":"Success","bill_download_url":' + f'"{url}"' + "}"
    )
    return _signed_body(
        alipay_private_key,
        member_text,
        member="alipay_data_dataservice_bill_downloadurl_query_response",
    )


def test_download_bill_other_host_rejected(
    config, scripted_gateway, start_scripted_server, alipay_private_key
):
    other_host = start_scripted_server((200, "not a zip"))
    url = other_host.base_url.replace("127.0.0.1", "localhost") + "/bill.zip"
    body = _bill_url_body(alipay_private_key, url)
    client = _scripted_client(config, scripted_gateway, (200, body))

    with pytest.raises(AlipayInvalidResponse, match="neither the gateway host"):
        client.download_bill(date(2026, 12, 3))

    assert other_host.requests.empty()


def test_download_bill_gateway_host_other_port_rejected(
    config, scripted_gateway, start_scripted_server, alipay_private_key
):
    other_port = start_scripted_server((200, "not a zip"))
    body = _bill_url_body(alipay_private_key, other_port.base_url + "/bill.zip")
    client = _scripted_client(config, scripted_gateway, (200, body))

    with pytest.raises(AlipayInvalidResponse, match="neither the gateway host"):
        client.download_bill(date(2026, 12, 3))

    assert other_port.requests.empty()


# Bill files built here, for what the sandbox does not produce.

BILL_HEADER_LINE = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,"
    "操作员,终端号,对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,"
    "支付宝优惠（元）,商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,"
    "卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)


def _bill_line(trade_no, out_trade_no, kind, amount, out_request_no=""):
    values = [
        f"{trade_no}\t",
        f"{out_trade_no}\t",
        kind,
        "水费欠费",
        "2026-12-03 10:00:00",
        "2026-12-03 10:00:30",
        "",
        "",
        "",
        "",
        "159****5620\t",
        amount,
        amount,
        *["0.00"] * 5,
        "",
        "0.00",
        "0.00",
        f"{out_request_no}\t" if out_request_no else "",
        "0.00",
        "0.00",
        "",
    ]
    return ",".join(values)


def _bill_csv(lines, footer):
    return "\r\n".join(
        [
            "#支付宝业务明细查询",
            "#账号：[2088102177846880]",
            "#-----------------------------------------业务明细列表"
            "-----------------------------------------",
            BILL_HEADER_LINE,
            *lines,
            "#-----------------------------------------业务明细列表结束"
            "-----------------------------------------",
            *footer,
            "#导出时间：[2026年12月04日 06:00:00]",
            "",
        ]
    )


PAYMENT_LINE = _bill_line("2026120322001000000000000001", "LBbill01", "交易", "35.80")
REFUND_LINE = _bill_line(
    "2026120322001000000000000001", "LBbill01", "退款", "-5.80", "RF01"
)
MATCHING_FOOTER = [
    "#交易合计：1笔，商家实收共35.80元，商家优惠共0.00元",
    "#退款合计：1笔，商家实收退款共-5.80元，商家优惠退款共0.00元",
]


def _zip_with_gbk_names(files):
    """Return a ZIP whose member names are GBK without the UTF-8 flag, as
    Alipay writes them. zipfile always flags non-ASCII names as UTF-8, so
    ASCII placeholders of the same length are swapped for the GBK bytes."""
    buffer = io.BytesIO()
    swaps = []
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for index, (name, text) in enumerate(files):
            name_bytes = name.encode("gbk")
            placeholder = f"{index:02d}".encode().ljust(len(name_bytes), b"_")
            swaps.append((placeholder, name_bytes))
            archive.writestr(placeholder.decode(), text.encode("gbk"))
    content = buffer.getvalue()
    for placeholder, name_bytes in swaps:
        assert content.count(placeholder) == 2
        content = content.replace(placeholder, name_bytes)
    return content


def test_bill_zip_gbk_member_names():
    detail = _bill_csv([PAYMENT_LINE, REFUND_LINE], MATCHING_FOOTER)
    content = _zip_with_gbk_names(
        [
            ("2088102177846880_20261203_业务明细(汇总).csv", "#汇总\r\n"),
            ("2088102177846880_20261203_业务明细.csv", detail),
        ]
    )

    rows = parse_trade_bill_zip(content)

    assert [row.trade_state for row in rows] == ["SUCCESS", "REFUND"]
    assert rows[0].amount_fen == 3580
    assert rows[0].transaction_id == "2026120322001000000000000001"
    assert rows[0].out_trade_no == "LBbill01"
    assert rows[1].refund_fen == 580
    assert rows[1].out_refund_no == "RF01"
    assert rows[1].trade_time == datetime(2026, 12, 3, 10, 0, 30, tzinfo=CST)


def test_bill_zip_without_detail_rejected():
    content = _zip_with_gbk_names([("2088_20261203_业务明细(汇总).csv", "#\r\n")])

    with pytest.raises(ValueError, match="业务明细.csv"):
        parse_trade_bill_zip(content)


def test_bill_not_zip_rejected():
    with pytest.raises(ValueError, match="not a ZIP"):
        parse_trade_bill_zip(b"<html>expired</html>")


@pytest.mark.parametrize(
    ("lines", "footer", "message"),
    [
        (
            [PAYMENT_LINE],
            ["#交易合计：2笔，商家实收共35.80元，商家优惠共0.00元"],
            "counts 2",
        ),
        (
            [PAYMENT_LINE],
            ["#交易合计：1笔，商家实收共35.81元，商家优惠共0.00元"],
            "3581 fen",
        ),
        (
            [_bill_line("2026120322001000000000000001", "LBbill01", "冻结", "1.00")],
            [],
            "业务类型",
        ),
        (
            [_bill_line("2026120322001000000000000001", "LBbill01", "退款", "5.80")],
            [],
            "not negative",
        ),
        (
            [_bill_line("2026120322001000000000000001", "LBbill01", "交易", "1.005")],
            [],
            "at most two decimals",
        ),
        ([PAYMENT_LINE + ",extra"], [], "26 values"),
    ],
    ids=[
        "footer count",
        "footer total",
        "unknown type",
        "positive refund",
        "three decimals",
        "extra value",
    ],
)
def test_bad_bill_csv_rejected(lines, footer, message):
    with pytest.raises(ValueError, match=message):
        parse_trade_bill_csv(_bill_csv(lines, footer))


def test_bill_csv_columns_found_by_name():
    header = BILL_HEADER_LINE.split(",")
    lines = [header[::-1], PAYMENT_LINE.split(",")[::-1]]
    text = "\r\n".join(",".join(line) for line in lines)

    rows = parse_trade_bill_csv(text)

    assert rows[0].amount_fen == 3580
    assert rows[0].out_trade_no == "LBbill01"

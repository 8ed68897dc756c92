"""Refunds and the trade bill of the WeChat Pay client against the sandbox.

The sandbox runs as its own process with a short refund delay, and refund
notifications arrive at the receiver of test_wechatpay.py. The bill's hash and
host checks run against a small forged gateway: a werkzeug server in a thread
that signs its responses with the development platform key.
"""

import dataclasses
import hashlib
import json
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from payments.errors import (
    InvalidNotification,
    WechatPayError,
    WechatPayInvalidResponse,
)
from payments.wechatpay import (
    WechatPayClient,
    WechatPayConfig,
    build_authorization,
    parse_refund_notification,
    parse_trade_bill,
    yuan_to_fen,
)
from peers.devkeys import ensure_dev_keys
from tests.payments.test_wechatpay import (
    closed_port,
    create_order,
    run_sandbox,
    sandbox_pay,
    serve_receiver,
    sign_notification,
)

CHINA_STANDARD_TIME = timezone(timedelta(hours=8))
REFUND_DELAY_SECONDS = "0.3"
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


def new_out_refund_no():
    return "RF" + uuid.uuid4().hex[:20]


def today_cst():
    return datetime.now(CHINA_STANDARD_TIME).date()


# Fixtures: keys, the sandbox process, the notification receiver.


@pytest.fixture(scope="module")
def keys_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("keys")
    ensure_dev_keys(directory)
    return directory


@pytest.fixture(scope="module")
def sandbox_url(keys_dir, tmp_path_factory):
    work = tmp_path_factory.mktemp("sandbox")
    with run_sandbox(keys_dir, work, "--refund-delay", REFUND_DELAY_SECONDS) as url:
        yield url


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


def paid_order(client, sandbox_url, amount_fen=12850):
    """Create and pay an order, and return its out_trade_no and transaction_id."""
    out_trade_no, code_url = create_order(client, amount_fen=amount_fen)
    paid = sandbox_pay(sandbox_url, code_url)
    assert paid.status_code == 200
    return out_trade_no, paid.json()["transaction_id"]


def wait_for_refund_status(client, out_refund_no, status, timeout=5):
    deadline = time.monotonic() + timeout
    while True:
        state = client.query_refund(out_refund_no)
        if state.status == status:
            return state
        assert time.monotonic() < deadline, f"refund stayed {state.status}"
        time.sleep(0.05)


def sandbox_refund(sandbox_url, out_refund_no):
    response = requests.get(
        f"{sandbox_url}/_sandbox/refunds/{out_refund_no}", timeout=5
    )
    assert response.status_code == 200
    return response.json()


def sandbox_order(sandbox_url, out_trade_no):
    response = requests.get(f"{sandbox_url}/_sandbox/orders/{out_trade_no}", timeout=5)
    assert response.status_code == 200
    return response.json()


def signed_get(config, path):
    """Send a GET signed with the merchant key, without the client's checks."""
    headers = {
        "Authorization": build_authorization(config, "GET", path, b""),
        "Accept": "application/json",
        "User-Agent": "lianban-tests",
    }
    return requests.get(config.base_url + path, headers=headers, timeout=5)


# Refunds.


def test_refund_processing_then_success(client, sandbox_url):
    out_trade_no, transaction_id = paid_order(client, sandbox_url)
    out_refund_no = new_out_refund_no()

    state = client.refund(out_trade_no, out_refund_no, 5000, 12850, "重复缴费退款")

    assert state.status == "PROCESSING"
    assert state.out_refund_no == out_refund_no
    assert state.out_trade_no == out_trade_no
    assert state.transaction_id == transaction_id
    assert state.amount_fen == 5000
    assert state.total_fen == 12850
    assert state.success_time is None
    assert state.refund_id
    done = wait_for_refund_status(client, out_refund_no, "SUCCESS")
    assert done.refund_id == state.refund_id
    assert done.amount_fen == 5000
    assert done.success_time.utcoffset() == timedelta(hours=8)
    assert client.query_order(out_trade_no).trade_state == "REFUND"


def test_refund_notification_verified(client, config, sandbox_url, receiver):
    out_trade_no, transaction_id = paid_order(client, sandbox_url, amount_fen=900)
    out_refund_no = new_out_refund_no()

    state = client.refund(
        out_trade_no, out_refund_no, 900, 900, "重复缴费", notify_url=receiver.url
    )
    headers, body, status = receiver.wait_for(config, out_refund_no=out_refund_no)
    refund = client.parse_refund_notification(headers, body)

    assert status == 204
    assert refund.status == "SUCCESS"
    assert refund.out_refund_no == out_refund_no
    assert refund.out_trade_no == out_trade_no
    assert refund.refund_id == state.refund_id
    assert refund.transaction_id == transaction_id
    assert refund.amount_fen == 900
    assert refund.total_fen == 900
    assert refund.success_time.utcoffset() == timedelta(hours=8)
    assert refund.notification_id.startswith("EV-")
    assert parse_refund_notification(config, headers, body) == refund
    deadline = time.monotonic() + 5
    while not sandbox_refund(sandbox_url, out_refund_no)["notification_accepted"]:
        assert time.monotonic() < deadline, "sandbox never recorded the acceptance"
        time.sleep(0.05)


def test_refund_without_notify_url_silent(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=500)
    out_refund_no = new_out_refund_no()

    client.refund(out_trade_no, out_refund_no, 200, 500)
    wait_for_refund_status(client, out_refund_no, "SUCCESS")
    stored = sandbox_refund(sandbox_url, out_refund_no)

    assert stored["notify_url"] is None
    assert stored["notification_id"] is None
    assert stored["notification_attempts"] == []


def test_refund_repeat_returns_existing(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url)
    out_refund_no = new_out_refund_no()

    first = client.refund(out_trade_no, out_refund_no, 3000, 12850, "重复缴费")
    second = client.refund(out_trade_no, out_refund_no, 3000, 12850, "重复缴费")

    assert second.refund_id == first.refund_id
    assert sandbox_order(sandbox_url, out_trade_no)["refunded_fen"] == 3000
    assert sandbox_order(sandbox_url, out_trade_no)["out_refund_nos"] == [out_refund_no]


def test_refund_repeat_other_amount_rejected(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url)
    out_refund_no = new_out_refund_no()
    client.refund(out_trade_no, out_refund_no, 3000, 12850)

    with pytest.raises(WechatPayError) as caught:
        client.refund(out_trade_no, out_refund_no, 4000, 12850)

    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"
    assert sandbox_order(sandbox_url, out_trade_no)["refunded_fen"] == 3000


def test_refunds_beyond_paid_rejected(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=12850)
    client.refund(out_trade_no, new_out_refund_no(), 8000, 12850)
    client.refund(out_trade_no, new_out_refund_no(), 4850, 12850)

    with pytest.raises(WechatPayError) as caught:
        client.refund(out_trade_no, new_out_refund_no(), 1, 12850)

    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"
    assert "more than the 12850 fen paid" in caught.value.message
    assert sandbox_order(sandbox_url, out_trade_no)["refunded_fen"] == 12850


def test_refund_larger_than_remainder_rejected(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=1000)
    client.refund(out_trade_no, new_out_refund_no(), 600, 1000)

    with pytest.raises(WechatPayError) as caught:
        client.refund(out_trade_no, new_out_refund_no(), 401, 1000)

    assert caught.value.code == "INVALID_REQUEST"
    assert sandbox_order(sandbox_url, out_trade_no)["refunded_fen"] == 600


def test_refund_unpaid_order_rejected(client):
    out_trade_no, _ = create_order(client, amount_fen=700)

    with pytest.raises(WechatPayError) as unpaid:
        client.refund(out_trade_no, new_out_refund_no(), 700, 700)
    with pytest.raises(WechatPayError) as unknown:
        client.refund("LB" + uuid.uuid4().hex[:20], new_out_refund_no(), 700, 700)

    assert unpaid.value.status == 404
    assert unpaid.value.code == "RESOURCE_NOT_EXISTS"
    assert unknown.value.status == 404
    assert unknown.value.code == "RESOURCE_NOT_EXISTS"
    assert client.query_order(out_trade_no).trade_state == "NOTPAY"


def test_refund_wrong_total_rejected(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=1000)

    with pytest.raises(WechatPayError) as caught:
        client.refund(out_trade_no, new_out_refund_no(), 100, 2000)

    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"
    assert client.query_order(out_trade_no).trade_state == "SUCCESS"


def test_query_unknown_refund_not_found(client):
    with pytest.raises(WechatPayError) as caught:
        client.query_refund(new_out_refund_no())

    assert caught.value.status == 404
    assert caught.value.code == "RESOURCE_NOT_EXISTS"
    assert not caught.value.retryable


def test_out_refund_no_with_special_characters(client, sandbox_url):
    # | * and @ are percent-encoded in the query path, and the encoded path is
    # what gets signed.
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=400)
    out_refund_no = f"RF|{uuid.uuid4().hex[:8]}*x@y-1_z"

    client.refund(out_trade_no, out_refund_no, 400, 400)
    state = client.query_refund(out_refund_no)

    assert state.out_refund_no == out_refund_no
    assert state.amount_fen == 400


def test_refunded_order_cannot_be_closed_or_paid(client, sandbox_url):
    out_trade_no, code_url = create_order(client, amount_fen=800)
    assert sandbox_pay(sandbox_url, code_url).status_code == 200
    client.refund(out_trade_no, new_out_refund_no(), 800, 800)

    with pytest.raises(WechatPayError) as closed:
        client.close_order(out_trade_no)
    paid_again = sandbox_pay(sandbox_url, code_url)

    assert closed.value.code == "ORDERPAID"
    assert paid_again.status_code == 400
    assert paid_again.json()["code"] == "ORDERPAID"


def test_notification_parsers_reject_each_other(client, config, sandbox_url, receiver):
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=600)
    out_refund_no = new_out_refund_no()
    client.refund(out_trade_no, out_refund_no, 600, 600, notify_url=receiver.url)
    payment_headers, payment_body, _ = receiver.wait_for(config, out_trade_no)
    refund_headers, refund_body, _ = receiver.wait_for(
        config, out_refund_no=out_refund_no
    )

    with pytest.raises(InvalidNotification) as as_payment:
        client.parse_notification(refund_headers, refund_body)
    with pytest.raises(InvalidNotification) as as_refund:
        client.parse_refund_notification(payment_headers, payment_body)

    # A refund carries no appid, so the payment parser stops there.
    assert "appid" in as_payment.value.reason
    assert "not a refund event" in as_refund.value.reason


@pytest.fixture
def offline_client(config):
    down = dataclasses.replace(config, base_url=f"http://127.0.0.1:{closed_port()}")
    return WechatPayClient(down, timeout=(1, 1))


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"out_refund_no": ""}, "out_refund_no"),
        ({"out_refund_no": "x" * 65}, "out_refund_no"),
        ({"out_refund_no": "RF 0001"}, "out_refund_no"),
        ({"out_refund_no": "退款0001"}, "out_refund_no"),
        ({"out_refund_no": None}, "out_refund_no"),
        ({"out_trade_no": "abc12"}, "out_trade_no"),
        ({"amount_fen": 0}, "amount_fen"),
        ({"amount_fen": 1.5}, "amount_fen"),
        ({"total_fen": 0}, "total_fen"),
        ({"total_fen": True}, "total_fen"),
        ({"amount_fen": 200, "total_fen": 100}, "more than total_fen"),
        ({"reason": ""}, "reason"),
        ({"reason": "   "}, "reason"),
        ({"reason": "退" * 81}, "reason"),
        ({"notify_url": ""}, "notify_url"),
    ],
)
def test_invalid_refund_rejected_before_request(offline_client, arguments, named):
    call = {
        "out_trade_no": "LB0000000001",
        "out_refund_no": "RF0000000001",
        "amount_fen": 100,
        "total_fen": 100,
        "reason": None,
    }
    call.update(arguments)

    with pytest.raises(ValueError, match=named):
        offline_client.refund(**call)


def test_refund_reason_of_80_characters_accepted(client, sandbox_url):
    out_trade_no, _ = paid_order(client, sandbox_url, amount_fen=100)

    state = client.refund(out_trade_no, new_out_refund_no(), 100, 100, "退" * 80)

    assert state.amount_fen == 100


def test_invalid_out_refund_no_query_rejected(offline_client):
    with pytest.raises(ValueError, match="out_refund_no"):
        offline_client.query_refund("RF 0001")


# The trade bill from the sandbox.


def test_bill_lists_payments_and_refunds(client, sandbox_url):
    first_order, first_transaction = paid_order(client, sandbox_url, amount_fen=12850)
    second_order, second_transaction = paid_order(client, sandbox_url, amount_fen=300)
    out_refund_no = new_out_refund_no()
    refund = client.refund(first_order, out_refund_no, 5000, 12850)
    wait_for_refund_status(client, out_refund_no, "SUCCESS")
    paid_at = client.query_order(first_order).success_time

    rows = client.download_trade_bill(today_cst())

    payments = {row.out_trade_no: row for row in rows if row.trade_state == "SUCCESS"}
    refunds = {row.out_refund_no: row for row in rows if row.trade_state == "REFUND"}
    assert payments[first_order].transaction_id == first_transaction
    assert payments[first_order].amount_fen == 12850
    assert payments[first_order].refund_fen == 0
    assert payments[first_order].out_refund_no is None
    assert payments[first_order].refund_id is None
    assert payments[first_order].refund_status is None
    assert payments[first_order].trade_time == paid_at
    assert payments[second_order].transaction_id == second_transaction
    assert payments[second_order].amount_fen == 300
    refund_row = refunds[out_refund_no]
    assert refund_row.out_trade_no == first_order
    assert refund_row.transaction_id == first_transaction
    assert refund_row.refund_id == refund.refund_id
    assert refund_row.refund_fen == 5000
    assert refund_row.amount_fen == 0
    assert refund_row.refund_status == "SUCCESS"
    assert refund_row.trade_time.utcoffset() == timedelta(hours=8)


def test_bill_file_unsigned_backtick_csv(client, config, sandbox_url):
    paid_order(client, sandbox_url, amount_fen=250)
    day = today_cst().isoformat()

    applied = signed_get(config, f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL")
    download_path = applied.json()["download_url"].removeprefix(sandbox_url)
    downloaded = signed_get(config, download_path)
    unsigned = requests.get(applied.json()["download_url"], timeout=5)
    lines = downloaded.content.decode("utf-8").split("\r\n")

    assert applied.status_code == 200
    assert applied.json()["hash_type"] == "SHA1"
    assert downloaded.status_code == 200
    assert "Wechatpay-Signature" not in downloaded.headers
    assert hashlib.sha1(downloaded.content).hexdigest() == applied.json()["hash_value"]
    assert lines[0] == BILL_HEADER
    assert lines[-1] == ""
    assert lines[-3] == BILL_SUMMARY_HEADER
    assert all(line.startswith("`") for line in lines[1:-3])
    assert lines[-2].startswith("`")
    assert unsigned.status_code == 401
    assert unsigned.json()["code"] == "SIGN_ERROR"


def test_bill_empty_day_returns_no_rows(client, config):
    yesterday = today_cst() - timedelta(days=1)

    rows = client.download_trade_bill(yesterday)
    raw = signed_get(
        config, f"/v3/bill/tradebill?bill_date={yesterday.isoformat()}&bill_type=ALL"
    )

    assert rows == []
    assert raw.status_code == 400
    assert raw.json()["code"] == "NO_STATEMENT_EXIST"


def test_bill_future_date_rejected(client):
    with pytest.raises(WechatPayError) as caught:
        client.download_trade_bill(today_cst() + timedelta(days=1))

    assert caught.value.status == 400
    assert caught.value.code == "INVALID_REQUEST"


@pytest.mark.parametrize("bill_date", ["2026-12-04", datetime(2026, 12, 4), None])
def test_bill_date_not_a_date_rejected(offline_client, bill_date):
    with pytest.raises(ValueError, match="bill_date"):
        offline_client.download_trade_bill(bill_date)


# The trade bill from a forged gateway, so the client's own checks can fail.


def bill_bytes(rows, summary=None, line_end="\r\n", bom=False):
    """Return a bill of `rows` (lists of 27 values) and `summary`.

    Without `summary`, the summary line matches the rows.
    """
    lines = [BILL_HEADER]
    lines += [",".join("`" + value for value in row) for row in rows]
    if summary is None:
        settlement = sum(Decimal(row[12]) for row in rows)
        refunded = sum(Decimal(row[16]) for row in rows)
        summary = [
            str(len(rows)),
            f"{settlement:.2f}",
            f"{refunded:.2f}",
            "0.00",
            "0.00000",
            "0.00",
            "0.00",
        ]
    lines.append(BILL_SUMMARY_HEADER)
    lines.append(",".join("`" + value for value in summary))
    text = line_end.join(lines) + line_end
    return (("\ufeff" if bom else "") + text).encode("utf-8")


def bill_row(out_trade_no="LB000001", amount="128.50", description="水费"):
    return [
        "2026-12-04 10:30:00",
        "wx0000000000000000",
        "1900000001",
        "0",
        "",
        "4200000000202612040000000001",
        out_trade_no,
        "o-payer",
        "NATIVE",
        "SUCCESS",
        "OTHERS",
        "CNY",
        amount,
        "0.00",
        "0",
        "0",
        "0.00",
        "0.00",
        "",
        "",
        description,
        "",
        "0.77000",
        "0.60%",
        amount,
        "0.00",
        "",
    ]


def refund_row(out_trade_no="LB000001", refund="50.00"):
    row = bill_row(out_trade_no, amount="0.00")
    row[0] = "2026-12-04 11:00:00"
    row[9] = "REFUND"
    row[14] = "50300000002026120400000000001"
    row[15] = "RF000001"
    row[16] = refund
    row[18] = "ORIGINAL"
    row[19] = "SUCCESS"
    row[24] = "128.50"
    row[25] = refund
    return row


class ForgedGateway:
    """A gateway that serves one bill, with the hash and download_url a test sets."""

    def __init__(self, platform_private_key, platform_serial):
        self.platform_private_key = platform_private_key
        self.platform_serial = platform_serial
        self.content = b""
        self.hash_value = ""
        self.download_url = None
        self.paths = []

    def __call__(self, environ, start_response):
        incoming = Request(environ)
        self.paths.append(incoming.path)
        if incoming.path == "/v3/bill/tradebill":
            body = json.dumps(
                {
                    "hash_type": "SHA1",
                    "hash_value": self.hash_value,
                    "download_url": self.download_url
                    or f"{incoming.host_url}v3/billdownload/file?token=t1",
                }
            ).encode()
            headers = sign_notification(
                self.platform_private_key, self.platform_serial, body
            )
            response = Response(body, headers=headers, mimetype="application/json")
        else:
            response = Response(self.content, mimetype="application/octet-stream")
        return response(environ, start_response)


@contextmanager
def serve_forged_gateway(config, platform_private_key):
    app = ForgedGateway(platform_private_key, config.platform_serial)
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
    )
    thread.start()
    app.url = f"http://127.0.0.1:{server.server_port}"
    try:
        yield app
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def forged(config, keys_dir):
    pem = (keys_dir / "wechatpay" / "platform_private.pem").read_bytes()
    key = serialization.load_pem_private_key(pem, password=None)
    with serve_forged_gateway(config, key) as gateway:
        forged_config = dataclasses.replace(config, base_url=gateway.url)
        gateway.client = WechatPayClient(forged_config, timeout=(2, 5))
        yield gateway


def test_forged_bill_control_passes(forged):
    forged.content = bill_bytes([bill_row(), refund_row()])
    forged.hash_value = hashlib.sha1(forged.content).hexdigest().upper()

    rows = forged.client.download_trade_bill(date(2026, 12, 4))

    assert [row.trade_state for row in rows] == ["SUCCESS", "REFUND"]
    assert rows[0].amount_fen == 12850
    assert rows[1].refund_fen == 5000
    assert rows[1].out_refund_no == "RF000001"


def test_forged_bill_hash_mismatch_rejected(forged):
    forged.content = bill_bytes([bill_row()])
    forged.hash_value = hashlib.sha1(b"another file").hexdigest()

    with pytest.raises(WechatPayInvalidResponse, match="SHA1 of the file"):
        forged.client.download_trade_bill(date(2026, 12, 4))


def test_forged_bill_foreign_host_not_fetched(forged):
    forged.content = bill_bytes([bill_row()])
    forged.hash_value = hashlib.sha1(forged.content).hexdigest()
    forged.download_url = "http://127.0.0.2:9/v3/billdownload/file?token=t1"

    with pytest.raises(WechatPayInvalidResponse, match="neither the base_url host"):
        forged.client.download_trade_bill(date(2026, 12, 4))

    assert forged.paths == ["/v3/bill/tradebill"]


def test_forged_bill_wrong_total_rejected(forged):
    summary = ["1", "128.49", "0.00", "0.00", "0.00000", "128.50", "0.00"]
    forged.content = bill_bytes([bill_row()], summary=summary)
    forged.hash_value = hashlib.sha1(forged.content).hexdigest()

    with pytest.raises(WechatPayInvalidResponse, match="应结订单总金额 is 12849 fen"):
        forged.client.download_trade_bill(date(2026, 12, 4))


# Bill parsing on its own.


def test_parse_bill_bom_crlf_and_commas():
    content = bill_bytes(
        [bill_row(description="水费, 2026年11月"), refund_row()], bom=True
    )

    rows = parse_trade_bill(content)

    assert len(rows) == 2
    assert rows[0].out_trade_no == "LB000001"
    assert rows[0].transaction_id == "4200000000202612040000000001"
    assert rows[0].trade_time == datetime(
        2026, 12, 4, 10, 30, tzinfo=CHINA_STANDARD_TIME
    )
    assert rows[1].refund_id == "50300000002026120400000000001"
    assert rows[1].refund_status == "SUCCESS"


def test_parse_bill_newline_endings():
    rows = parse_trade_bill(bill_bytes([bill_row()], line_end="\n"))

    assert [row.amount_fen for row in rows] == [12850]


SUMMARY = ["1", "128.50", "0.00", "0.00", "0.00000", "128.50", "0.00"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (bill_bytes([bill_row(amount="128.505")], summary=SUMMARY), "two decimals"),
        (bill_bytes([bill_row(amount="1,000.00")], summary=SUMMARY), "two decimals"),
        (bill_bytes([bill_row()[:26]], summary=SUMMARY), "26 values, expected 27"),
        (
            bill_bytes(
                [bill_row()], summary=["2", "128.50", "0.00", "0", "0", "0", "0"]
            ),
            "counts '2' lines",
        ),
        (
            bill_bytes(
                [refund_row()], summary=["1", "0.00", "50.01", "0", "0", "0", "0"]
            ),
            "退款总金额 is 5001 fen",
        ),
        (bill_bytes([bill_row()]).split("总交易单数".encode())[0], "no summary lines"),
        (
            bill_bytes([bill_row()]).replace("商户订单号".encode(), b"order"),
            "商户订单号",
        ),
        (
            bill_bytes([bill_row()]).replace(b"`2026-12-04 10:30:00", b"2026"),
            "backtick",
        ),
        (
            bill_bytes([bill_row()]).replace(b"2026-12-04 10:30:00", b"today"),
            "trade time",
        ),
        ("交易时间".encode("gbk"), "not UTF-8"),
    ],
    ids=[
        "empty",
        "three decimals",
        "comma in amount",
        "value missing",
        "wrong count",
        "wrong refund total",
        "no summary",
        "missing column",
        "no backtick",
        "bad trade time",
        "not utf-8",
    ],
)
def test_parse_bill_malformed_rejected(content, message):
    with pytest.raises(ValueError, match=message):
        parse_trade_bill(content)


@pytest.mark.parametrize(
    ("text", "fen"),
    [
        ("0.01", 1),
        ("0.1", 10),
        ("1", 100),
        ("128.50", 12850),
        ("1234567.89", 123456789),
        ("-5.00", -500),
        ("0.00", 0),
    ],
)
def test_yuan_to_fen_exact(text, fen):
    assert yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["", "1.234", "1e2", " 1.00", "¥1.00", "1.", ".5"])
def test_yuan_to_fen_rejects_other_text(text):
    with pytest.raises(ValueError, match="yuan amount"):
        yuan_to_fen(text)


def test_refund_parser_requires_raw_bytes(config):
    with pytest.raises(InvalidNotification, match="body must be the raw"):
        parse_refund_notification(config, {}, "not bytes")

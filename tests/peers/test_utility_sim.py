"""Tests of the utility simulator, the launcher and the development keys.

The peers run as real processes started by start_peers. A small hub stand-in
runs in a thread: it checks the signature of every feedback message with
partners/signing.py, records what it accepted and serves the export that
channel utilities collect.
"""

import json
import stat
import threading
import time
import uuid
from collections import defaultdict

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from werkzeug.serving import make_server
from werkzeug.wrappers import Request, Response

from partners.signing import (
    SignatureError,
    read_headers,
    sign_request,
    verify_signature,
)
from peers.common import UTILITIES, UTILITY_BY_CODE
from peers.devkeys import ensure_dev_keys
from peers.launch import PeerStartError, start_peers

FEEDBACK_DELAY = 0.1
WAIT_SECONDS = 10
OWNER = {"name": "李娜", "id_type": "居民身份证", "id_number": "370102199001011236"}
SELLER = {"name": "张伟", "id_type": "居民身份证", "id_number": "370102198001011234"}
UNIT_CODE = "370102001001GB00001F00010001"


class HubStandIn:
    """A minimal hub that accepts signed feedback and serves exports."""

    def __init__(self, utility_secrets: dict[str, str]):
        self.secrets = utility_secrets
        self.lock = threading.Lock()
        self.accepted: list[dict] = []
        self.attempts: list[dict] = []
        self.rejected_signatures: list[str] = []
        self.seen_message_ids: set[str] = set()
        self.exports: dict[str, list[dict]] = defaultdict(list)
        # transfer_id to the HTTP statuses to return before accepting.
        self.failures: dict[str, list[int]] = {}
        self.port = 0
        self.server = None
        self.thread = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.server = make_server(
            "127.0.0.1", self.port, self.application, threaded=True
        )
        self.port = self.server.socket.getsockname()[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    @Request.application
    def application(self, request: Request) -> Response:
        body = request.get_data()
        try:
            signed = read_headers(request.headers)
            secret = self.secrets.get(signed.partner)
            if secret is None:
                raise SignatureError("unknown_partner", signed.partner)
            query = request.query_string.decode()
            path = f"{request.path}?{query}" if query else request.path
            verify_signature(signed, [secret], request.method, path, body)
        except SignatureError as error:
            with self.lock:
                self.rejected_signatures.append(error.code)
            return _json_response({"code": error.code}, 401)
        with self.lock:
            if signed.message_id in self.seen_message_ids:
                self.rejected_signatures.append("replayed")
                return _json_response({"code": "replayed"}, 401)
            self.seen_message_ids.add(signed.message_id)

        if request.method == "POST" and request.path == "/api/v1/partner/feedback":
            report = json.loads(body)
            with self.lock:
                self.attempts.append(report)
                planned = self.failures.get(report["transfer_id"])
                if planned:
                    return _json_response({"code": "planned_failure"}, planned.pop(0))
                self.accepted.append({"partner": signed.partner, **report})
            return _json_response({"applied": True}, 200)
        if request.method == "GET" and request.path == "/api/v1/partner/exports":
            with self.lock:
                transfers = self.exports.pop(signed.partner, [])
            return _json_response({"transfers": transfers}, 200)
        return _json_response({"code": "not_found"}, 404)

    def feedback_for(self, transfer_id: str) -> list[dict]:
        with self.lock:
            return [r for r in self.accepted if r["transfer_id"] == transfer_id]

    def wait_for_feedback(self, transfer_id: str, count: int = 2) -> list[dict]:
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            reports = self.feedback_for(transfer_id)
            if len(reports) >= count:
                return reports
            time.sleep(0.05)
        raise AssertionError(
            f"hub got {self.feedback_for(transfer_id)} for {transfer_id}, "
            f"expected {count} reports"
        )


def _json_response(content: dict, status: int) -> Response:
    return Response(json.dumps(content), status=status, mimetype="application/json")


def _new_account_no(prefix: str = "T") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


def _account(utility: str, account_no: str, **overrides) -> dict:
    account = {
        "utility": utility,
        "account_no": account_no,
        "holder_name": SELLER["name"],
        "holder_id_numbers": [SELLER["id_number"]],
        "account_address": "历下区燕子山小区3号楼2单元501",
        "arrears_fen": 0,
        "status": "active",
        "direct_debit": False,
    }
    account.update(overrides)
    return account


def _push(code: str, account_no: str, **overrides) -> dict:
    body = {
        "transfer_id": uuid.uuid4().hex,
        "business_no": "2026-0001234",
        "business_type": "二手房买卖",
        "certificate_no": "鲁(2026)济南市不动产权第0001234号",
        "unit_code": UNIT_CODE,
        "location": "历下区燕子山路2号3号楼2单元501",
        "usage": "住宅",
        "building_area": "89.50",
        "inner_area": 76.2,
        "owners": [OWNER],
        "previous_owners": [SELLER],
        "service_org": UTILITY_BY_CODE[code].service_org,
        "account_no": account_no,
        "account_address": "历下区燕子山小区3号楼2单元501",
        "arrears_fen": 0,
        "account_confirmed": True,
        "agreement_accepted": True,
        "agreement_version": 1,
    }
    body.update(overrides)
    return body


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="module")
def hub(workdir):
    keys = ensure_dev_keys(workdir / "keys")
    stand_in = HubStandIn(keys.utility_secrets)
    stand_in.start()
    yield stand_in
    stand_in.stop()


@pytest.fixture(scope="module")
def peers(workdir, hub):
    accounts_file = workdir / "accounts.json"
    accounts = [
        _account("water", "SW10000001", arrears_fen=12850),
        _account("power", "GD20000001"),
        _account("tv", "TV30000001"),
    ]
    accounts_file.write_text(json.dumps(accounts, ensure_ascii=False), "utf-8")
    with start_peers(
        workdir,
        hub.url,
        accounts_file=accounts_file,
        feedback_delay=FEEDBACK_DELAY,
        include_wechatpay=False,
        feedback_retry_base_delay=0.1,
        feedback_retry_max_delay=0.4,
    ) as running:
        yield running


def signed(peers, code, method, path, payload=None, **signing):
    """Send a request signed as utility `code`; `signing` overrides sign_request."""
    body = b"" if payload is None else json.dumps(payload).encode()
    secret = signing.pop("secret", peers.keys.utility_secret(code))
    partner = signing.pop("partner", code)
    headers = sign_request(partner, secret, method, path, body, **signing)
    return requests.request(
        method, peers.utility_sim_url + path, data=body or None, headers=headers
    )


def add_accounts(peers, *accounts):
    response = requests.post(peers.utility_sim_url + "/_sim/accounts", json=accounts)
    assert response.status_code == 200, response.text


def sim_transfer(peers, transfer_id) -> dict:
    response = requests.get(
        peers.utility_sim_url + "/_sim/transfers", params={"transfer_id": transfer_id}
    )
    (record,) = response.json()["transfers"]
    return record


# Accounts, arrears and payments.


def test_account_lookup_returns_holder(peers):
    response = signed(peers, "water", "GET", "/water/accounts/SW10000001")
    assert response.status_code == 200
    assert response.json() == {
        "account_no": "SW10000001",
        "holder_name": SELLER["name"],
        "holder_id_numbers": [SELLER["id_number"]],
        "account_address": "历下区燕子山小区3号楼2单元501",
        "status": "active",
        "direct_debit": False,
    }


def test_account_lookup_is_per_utility(peers):
    response = signed(peers, "power", "GET", "/power/accounts/SW10000001")
    assert response.status_code == 404
    assert response.json()["code"] == "account_not_found"


def test_unknown_account_is_404(peers):
    response = signed(peers, "gas", "GET", "/gas/accounts/NOPE")
    assert response.status_code == 404
    assert response.json()["code"] == "account_not_found"
    assert response.json()["message"]


def test_unknown_utility_is_404(peers):
    response = requests.get(peers.utility_sim_url + "/sewage/accounts/X")
    assert response.status_code == 404
    assert response.json()["code"] == "utility_not_found"


def test_arrears_has_amount_and_time(peers):
    account_no = _new_account_no()
    add_accounts(peers, _account("heat", account_no, arrears_fen=4321))
    response = signed(peers, "heat", "GET", f"/heat/accounts/{account_no}/arrears")
    assert response.status_code == 200
    content = response.json()
    assert content["account_no"] == account_no
    assert content["arrears_fen"] == 4321
    assert content["as_of"].endswith("+08:00")


def test_transfer_check_down_is_503(peers):
    account_no = _new_account_no()
    path = f"/gas/accounts/{account_no}/transfer-check"
    add_accounts(peers, _account("gas", account_no, transfer_check_down=True))
    down = signed(peers, "gas", "GET", path)
    add_accounts(peers, _account("gas", account_no, block_reason="表具待检定"))
    back = signed(peers, "gas", "GET", path)

    assert down.status_code == 503
    assert down.json()["code"] == "check_unavailable"
    assert back.status_code == 200
    items = {item["item"]: item for item in back.json()["items"]}
    assert items["block"] == {
        "item": "block",
        "blocking": True,
        "reason": "表具待检定",
    }


def test_sandbox_lists_readings_taken(peers):
    account_no = _new_account_no()
    add_accounts(peers, _account("water", account_no))
    transfer_id = uuid.uuid4().hex
    reading = signed(
        peers,
        "water",
        "POST",
        f"/water/accounts/{account_no}/meter-readings",
        {"transfer_id": transfer_id, "reading_date": "2026-03-01"},
    )

    listed = requests.get(
        peers.utility_sim_url + "/_sim/meter-readings",
        params={"transfer_id": transfer_id},
    ).json()["readings"]

    assert reading.status_code == 200
    assert listed == [reading.json()]
    assert listed[0]["account_no"] == account_no
    assert listed[0]["unit"] == "m³"


def test_payment_lowers_arrears_once(peers):
    account_no = _new_account_no()
    add_accounts(peers, _account("water", account_no, arrears_fen=12850))
    path = f"/water/accounts/{account_no}/payments"
    payment = {
        "payment_id": "P1",
        "amount_fen": 5000,
        "paid_at": "2026-12-04T10:00:00+08:00",
    }

    first = signed(peers, "water", "POST", path, payment)
    again = signed(peers, "water", "POST", path, payment)
    arrears = signed(peers, "water", "GET", f"/water/accounts/{account_no}/arrears")

    assert first.status_code == 200
    assert first.json()["arrears_fen"] == 7850
    assert again.status_code == 200
    assert again.json() == first.json()
    assert arrears.json()["arrears_fen"] == 7850


def test_payment_never_below_zero(peers):
    account_no = _new_account_no()
    add_accounts(peers, _account("water", account_no, arrears_fen=100))
    payment = {
        "payment_id": "P2",
        "amount_fen": 500,
        "paid_at": "2026-12-04T10:00:00+08:00",
    }
    response = signed(
        peers, "water", "POST", f"/water/accounts/{account_no}/payments", payment
    )
    assert response.status_code == 200
    assert response.json()["arrears_fen"] == 0


def test_payment_id_conflict_is_409(peers):
    account_no = _new_account_no()
    add_accounts(peers, _account("gas", account_no, arrears_fen=1000))
    path = f"/gas/accounts/{account_no}/payments"
    paid_at = "2026-12-04T10:00:00+08:00"
    signed(
        peers,
        "gas",
        "POST",
        path,
        {"payment_id": "P3", "amount_fen": 10, "paid_at": paid_at},
    )
    response = signed(
        peers,
        "gas",
        "POST",
        path,
        {"payment_id": "P3", "amount_fen": 20, "paid_at": paid_at},
    )
    assert response.status_code == 409
    assert response.json()["code"] == "payment_conflict"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"amount_fen": 0}, "amount_fen"),
        ({"amount_fen": -5}, "amount_fen"),
        ({"amount_fen": "100"}, "amount_fen"),
        ({"amount_fen": 10.5}, "amount_fen"),
        ({"amount_fen": True}, "amount_fen"),
        ({"payment_id": ""}, "payment_id"),
        ({"payment_id": None}, "payment_id"),
        ({"paid_at": "yesterday"}, "paid_at"),
    ],
)
def test_invalid_payment_is_400(peers, change, field):
    payment = {
        "payment_id": "P9",
        "amount_fen": 100,
        "paid_at": "2026-12-04T10:00:00+08:00",
    }
    payment.update(change)
    response = signed(
        peers, "water", "POST", "/water/accounts/SW10000001/payments", payment
    )
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_payment_body_not_json_is_400(peers):
    path = "/water/accounts/SW10000001/payments"
    body = b"not json"
    headers = sign_request(
        "water", peers.keys.utility_secret("water"), "POST", path, body
    )
    response = requests.post(peers.utility_sim_url + path, data=body, headers=headers)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


# Signatures.


def test_unsigned_request_is_401(peers):
    response = requests.get(peers.utility_sim_url + "/water/accounts/SW10000001")
    assert response.status_code == 401
    assert response.json()["code"] == "signature_missing"
    assert response.json()["message"]


def test_wrong_secret_is_401(peers):
    response = signed(
        peers, "water", "GET", "/water/accounts/SW10000001", secret="0" * 64
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature_invalid"


def test_other_utility_secret_is_401(peers):
    response = signed(
        peers,
        "water",
        "GET",
        "/water/accounts/SW10000001",
        partner="power",
        secret=peers.keys.utility_secret("power"),
    )
    assert response.status_code == 401
    assert response.json()["code"] == "partner_mismatch"


def test_tampered_body_is_401(peers):
    path = "/water/accounts/SW10000001/payments"
    signed_body = json.dumps(
        {"payment_id": "P5", "amount_fen": 1, "paid_at": "2026-12-04T10:00:00+08:00"}
    ).encode()
    sent_body = signed_body.replace(b'"amount_fen": 1', b'"amount_fen": 9')
    headers = sign_request(
        "water", peers.keys.utility_secret("water"), "POST", path, signed_body
    )
    response = requests.post(
        peers.utility_sim_url + path, data=sent_body, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature_invalid"


def test_replayed_message_id_is_401(peers):
    message_id = uuid.uuid4().hex
    path = "/water/accounts/SW10000001"
    first = signed(peers, "water", "GET", path, message_id=message_id)
    second = signed(peers, "water", "GET", path, message_id=message_id)
    assert first.status_code == 200
    assert second.status_code == 401
    assert second.json()["code"] == "message_replayed"


def test_stale_timestamp_is_401(peers):
    response = signed(
        peers, "water", "GET", "/water/accounts/SW10000001", now=time.time() - 301
    )
    assert response.status_code == 401
    assert response.json()["code"] == "signature_expired"


def test_signed_query_string_is_checked(peers):
    path = "/water/accounts/SW10000001/arrears?at=now"
    good = signed(peers, "water", "GET", path)
    headers = sign_request("water", peers.keys.utility_secret("water"), "GET", path)
    bad = requests.get(
        peers.utility_sim_url + "/water/accounts/SW10000001/arrears?at=later",
        headers=headers,
    )
    assert good.status_code == 200
    assert bad.status_code == 401


# Transfers pushed over HTTP.


def test_push_is_accepted_once(peers, hub):
    account_no = _new_account_no()
    add_accounts(peers, _account("power", account_no))
    push = _push("power", account_no)

    first = signed(peers, "power", "POST", "/power/transfers", push)
    again = signed(peers, "power", "POST", "/power/transfers", push)

    assert first.status_code == 202
    assert first.json()["transfer_id"] == push["transfer_id"]
    assert first.json()["utility_ref"]
    assert again.status_code == 202
    assert again.json() == first.json()
    hub.wait_for_feedback(push["transfer_id"], count=2)
    time.sleep(3 * FEEDBACK_DELAY)
    assert len(hub.feedback_for(push["transfer_id"])) == 2


def test_completed_transfer_changes_holder(peers, hub):
    account_no = _new_account_no()
    add_accounts(peers, _account("laiwu-power", account_no))
    push = _push("laiwu-power", account_no)

    response = signed(peers, "laiwu-power", "POST", "/laiwu-power/transfers", push)
    assert response.status_code == 202
    progress, final = hub.wait_for_feedback(push["transfer_id"], count=2)

    assert progress["status"] == "办理中"
    assert progress["return_reason"] is None
    assert final["status"] == "办结"
    assert final["return_reason"] is None
    for report in (progress, final):
        assert report["partner"] == "laiwu-power"
        assert report["account_no"] == account_no
        assert report["service_org"] == "国网莱芜供电公司"
        assert report["reported_at"].endswith("+08:00")
    account = signed(
        peers, "laiwu-power", "GET", f"/laiwu-power/accounts/{account_no}"
    ).json()
    assert account["holder_name"] == OWNER["name"]
    assert account["holder_id_numbers"] == [OWNER["id_number"]]
    assert account["direct_debit"] is False


def test_unrelated_holder_is_completed(peers, hub):
    account_no = _new_account_no()
    earlier_holder = {
        "holder_name": "王芳",
        "holder_id_numbers": ["370102197001011239"],
    }
    add_accounts(peers, _account("gas", account_no, **earlier_holder))
    push = _push("gas", account_no)
    signed(peers, "gas", "POST", "/gas/transfers", push)
    _, final = hub.wait_for_feedback(push["transfer_id"], count=2)
    assert final["status"] == "办结"


@pytest.mark.parametrize(
    ("account_change", "reason"),
    [
        ({"status": "closed"}, "该户号已销户"),
        ({"direct_debit": True}, "原户主银行代扣未解除"),
        ({"arrears_fen": 1}, "账户仍有欠费未结清"),
        (None, "户号不存在"),
    ],
)
def test_returned_transfer_has_reason(peers, hub, account_change, reason):
    account_no = _new_account_no()
    if account_change is not None:
        add_accounts(peers, _account("water", account_no, **account_change))
    push = _push("water", account_no)

    response = signed(peers, "water", "POST", "/water/transfers", push)
    assert response.status_code == 202
    progress, final = hub.wait_for_feedback(push["transfer_id"], count=2)

    assert progress["status"] == "办理中"
    assert final["status"] == "退件"
    assert final["return_reason"] == reason
    if account_change is not None:
        account = signed(peers, "water", "GET", f"/water/accounts/{account_no}").json()
        assert account["holder_name"] == SELLER["name"]


def test_arrears_paid_before_decision_completes(peers, hub):
    account_no = _new_account_no()
    add_accounts(peers, _account("heat", account_no, arrears_fen=300))
    payment = {
        "payment_id": "P-heat",
        "amount_fen": 300,
        "paid_at": "2026-12-04T10:00:00+08:00",
    }
    signed(peers, "heat", "POST", f"/heat/accounts/{account_no}/payments", payment)
    push = _push("heat", account_no, arrears_fen=300)
    signed(peers, "heat", "POST", "/heat/transfers", push)
    _, final = hub.wait_for_feedback(push["transfer_id"], count=2)
    assert final["status"] == "办结"


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"business_no": None}, "missing_field", "business_no"),
        ({"business_no": ""}, "invalid_field", "business_no"),
        ({"account_no": 12345}, "invalid_field", "account_no"),
        ({"unit_code": "3701"}, "invalid_field", "unit_code"),
        ({"owners": []}, "invalid_field", "owners"),
        ({"owners": [{"name": "李娜"}]}, "missing_field", "owners[0].id_type"),
        ({"previous_owners": "张伟"}, "invalid_field", "previous_owners"),
        ({"arrears_fen": "0"}, "invalid_field", "arrears_fen"),
        ({"arrears_fen": -1}, "invalid_field", "arrears_fen"),
        ({"account_confirmed": "yes"}, "invalid_field", "account_confirmed"),
        ({"building_area": "large"}, "invalid_field", "building_area"),
        ({"certificate_no": 7}, "invalid_field", "certificate_no"),
        ({"agreement_version": None}, "invalid_field", "agreement_version"),
        ({"service_org": "济南燃气"}, "service_org_mismatch", "service_org"),
    ],
)
def test_malformed_push_is_400(peers, change, code, field):
    push = _push("water", "SW10000001")
    push.update(change)
    response = signed(peers, "water", "POST", "/water/transfers", push)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert field in response.json()["message"]


def test_push_without_key_is_400(peers):
    push = _push("water", "SW10000001")
    del push["usage"]
    response = signed(peers, "water", "POST", "/water/transfers", push)
    assert response.status_code == 400
    assert response.json()["code"] == "missing_field"


def test_push_with_nullable_fields_is_202(peers):
    push = _push(
        "water",
        "SW10000001",
        certificate_no=None,
        usage=None,
        building_area=None,
        inner_area=None,
        account_address=None,
        agreement_accepted=False,
        agreement_version=None,
        previous_owners=[],
    )
    response = signed(peers, "water", "POST", "/water/transfers", push)
    assert response.status_code == 202


def test_push_list_body_is_400(peers):
    response = signed(peers, "water", "POST", "/water/transfers", [1, 2])
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_request"


# Utilities connected by channel.


def test_tv_push_is_not_connected(peers):
    push = _push("tv", "TV30000001")
    response = signed(peers, "tv", "POST", "/tv/transfers", push)
    assert response.status_code == 404
    assert response.json()["code"] == "not_connected"


def test_tv_collects_exports(peers, hub):
    account_no = _new_account_no("TV")
    add_accounts(peers, _account("tv", account_no))
    push = _push("tv", account_no)
    invalid = _push("tv", account_no, owners=[])
    hub.exports["tv"].extend([push, invalid])

    response = requests.post(peers.utility_sim_url + "/_sim/collect/tv")

    assert response.status_code == 200
    content = response.json()
    assert content["received"] == 2
    assert [a["transfer_id"] for a in content["accepted"]] == [push["transfer_id"]]
    assert [i["transfer_id"] for i in content["invalid"]] == [invalid["transfer_id"]]
    progress, final = hub.wait_for_feedback(push["transfer_id"], count=2)
    assert progress["partner"] == "tv"
    assert final["status"] == "办结"
    assert final["service_org"] == "中国广电济南市分公司"
    record = sim_transfer(peers, push["transfer_id"])
    assert record["received_via"] == "export"

    hub.exports["tv"].append(push)
    repeat = requests.post(peers.utility_sim_url + "/_sim/collect/tv").json()
    assert repeat["accepted"] == []
    assert repeat["duplicates"] == [push["transfer_id"]]


def test_collect_for_system_utility_is_400(peers):
    response = requests.post(peers.utility_sim_url + "/_sim/collect/water")
    assert response.status_code == 400
    assert response.json()["code"] == "not_channel_utility"


# Delivery of feedback when the hub fails.


def test_feedback_retried_while_hub_down(peers, hub):
    account_no = _new_account_no()
    add_accounts(peers, _account("water", account_no))
    push = _push("water", account_no)

    hub.stop()
    try:
        response = signed(peers, "water", "POST", "/water/transfers", push)
        assert response.status_code == 202
        time.sleep(FEEDBACK_DELAY + 0.5)
    finally:
        hub.start()

    progress, final = hub.wait_for_feedback(push["transfer_id"], count=2)
    assert progress["status"] == "办理中"
    assert final["status"] == "办结"
    record = sim_transfer(peers, push["transfer_id"])
    assert record["feedback"][0]["attempts"] > 1
    assert [m["delivery"] for m in record["feedback"]] == ["delivered", "delivered"]


def test_feedback_retried_after_5xx(peers, hub):
    account_no = _new_account_no()
    add_accounts(peers, _account("power", account_no))
    push = _push("power", account_no)
    hub.failures[push["transfer_id"]] = [503, 500]

    signed(peers, "power", "POST", "/power/transfers", push)

    progress, final = hub.wait_for_feedback(push["transfer_id"], count=2)
    assert [progress["status"], final["status"]] == ["办理中", "办结"]
    assert sim_transfer(peers, push["transfer_id"])["feedback"][0]["attempts"] == 3


def test_feedback_4xx_not_retried(peers, hub):
    account_no = _new_account_no()
    add_accounts(peers, _account("power", account_no))
    push = _push("power", account_no)
    hub.failures[push["transfer_id"]] = [400]

    signed(peers, "power", "POST", "/power/transfers", push)

    deadline = time.monotonic() + WAIT_SECONDS
    record = sim_transfer(peers, push["transfer_id"])
    while len(record["feedback"]) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
        record = sim_transfer(peers, push["transfer_id"])
    progress, final = record["feedback"]
    assert progress["delivery"] == "rejected"
    assert progress["attempts"] == 1
    assert final["delivery"] == "held"
    assert hub.feedback_for(push["transfer_id"]) == []
    attempts = [a for a in hub.attempts if a["transfer_id"] == push["transfer_id"]]
    assert len(attempts) == 1


# Sandbox endpoints.


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"utility": "sewage"}, "utility"),
        ({"status": "frozen"}, "status"),
        ({"arrears_fen": -1}, "arrears_fen"),
        ({"direct_debit": "no"}, "direct_debit"),
        ({"holder_id_numbers": "3701"}, "holder_id_numbers"),
        ({"account_no": ""}, "account_no"),
        ({"transfer_check_down": 1}, "transfer_check_down"),
    ],
)
def test_sandbox_rejects_invalid_account(peers, change, field):
    account = _account("water", _new_account_no())
    account.update(change)
    response = requests.post(peers.utility_sim_url + "/_sim/accounts", json=[account])
    assert response.status_code == 400
    assert field in response.json()["message"]


def test_sandbox_health_lists_utilities(peers):
    response = requests.get(peers.utility_sim_url + "/_sim/health")
    assert response.status_code == 200
    assert response.json()["utilities"] == [u.code for u in UTILITIES]


def test_utility_base_url_names_utility(peers):
    assert peers.utility_base_url("laiwu-power").endswith("/laiwu-power")
    with pytest.raises(KeyError):
        peers.utility_base_url("sewage")


# Polling collector, launcher errors and development keys, each with own peers.


def test_collect_interval_polls_exports(tmp_path):
    keys = ensure_dev_keys(tmp_path / "keys")
    hub = HubStandIn(keys.utility_secrets)
    hub.start()
    try:
        accounts_file = tmp_path / "accounts.json"
        accounts_file.write_text(json.dumps([_account("tv", "TV1")]), "utf-8")
        push = _push("tv", "TV1")
        hub.exports["tv"].append(push)
        with start_peers(
            tmp_path,
            hub.url,
            accounts_file=accounts_file,
            feedback_delay=FEEDBACK_DELAY,
            collect_interval=0.2,
            include_wechatpay=False,
        ):
            _, final = hub.wait_for_feedback(push["transfer_id"], count=2)
        assert final["status"] == "办结"
    finally:
        hub.stop()


def test_start_peers_names_failing_peer(tmp_path):
    accounts_file = tmp_path / "accounts.json"
    accounts_file.write_text("[{not json", "utf-8")
    with pytest.raises(PeerStartError) as raised:
        start_peers(
            tmp_path,
            "http://127.0.0.1:9",
            accounts_file=accounts_file,
            include_wechatpay=False,
        )
    message = str(raised.value)
    assert "utility_sim" in message
    assert str(tmp_path / "logs" / "utility_sim.log") in message
    assert "accounts file" in message


def test_dev_keys_created_once(tmp_path):
    first = ensure_dev_keys(tmp_path / "keys")
    second = ensure_dev_keys(tmp_path / "keys")
    assert second.utility_secrets == first.utility_secrets
    assert second.idp_secret == first.idp_secret
    assert second.merchant_serial == first.merchant_serial
    assert set(first.utility_secrets) == {u.code for u in UTILITIES}
    assert first.idp_appid.startswith("wx")
    assert first.wechatpay_appid == first.idp_appid
    assert first.mchid == "1900000001"


def test_dev_keys_formats_and_modes(tmp_path):
    keys = ensure_dev_keys(tmp_path / "keys")
    for serial in (keys.merchant_serial, keys.platform_serial):
        assert len(serial) == 40
        assert serial == serial.upper()
        int(serial, 16)
    assert len(keys.apiv3_key) == 32
    assert keys.apiv3_key.isascii()
    for path in (
        keys.partners_path,
        keys.wechatpay_config_path,
        keys.merchant_private_key_path,
        keys.platform_private_key_path,
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    private_key = serialization.load_pem_private_key(
        keys.merchant_private_key_path.read_bytes(), password=None
    )
    public_key = serialization.load_pem_public_key(
        keys.merchant_public_key_path.read_bytes()
    )
    assert private_key.key_size == 2048
    assert public_key.public_numbers() == private_key.public_key().public_numbers()
    assert keys.merchant_private_key_path.read_bytes().startswith(
        b"-----BEGIN PRIVATE KEY-----"
    )
    text = repr(keys)
    assert keys.idp_secret not in text
    assert keys.apiv3_key not in text
    assert all(secret not in text for secret in keys.utility_secrets.values())


def test_dev_keys_restores_public_key(tmp_path):
    keys = ensure_dev_keys(tmp_path / "keys")
    original = keys.platform_public_key_path.read_bytes()
    keys.platform_public_key_path.unlink()
    ensure_dev_keys(tmp_path / "keys")
    assert keys.platform_public_key_path.read_bytes() == original

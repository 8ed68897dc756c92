"""The main flow end to end, through the hub's HTTP API and real peers."""

from io import BytesIO

import requests
import zxingcpp
from PIL import Image

from demo import scenarios
from models import OutboxMessage, Utility
from models.base import utcnow
from tests.hub.flows import drive_to_submission, transfer_by_org


def complete_registration(client, scenario):
    client.put_business(
        scenario.business_no, scenarios.business_payload(scenario, "completed")
    )


def test_new_home_pays_arrears_then_completes(client, homes, stack):
    developer = homes.people.developer("济南测试置业有限公司")
    home = homes.make(
        accounts=[("water", {"arrears_fen": 4230}), ("gas", {})],
        business_type="商品房买卖",
        sellers=[developer],
    )
    case_id = drive_to_submission(client, home)

    arrears = client.call("GET", f"/cases/{case_id}/arrears")
    water = next(a for a in arrears if a["service_org"] == "济南水务集团有限公司")
    assert water["arrears_fen"] == 4230
    assert water["state"] == "owed"
    assert water["arrears_display"] == "¥42.30"

    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{water['transfer_id']}/payments", {}
    )
    assert payment["amount_fen"] == 4230
    assert payment["status"] == "pending"
    assert payment["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")

    png = client.call("GET", f"/payments/{payment['payment_id']}/qr.png")
    decoded = zxingcpp.read_barcodes(Image.open(BytesIO(png)))
    assert [result.text for result in decoded] == [payment["code_url"]]

    client.pay_in_sandbox(payment["code_url"])
    settled = client.wait_for_payment(payment["payment_id"])
    assert settled["status"] == "paid"
    assert settled["paid_at"].endswith("+08:00")

    client.call("POST", f"/cases/{case_id}/submission", {})
    complete_registration(client, home)
    progress = client.wait_until_final(case_id)

    assert progress["status"] == "closed"
    assert [t["status"] for t in progress["transfers"]] == ["completed", "completed"]
    water_events = [e["status"] for e in transfer_by_org(progress, "水务")["events"]]
    assert water_events.index("arrears_paid") < water_events.index("pushed")
    assert water_events[-1] == "completed"


def test_new_home_arrears_clear_after_report(client, homes, stack):
    home = homes.make(accounts=[("water", {"arrears_fen": 1999})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{transfer_id}/payments", {}
    )
    client.pay_in_sandbox(payment["code_url"])
    client.wait_for_payment(payment["payment_id"])

    for _ in range(50):
        answer = client.call("GET", f"/cases/{case_id}/arrears")[0]
        if answer["state"] != "paid_pending":
            break
        import time

        time.sleep(0.1)
    assert answer["arrears_fen"] == 0
    assert answer["state"] == "clear"


def test_multi_step_history_goes_to_current_owner(client, homes, stack):
    first_owner = homes.person()
    home = homes.make(accounts=[("gas", {"holder": first_owner})])
    case_id = drive_to_submission(client, home)

    account = client.call("GET", f"/cases/{case_id}/accounts")[0]
    assert account["holder_relation"] == "other"
    assert account["holder_name"].startswith(first_owner.name[0])
    assert account["holder_name"] != first_owner.name

    client.call("POST", f"/cases/{case_id}/submission", {})
    complete_registration(client, home)
    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["status"] == "completed"

    received = [
        t
        for t in requests.get(
            stack.peers.utility_sim_url + "/_sim/transfers", timeout=10
        ).json()["transfers"]
        if t.get("account_no") == home.accounts[0].account_no
    ]
    assert len(received) == 1


def test_direct_debit_is_returned_with_reason(client, homes):
    home = homes.make(accounts=[("water", {}), ("power", {"direct_debit": True})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    complete_registration(client, home)
    progress = client.wait_until_final(case_id)

    power = transfer_by_org(progress, "供电")
    assert power["status"] == "returned"
    assert power["status_label"] == "退件"
    assert power["return_reason"] == "原户主银行代扣未解除"
    assert power["events"][-1]["return_reason"] == "原户主银行代扣未解除"
    assert transfer_by_org(progress, "水务")["status"] == "completed"


def test_unpaid_arrears_are_returned(client, homes):
    home = homes.make(accounts=[("heat", {"arrears_fen": 120000})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    complete_registration(client, home)
    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["return_reason"] == "账户仍有欠费未结清"


def test_cable_tv_waits_for_collection(client, homes, sim):
    home = homes.make(accounts=[("water", {}), ("tv", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    complete_registration(client, home)

    progress = client.wait_until_final(case_id, seconds=5)
    assert transfer_by_org(progress, "水务")["status"] == "completed"
    assert transfer_by_org(progress, "广电")["status"] == "awaiting_collection"
    assert progress["status"] == "in_progress"

    progress = client.wait_until_final(case_id, poke=lambda: sim.collect("tv"))
    tv = transfer_by_org(progress, "广电")
    assert tv["status"] == "completed"
    assert [e["status"] for e in tv["events"]][-3:] == [
        "collected",
        "in_progress",
        "completed",
    ]
    assert progress["status"] == "closed"


def test_registration_before_submission_pushes_on_submit(client, homes):
    home = homes.make(accounts=[("water", {})], status="completed")
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["status"] == "completed"


def test_added_account_is_checked_and_linked(client, homes):
    home = homes.make(accounts=[("water", {}), ("heat", {"linked": False})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    assert len(case["transfers"]) == 1

    heat = home.accounts[1]
    added = client.call(
        "POST",
        f"/cases/{case['case_id']}/accounts",
        {"service_org": "济南能源集团有限公司热力", "account_no": heat.account_no},
    )
    assert added["added_by_applicant"] is True
    assert added["holder_relation"] == "previous_owner"
    assert len(client.call("GET", f"/cases/{case['case_id']}")["transfers"]) == 2


def test_push_is_retried_until_the_utility_takes_it(client, homes, stack, app):
    home = homes.make(accounts=[("gas", {})])
    case_id = drive_to_submission(client, home)
    gas = Utility.get(Utility.code == "gas")
    working_url = gas.base_url
    Utility.update(base_url="http://127.0.0.1:9/gas").where(
        Utility.id == gas.id
    ).execute()
    try:
        client.call("POST", f"/cases/{case_id}/submission", {})
        complete_registration(client, home)
        message = _wait_for_attempt(home)
        assert message.state == "pending"
        assert message.attempts >= 1
        assert "ConnectionError" in message.last_error
        assert message.next_attempt_at > utcnow()
    finally:
        Utility.update(base_url=working_url).where(Utility.id == gas.id).execute()

    OutboxMessage.update(next_attempt_at=utcnow()).where(
        OutboxMessage.id == message.id
    ).execute()
    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["status"] == "completed"
    assert OutboxMessage.get_by_id(message.id).state == "done"


def _wait_for_attempt(home, seconds=10):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        message = (
            OutboxMessage.select()
            .where(
                (OutboxMessage.kind == "push_transfer")
                & (OutboxMessage.utility_code == "gas")
            )
            .order_by(OutboxMessage.id.desc())
            .first()
        )
        if (
            message
            and message.payload["business_no"] == home.business_no
            and message.attempts
        ):
            return message
        time.sleep(0.1)
    raise AssertionError("the push was never attempted")


def test_rejected_push_is_shown_as_failed(client, homes, app):
    home = homes.make(accounts=[("heat", {})])
    case_id = drive_to_submission(client, home)
    heat = Utility.get(Utility.code == "heat")
    real_name = heat.service_org
    # The simulator rejects a push whose service_org is not the utility's own.
    Utility.update(service_org="济南测试热力").where(Utility.id == heat.id).execute()
    try:
        client.call("POST", f"/cases/{case_id}/submission", {})
        complete_registration(client, home)
        progress = _wait_for_status(client, case_id, "push_failed")
    finally:
        Utility.update(service_org=real_name).where(Utility.id == heat.id).execute()

    transfer = progress["transfers"][0]
    assert transfer["status_label"] == "推送失败，待人工处理"
    # The meter reading, requested at registration too, may come later.
    failures = [e for e in transfer["events"] if e["status"] == "push_failed"]
    assert len(failures) == 1
    assert "HTTP 400" in failures[0]["note"]
    message = OutboxMessage.get(
        (OutboxMessage.kind == "push_transfer")
        & (OutboxMessage.ref_id == transfer["transfer_id"])
    )
    assert message.state == "failed"
    assert message.attempts == 1


def _wait_for_status(client, case_id, status, seconds=10):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress = client.call("GET", f"/cases/{case_id}/progress")
        if progress["transfers"][0]["status"] == status:
            return progress
        time.sleep(0.1)
    raise AssertionError(f"transfer never reached {status}: {progress}")


def test_submission_warns_of_unpaid_arrears(client, homes):
    home = homes.make(accounts=[("water", {"arrears_fen": 880}), ("gas", {})])
    case_id = drive_to_submission(client, home)
    client.call("GET", f"/cases/{case_id}/arrears")

    submitted = client.call("POST", f"/cases/{case_id}/submission", {})

    assert len(submitted["warnings"]) == 1
    assert home.accounts[0].account_no in submitted["warnings"][0]
    assert "8.80 元" in submitted["warnings"][0]


def test_transfer_label_when_ready(client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)

    account = client.call("GET", f"/cases/{case_id}/accounts")[0]
    case = client.call("GET", f"/cases/{case_id}")
    progress = client.call("GET", f"/cases/{case_id}/progress")

    assert account["status"] == "draft"
    # Every view of the case gives the transfer the same label.
    for view in (account, case["transfers"][0], progress["transfers"][0]):
        assert view["status_label"] == "已确认，待提交"


def test_pending_push_survives_worker_restart(client, homes, stack, app):
    from services import queue

    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    queue.stop_embedded(stack.worker)
    try:
        client.call("POST", f"/cases/{case_id}/submission", {})
        complete_registration(client, home)
        progress = client.call("GET", f"/cases/{case_id}/progress")
        assert progress["transfers"][0]["status"] == "queued"
        message = OutboxMessage.get(
            (OutboxMessage.kind == "push_transfer")
            & (OutboxMessage.ref_id == progress["transfers"][0]["transfer_id"])
        )
        assert message.state == "pending"
        assert message.attempts == 0
    finally:
        stack.worker = queue.start_embedded(stack.app)

    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["status"] == "completed"
    assert OutboxMessage.get_by_id(message.id).attempts == 1


def test_registry_warns_of_credit_code_check(client, homes):
    from domain.identifiers import credit_code_check_char

    body = "91370100MA3C12345"
    good = body + credit_code_check_char(body)
    wrong = body + ("0" if good[-1] != "0" else "1")
    developer = scenarios.Person("济南测试置业有限公司", "统一社会信用代码", wrong)
    home = homes.make(accounts=[("water", {})], sellers=[developer])
    payload = scenarios.business_payload(home, "accepted")
    home_no = home.business_no + "W"

    answer = client.put_business(home_no, payload)

    assert answer["created"] is True
    assert len(answer["warnings"]) == 1
    assert answer["warnings"][0].startswith("previous_owners[0].id_number:")
    payload["previous_owners"][0]["id_number"] = good
    assert client.put_business(home_no, payload)["warnings"] == []


def test_registry_named_account_shows_holder(client, homes):
    home = homes.make(accounts=[("water", {"linked": False})])
    payload = scenarios.business_payload(home, "accepted")
    payload["accounts"] = [
        {
            "service_org": "济南水务集团有限公司",
            "account_no": home.accounts[0].account_no,
        }
    ]
    client.put_business(home.business_no, payload)
    client.login(home.buyer)

    case = client.call("POST", "/cases", {"business_no": home.business_no})

    [transfer] = case["transfers"]
    assert transfer["holder_relation"] == "previous_owner"
    assert transfer["holder_name"].startswith(home.sellers[0].name[0])
    assert transfer["account_address"]

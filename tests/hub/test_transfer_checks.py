"""Each utility is asked before submission whether its account can transfer."""

import time

import requests

from demo import scenarios
from models import Transfer, Utility
from tests.hub.flows import assert_error, citizen_request, drive_to_submission


def by_kind(checks, client, case_id):
    case = client.call("GET", f"/cases/{case_id}")
    kinds = {t["transfer_id"]: t["utility_kind"] for t in case["transfers"]}
    return {kinds[entry["transfer_id"]]: entry for entry in checks}


def items_of(entry):
    return {item["item"]: item for item in entry["items"]}


def test_each_item_shown_with_advice(client, homes):
    home = homes.make(
        accounts=[
            ("water", {"arrears_fen": 2350}),
            ("power", {"direct_debit": True}),
            ("gas", {"prepaid_fen": 8800}),
            ("heat", {"block_reason": "计量纠纷处理中"}),
        ]
    )
    case_id = drive_to_submission(client, home)

    checks = by_kind(
        client.call("GET", f"/cases/{case_id}/transfer-checks"), client, case_id
    )

    water = items_of(checks["water"])
    assert checks["water"]["state"] == "action_needed"
    assert water["arrears"]["blocking"] is True
    assert water["arrears"]["amount_fen"] == 2350
    assert water["arrears"]["advice"] == "欠费 ¥23.50，请在本页扫码缴清后再过户。"
    power = items_of(checks["power"])
    assert checks["power"]["transferable"] is False
    assert power["direct_debit"]["blocking"] is True
    assert "解除代扣" in power["direct_debit"]["advice"]
    gas = items_of(checks["gas"])
    assert checks["gas"]["state"] == "ok"
    assert gas["prepaid_balance"]["amount_fen"] == 8800
    assert gas["prepaid_balance"]["blocking"] is False
    assert gas["prepaid_balance"]["advice"].startswith("账户预存余额 ¥88.00")
    heat = items_of(checks["heat"])
    assert heat["block"]["blocking"] is True
    assert heat["block"]["reason"] == "计量纠纷处理中"
    assert "计量纠纷处理中" in heat["block"]["advice"]
    # Only what the utility alone can clear stops the submission.
    assert heat["block"]["stops_submission"] is True
    assert water["arrears"]["stops_submission"] is False
    assert power["direct_debit"]["stops_submission"] is False
    assert gas["account_closed"]["stops_submission"] is False
    for entry in checks.values():
        assert entry["checked_at"].endswith("+08:00")
    shown = client.call("GET", f"/cases/{case_id}")
    states = {t["utility_kind"]: t["check_state"] for t in shown["transfers"]}
    assert states == {
        "water": "action_needed",
        "power": "action_needed",
        "gas": "ok",
        "heat": "action_needed",
    }


def test_blocked_account_stops_submission(client, homes):
    home = homes.make(
        accounts=[("water", {}), ("heat", {"block_reason": "户号涉诉冻结"})]
    )
    case_id = drive_to_submission(client, home)

    response = citizen_request(client, "POST", f"/cases/{case_id}/submission", {})

    body = assert_error(response, 409, "transfer_blocked")
    heat = Transfer.get(
        (Transfer.case == case_id)
        & (Transfer.utility == Utility.get(Utility.code == "heat"))
    )
    assert list(body["errors"]["transfers"]) == [str(heat.id)]
    assert "户号涉诉冻结" in body["errors"]["transfers"][str(heat.id)][0]
    assert client.call("GET", f"/cases/{case_id}")["status"] == "open"


def test_closed_account_stops_submission(client, homes):
    home = homes.make(accounts=[("gas", {"status": "closed"})])
    case_id = drive_to_submission(client, home)

    response = citizen_request(client, "POST", f"/cases/{case_id}/submission", {})

    body = assert_error(response, 409, "transfer_blocked")
    (advice,) = next(iter(body["errors"]["transfers"].values()))
    assert advice == "该户号已销户，无法过户，请核对户号或联系服务机构。"


def test_direct_debit_warns_and_push_carries_check(client, homes, stack):
    home = homes.make(accounts=[("power", {"direct_debit": True})])
    case_id = drive_to_submission(client, home)

    submitted = client.call("POST", f"/cases/{case_id}/submission", {})

    assert submitted["status"] == "submitted"
    assert any("解除代扣" in warning for warning in submitted["warnings"])
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    transfer_id = str(submitted["transfers"][0]["transfer_id"])
    deadline = time.monotonic() + 20
    received = []
    while not received and time.monotonic() < deadline:
        response = requests.get(
            stack.peers.utility_sim_url + "/_sim/transfers",
            params={"utility": "power", "transfer_id": transfer_id},
            timeout=10,
        )
        received = response.json()["transfers"]
        time.sleep(0.1)
    check = received[0]["push"]["transfer_check"]
    assert check["transferable"] is False
    items = {item["item"]: item for item in check["items"]}
    assert items["direct_debit"]["blocking"] is True
    assert check["checked_at"].endswith("Z")


def test_fresh_answer_not_asked_again(client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    client.call("GET", f"/cases/{case_id}/transfer-checks")
    transfer = Transfer.get(Transfer.case == case_id)
    first_checked = transfer.checked_at

    client.call("POST", f"/cases/{case_id}/submission", {})

    assert Transfer.get_by_id(transfer.id).checked_at == first_checked


def test_unreachable_utility_warns_but_submits(client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    water = Utility.get(Utility.code == "water")
    original = water.base_url
    Utility.update(base_url="http://127.0.0.1:9/water").where(
        Utility.id == water.id
    ).execute()
    try:
        checks = client.call("GET", f"/cases/{case_id}/transfer-checks")
        submitted = client.call("POST", f"/cases/{case_id}/submission", {})
    finally:
        Utility.update(base_url=original).where(Utility.id == water.id).execute()

    assert checks[0]["state"] == "unavailable"
    assert checks[0]["items"] == []
    assert submitted["status"] == "submitted"
    assert any("暂时无法核验" in warning for warning in submitted["warnings"])


def test_channel_utility_not_asked(client, homes):
    home = homes.make(accounts=[("tv", {})])
    case_id = drive_to_submission(client, home)

    checks = client.call("GET", f"/cases/{case_id}/transfer-checks")

    assert [entry["state"] for entry in checks] == ["not_connected"]
    assert Transfer.get(Transfer.case == case_id).check_result is None


def _set_account(stack, home, kind, **changes):
    [account] = [
        {**account, **changes}
        for account in scenarios.simulator_accounts([home])
        if account["utility"] == kind
    ]
    response = requests.post(
        stack.peers.utility_sim_url + "/_sim/accounts", json=[account], timeout=10
    )
    response.raise_for_status()


def test_lifted_block_asked_again_at_submission(client, homes, stack):
    home = homes.make(accounts=[("heat", {"block_reason": "户号涉诉冻结"})])
    case_id = drive_to_submission(client, home)
    [blocked] = client.call("GET", f"/cases/{case_id}/transfer-checks")
    assert [
        i["stops_submission"] for i in blocked["items"] if i["item"] == "block"
    ] == [True]

    _set_account(stack, home, "heat", block_reason=None)
    submitted = client.call("POST", f"/cases/{case_id}/submission", {})

    assert submitted["status"] == "submitted"


def test_old_block_stops_nothing_while_utility_is_down(client, homes, stack):
    """The last result is shown, but only a utility that responds now can stop
    the submission; it checks again when it takes the transfer."""
    home = homes.make(accounts=[("heat", {"block_reason": "户号涉诉冻结"})])
    case_id = drive_to_submission(client, home)
    client.call("GET", f"/cases/{case_id}/transfer-checks")
    _set_account(stack, home, "heat", block_reason=None, transfer_check_down=True)

    [entry] = client.call("GET", f"/cases/{case_id}/transfer-checks")
    submitted = client.call("POST", f"/cases/{case_id}/submission", {})

    assert entry["state"] == "unavailable"
    assert "block" in {item["item"] for item in entry["items"]}
    assert {item["stops_submission"] for item in entry["items"]} == {False}
    assert submitted["status"] == "submitted"
    assert any("暂时无法核验" in warning for warning in submitted["warnings"])

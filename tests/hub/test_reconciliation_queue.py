"""Accounts the online checks cannot place go to their utility to check by hand."""

import pytest
import requests

from models import AccountLink, CaseAction, ReconciliationItem, Utility
from tests.hub.flows import (
    assert_error,
    citizen_request,
    drive_to_submission,
    signed_call,
)

MISSING_ID = 2_000_000_000
HEAT = "济南能源集团有限公司热力"
WATER = "济南水务集团有限公司"
TV = "中国广电济南市分公司"
OTHER_ROLES = ("agent", "service", "window", "admin")


def error_identity(response):
    body = response.json()
    return response.status_code, body["code"], body["message"]


def add_account(client, case_id, service_org, account_no, request_review=None):
    body = {"service_org": service_org, "account_no": account_no}
    if request_review is not None:
        body["request_review"] = request_review
    return citizen_request(client, "POST", f"/cases/{case_id}/accounts", body)


@pytest.fixture
def stranger_heat(client, homes):
    """Open a case whose home has a heat account held by someone not on the case."""
    home = homes.make(
        accounts=[("gas", {}), ("heat", {"holder": homes.person(), "linked": False})]
    )
    client.login(home.buyer)
    home.case_id = client.call("POST", "/cases", {"business_no": home.business_no})[
        "case_id"
    ]
    home.heat_no = home.accounts[1].account_no
    return home


@pytest.fixture
def queued(client, stranger_heat):
    """Queue the stranger's heat account for review; the item is `home.item`."""
    response = add_account(
        client, stranger_heat.case_id, HEAT, stranger_heat.heat_no, True
    )
    assert response.status_code == 202, response.text
    stranger_heat.item = response.json()
    return stranger_heat


def test_mismatch_message_offers_review(client, stranger_heat):
    response = add_account(client, stranger_heat.case_id, HEAT, stranger_heat.heat_no)

    body = assert_error(response, 409, "account_holder_mismatch")
    assert "request_review" in body["message"]
    assert (
        ReconciliationItem.select()
        .where(ReconciliationItem.case == stranger_heat.case_id)
        .count()
        == 0
    )


def test_review_request_accepted(app, client, stranger_heat):
    response = add_account(
        client, stranger_heat.case_id, HEAT, stranger_heat.heat_no, True
    )

    assert response.status_code == 202
    item = response.json()
    assert item["service_org"] == HEAT
    assert item["account_no"] == stranger_heat.heat_no
    assert item["status"] == "open"
    assert item["reasons"] == ["account_holder_mismatch"]
    assert item["decision_note"] is None
    assert item["transfer_id"] is None
    stored = ReconciliationItem.get_by_id(item["item_id"])
    assert stored.source == "applicant"
    assert stored.holder_id_numbers == [stranger_heat.accounts[1].holder.id_number]
    assert stored.unit_id is not None


def test_review_request_twice_one_item(app, client, stranger_heat):
    first = add_account(
        client, stranger_heat.case_id, HEAT, stranger_heat.heat_no, True
    )
    second = add_account(
        client, stranger_heat.case_id, HEAT, stranger_heat.heat_no, True
    )

    assert first.status_code == 202
    assert second.status_code == 202
    assert first.json()["item_id"] == second.json()["item_id"]
    items = ReconciliationItem.select().where(
        ReconciliationItem.case == stranger_heat.case_id
    )
    assert items.count() == 1
    requests_recorded = CaseAction.select().where(
        (CaseAction.case == stranger_heat.case_id)
        & (CaseAction.action == "request_review")
    )
    assert requests_recorded.count() == 1


def test_review_in_case_view(client, queued):
    case = client.call("GET", f"/cases/{queued.case_id}")

    [review] = case["account_reviews"]
    assert review["item_id"] == queued.item["item_id"]
    assert review["service_org"] == HEAT
    assert review["account_no"] == queued.heat_no
    assert review["status"] == "open"
    assert review["reasons"] == ["account_holder_mismatch"]
    assert len(case["transfers"]) == 1


def test_address_mismatch_queued(stack, client, homes):
    home = homes.make(accounts=[("gas", {})])
    seller = home.sellers[0]
    other_flat = "SW" + home.accounts[0].account_no[2:]
    requests.post(
        stack.peers.utility_sim_url + "/_sim/accounts",
        json=[
            {
                "utility": "water",
                "account_no": other_flat,
                "holder_name": seller.name,
                "holder_id_numbers": [seller.id_number],
                "account_address": "燕子山小区99号楼9单元909",
            }
        ],
        timeout=10,
    ).raise_for_status()
    client.login(home.buyer)
    case_id = client.call("POST", "/cases", {"business_no": home.business_no})[
        "case_id"
    ]

    refused = add_account(client, case_id, WATER, other_flat)
    queued = add_account(client, case_id, WATER, other_flat, True)

    body = assert_error(refused, 409, "account_address_mismatch")
    assert "request_review" in body["message"]
    assert queued.status_code == 202
    assert queued.json()["reasons"] == ["account_address_mismatch"]


def test_not_connected_queued(app, client, homes):
    home = homes.make(accounts=[("water", {}), ("tv", {"linked": False})])
    client.login(home.buyer)
    case_id = client.call("POST", "/cases", {"business_no": home.business_no})[
        "case_id"
    ]
    tv_no = home.accounts[1].account_no

    refused = add_account(client, case_id, TV, tv_no)
    queued = add_account(client, case_id, TV, tv_no, True)

    body = assert_error(refused, 409, "utility_not_connected")
    assert "request_review" in body["message"]
    assert queued.status_code == 202
    assert queued.json()["reasons"] == ["utility_not_connected"]
    assert ReconciliationItem.get_by_id(queued.json()["item_id"]).holder_name is None


def test_link_not_connected_account(client, homes, staffing):
    home = homes.make(accounts=[("water", {}), ("tv", {"linked": False})])
    client.login(home.buyer)
    case_id = client.call("POST", "/cases", {"business_no": home.business_no})[
        "case_id"
    ]
    tv_no = home.accounts[1].account_no
    item_id = add_account(client, case_id, TV, tv_no, True).json()["item_id"]
    _, staff_client = staffing.member("utility", utility="tv")

    item = staff_client.call(
        "POST", f"/partner/reconciliations/{item_id}", {"decision": "link"}
    )

    assert item["outcome"] == "transfer_added"
    added = next(
        t
        for t in client.call("GET", f"/cases/{case_id}")["transfers"]
        if t["account_no"] == tv_no
    )
    assert added["connection"] == "channel"
    assert added["holder_name"] is None


def test_placed_account_not_queued(client, homes):
    home = homes.make(accounts=[("water", {}), ("heat", {"linked": False})])
    client.login(home.buyer)
    case_id = client.call("POST", "/cases", {"business_no": home.business_no})[
        "case_id"
    ]

    response = add_account(client, case_id, HEAT, home.accounts[1].account_no, True)

    assert response.status_code == 201
    assert response.json()["added_by_applicant"] is True
    assert client.call("GET", f"/cases/{case_id}")["account_reviews"] == []


def test_link_by_staff_adds_transfer(app, client, queued, staffing):
    staff, staff_client = staffing.member("utility", utility="heat")
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    item = staff_client.call("POST", path, {"decision": "link", "note": "已电话核实"})

    assert item["status"] == "linked"
    assert item["outcome"] == "transfer_added"
    assert item["decided_via"] == "staff"
    assert item["decided_by"] == staff.id
    assert item["decision_note"] == "已电话核实"
    case = client.call("GET", f"/cases/{queued.case_id}")
    added = next(t for t in case["transfers"] if t["account_no"] == queued.heat_no)
    assert added["transfer_id"] == item["transfer_id"]
    assert added["added_by_applicant"] is True
    assert case["account_reviews"][0]["status"] == "linked"
    progress = client.call("GET", f"/cases/{queued.case_id}/progress")
    events = next(
        t["events"] for t in progress["transfers"] if t["account_no"] == queued.heat_no
    )
    assert events[0]["status"] == "opened"
    assert events[0]["actor"] == "utility"
    assert "人工核对" in events[0]["note"]
    link = AccountLink.get(
        (AccountLink.utility == Utility.get(Utility.code == "heat"))
        & (AccountLink.account_no == queued.heat_no)
    )
    assert link.source == "reconciliation"
    assert link.match_result == "一致"
    assert link.unit_id == ReconciliationItem.get_by_id(item["item_id"]).unit_id
    decided = CaseAction.get(
        (CaseAction.case == queued.case_id) & (CaseAction.action == "review_linked")
    )
    assert decided.staff_id == staff.id


def test_linked_account_confirmable(client, queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")
    path = f"/partner/reconciliations/{queued.item['item_id']}"
    transfer_id = staff_client.call("POST", path, {"decision": "link"})["transfer_id"]

    confirmed = client.call(
        "POST", f"/cases/{queued.case_id}/transfers/{transfer_id}/confirmation", {}
    )

    assert confirmed["account_confirmed"] is True
    assert confirmed["holder_relation"] == "other"


def test_link_after_submission_stores_link(app, client, homes, staffing):
    home = homes.make(
        accounts=[("gas", {}), ("heat", {"holder": homes.person(), "linked": False})]
    )
    case_id = drive_to_submission(client, home)
    heat_no = home.accounts[1].account_no
    item_id = add_account(client, case_id, HEAT, heat_no, True).json()["item_id"]
    client.call("POST", f"/cases/{case_id}/submission", {})
    _, staff_client = staffing.member("utility", utility="heat")

    item = staff_client.call(
        "POST", f"/partner/reconciliations/{item_id}", {"decision": "link"}
    )

    assert item["status"] == "linked"
    assert item["outcome"] == "linked_only"
    assert item["transfer_id"] is None
    case = client.call("GET", f"/cases/{case_id}")
    assert len(case["transfers"]) == 1
    assert case["account_reviews"][0]["outcome"] == "linked_only"
    link = AccountLink.get(AccountLink.account_no == heat_no)
    assert link.source == "reconciliation"
    assert link.unit_id is not None


def test_reject_by_signature_shows_note(stack, app, client, queued):
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = signed_call(
        stack,
        "heat",
        "POST",
        path,
        {"decision": "reject", "note": "户主不是本房屋业主"},
    )

    assert response.status_code == 200, response.text
    item = response.json()
    assert item["status"] == "rejected"
    assert item["decided_via"] == "system"
    assert item["decided_by"] is None
    assert item["outcome"] is None
    [review] = client.call("GET", f"/cases/{queued.case_id}")["account_reviews"]
    assert review["status"] == "rejected"
    assert review["decision_note"] == "户主不是本房屋业主"
    assert review["decided_at"].endswith("+08:00")
    assert len(client.call("GET", f"/cases/{queued.case_id}")["transfers"]) == 1
    decided = CaseAction.get(
        (CaseAction.case == queued.case_id) & (CaseAction.action == "review_rejected")
    )
    assert decided.actor_role == "utility"
    assert decided.staff_id is None


def test_link_by_signature(stack, client, queued):
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = signed_call(stack, "heat", "POST", path, {"decision": "link"})

    assert response.status_code == 200, response.text
    assert response.json()["decided_via"] == "system"
    assert response.json()["outcome"] == "transfer_added"


def test_request_again_after_reject(client, queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")
    staff_client.call(
        "POST",
        f"/partner/reconciliations/{queued.item['item_id']}",
        {"decision": "reject", "note": "地址不符"},
    )

    again = add_account(client, queued.case_id, HEAT, queued.heat_no, True)

    assert again.status_code == 202
    assert again.json()["item_id"] != queued.item["item_id"]
    assert again.json()["status"] == "open"
    reviews = client.call("GET", f"/cases/{queued.case_id}")["account_reviews"]
    assert [review["status"] for review in reviews] == ["rejected", "open"]


@pytest.mark.parametrize(
    "body", [{"decision": "reject"}, {"decision": "reject", "note": "  "}]
)
def test_reject_needs_note(queued, staffing, body):
    _, staff_client = staffing.member("utility", utility="heat")
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = citizen_request(staff_client, "POST", path, body)

    assert_error(response, 422, "decision_note_missing")
    assert staff_client.call("GET", path)["status"] == "open"


@pytest.mark.parametrize(
    "body", [{}, {"decision": "approve"}, {"decision": "link", "note": "x" * 501}]
)
def test_decision_invalid(queued, staffing, body):
    _, staff_client = staffing.member("utility", utility="heat")
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = citizen_request(staff_client, "POST", path, body)

    assert_error(response, 422, "validation_failed")


def test_same_decision_again_unchanged(client, queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")
    path = f"/partner/reconciliations/{queued.item['item_id']}"
    first = staff_client.call("POST", path, {"decision": "link"})

    again = citizen_request(
        staff_client, "POST", path, {"decision": "link", "note": "再次"}
    )

    assert again.status_code == 200
    assert again.json() == first
    transfers = client.call("GET", f"/cases/{queued.case_id}")["transfers"]
    assert len([t for t in transfers if t["account_no"] == queued.heat_no]) == 1


def test_different_decision_conflict(client, queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")
    path = f"/partner/reconciliations/{queued.item['item_id']}"
    staff_client.call("POST", path, {"decision": "link"})

    response = citizen_request(
        staff_client, "POST", path, {"decision": "reject", "note": "改判"}
    )

    assert_error(response, 409, "reconciliation_decided")
    assert staff_client.call("GET", path)["status"] == "linked"


def test_list_and_get_by_staff(queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")

    listed = staff_client.call("GET", "/partner/reconciliations?status=open")
    item = staff_client.call(
        "GET", f"/partner/reconciliations/{queued.item['item_id']}"
    )

    assert {entry["status"] for entry in listed["items"]} == {"open"}
    assert listed["items"][0]["item_id"] == queued.item["item_id"]
    assert item["business_no"] == queued.business_no
    assert item["location"] == queued.location
    assert item["reasons"] == ["account_holder_mismatch"]
    assert item["source"] == "applicant"
    holder = queued.accounts[1].holder
    assert item["holder_name"] == holder.name[0] + "*" * (len(holder.name) - 1)
    assert item["holder_id_numbers"][0][:6] == holder.id_number[:6]
    assert holder.id_number not in str(item)
    assert queued.buyer.id_number not in str(item)
    assert item["owners"][0]["id_number"].count("*") == 8


def test_list_by_signature(stack, queued):
    response = signed_call(stack, "heat", "GET", "/partner/reconciliations?status=open")

    assert response.status_code == 200, response.text
    ids = [item["item_id"] for item in response.json()["items"]]
    assert queued.item["item_id"] in ids


def test_list_status_filter(stack, queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")

    linked = staff_client.call("GET", "/partner/reconciliations?status=linked")
    invalid = citizen_request(staff_client, "GET", "/partner/reconciliations?status=x")

    assert queued.item["item_id"] not in [i["item_id"] for i in linked["items"]]
    assert_error(invalid, 422, "validation_failed")


def test_list_paging(queued, staffing):
    _, staff_client = staffing.member("utility", utility="heat")
    total = staff_client.call("GET", "/partner/reconciliations?page_size=1")["total"]

    past = staff_client.call(
        "GET", f"/partner/reconciliations?page={total + 1}&page_size=1"
    )
    zero = citizen_request(staff_client, "GET", "/partner/reconciliations?page=0")

    assert past["items"] == []
    assert past["total"] == total
    assert_error(zero, 422, "validation_failed")


def test_other_utility_staff_not_found(queued, staffing):
    _, water_staff = staffing.member("utility", utility="water")
    path = f"/partner/reconciliations/{queued.item['item_id']}"
    missing = f"/partner/reconciliations/{MISSING_ID}"

    read = citizen_request(water_staff, "GET", path)
    decide = citizen_request(water_staff, "POST", path, {"decision": "link"})
    listed = water_staff.call("GET", "/partner/reconciliations?page_size=100")

    assert_error(read, 404, "reconciliation_item_not_found")
    assert error_identity(read) == error_identity(
        citizen_request(water_staff, "GET", missing)
    )
    assert_error(decide, 404, "reconciliation_item_not_found")
    assert queued.item["item_id"] not in [i["item_id"] for i in listed["items"]]


def test_other_utility_signature_not_found(stack, app, queued):
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    read = signed_call(stack, "water", "GET", path)
    decide = signed_call(stack, "water", "POST", path, {"decision": "link"})

    assert_error(read, 404, "reconciliation_item_not_found")
    assert_error(decide, 404, "reconciliation_item_not_found")
    assert ReconciliationItem.get_by_id(queued.item["item_id"]).status == "open"


def test_bad_signature_unauthorized(stack, queued):
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = signed_call(stack, "heat", "GET", path, secret="wrong-secret")

    assert response.status_code == 401
    assert response.json()["code"] == "signature_invalid"


def test_registry_signature_unauthorized(stack, queued):
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = signed_call(stack, "registry", "GET", path)

    assert_error(response, 401, "partner_unknown")


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_forbidden(queued, staffing, role):
    _, other = staffing.member(role)
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    responses = [
        citizen_request(other, "GET", "/partner/reconciliations"),
        citizen_request(other, "GET", path),
        citizen_request(other, "POST", path, {"decision": "link"}),
    ]

    for response in responses:
        assert_error(response, 403, "role_forbidden")


def test_citizen_forbidden(client, queued):
    path = f"/partner/reconciliations/{queued.item['item_id']}"

    response = citizen_request(client, "POST", path, {"decision": "link"})

    assert_error(response, 403, "role_forbidden")


def test_anonymous_unauthorized(stack):
    response = requests.get(
        stack.hub_url + "/api/v1/partner/reconciliations", timeout=10
    )

    assert_error(response, 401, "token_missing")


def test_openapi_documents_both_schemes(stack):
    spec = requests.get(stack.hub_url + "/api/v1/openapi.json", timeout=10).json()
    operations = spec["paths"]["/api/v1/partner/reconciliations/{item_id}"]

    for method in ("get", "post"):
        assert operations[method]["security"] == [
            {"bearerAuth": []},
            {"partnerSignature": []},
        ]
        assert {"401", "403", "404"} <= set(operations[method]["responses"])

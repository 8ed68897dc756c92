"""Utility staff follow their own utility's transfers and report on them by hand."""

import pytest

from demo import scenarios
from models import Case, CaseAction
from tests.hub.flows import (
    assert_error,
    citizen_request,
    drive_to_submission,
    signed_call,
    transfer_by_org,
)

MISSING_ID = 2_000_000_000
OTHER_ROLES = ("agent", "service", "window", "admin")


def complete_registration(client, home):
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))


def registered_case(client, home, wait=True):
    """Submit the home's case and finish its registration; return the progress."""
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    complete_registration(client, home)
    if not wait:
        return client.call("GET", f"/cases/{case_id}/progress")
    return client.wait_until_final(case_id)


def error_identity(response):
    body = response.json()
    return response.status_code, body["code"], body["message"]


def masked_id(id_number):
    return id_number[:6] + "*" * 8 + id_number[-4:]


@pytest.fixture
def returned(client, homes):
    """Register a home whose power account the utility returns for a direct debit."""
    home = homes.make(accounts=[("power", {"direct_debit": True})])
    progress = registered_case(client, home)
    home.case_id = progress["case_id"]
    home.transfer_id = progress["transfers"][0]["transfer_id"]
    assert progress["transfers"][0]["status"] == "returned"
    return home


@pytest.fixture
def collected_tv(stack, client, homes):
    """Register a home with a cable TV account whose export the utility collected.

    The export is collected by a signed call, not by the simulator, so that no
    automatic report follows and staff report by hand.
    """
    home = homes.make(accounts=[("tv", {})])
    progress = registered_case(client, home, wait=False)
    home.case_id = progress["case_id"]
    home.transfer_id = progress["transfers"][0]["transfer_id"]
    response = signed_call(stack, "tv", "GET", "/partner/exports")
    assert response.status_code == 200, response.text
    return home


def test_list_shows_own_utility_only(client, homes, staffing):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    progress = registered_case(client, home)
    water_id = transfer_by_org(progress, "水务")["transfer_id"]
    gas_id = transfer_by_org(progress, "燃气")["transfer_id"]
    _, water_staff = staffing.member("utility", utility="water")

    listed = water_staff.call("GET", "/utility/transfers?page_size=100")

    ids = [item["transfer_id"] for item in listed["items"]]
    assert water_id in ids
    assert gas_id not in ids
    item = next(item for item in listed["items"] if item["transfer_id"] == water_id)
    assert item["business_no"] == home.business_no
    assert item["location"] == home.location
    assert item["account_no"] == home.accounts[0].account_no
    assert item["status"] == "completed"
    assert item["status_label"] == "办结"
    assert item["return_reason"] is None
    assert item["updated_at"].endswith("+08:00")


def test_list_masks_people(client, homes, staffing):
    home = homes.make(accounts=[("water", {})])
    progress = registered_case(client, home)
    transfer_id = progress["transfers"][0]["transfer_id"]
    _, staff_client = staffing.member("utility", utility="water")

    listed = staff_client.call("GET", "/utility/transfers?page_size=100")

    item = next(i for i in listed["items"] if i["transfer_id"] == transfer_id)
    [owner] = item["owners"]
    [seller] = item["previous_owners"]
    assert owner["id_number"] == masked_id(home.buyer.id_number)
    assert owner["name"] == home.buyer.name[0] + "*" * (len(home.buyer.name) - 1)
    assert seller["id_number"] == masked_id(home.sellers[0].id_number)
    assert home.buyer.id_number not in str(listed)
    assert home.sellers[0].name not in str(listed)


def test_other_utility_transfer_not_found(client, homes, staffing):
    home = homes.make(accounts=[("gas", {})])
    progress = registered_case(client, home)
    gas_id = progress["transfers"][0]["transfer_id"]
    _, water_staff = staffing.member("utility", utility="water")

    other = citizen_request(water_staff, "GET", f"/utility/transfers/{gas_id}")
    missing = citizen_request(water_staff, "GET", f"/utility/transfers/{MISSING_ID}")
    feedback = citizen_request(
        water_staff,
        "POST",
        f"/utility/transfers/{gas_id}/feedback",
        {"status": "办理中"},
    )
    reopen = citizen_request(
        water_staff,
        "POST",
        f"/utility/transfers/{gas_id}/reopen",
        {"note": "代扣已解除"},
    )

    assert_error(other, 404, "transfer_not_found")
    assert error_identity(other) == error_identity(missing)
    assert_error(feedback, 404, "transfer_not_found")
    assert_error(reopen, 404, "transfer_not_found")


def test_draft_transfer_hidden(client, homes, staffing):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]
    _, staff_client = staffing.member("utility", utility="water")

    response = citizen_request(staff_client, "GET", f"/utility/transfers/{transfer_id}")
    listed = staff_client.call("GET", "/utility/transfers?page_size=100")

    assert_error(response, 404, "transfer_not_found")
    assert transfer_id not in [item["transfer_id"] for item in listed["items"]]


def test_detail_has_timeline(client, returned, staffing):
    _, staff_client = staffing.member("utility", utility="power")

    detail = staff_client.call("GET", f"/utility/transfers/{returned.transfer_id}")

    assert detail["transfer_id"] == returned.transfer_id
    assert detail["status"] == "returned"
    assert detail["return_reason"] == "原户主银行代扣未解除"
    assert detail["account_confirmed"] is True
    statuses = [event["status"] for event in detail["events"]]
    assert statuses[0] == "opened"
    assert statuses[-1] == "returned"
    assert detail["events"][-1]["actor"] == "utility"
    assert detail["events"][-1]["return_reason"] == "原户主银行代扣未解除"


def test_status_filter(client, returned, staffing):
    _, staff_client = staffing.member("utility", utility="power")

    listed = staff_client.call("GET", "/utility/transfers?status=returned")
    completed = staff_client.call("GET", "/utility/transfers?status=completed")

    assert {item["status"] for item in listed["items"]} == {"returned"}
    assert returned.transfer_id in [item["transfer_id"] for item in listed["items"]]
    assert returned.transfer_id not in [
        item["transfer_id"] for item in completed["items"]
    ]


@pytest.mark.parametrize("status", ["draft", "submitted", "finished", "退件"])
def test_status_filter_invalid(staffing, status):
    _, staff_client = staffing.member("utility", utility="water")

    response = citizen_request(
        staff_client, "GET", f"/utility/transfers?status={status}"
    )

    assert_error(response, 422, "validation_failed")


def test_list_newest_first(client, homes, staffing):
    older = homes.make(accounts=[("laiwu-power", {})])
    older_id = registered_case(client, older)["transfers"][0]["transfer_id"]
    newer = homes.make(accounts=[("laiwu-power", {})])
    newer_id = registered_case(client, newer)["transfers"][0]["transfer_id"]
    _, staff_client = staffing.member("utility", utility="laiwu-power")

    listed = staff_client.call("GET", "/utility/transfers?page_size=100")

    ids = [item["transfer_id"] for item in listed["items"]]
    assert ids.index(newer_id) < ids.index(older_id)


def test_paging_past_end(client, homes, staffing):
    home = homes.make(accounts=[("water", {})])
    registered_case(client, home)
    _, staff_client = staffing.member("utility", utility="water")
    total = staff_client.call("GET", "/utility/transfers?page_size=1")["total"]

    past = staff_client.call("GET", f"/utility/transfers?page={total + 1}&page_size=1")

    assert total >= 1
    assert past["items"] == []
    assert past["total"] == total
    assert past["page"] == total + 1
    assert past["page_size"] == 1


@pytest.mark.parametrize("query", ["page=0", "page_size=0", "page=-1", "page=x"])
def test_paging_invalid(staffing, query):
    _, staff_client = staffing.member("utility", utility="water")

    response = citizen_request(staff_client, "GET", f"/utility/transfers?{query}")

    assert_error(response, 422, "validation_failed")


def test_page_size_capped(stack, staffing):
    _, staff_client = staffing.member("utility", utility="water")

    listed = staff_client.call("GET", "/utility/transfers?page_size=1000")

    assert listed["page_size"] == stack.app.config["PAGE_SIZE_MAX"]
    assert len(listed["items"]) <= stack.app.config["PAGE_SIZE_MAX"]


def test_reopen_then_complete(app, client, returned, staffing):
    staff, staff_client = staffing.member("utility", utility="power")
    path = f"/utility/transfers/{returned.transfer_id}"
    assert client.call("GET", f"/cases/{returned.case_id}/progress")["status"] == (
        "closed"
    )

    reopened = staff_client.call("POST", f"{path}/reopen", {"note": "原户主已解除代扣"})

    assert reopened["status"] == "accepted"
    assert reopened["return_reason"] is None
    last = reopened["events"][-1]
    assert last["status"] == "accepted"
    assert last["actor"] == "utility"
    assert last["note"] == "原户主已解除代扣"
    progress = client.call("GET", f"/cases/{returned.case_id}/progress")
    assert progress["status"] == "in_progress"
    assert progress["transfers"][0]["return_reason"] is None
    assert Case.get_by_id(returned.case_id).closed_at is None

    done = staff_client.call("POST", f"{path}/feedback", {"status": "办结"})

    assert done["status"] == "completed"
    assert done["applied"] is True
    progress = client.call("GET", f"/cases/{returned.case_id}/progress")
    assert progress["status"] == "closed"
    assert progress["transfers"][0]["status"] == "completed"
    actions = {
        action.action: action
        for action in CaseAction.select().where(
            CaseAction.transfer == returned.transfer_id
        )
    }
    assert actions["reopen"].staff_id == staff.id
    assert actions["reopen"].actor_role == "utility"
    assert actions["feedback"].staff_id == staff.id


def test_reopen_twice_conflict(client, returned, staffing):
    _, staff_client = staffing.member("utility", utility="power")
    path = f"/utility/transfers/{returned.transfer_id}/reopen"
    staff_client.call("POST", path, {"note": "代扣已解除"})

    response = citizen_request(staff_client, "POST", path, {"note": "代扣已解除"})

    body = assert_error(response, 409, "transfer_not_returned")
    assert "已受理" in body["message"]


def test_reopen_completed_conflict(client, homes, staffing):
    home = homes.make(accounts=[("water", {})])
    progress = registered_case(client, home)
    transfer_id = progress["transfers"][0]["transfer_id"]
    _, staff_client = staffing.member("utility", utility="water")

    response = citizen_request(
        staff_client,
        "POST",
        f"/utility/transfers/{transfer_id}/reopen",
        {"note": "误操作"},
    )

    body = assert_error(response, 409, "transfer_not_returned")
    assert "办结" in body["message"]
    detail = staff_client.call("GET", f"/utility/transfers/{transfer_id}")
    assert detail["status"] == "completed"


@pytest.mark.parametrize(
    "body", [{}, {"note": "a"}, {"note": "   "}, {"note": "x" * 201}, {"note": None}]
)
def test_reopen_note_invalid(returned, staffing, body):
    _, staff_client = staffing.member("utility", utility="power")

    response = citizen_request(
        staff_client, "POST", f"/utility/transfers/{returned.transfer_id}/reopen", body
    )

    assert_error(response, 422, "validation_failed")
    detail = staff_client.call("GET", f"/utility/transfers/{returned.transfer_id}")
    assert detail["status"] == "returned"


def test_feedback_by_hand_order(app, collected_tv, staffing):
    staff, staff_client = staffing.member("utility", utility="tv")
    path = f"/utility/transfers/{collected_tv.transfer_id}/feedback"

    in_progress = staff_client.call(
        "POST", path, {"status": "办理中", "note": "已派单"}
    )
    repeated = staff_client.call("POST", path, {"status": "办理中"})
    backwards = citizen_request(staff_client, "POST", path, {"status": "已受理"})
    no_reason = citizen_request(staff_client, "POST", path, {"status": "退件"})
    completed = staff_client.call("POST", path, {"status": "办结"})
    after_final = citizen_request(
        staff_client, "POST", path, {"status": "退件", "return_reason": "户号有误"}
    )

    assert in_progress["status"] == "in_progress"
    assert in_progress["applied"] is True
    assert in_progress["events"][-1]["note"] == "已派单"
    assert in_progress["events"][-1]["actor"] == "utility"
    assert repeated["applied"] is False
    assert_error(backwards, 409, "feedback_out_of_order")
    assert_error(no_reason, 422, "return_reason_missing")
    assert completed["status"] == "completed"
    assert_error(after_final, 409, "transfer_final")
    feedback_actions = CaseAction.select().where(
        (CaseAction.transfer == collected_tv.transfer_id)
        & (CaseAction.action == "feedback")
    )
    assert [action.staff_id for action in feedback_actions] == [staff.id, staff.id]


def test_feedback_before_collection_conflict(client, homes, staffing):
    home = homes.make(accounts=[("tv", {})])
    progress = registered_case(client, home, wait=False)
    transfer_id = progress["transfers"][0]["transfer_id"]
    _, staff_client = staffing.member("utility", utility="tv")

    response = citizen_request(
        staff_client,
        "POST",
        f"/utility/transfers/{transfer_id}/feedback",
        {"status": "已受理"},
    )

    assert_error(response, 409, "transfer_not_pushed")


def test_feedback_invalid_status(collected_tv, staffing):
    _, staff_client = staffing.member("utility", utility="tv")

    response = citizen_request(
        staff_client,
        "POST",
        f"/utility/transfers/{collected_tv.transfer_id}/feedback",
        {"status": "completed"},
    )

    assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize("role", OTHER_ROLES)
def test_other_roles_forbidden(returned, staffing, role):
    _, other = staffing.member(role)
    path = f"/utility/transfers/{returned.transfer_id}"

    responses = [
        citizen_request(other, "GET", "/utility/transfers"),
        citizen_request(other, "GET", path),
        citizen_request(other, "POST", f"{path}/feedback", {"status": "办结"}),
        citizen_request(other, "POST", f"{path}/reopen", {"note": "代扣已解除"}),
    ]

    for response in responses:
        assert_error(response, 403, "role_forbidden")


def test_citizen_forbidden(client, returned):
    response = citizen_request(client, "GET", "/utility/transfers")

    assert_error(response, 403, "role_forbidden")


def test_anonymous_unauthorized(stack, client):
    client.token = None

    response = citizen_request(client, "GET", "/utility/transfers")

    assert_error(response, 401, "token_missing")

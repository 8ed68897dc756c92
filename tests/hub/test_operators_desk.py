"""Operators see failed deliveries and flagged payments, and send pushes again."""

import time

import pytest

from demo import scenarios
from models import OutboxMessage, Payment, Utility
from tests.hub.flows import assert_error, citizen_request, drive_to_submission


def wait_for_status(client, case_id, status, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        progress = client.call("GET", f"/cases/{case_id}/progress")
        if progress["transfers"][0]["status"] == status:
            return progress
        time.sleep(0.1)
    raise AssertionError(f"the transfer never reached {status}")


@pytest.fixture
def failed_push(client, homes):
    """A heat push the simulator rejected, with the utility's name put back."""
    home = homes.make(accounts=[("heat", {})])
    case_id = drive_to_submission(client, home)
    heat = Utility.get(Utility.code == "heat")
    real_name = heat.service_org
    # The simulator rejects a push whose service_org is not the utility's own.
    Utility.update(service_org="济南测试热力").where(Utility.id == heat.id).execute()
    try:
        client.call("POST", f"/cases/{case_id}/submission", {})
        client.put_business(
            home.business_no, scenarios.business_payload(home, "completed")
        )
        progress = wait_for_status(client, case_id, "push_failed")
    finally:
        Utility.update(service_org=real_name).where(Utility.id == heat.id).execute()
    transfer_id = progress["transfers"][0]["transfer_id"]
    message = OutboxMessage.get(
        (OutboxMessage.kind == "push_transfer") & (OutboxMessage.ref_id == transfer_id)
    )
    return case_id, message


def test_failed_push_is_listed_and_sent_again(client, staffing, failed_push):
    case_id, message = failed_push
    _, admin = staffing.member("admin")

    listed = admin.call("GET", "/admin/deliveries?state=failed&utility=heat")
    retried = admin.call("POST", f"/admin/deliveries/{message.id}/retry")

    assert message.id in [d["delivery_id"] for d in listed["items"]]
    assert retried["state"] == "pending"
    progress = wait_for_status(client, case_id, "completed")
    labels = [e["label"] for e in progress["transfers"][0]["events"]]
    assert "平台已安排重新推送" in labels
    assert labels.index("平台已安排重新推送") < labels.index("已推送至服务机构")
    assert OutboxMessage.get_by_id(message.id).state == "done"


def test_delivered_message_cannot_be_retried(client, staffing, failed_push):
    case_id, message = failed_push
    _, admin = staffing.member("admin")
    admin.call("POST", f"/admin/deliveries/{message.id}/retry")
    wait_for_status(client, case_id, "completed")

    again = citizen_request(admin, "POST", f"/admin/deliveries/{message.id}/retry")

    assert_error(again, 409, "delivery_not_retryable")


def test_retry_of_a_missing_delivery(staffing):
    _, admin = staffing.member("admin")

    response = citizen_request(admin, "POST", "/admin/deliveries/2000000000/retry")

    assert_error(response, 404, "delivery_not_found")


def test_flagged_payments_are_listed(client, homes, staffing):
    home = homes.make(accounts=[("water", {"arrears_fen": 1800})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    transfer_id = case["transfers"][0]["transfer_id"]
    payment = client.call(
        "POST", f"/cases/{case['case_id']}/transfers/{transfer_id}/payments", {}
    )
    Payment.update(flag="amount_mismatch: provider reported 1 fen").where(
        Payment.id == payment["payment_id"]
    ).execute()
    _, admin = staffing.member("admin")

    flagged = admin.call("GET", "/admin/payments/flagged?page_size=100")

    mine = [p for p in flagged["items"] if p["payment_id"] == payment["payment_id"]]
    assert len(mine) == 1
    assert mine[0]["flag"].startswith("amount_mismatch")
    assert mine[0]["case_id"] == case["case_id"]
    assert mine[0]["amount_fen"] == 1800


@pytest.mark.parametrize("role", ["agent", "service", "window", "utility"])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/deliveries"),
        ("POST", "/admin/deliveries/1/retry"),
        ("GET", "/admin/payments/flagged"),
    ],
)
def test_only_operators_use_the_desk(staffing, role, method, path):
    _, caller = staffing.member(role)

    assert_error(citizen_request(caller, method, path), 403, "role_forbidden")


def test_bad_state_is_refused(staffing):
    _, admin = staffing.member("admin")

    response = citizen_request(admin, "GET", "/admin/deliveries?state=lost")

    assert_error(response, 422, "validation_failed")

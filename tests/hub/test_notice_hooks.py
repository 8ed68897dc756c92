"""Notices for a passed deadline and for a withdrawn case, from their hooks."""

from demo import scenarios
from models import Notice, Transfer
from services import deadlines
from tests.hub.flows import drive_to_submission, signed_call
from tests.hub.test_deadlines import make_overdue


def phones_payload(home, status):
    """Return the business as the registry sends it, with each 联系电话."""
    payload = scenarios.business_payload(home, status)
    payload["owners"][0]["phone"] = home.buyer.phone
    payload["previous_owners"][0]["phone"] = home.sellers[0].phone
    return payload


def notice_events(case_id):
    return [n.event for n in Notice.select().where(Notice.case == case_id)]


def test_overdue_sweep_notifies_once(stack, client, homes):
    home = homes.make(accounts=[("tv", {})])
    client.put_business(home.business_no, phones_payload(home, "accepted"))
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, phones_payload(home, "completed"))
    assert signed_call(stack, "tv", "GET", "/partner/exports").status_code == 200
    transfer_id = Transfer.get(Transfer.case == case_id).id
    make_overdue(transfer_id)
    key = f"overdue:transfer:{transfer_id}"

    deadlines.mark_overdue()
    first = notice_events(case_id).count(key)
    deadlines.mark_overdue()
    second = notice_events(case_id).count(key)

    assert first >= 1
    assert second == first


def test_withdrawal_notifies_once_per_person(client, homes):
    home = homes.make(accounts=[("water", {}), ("gas", {}), ("power", {})])
    client.put_business(home.business_no, phones_payload(home, "accepted"))
    case_id = drive_to_submission(client, home)
    opened = notice_events(case_id).count("opened")

    client.call("POST", f"/cases/{case_id}/withdrawal", {})

    assert Transfer.select().where(Transfer.case == case_id).count() == 3
    assert opened >= 1
    assert notice_events(case_id).count("withdrawn") == opened

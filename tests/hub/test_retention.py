"""Closed cases drop their people's data after the retention period."""

from datetime import timedelta

from models import Business, Case, Party
from models.base import utcnow
from services import retention
from tests.hub.flows import drive_to_submission


def closed_case(client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    from demo import scenarios

    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    client.wait_until_final(case_id)
    return home, Case.get_by_id(case_id)


def test_case_past_retention_is_masked(stack, client, homes, staffing):
    home, case = closed_case(client, homes)
    assert case.status == "closed"
    days = stack.app.config["PERSONAL_DATA_RETENTION_DAYS"]
    Case.update(closed_at=utcnow() - timedelta(days=days + 1)).where(
        Case.id == case.id
    ).execute()
    _, service = staffing.member("service")

    dropped = retention.forget_due_cases()

    assert dropped >= 1
    parties = list(Party.select().where(Party.business == case.business_id))
    names = {p.name for p in parties}
    numbers = {p.id_number for p in parties}
    assert home.buyer.name not in names
    assert home.buyer.id_number not in numbers
    assert all("*" in number for number in numbers)
    assert Business.get_by_id(case.business_id).payload == {"personal_data": "dropped"}
    found = service.session.get(
        service.api + "/lookup/cases",
        params={"id_number": home.buyer.id_number, "reason": "核对过户进度"},
        headers={"Authorization": f"Bearer {service.token}"},
        timeout=10,
    ).json()
    assert found["total"] == 0
    by_business = service.session.get(
        service.api + "/lookup/cases",
        params={"business_no": home.business_no, "reason": "核对过户进度"},
        headers={"Authorization": f"Bearer {service.token}"},
        timeout=10,
    ).json()
    assert [c["case_id"] for c in by_business["items"]] == [case.id]
    assert Case.get_by_id(case.id).personal_data_dropped_at is not None


def test_case_within_retention_is_kept(stack, client, homes):
    home, case = closed_case(client, homes)

    retention.forget_due_cases()

    owners = Party.select().where(
        (Party.business == case.business_id) & (Party.role == "owner")
    )
    assert [p.id_number for p in owners] == [home.buyer.id_number]
    assert Case.get_by_id(case.id).personal_data_dropped_at is None


def test_open_case_is_never_masked(stack, client, homes):
    home = homes.make()
    client.login(home.buyer)
    opened = client.call("POST", "/cases", {"business_no": home.business_no})
    Case.update(closed_at=utcnow() - timedelta(days=5000)).where(
        Case.id == opened["case_id"]
    ).execute()

    retention.forget_due_cases()

    assert Case.get_by_id(opened["case_id"]).personal_data_dropped_at is None

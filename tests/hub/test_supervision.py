"""The per-utility, per-month report of transfers, as JSON and CSV."""

import csv
import io
import time
from datetime import timedelta

import pytest

from models import Transfer, Utility
from models.base import utcnow
from services import deadlines
from tests.hub.flows import (
    assert_error,
    citizen_request,
    signed_call,
    submit_and_register,
)


def this_month():
    today = deadlines.local_date(utcnow())
    return f"{today.year:04d}-{today.month:02d}"


@pytest.fixture
def admin(staffing):
    return staffing.member("admin")[1]


@pytest.fixture
def supervisor(staffing):
    return staffing.member("supervisor", staffing.organisation("operator"))[1]


IN_FLIGHT = ("queued", "pushed", "accepted", "in_progress")


def settle(utility, seconds=20):
    """Wait until no transfer of the utility is on its way through it.

    The report counts every transfer of the month, so one that an earlier
    test left moving would change the counts between two readings. A
    transfer that has not moved for a minute is stuck on purpose and waits
    for nothing.
    """
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        moving = (
            Transfer.select()
            .join(Utility)
            .where(
                (Utility.code == utility)
                & Transfer.status.in_(IN_FLIGHT)
                & (Transfer.updated_at > utcnow() - timedelta(minutes=1))
            )
            .exists()
        )
        if not moving:
            return
        time.sleep(0.2)


def row_of(reader, utility):
    settle(utility)
    month = this_month()
    answer = reader.call(
        "GET",
        f"/supervision/transfers?utility={utility}&from_month={month}&to_month={month}",
    )
    assert answer["total"] == 1
    [row] = answer["items"]
    assert row["month"] == month
    assert row["utility"] == utility
    return row


def test_completed_on_time_counted(client, homes, admin):
    before = row_of(admin, "water")
    progress = submit_and_register(client, homes.make(accounts=[("water", {})]))
    assert progress["transfers"][0]["status"] == "completed"

    after = row_of(admin, "water")

    assert after["received"] == before["received"] + 1
    assert after["completed"] == before["completed"] + 1
    assert after["completed_on_time"] == before["completed_on_time"] + 1
    assert after["returned"] == before["returned"]
    assert after["median_hours_to_completion"] is not None
    assert 0 <= after["median_hours_to_completion"] < 1
    assert after["service_days"] == 5
    assert 0 < after["linked_account_share"] <= 1


def test_returned_counted_by_reason(client, homes, admin):
    before = row_of(admin, "power")
    progress = submit_and_register(
        client, homes.make(accounts=[("power", {"direct_debit": True})])
    )
    reason = progress["transfers"][0]["return_reason"]
    assert progress["transfers"][0]["status"] == "returned"

    after = row_of(admin, "power")

    assert after["returned"] == before["returned"] + 1
    counts = {item["reason"]: item["count"] for item in after["returned_by_reason"]}
    earlier = {item["reason"]: item["count"] for item in before["returned_by_reason"]}
    assert counts[reason] == earlier.get(reason, 0) + 1
    assert after["completed"] == before["completed"]


def test_overdue_open_counted(stack, client, homes, supervisor):
    # Earlier tests may leave TV transfers waiting; the company takes them
    # first, so that the export below holds only this test's transfer.
    assert signed_call(stack, "tv", "GET", "/partner/exports").status_code == 200
    before = row_of(supervisor, "tv")
    progress = submit_and_register(
        client, homes.make(accounts=[("tv", {})]), wait=False
    )
    assert signed_call(stack, "tv", "GET", "/partner/exports").status_code == 200
    transfer_id = progress["transfers"][0]["transfer_id"]
    Transfer.update(due_at=utcnow() - timedelta(minutes=5)).where(
        Transfer.id == transfer_id
    ).execute()

    after = row_of(supervisor, "tv")

    assert after["received"] == before["received"] + 1
    assert after["overdue_open"] == before["overdue_open"] + 1
    assert after["completed"] == before["completed"]


def test_rows_cover_every_month_and_utility(app, admin):
    utilities = Utility.select().count()
    answer = admin.call(
        "GET", "/supervision/transfers?from_month=2026-01&to_month=2026-03"
    )

    months = [item["month"] for item in answer["items"]]
    assert answer["total"] == 3 * utilities
    assert months[0] == "2026-03"
    assert months[-1] == "2026-01"
    assert len(answer["items"]) == min(3 * utilities, 20)
    quiet = answer["items"][-1]
    assert quiet["received"] == 0
    assert quiet["returned_by_reason"] == []
    assert quiet["median_hours_to_completion"] is None


def test_csv_by_format_and_accept(app, admin):
    month = this_month()
    path = f"/supervision/transfers?from_month={month}&to_month={month}"

    by_query = citizen_request(admin, "GET", path + "&format=csv")
    by_accept = admin.session.get(
        admin.api + path,
        headers={"Authorization": f"Bearer {admin.token}", "Accept": "text/csv"},
        timeout=10,
    )

    for response in (by_query, by_accept):
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/csv")
        # A byte order mark first, so that Excel reads the file as UTF-8.
        assert response.content.startswith("\ufeff".encode())
        text = response.content.decode("utf-8-sig")
        rows = list(csv.DictReader(io.StringIO(text)))
        assert len(rows) == Utility.select().count()
        water = next(row for row in rows if row["utility"] == "water")
        assert water["month"] == month
        assert int(water["received"]) >= 0
        assert "linked_account_share" in water


@pytest.mark.parametrize(
    ("query", "status", "code"),
    [
        ("from_month=2026-13", 422, "month_invalid"),
        ("to_month=26-1x", 422, "month_invalid"),
        ("from_month=0001-01&to_month=0001-02", 422, "month_invalid"),
        ("from_month=9999-11&to_month=9999-12", 422, "month_invalid"),
        ("from_month=1999-12", 422, "month_invalid"),
        ("to_month=2101-01", 422, "month_invalid"),
        ("from_month=2026-05&to_month=2026-04", 422, "month_range_invalid"),
        ("from_month=2020-01&to_month=2026-01", 422, "month_range_invalid"),
        ("utility=no-such", 404, "utility_not_found"),
        ("format=xml", 422, "validation_failed"),
    ],
)
def test_bad_report_query_rejected(admin, query, status, code):
    response = citizen_request(admin, "GET", f"/supervision/transfers?{query}")

    assert_error(response, status, code)


@pytest.mark.parametrize("role", ["service", "utility", "agent", "window"])
def test_other_staff_forbidden(staffing, role):
    _, member = staffing.member(role)

    response = citizen_request(member, "GET", "/supervision/transfers")

    assert_error(response, 403, "role_forbidden")


def test_citizen_forbidden(client, homes):
    client.login(homes.person())

    response = citizen_request(client, "GET", "/supervision/transfers")

    assert_error(response, 403, "role_forbidden")


@pytest.mark.parametrize(
    "path",
    ["/utility/transfers", "/admin/deliveries", "/lookup/records", "/cases"],
)
def test_supervisor_sees_only_aggregates(supervisor, path):
    response = citizen_request(supervisor, "GET", path)

    assert_error(response, 403, "role_forbidden")


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csv_cells_never_run_as_formulas(app, start):
    """A return reason is free text from a utility's staff; in a spreadsheet a
    cell starting like a formula must read as text."""
    from api.supervision import CSV_COLUMNS, csv_response

    row = {name: 0 for name in CSV_COLUMNS}
    row.update(
        month="2026-12",
        utility=f"{start}cmd",
        service_org=f'{start}HYPERLINK("http://127.0.0.1/x")',
        returned_by_reason=[{"reason": f"{start}1+1", "count": 2}],
    )
    with app.test_request_context():
        text = csv_response([row]).get_data(as_text=True)

    [parsed] = list(csv.DictReader(io.StringIO(text.removeprefix("\ufeff"))))
    assert parsed["utility"] == f"'{start}cmd"
    assert parsed["service_org"] == f'\'{start}HYPERLINK("http://127.0.0.1/x")'
    assert parsed["returned_by_reason"] == f"'{start}1+1: 2"
    assert parsed["received"] == "0"

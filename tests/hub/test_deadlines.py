"""Due times in Chinese working days, shown on transfers, and overdue alerts."""

import logging
import os
import subprocess
import sys
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from demo import scenarios
from models import OverdueAlert, Transfer, Utility
from models.base import utcnow
from models.db import database
from services import deadlines
from tests.hub.flows import drive_to_submission, signed_call


def utc(text):
    return datetime.fromisoformat(text)


# Delivery time (UTC), service days, due time (UTC, which is 24:00 in China).
DUE_TIMES = [
    # Wednesday before the 2026 National Day holiday (1 to 7 October): the
    # count resumes on Thursday 8 October, and Saturday 10 October is a
    # make-up working day.
    ("2026-09-30 03:00:00", 3, "2026-10-10 16:00:00"),
    # Delivered on that make-up Saturday (01:00 China time): the day itself
    # does not count.
    ("2026-10-09 17:00:00", 3, "2026-10-14 16:00:00"),
    # Friday evening in China: the weekend does not count.
    ("2026-12-04 10:00:00", 3, "2026-12-09 16:00:00"),
    # 23:30 UTC on Thursday is already Friday in China.
    ("2026-12-03 23:30:00", 1, "2026-12-07 16:00:00"),
    # Delivered on a holiday (2 October): counting starts on 8 October.
    ("2026-10-02 02:00:00", 1, "2026-10-08 16:00:00"),
    # Spring Festival 2026 (15 to 23 February): make-up Saturday 14 February
    # counts, then Tuesday 24 February.
    ("2026-02-13 02:00:00", 2, "2026-02-24 16:00:00"),
]


@pytest.mark.parametrize(("delivered", "days", "due"), DUE_TIMES)
def test_due_time_on_working_days(delivered, days, due):
    assert deadlines.due_time(utc(delivered), days) == utc(due)


def test_make_up_day_is_working_day():
    assert deadlines.is_working_day(datetime(2026, 10, 10).date())
    assert not deadlines.is_working_day(datetime(2026, 10, 5).date())
    assert not deadlines.is_working_day(datetime(2026, 12, 5).date())


def test_uncovered_year_falls_back_once(caplog):
    deadlines._uncovered_years_logged.discard(2031)
    with caplog.at_level(logging.WARNING, logger="services.deadlines"):
        first = deadlines.due_time(utc("2031-01-02 02:00:00"), 2)
        second = deadlines.due_time(utc("2031-01-09 02:00:00"), 2)

    # Thursday 2 January 2031: Friday 3 and Monday 6 count.
    assert first == utc("2031-01-06 16:00:00")
    assert second == utc("2031-01-13 16:00:00")
    warnings = [r for r in caplog.records if "year=2031" in r.getMessage()]
    assert len(warnings) == 1


def test_service_days_rejects_out_of_range(app):
    with pytest.raises(ValueError, match="from 1 to 60"):
        deadlines.set_service_days("water", 0)
    with pytest.raises(ValueError, match="No utility"):
        deadlines.set_service_days("no-such-utility", 3)


def collected_tv(stack, client, homes):
    """Register a cable TV transfer and collect its export.

    Returns the home, the case id and the transfer id.
    """
    home = homes.make(accounts=[("tv", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    response = signed_call(stack, "tv", "GET", "/partner/exports")
    assert response.status_code == 200, response.text
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]
    return home, case_id, transfer_id


@pytest.fixture
def tv_days(app):
    """Give the cable TV utility 2 service days for one test."""
    deadlines.set_service_days("tv", 2)
    yield 2
    deadlines.set_service_days("tv", None)


def test_collected_transfer_gets_due_time(stack, client, homes, tv_days):
    before = utcnow()
    _, case_id, transfer_id = collected_tv(stack, client, homes)

    transfer = Transfer.get_by_id(transfer_id)
    assert transfer.status == "collected"
    assert before <= transfer.delivered_at <= utcnow()
    assert transfer.due_at == deadlines.due_time(transfer.delivered_at, tv_days)
    view = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    local_due = deadlines.due_time(transfer.delivered_at, tv_days) + timedelta(hours=8)
    assert view["due_at"] == local_due.isoformat() + "+08:00"
    assert view["overdue"] is False


def test_pushed_transfer_uses_default_days(stack, client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    progress = client.wait_until_final(case_id)
    transfer = Transfer.get_by_id(progress["transfers"][0]["transfer_id"])

    assert transfer.status == "completed"
    default = stack.app.config["TRANSFER_SERVICE_DAYS"]
    assert transfer.due_at == deadlines.due_time(transfer.delivered_at, default)
    view = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    assert view["due_at"].endswith("+08:00")
    assert view["overdue"] is False


def make_overdue(transfer_id):
    Transfer.update(due_at=utcnow() - timedelta(hours=1)).where(
        Transfer.id == transfer_id
    ).execute()


def test_overdue_alert_raised_once(stack, client, homes, staffing, caplog):
    _, case_id, transfer_id = collected_tv(stack, client, homes)
    make_overdue(transfer_id)

    with caplog.at_level(logging.WARNING, logger="services.deadlines"):
        deadlines.mark_overdue()
        again = deadlines.mark_overdue()

    assert transfer_id not in [alert.transfer_id for alert in again]
    alerts = list(OverdueAlert.select().where(OverdueAlert.transfer == transfer_id))
    assert len(alerts) == 1
    assert alerts[0].utility_id == Utility.get(Utility.code == "tv").id
    # The minute sweep of the running worker may have raised it first.
    logged = [r for r in caplog.records if f"transfer={transfer_id} " in r.getMessage()]
    assert len(logged) <= 1
    view = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    assert view["overdue"] is True


def test_utility_staff_see_own_alerts(stack, client, homes, staffing):
    _, _, transfer_id = collected_tv(stack, client, homes)
    make_overdue(transfer_id)
    deadlines.mark_overdue()
    _, tv_staff = staffing.member("utility", utility="tv")
    _, water_staff = staffing.member("utility", utility="water")

    alerts = tv_staff.call("GET", "/utility/alerts?page_size=100")
    others = water_staff.call("GET", "/utility/alerts?page_size=100")
    listed = tv_staff.call("GET", "/utility/transfers?status=collected&page_size=100")

    item = next(a for a in alerts["items"] if a["transfer_id"] == transfer_id)
    assert item["status"] == "collected"
    assert item["still_open"] is True
    assert item["due_at"].endswith("+08:00")
    assert transfer_id not in [a["transfer_id"] for a in others["items"]]
    row = next(t for t in listed["items"] if t["transfer_id"] == transfer_id)
    assert row["overdue"] is True


def test_finished_transfer_not_overdue(stack, client, homes, staffing):
    _, case_id, transfer_id = collected_tv(stack, client, homes)
    _, tv_staff = staffing.member("utility", utility="tv")
    tv_staff.call(
        "POST", f"/utility/transfers/{transfer_id}/feedback", {"status": "办结"}
    )
    make_overdue(transfer_id)

    raised = deadlines.mark_overdue()

    assert transfer_id not in [alert.transfer_id for alert in raised]
    assert not OverdueAlert.select().where(OverdueAlert.transfer == transfer_id).count()
    view = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    assert view["status"] == "completed"
    assert view["overdue"] is False


def test_concurrent_sweeps_raise_one_alert(stack, client, homes):
    transfer_ids = [collected_tv(stack, client, homes)[2] for _ in range(3)]
    for transfer_id in transfer_ids:
        make_overdue(transfer_id)
    start = threading.Barrier(4)
    errors = []

    def sweep():
        with stack.app.app_context():
            database.connect(reuse_if_open=True)
            try:
                start.wait()
                deadlines.mark_overdue()
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                database.close()

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    for transfer_id in transfer_ids:
        count = OverdueAlert.select().where(OverdueAlert.transfer == transfer_id)
        assert count.count() == 1


def run_lianban(stack, *args):
    env = {
        **os.environ,
        "DATABASE_URL": stack.app.config["DATABASE_URL"],
        "LIANBAN_VAR_DIR": stack.app.config["VAR_DIR"],
    }
    return subprocess.run(
        [str(Path(sys.executable).parent / "lianban"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_cli_sets_service_days(stack, app):
    try:
        changed = run_lianban(stack, "utility", "set-service-days", "heat", "4")
        listed = run_lianban(stack, "utility", "list")
        refused = run_lianban(stack, "utility", "set-service-days", "heat", "0")

        assert changed.returncode == 0, changed.stderr
        assert Utility.get(Utility.code == "heat").service_days == 4
        heat = next(
            line for line in listed.stdout.splitlines() if line.startswith("heat")
        )
        assert heat.split("\t")[4] == "4"
        assert refused.returncode == 2
        assert "from 1 to 60" in refused.stderr
    finally:
        reset = run_lianban(stack, "utility", "set-service-days", "heat")
    assert reset.returncode == 0, reset.stderr
    assert Utility.get(Utility.code == "heat").service_days is None

"""Roster jobs that lose their worker, run side by side, or meet large files."""

import csv
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest

from models import AccountLink, ReconciliationItem, RosterEntry, RosterJob, Utility
from models.base import utcnow
from models.db import database
from services import queue, rosters
from tests.hub.flows import assert_error, signed_call
from tests.hub.test_rosters import DATA, WATER, as_csv, roster_of, upload, wait_done


@pytest.fixture(scope="module")
def registry_units(stack):
    with stack.app.app_context(), database.connection_context():
        rosters.import_units(DATA / "units.csv")


def fresh_rows(rows):
    """Return `rows` with account numbers no earlier test has stored."""
    tag = uuid.uuid4().hex[:8].upper()
    return [[row[0], f"T{tag}{i:05d}", *row[2:]] for i, row in enumerate(rows)]


class Killed(BaseException):
    """Stops a run the way a killed process does: no except or failure path runs."""


def accept(rows, filename="roster.csv"):
    header, _ = roster_of(WATER)
    water = Utility.get(Utility.code == "water")
    return rosters.accept_upload(water, filename, [as_csv(header, rows)], "test")


def run_until_killed(monkeypatch, job, accounts_stored):
    """Claim `job` and run it until `accounts_stored` accounts were written."""
    calls = []
    apply = rosters._apply

    def apply_then_die(*args):
        if len(calls) == accounts_stored:
            raise Killed
        calls.append(args)
        return apply(*args)

    monkeypatch.setattr(rosters, "CHUNK", 5)
    monkeypatch.setattr(rosters, "_apply", apply_then_die)
    claimed = rosters._claim_next(job.utility_id)
    assert claimed.id == job.id
    with pytest.raises(Killed):
        rosters._run_claimed(claimed)
    monkeypatch.setattr(rosters, "_apply", apply)


def age_heartbeat(job, seconds=3600):
    RosterJob.update(heartbeat_at=utcnow() - timedelta(seconds=seconds)).where(
        RosterJob.id == job.id
    ).execute()


def entries(job_id):
    return [
        (entry.line, entry.unit_code, entry.match_result, entry.change)
        for entry in RosterEntry.select()
        .where(RosterEntry.job == job_id)
        .order_by(RosterEntry.line)
    ]


def test_dead_worker_job_runs_again(stack, app, registry_units, monkeypatch):
    _, water_rows = roster_of(WATER)
    once_rows = fresh_rows(water_rows[:40])
    again_rows = [[r[0], r[1] + "R", *r[2:]] for r in once_rows]
    once = wait_done(
        stack, upload(stack, as_csv(roster_of(WATER)[0], once_rows)).json()["job_id"]
    )
    job = accept(again_rows)

    run_until_killed(monkeypatch, job, accounts_stored=12)
    left = RosterJob.get_by_id(job.id)
    stored_before = RosterEntry.select().where(RosterEntry.job == job.id).count()
    age_heartbeat(job)
    queue.sweep.call_local()
    again = wait_done(stack, job.id)

    assert left.status == "running"
    assert stored_before == 10
    assert again["status"] == "done", again
    assert again["attempts"] == 2
    for key in ("rows_read", "rows_matched", "for_review", "unmatched"):
        assert again[key] == once[key], key
    assert again["changes"]["new"] == len(again_rows)
    same_keys = ("new", "linked", "moved", "unchanged", "kept_by_hand", "now_in_doubt")
    assert {k: again["changes"][k] for k in same_keys} == {
        k: once["changes"][k] for k in same_keys
    }
    assert [e[:3] for e in entries(job.id)] == [e[:3] for e in entries(once["job_id"])]
    assert {e[3] for e in entries(job.id)} == {"new"}
    numbers = [row[1] for row in again_rows]
    links = AccountLink.select().where(AccountLink.account_no.in_(numbers))
    assert links.count() == len(again_rows)
    open_items = ReconciliationItem.select().where(
        ReconciliationItem.account_no.in_(numbers)
        & (ReconciliationItem.status == "open")
    )
    assert open_items.count() == again["for_review"]
    assert not rosters._job_path(RosterJob.get_by_id(job.id)).exists()


def test_job_fails_after_max_attempts(stack, app, registry_units, monkeypatch):
    _, water_rows = roster_of(WATER)
    job = accept(fresh_rows(water_rows[:8]))
    attempts = stack.app.config["ROSTER_MAX_ATTEMPTS"]

    for _ in range(attempts):
        run_until_killed(monkeypatch, job, accounts_stored=3)
        age_heartbeat(job)
        released = rosters.release_stalled_jobs()
        if len(released) == 0:
            break
        assert released == [job.id]
    listed = signed_call(stack, "water", "GET", f"/partner/rosters/{job.id}").json()

    assert listed["status"] == "failed"
    assert listed["attempts"] == attempts
    assert f"started {attempts} times" in listed["error"]
    assert "heartbeat" in listed["error"]
    assert not rosters._job_path(RosterJob.get_by_id(job.id)).exists()


def test_fresh_heartbeat_is_not_released(app, registry_units, monkeypatch):
    _, water_rows = roster_of(WATER)
    job = accept(fresh_rows(water_rows[:8]))
    run_until_killed(monkeypatch, job, accounts_stored=3)
    age_heartbeat(job, seconds=5)

    released = rosters.release_stalled_jobs()

    assert job.id not in released
    assert RosterJob.get_by_id(job.id).status == "running"
    age_heartbeat(job)
    assert rosters.release_stalled_jobs() == [job.id]
    rosters.run_job(job.id)
    assert RosterJob.get_by_id(job.id).status == "done"


def test_run_that_lost_its_lease_stops(app, registry_units, monkeypatch):
    _, water_rows = roster_of(WATER)
    job = accept(fresh_rows(water_rows[:12]))
    claimed = rosters._claim_next(job.utility_id)
    apply = rosters._apply

    def released_meanwhile(*args):
        # The sweep queues the job again while this run still works on it.
        RosterJob.update(status="queued").where(RosterJob.id == job.id).execute()
        return apply(*args)

    monkeypatch.setattr(rosters, "CHUNK", 5)
    monkeypatch.setattr(rosters, "_apply", released_meanwhile)
    rosters._run_claimed(claimed)
    monkeypatch.setattr(rosters, "_apply", apply)
    stopped = RosterJob.get_by_id(job.id)
    rosters.run_job(job.id)
    done = RosterJob.get_by_id(job.id)

    assert stopped.status == "queued"
    assert RosterEntry.select().where(RosterEntry.job == job.id).count() == 12
    assert done.status == "done"
    assert done.attempts == 2
    assert done.changes["new"] == 12


def test_second_job_of_utility_waits(app, registry_units):
    _, water_rows = roster_of(WATER)
    rows = fresh_rows(water_rows[:20])
    first = accept(rows[:15])
    second = accept(rows[5:])
    claimed = rosters._claim_next(first.utility_id)

    rosters.run_job(second.id)
    waiting = RosterJob.get_by_id(second.id)
    rosters._run_claimed(claimed)
    rosters.run_job(first.id)

    assert claimed.id == first.id
    assert waiting.status == "queued"
    assert RosterJob.get_by_id(first.id).changes["new"] == 15
    assert RosterJob.get_by_id(second.id).status == "done"
    assert RosterJob.get_by_id(second.id).changes["new"] == 5
    assert RosterJob.get_by_id(second.id).changes["unchanged"] == 10


def test_concurrent_overlapping_uploads(stack, app, registry_units):
    header, _ = roster_of(WATER)
    with open(DATA / "roster.csv", encoding="utf-8", newline="") as f:
        everyone = list(csv.reader(f))[1:]
    # Every utility's rows as the water company's, for rosters long enough
    # that the two jobs would overlap in time.
    rows = fresh_rows([[WATER, *row[1:]] for row in everyone])
    third = len(rows) // 3
    first, second = rows[: 2 * third], rows[third:]

    with ThreadPoolExecutor(2) as pool:
        responses = list(
            pool.map(lambda part: upload(stack, as_csv(header, part)), (first, second))
        )
    jobs = [wait_done(stack, r.json()["job_id"]) for r in responses]

    assert [r.status_code for r in responses] == [202, 202]
    assert [job["status"] for job in jobs] == ["done", "done"], jobs
    assert sum(job["changes"]["new"] for job in jobs) == len(rows)
    for job, part in zip(jobs, (first, second), strict=True):
        changed = sum(job["changes"].values()) - job["changes"]["not_in_upload"]
        assert changed == len(part)
        count = RosterEntry.select().where(RosterEntry.job == job["job_id"]).count()
        assert count == len(part)
    numbers = [row[1] for row in rows]
    links = AccountLink.select().where(AccountLink.account_no.in_(numbers))
    assert links.count() == len(rows)


def test_bad_rows_are_capped(stack, registry_units, monkeypatch):
    monkeypatch.setitem(stack.app.config, "ROSTER_MAX_PROBLEMS", 10)
    header, water_rows = roster_of(WATER)
    good = fresh_rows(water_rows[:5])
    bad = [[WATER, "", "无号", "", "某地"] for _ in range(25)]

    response = upload(stack, as_csv(header, good + bad))
    job = wait_done(stack, response.json()["job_id"])

    assert job["status"] == "done", job
    assert len(job["problems"]) == 10
    assert job["problems_left_out"] == 15
    assert [p["line"] for p in job["problems"]] == list(range(7, 17))
    assert job["rows_read"] == 30
    assert job["rows_done"] == 5


def stored_uploads(stack):
    return sorted(p.name for p in (rosters_dir(stack)).iterdir())


def rosters_dir(stack):
    path = stack.app.config["VAR_DIR"]
    from pathlib import Path

    folder = Path(path) / "rosters"
    folder.mkdir(exist_ok=True)
    return folder


def test_signed_upload_over_limit(stack, registry_units, monkeypatch):
    monkeypatch.setitem(stack.app.config, "ROSTER_MAX_BYTES", 2000)
    header, water_rows = roster_of(WATER)
    before = stored_uploads(stack)

    response = upload(stack, as_csv(header, water_rows[:100]))

    assert_error(response, 413, "payload_too_large")
    assert stored_uploads(stack) == before


def test_streamed_upload_over_limit(stack, staffing, registry_units, monkeypatch):
    monkeypatch.setitem(stack.app.config, "ROSTER_MAX_BYTES", 3 * 1024 * 1024)
    _, member = staffing.member("utility", utility="water")
    header, water_rows = roster_of(WATER)
    body = as_csv(header, water_rows)
    while len(body) < 4 * 1024 * 1024:
        body += body[len(as_csv(header, [])) :]
    before = stored_uploads(stack)

    def pieces():
        for start in range(0, len(body), 256 * 1024):
            yield body[start : start + 256 * 1024]

    response = member.session.post(
        member.api + "/partner/rosters",
        data=pieces(),
        headers={
            "Authorization": f"Bearer {member.token}",
            "Content-Type": "text/csv",
        },
        timeout=30,
    )

    error = assert_error(response, 413, "payload_too_large")
    assert "3145728" in error["message"]
    assert stored_uploads(stack) == before


def test_streamed_upload_is_linked(stack, staffing, registry_units):
    _, member = staffing.member("utility", utility="water")
    header, water_rows = roster_of(WATER)
    rows = fresh_rows(water_rows[:30])
    body = as_csv(header, rows, encoding="gbk")

    def pieces():
        for start in range(0, len(body), 777):
            yield body[start : start + 777]

    response = member.session.post(
        member.api + "/partner/rosters?filename=gbk.csv",
        data=pieces(),
        headers={
            "Authorization": f"Bearer {member.token}",
            "Content-Type": "text/csv",
        },
        timeout=30,
    )
    assert response.status_code == 202, response.text
    job = wait_done(stack, response.json()["job_id"])

    assert job["status"] == "done", job
    assert job["encoding"] == "GBK"
    assert job["rows_read"] == 30
    assert job["changes"]["new"] == 30


def test_changed_sealed_file_fails_job(stack, app, registry_units):
    _, water_rows = roster_of(WATER)
    job = accept(fresh_rows(water_rows[:5]))
    path = rosters._job_path(job)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x01
    path.write_bytes(bytes(data))

    rosters.run_job(job.id)
    failed = RosterJob.get_by_id(job.id)

    assert failed.status == "failed"
    assert failed.error is not None
    assert not path.exists()

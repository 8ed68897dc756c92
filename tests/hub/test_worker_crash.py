"""A worker killed with SIGKILL in the middle of pushing loses and repeats nothing.

The hub runs with `lianban worker` as a separate process on the same
database and queue (SQLite files by default, Redis when
LIANBAN_TEST_REDIS_URL is set), in place of the embedded consumer. The
simulator delays its response to each push, so the worker is always waiting
on some pushes the utility already has when it is killed. A second worker then
finishes the work, and the simulator's own record of what arrived is
compared with the hub's.
"""

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import requests

from demo import scenarios
from models import Case, OutboxMessage, Transfer, TransferEvent
from services import delivery, queue
from settings import DEFAULTS
from tests.hub.flows import drive_to_submission
from tests.hub.pushes import arrivals, simulator_delays, wait_for

PROJECT_ROOT = Path(__file__).resolve().parents[2]
UTILITIES = ("water", "power", "gas", "heat")
CASES = 12
# Short enough that the pushes the dead worker held are sent again within
# seconds, and longer than the simulator's delays below.
LEASE_SECONDS = 4
PUSH_DELAY = 0.5
FEEDBACK_DELAY = 1.0
KILL_AFTER_ARRIVALS = 14
FINISH_SECONDS = 90
OUTCOMES = {"办结": "completed", "退件": "returned"}


def worker_environment(app, var_dir):
    """Return the environment that points `lianban worker` at the stack's hub."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("LIANBAN_") and key != "DATABASE_URL"
    }
    for key in DEFAULTS:
        value = app.config.get(key)
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            name = "DATABASE_URL" if key == "DATABASE_URL" else f"LIANBAN_{key}"
            env[name] = str(value)
    env["LIANBAN_OUTBOX_LEASE_SECONDS"] = str(LEASE_SECONDS)
    env["LIANBAN_VAR_DIR"] = str(var_dir)
    return env


class Workers:
    """`lianban worker` processes started by one test, each in its own group."""

    def __init__(self, app, log_dir):
        self.env = worker_environment(app, app.config["VAR_DIR"])
        self.log_dir = log_dir
        self.processes = []

    def start(self):
        log_path = self.log_dir / f"worker-{len(self.processes) + 1}.log"
        with open(log_path, "wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "cli", "worker", "--workers", "4"],
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.processes.append((process, log_path))
        return process

    def kill(self, process):
        """Send SIGKILL to the worker and everything in its process group."""
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self):
        for process, _ in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.kill(process)

    def log_tails(self, lines=30):
        return "\n".join(
            f"--- {path.name}\n"
            + "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
            for _, path in self.processes
        )


@pytest.fixture
def workers(stack, app, tmp_path):
    """Run separate worker processes in place of the stack's embedded consumer."""
    queue.stop_embedded(stack.worker)
    started = Workers(stack.app, tmp_path)
    try:
        yield started
    finally:
        started.stop_all()
        stack.worker = queue.start_embedded(stack.app)


def registered_cases(client, homes):
    """Open CASES cases, each with an account at every utility, ready to submit."""
    case_ids = []
    for _ in range(CASES):
        home = homes.make(accounts=[(code, {}) for code in UTILITIES])
        case_id = drive_to_submission(client, home)
        client.call("POST", f"/cases/{case_id}/submission", {})
        case_ids.append((case_id, home))
    return case_ids


def transfers_of(case_ids):
    return list(Transfer.select().where(Transfer.case.in_(case_ids)))


def simulator_transfers(stack):
    response = requests.get(stack.peers.utility_sim_url + "/_sim/transfers", timeout=10)
    response.raise_for_status()
    return response.json()["transfers"]


def all_final(case_ids):
    return all(
        t.status in ("completed", "returned", "push_failed")
        for t in transfers_of(case_ids)
    )


def test_killed_worker_loses_and_repeats_no_push(stack, client, homes, app, workers):
    cases = registered_cases(client, homes)
    case_ids = [case_id for case_id, _ in cases]
    expected = {str(t.id) for t in transfers_of(case_ids)}
    assert len(expected) == CASES * len(UTILITIES)

    with simulator_delays(stack, push_delay=PUSH_DELAY, feedback_delay=FEEDBACK_DELAY):
        first = workers.start()
        started = time.monotonic()
        # The registry completes every case; each completion writes the pushes
        # and queues them for the worker.
        for _, home in cases:
            client.put_business(
                home.business_no, scenarios.business_payload(home, "completed")
            )

        def arrived():
            return [a for a in arrivals(stack) if a["transfer_id"] in expected]

        assert wait_for(lambda: len(arrived()) >= KILL_AFTER_ARRIVALS, seconds=60), (
            f"only {len(arrived())} pushes arrived\n{workers.log_tails()}"
        )
        workers.kill(first)
        killed_at = time.monotonic()
        arrived_at_kill = {a["transfer_id"] for a in arrived()}
        held_at_kill = list(
            OutboxMessage.select().where(
                (OutboxMessage.kind == delivery.PUSH)
                & OutboxMessage.ref_id.in_([int(t) for t in arrived_at_kill])
                & (OutboxMessage.state == "pending")
                & OutboxMessage.claimed_at.is_null(False)
            )
        )

        workers.start()
        finished = wait_for(
            lambda: all_final(case_ids), seconds=FINISH_SECONDS, step=0.5
        )
        recovered_seconds = time.monotonic() - killed_at

    statuses = Counter(t.status for t in transfers_of(case_ids))
    assert finished, f"{statuses}\n{workers.log_tails()}"
    print(
        f"\n{len(expected)} pushes, killed after {killed_at - started:.1f} s with "
        f"{len(arrived_at_kill)} arrived and {len(held_at_kill)} held unanswered; "
        f"all final {recovered_seconds:.1f} s after the kill"
    )
    # The kill came while the worker waited on responses to pushes already
    # delivered, and while others were still to be sent.
    assert held_at_kill
    assert len(arrived_at_kill) < len(expected)

    # The simulator's record: every push arrived, once, under one message id.
    received = [a for a in arrivals(stack) if a["transfer_id"] in expected]
    per_transfer = Counter(a["transfer_id"] for a in received)
    assert set(per_transfer) == expected
    assert [t for t, count in per_transfer.items() if count > 1] == []
    assert all(a["new"] for a in received)
    message_ids = [a["message_id"] for a in received]
    assert None not in message_ids
    assert len(set(message_ids)) == len(message_ids)

    # The hub agrees: every push done, every transfer where the utility left
    # it, with one "pushed" entry and the utility's reports in order.
    outcomes = {
        record["transfer_id"]: record
        for record in simulator_transfers(stack)
        if record["transfer_id"] in expected
    }
    assert set(outcomes) == expected
    messages = OutboxMessage.select().where(
        (OutboxMessage.kind == delivery.PUSH)
        & OutboxMessage.ref_id.in_([int(t) for t in expected])
    )
    assert Counter(m.state for m in messages) == {"done": len(expected)}
    for transfer in transfers_of(case_ids):
        record = outcomes[str(transfer.id)]
        assert transfer.status == OUTCOMES[record["outcome"]], transfer.id
        assert transfer.return_reason == record["return_reason"]
        reports = [f["status"] for f in record["feedback"]]
        assert [f["delivery"] for f in record["feedback"]] == ["delivered"] * 2
        timeline = [
            (event.status, event.actor)
            for event in TransferEvent.select()
            .where(TransferEvent.transfer == transfer.id)
            .order_by(TransferEvent.id)
        ]
        assert [status for status, _ in timeline].count("pushed") == 1, timeline
        utility_statuses = [s for s, actor in timeline if actor == "utility"]
        assert utility_statuses == [
            {"办理中": "in_progress", **OUTCOMES}[status] for status in reports
        ]
    assert all(Case.get_by_id(case_id).status == "closed" for case_id in case_ids)

"""The queue's consumers as real processes: a queue storage that is wrong or
goes away, and a worker killed in the middle of a roster job."""

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from peers.launch import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
DATA = ROOT / "tests" / "linkage" / "data" / "generated"
WATER = "济南水务集团有限公司"


def worker_env(tmp_path, **extra):
    env = {
        **os.environ,
        "LIANBAN_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker.db'}",
    }
    env.pop("LIANBAN_QUEUE_URL", None)
    env.update(extra)
    return env


def lianban(env, *args):
    return subprocess.run(
        [BIN / "lianban", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# The consumer that `lianban serve` and the demo run in threads of their own
# process, until SIGTERM.
EMBEDDED = """
import signal, threading
from api.requestlog import configure_logging
from app import create_app
from services import queue

configure_logging()
app = create_app()
consumer = queue.start_embedded(app, workers=2)
stopped = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stopped.set())
stopped.wait()
queue.stop_embedded(consumer)
"""
CONSUMERS = {
    "worker": [BIN / "lianban", "worker", "--workers", "2"],
    "embedded": [sys.executable, "-c", EMBEDDED],
}


def start_worker(env, log_path, kind="worker"):
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            CONSUMERS[kind],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )


def wait_for(condition, seconds, what):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def stop(process):
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def test_worker_exits_on_closed_redis_port(tmp_path):
    url = f"redis://127.0.0.1:{free_port()}/0"
    env = worker_env(tmp_path, LIANBAN_QUEUE_URL=url)

    started = time.monotonic()
    finished = lianban(env, "worker")
    elapsed = time.monotonic() - started

    lines = (finished.stdout + finished.stderr).splitlines()
    errors = [line for line in lines if line.startswith("Error:")]
    assert finished.returncode == 1
    assert len(errors) == 1
    assert url in errors[0]
    assert "LIANBAN_QUEUE_URL" in errors[0]
    assert "Traceback" not in finished.stderr
    assert len(lines) <= 8, lines
    assert elapsed < 30


def test_worker_hides_redis_password(tmp_path):
    port = free_port()
    env = worker_env(tmp_path, LIANBAN_QUEUE_URL=f"redis://:s3cret@127.0.0.1:{port}/0")

    finished = lianban(env, "worker")

    assert finished.returncode == 1
    assert "s3cret" not in finished.stdout + finished.stderr
    assert f"redis://127.0.0.1:{port}/0" in finished.stderr


def start_redis(port, tmp_path):
    return subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="needs redis-server")
@pytest.mark.parametrize("kind", sorted(CONSUMERS))
def test_consumer_backs_off_while_redis_is_away(tmp_path, kind):
    port = free_port()
    redis_server = start_redis(port, tmp_path)
    env = worker_env(tmp_path, LIANBAN_QUEUE_URL=f"redis://127.0.0.1:{port}/0")
    assert lianban(env, "db", "upgrade").returncode == 0
    log_path = tmp_path / "worker.log"
    time.sleep(0.5)
    worker = start_worker(env, log_path, kind)
    try:
        wait_for(
            lambda: "Huey consumer started" in log_path.read_text(), 30, "worker start"
        )
        redis_server.terminate()
        redis_server.wait(timeout=10)
        time.sleep(8)
        away = log_path.read_text()
        redis_server = start_redis(port, tmp_path)
        wait_for(lambda: "responds again" in log_path.read_text(), 30, "reconnection")
    finally:
        stop(worker)
        redis_server.terminate()
        redis_server.wait(timeout=10)

    outage_lines = [line for line in away.splitlines() if "unavailable" in line]
    # The back-off starts at 1 s and doubles: lines at about 0, 1, 3 and 7 s.
    assert 1 <= len(outage_lines) <= 5, outage_lines
    assert "Traceback" not in away
    assert "Error reading" not in away
    assert worker.returncode == 0


def job_row(db_path, job_id):
    with sqlite3.connect(db_path, timeout=10) as db:
        db.row_factory = sqlite3.Row
        return db.execute("SELECT * FROM roster_job WHERE id = ?", (job_id,)).fetchone()


# Runs in a separate process against the worker's database: uploads a roster
# as the water company and queues its job, or releases stalled jobs.
SCRIPT = """
import sys
from app import create_app
from models import Utility
from models.db import database
from services import queue, rosters

app = create_app()
queue.configure(app)
with app.app_context(), database.connection_context():
    if sys.argv[1] == "upload":
        water = Utility.get(Utility.code == "water")
        data = open(sys.argv[2], "rb").read()
        job = rosters.accept_upload(water, "roster.csv", [data], "test")
        queue.run_roster_job(job.id)
        print(job.id)
    else:
        for job_id in rosters.release_stalled_jobs():
            queue.run_roster_job(job_id)
            print(job_id)
"""


def test_killed_worker_job_finishes_later(tmp_path):
    env = worker_env(tmp_path, LIANBAN_ROSTER_LEASE_SECONDS="2")
    db_path = tmp_path / "worker.db"
    assert lianban(env, "db", "upgrade").returncode == 0
    assert (
        lianban(env, "registry", "import-units", str(DATA / "units.csv")).returncode
        == 0
    )
    added = lianban(env, "utility", "add", "water", "--name", WATER, "--kind", "water")
    assert added.returncode == 0, added.stderr
    # Every row as the water company's, so that the job runs long enough.
    lines = (DATA / "roster.csv").read_text(encoding="utf-8").splitlines()
    body = [lines[0]] + [WATER + line[line.index(",") :] for line in lines[1:]]
    roster = tmp_path / "roster.csv"
    roster.write_text("\n".join(body) + "\n", encoding="utf-8")
    script = [sys.executable, "-c", SCRIPT]
    queued = subprocess.run(
        [*script, "upload", str(roster)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    job_id = int(queued.stdout.split()[-1])

    first = start_worker(env, tmp_path / "first.log")
    try:
        wait_for(
            lambda: job_row(db_path, job_id)["status"] == "running", 60, "job start"
        )
        first.kill()
        first.wait(timeout=10)
    finally:
        stop(first)
    killed = job_row(db_path, job_id)
    time.sleep(2.5)
    released = subprocess.run(
        [*script, "release"],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    second = start_worker(env, tmp_path / "second.log")
    try:
        wait_for(
            lambda: job_row(db_path, job_id)["status"] in ("done", "failed"),
            120,
            "job end",
        )
    finally:
        stop(second)
    done = job_row(db_path, job_id)

    assert killed["status"] == "running"
    assert released.stdout.split() == [str(job_id)]
    assert done["status"] == "done", done["error"]
    assert done["attempts"] == 2
    with sqlite3.connect(db_path) as db:
        entries = db.execute(
            "SELECT COUNT(*), COUNT(DISTINCT account_no) FROM roster_entry "
            "WHERE job_id = ?",
            (job_id,),
        ).fetchone()
        links = db.execute("SELECT COUNT(*) FROM account_link").fetchone()
    assert entries == (len(body) - 1, len(body) - 1)
    assert links[0] == len(body) - 1
    assert not list((tmp_path / "rosters").glob("*.sealed"))

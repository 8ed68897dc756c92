"""Health, readiness and metrics, in the test stack and under gunicorn."""

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from peers.launch import free_port
from tests.hub.flows import assert_error

ROOT = Path(__file__).resolve().parents[2]


def test_health_answers(stack):
    response = requests.get(stack.hub_url + "/health", timeout=5)

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_ready_checks_database_and_migrations(stack):
    in_redis = {}
    if os.environ.get("LIANBAN_TEST_REDIS_URL"):
        in_redis = {"queue": "ok", "rate_limits": "ok"}

    response = requests.get(stack.hub_url + "/ready", timeout=5)

    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "migrations": "ok", **in_redis},
    }


@pytest.mark.parametrize(
    ("setting", "check"),
    [("QUEUE_URL", "queue"), ("RATELIMIT_STORAGE_URI", "rate_limits")],
)
def test_ready_fails_without_redis(stack, monkeypatch, setting, check):
    monkeypatch.setitem(stack.app.config, setting, f"redis://127.0.0.1:{free_port()}/0")

    started = time.monotonic()
    response = requests.get(stack.hub_url + "/ready", timeout=10)
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "not ready"
    assert body["checks"][check] == "unreachable"
    assert body["checks"]["database"] == "ok"
    assert elapsed < 3


def test_ready_times_out_on_silent_redis(stack, monkeypatch):
    # A socket that accepts connections but never replies, like a hung Redis.
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    port = silent.getsockname()[1]
    monkeypatch.setitem(stack.app.config, "QUEUE_URL", f"redis://127.0.0.1:{port}/0")
    monkeypatch.setitem(stack.app.config, "READY_TIMEOUT_SECONDS", 0.5)

    try:
        started = time.monotonic()
        response = requests.get(stack.hub_url + "/ready", timeout=10)
        elapsed = time.monotonic() - started
    finally:
        silent.close()

    assert response.status_code == 503
    assert response.json()["checks"]["queue"] == "unreachable"
    assert 0.4 < elapsed < 3


def test_metrics_count_requests_by_route(stack, client, homes):
    client.login(homes.person())
    for case_id in (101, 102, 103):
        client.call("GET", f"/cases/{case_id}", expect=(404,))

    text = requests.get(stack.hub_url + "/metrics", timeout=5).text

    line = re.search(
        r'lianban_http_requests_total\{method="GET",route="/api/v1/cases/<int:case_id>",'
        r'status="404"\} (\d+)',
        text,
    )
    assert line is not None
    assert float(line.group(1)) >= 3
    assert "/api/v1/cases/101" not in text
    assert "lianban_http_request_duration_seconds_bucket" in text


def test_metrics_token_is_checked(stack, client, monkeypatch):
    monkeypatch.setitem(stack.app.config, "METRICS_TOKEN", "scrape-secret-1")

    missing = requests.get(stack.hub_url + "/metrics", timeout=5)
    wrong = requests.get(
        stack.hub_url + "/metrics",
        headers={"Authorization": "Bearer nope"},
        timeout=5,
    )
    right = requests.get(
        stack.hub_url + "/metrics",
        headers={"Authorization": "Bearer scrape-secret-1"},
        timeout=5,
    )

    assert_error(missing, 401, "metrics_token_invalid")
    assert_error(wrong, 401, "metrics_token_invalid")
    assert right.status_code == 200


@pytest.fixture(scope="module")
def gunicorn(tmp_path_factory):
    """Run the production server with two workers on a migrated SQLite file."""
    tmp_path = tmp_path_factory.mktemp("gunicorn")
    env = {
        **os.environ,
        "LIANBAN_VAR_DIR": str(tmp_path),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'served.db'}",
        "LIANBAN_WORKERS": "2",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    (tmp_path / "metrics").mkdir()
    bin_dir = Path(sys.executable).parent
    subprocess.run(
        [bin_dir / "lianban", "db", "upgrade"],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    port = free_port()
    env["LIANBAN_BIND"] = f"127.0.0.1:{port}"
    log_path = tmp_path / "gunicorn.log"
    with open(log_path, "wb") as log_file:
        server = subprocess.Popen(
            [bin_dir / "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            env=env,
            cwd=ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            requests.get(url + "/health", timeout=5)
            break
        except requests.RequestException:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise AssertionError(log_path.read_text()[-2000:]) from None
            time.sleep(0.2)
    server.log_path = log_path
    yield url, server
    if server.poll() is None:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_gunicorn_serves_and_merges_metrics(gunicorn):
    url, server = gunicorn

    ready = requests.get(url + "/ready", timeout=5)
    answers = [
        requests.get(url + "/api/v1/agreements/unknown-utility", timeout=5)
        for _ in range(20)
    ]
    text = requests.get(url + "/metrics", timeout=5).text

    assert ready.status_code == 200
    [status] = {a.status_code for a in answers}
    counted = re.search(
        r'lianban_http_requests_total\{method="GET",'
        rf'route="/api/v1/agreements/<string:service_org>",status="{status}"\}} (\d+)',
        text,
    )
    assert counted is not None
    assert float(counted.group(1)) == 20


def test_gunicorn_access_log_leaves_out_query_strings(gunicorn):
    url, server = gunicorn
    number = "370102199001011237"

    requests.get(url + f"/api/v1/lookup/cases?id_number={number}", timeout=5)
    # gunicorn writes the access line just after the answer, so wait for it.
    deadline = time.monotonic() + 5
    output = server.log_path.read_text()
    while "/api/v1/lookup/cases" not in output and time.monotonic() < deadline:
        time.sleep(0.1)
        output = server.log_path.read_text()

    assert "/api/v1/lookup/cases" in output
    assert number not in output

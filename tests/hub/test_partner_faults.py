"""Utilities that are down, silent or slow: pushes time out and are retried."""

import socket
import threading
import time

import pytest

from demo import scenarios
from models import OutboxMessage, Utility
from tests.hub.flows import drive_to_submission


@pytest.fixture
def silent_server():
    """A server that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held = []
    stopping = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stopping.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            held.append(connection)

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stopping.set()
    thread.join(timeout=2)
    for connection in held:
        connection.close()
    listener.close()


def push_message(transfer_id):
    return OutboxMessage.get(
        (OutboxMessage.kind == "push_transfer") & (OutboxMessage.ref_id == transfer_id)
    )


def test_silent_utility_times_out_and_is_retried(
    stack, client, homes, app, silent_server, monkeypatch
):
    monkeypatch.setitem(stack.app.config, "PARTNER_READ_TIMEOUT", 1.0)
    monkeypatch.setitem(stack.app.config, "OUTBOX_MAX_BACKOFF_SECONDS", 2)
    home = homes.make(accounts=[("heat", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    heat = Utility.get(Utility.code == "heat")
    real_url = heat.base_url
    Utility.update(base_url=silent_server).where(Utility.id == heat.id).execute()
    try:
        started = time.monotonic()
        client.put_business(
            home.business_no, scenarios.business_payload(home, "completed")
        )
        transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0][
            "transfer_id"
        ]
        deadline = time.monotonic() + 15
        while push_message(transfer_id).attempts == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        failed = push_message(transfer_id)
        elapsed = time.monotonic() - started
    finally:
        Utility.update(base_url=real_url).where(Utility.id == heat.id).execute()

    assert failed.attempts >= 1
    assert failed.state == "pending"
    assert (
        "timed out" in failed.last_error.lower()
        or "timeout" in failed.last_error.lower()
    )
    assert elapsed < 10
    final = client.wait_until_final(case_id, seconds=30)
    assert final["transfers"][0]["status"] == "completed"
    assert push_message(transfer_id).state == "done"


def test_utility_down_is_retried_until_it_returns(
    stack, client, homes, app, monkeypatch
):
    monkeypatch.setitem(stack.app.config, "OUTBOX_MAX_BACKOFF_SECONDS", 2)
    home = homes.make(accounts=[("heat", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    heat = Utility.get(Utility.code == "heat")
    real_url = heat.base_url
    # Nothing listens on port 9 of the loopback address, so connections fail.
    Utility.update(base_url="http://127.0.0.1:9").where(Utility.id == heat.id).execute()
    try:
        client.put_business(
            home.business_no, scenarios.business_payload(home, "completed")
        )
        transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0][
            "transfer_id"
        ]
        deadline = time.monotonic() + 15
        while push_message(transfer_id).attempts < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        retried = push_message(transfer_id)
    finally:
        Utility.update(base_url=real_url).where(Utility.id == heat.id).execute()

    assert retried.attempts >= 2
    assert retried.state == "pending"
    final = client.wait_until_final(case_id, seconds=30)
    assert final["transfers"][0]["status"] == "completed"

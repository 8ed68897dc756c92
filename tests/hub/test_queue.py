"""The queue sends each outbox message once, and the sweep finds lost ones."""

import time
from datetime import timedelta

from demo import scenarios
from models import Business, Case, OutboxMessage
from models.base import utcnow
from models.db import transaction
from services import delivery, queue
from tests.hub.flows import drive_to_submission


def wait_for(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def registered_without_task(client, homes):
    """Submit a case and write its push as the registry would, but queue nothing.

    This is the state a crash leaves between the commit and the queueing.
    """
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    with transaction():
        Business.update(registration_status="completed").where(
            Business.business_no == home.business_no
        ).execute()
        delivery.queue_case_pushes(Case.get_by_id(case_id))
    return OutboxMessage.get(
        (OutboxMessage.kind == delivery.PUSH)
        & (OutboxMessage.ref_id == Case.get_by_id(case_id).transfers[0].id)
    )


def state_of(message):
    return OutboxMessage.get_by_id(message.id).state


def test_lost_task_is_sent_by_the_sweep(client, homes):
    message = registered_without_task(client, homes)
    time.sleep(1.5)
    assert state_of(message) == "pending"

    queue.sweep.call_local()

    assert wait_for(lambda: state_of(message) == "done")


def test_several_tasks_send_a_message_once(client, homes):
    message = registered_without_task(client, homes)

    for _ in range(5):
        queue.deliver_message(message.id)

    assert wait_for(lambda: state_of(message) == "done")
    time.sleep(0.5)
    assert OutboxMessage.get_by_id(message.id).attempts == 1


def test_registry_completion_queues_the_push(client, homes):
    home = homes.make(accounts=[("gas", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})

    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))

    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["status"] == "completed"


def test_task_run_early_looks_again_when_due(client, homes):
    message = registered_without_task(client, homes)
    OutboxMessage.update(next_attempt_at=utcnow() + timedelta(seconds=2)).where(
        OutboxMessage.id == message.id
    ).execute()

    queue.deliver_message(message.id)

    time.sleep(1)
    assert state_of(message) == "pending"
    assert wait_for(lambda: state_of(message) == "done")

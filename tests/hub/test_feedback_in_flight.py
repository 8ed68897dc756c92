"""Feedback that arrives before the hub has recorded that its push was delivered.

A worker claims a push, sends it and then records the utility's response. The
utility may report in between, or the worker may die before recording
anything. The report proves that the utility has the push, so it is applied,
and whatever the worker records afterwards neither undoes it nor sends the
push again.
"""

import threading
import uuid

import pytest

from models import Case, OutboxMessage, Transfer, Utility
from models.base import utcnow
from models.db import database
from partners.http import PartnerError
from services import delivery, queue
from tests.hub.flows import assert_error
from tests.hub.pushes import (
    REPORTS,
    arrivals,
    claim_now,
    events,
    fresh,
    registered_pushes,
    report,
    sim_transfer,
    simulator_delays,
    wait_for,
)


@pytest.mark.parametrize(("status", "expected", "reason"), REPORTS)
def test_report_on_claimed_push_applies(stack, client, homes, status, expected, reason):
    (message,) = registered_pushes(client, homes)
    claim_now(message)

    answer = report(stack, message, status, reason)

    assert answer.status_code == 200, answer.text
    assert answer.json()["applied"] is True
    transfer = Transfer.get_by_id(message.ref_id)
    assert transfer.status == expected
    assert transfer.return_reason == reason
    assert fresh(message).state == "done"
    assert events(transfer.id)[-2:] == [("pushed", "system"), (expected, "utility")]


def test_late_push_response_keeps_report(stack, client, homes):
    (message,) = registered_pushes(client, homes)
    claimed = claim_now(message)
    assert report(stack, message, "办理中").status_code == 200

    delivery.record_push_response(claimed, {"utility_ref": "WATER-LATE"})

    transfer = Transfer.get_by_id(message.ref_id)
    assert transfer.status == "in_progress"
    assert [e for e in events(transfer.id) if e[0] == "pushed"] == [
        ("pushed", "system")
    ]
    assert fresh(message).state == "done"
    assert fresh(message).attempts == 0


@pytest.mark.parametrize("retryable", [True, False], ids=["timeout", "rejected"])
def test_late_failure_keeps_report(stack, client, homes, retryable):
    (message,) = registered_pushes(client, homes)
    claimed = claim_now(message)
    assert report(stack, message, "办理中").status_code == 200
    done_at = fresh(message).next_attempt_at

    delivery._record_failure(
        claimed, PartnerError("water", "HTTP 400", status=400, retryable=retryable)
    )

    after = fresh(message)
    assert after.state == "done"
    assert after.last_error is None
    assert after.next_attempt_at == done_at
    transfer = Transfer.get_by_id(message.ref_id)
    assert transfer.status == "in_progress"
    assert "push_failed" not in [status for status, _ in events(transfer.id)]


def test_report_after_timed_out_attempt_applies(stack, client, homes):
    (message,) = registered_pushes(client, homes)
    claimed = claim_now(message)
    delivery._record_failure(claimed, PartnerError("water", "ReadTimeout"))
    assert fresh(message).state == "pending"
    assert fresh(message).attempts == 1

    answer = report(stack, message, "办结")

    assert answer.status_code == 200, answer.text
    assert Transfer.get_by_id(message.ref_id).status == "completed"
    assert fresh(message).state == "done"


def test_report_after_recorded_rejection_applies(stack, client, homes):
    (message,) = registered_pushes(client, homes)
    claimed = claim_now(message)
    delivery._record_failure(
        claimed, PartnerError("water", "HTTP 400", status=400, retryable=False)
    )
    assert Transfer.get_by_id(message.ref_id).status == "push_failed"

    answer = report(stack, message, "办理中")

    assert answer.status_code == 200, answer.text
    assert Transfer.get_by_id(message.ref_id).status == "in_progress"
    assert fresh(message).state == "done"


def test_report_on_unsent_push_is_rejected(stack, client, homes):
    (message,) = registered_pushes(client, homes)

    answer = report(stack, message, "办理中")

    assert_error(answer, 409, "transfer_not_pushed")
    assert Transfer.get_by_id(message.ref_id).status == "queued"
    assert fresh(message).state == "pending"
    assert fresh(message).claimed_at is None


def test_report_by_other_utility_is_not_found(stack, client, homes):
    (message,) = registered_pushes(client, homes)
    claim_now(message)

    answer = report(stack, message, "办理中", partner="gas")

    assert_error(answer, 404, "transfer_not_found")
    assert Transfer.get_by_id(message.ref_id).status == "queued"
    assert fresh(message).state == "pending"


def test_reported_push_is_not_sent_again(stack, client, homes):
    (message,) = registered_pushes(client, homes)
    claim_now(message)
    assert report(stack, message, "办理中").status_code == 200

    queue.deliver_message(message.id)
    queue.send_due()

    assert not wait_for(lambda: arrivals(stack, message.ref_id), seconds=2)
    assert fresh(message).state == "done"


@pytest.mark.parametrize("round_no", range(6))
def test_report_racing_push_response(stack, client, homes, round_no):
    (message,) = registered_pushes(client, homes)
    claimed = claim_now(message)
    start = threading.Barrier(2)
    answers = []

    def send_report():
        start.wait()
        answers.append(report(stack, message, "办理中"))

    def record_response():
        with stack.app.app_context():
            database.connect(reuse_if_open=True)
            try:
                start.wait()
                delivery.record_push_response(claimed, {"utility_ref": "WATER-RACE"})
            finally:
                database.close()

    threads = [
        threading.Thread(target=send_report),
        threading.Thread(target=record_response),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert [a.status_code for a in answers] == [200]
    transfer = Transfer.get_by_id(message.ref_id)
    assert transfer.status == "in_progress"
    statuses = [status for status, _ in events(transfer.id)]
    assert statuses.count("pushed") == 1
    assert statuses[-1] == "in_progress"
    assert fresh(message).state == "done"


@pytest.mark.parametrize("round_no", range(5))
def test_reports_on_one_case_together(stack, client, homes, round_no):
    """Reports on two claimed pushes of one case, at once, both apply."""
    messages = registered_pushes(client, homes, ("water", "gas"))
    for message in messages:
        claim_now(message)
    start = threading.Barrier(len(messages))
    answers = []

    def send_report(message):
        start.wait()
        answers.append(report(stack, message, "办结"))

    threads = [threading.Thread(target=send_report, args=(m,)) for m in messages]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert sorted(a.status_code for a in answers) == [200, 200], [
        a.text[:200] for a in answers
    ]
    assert [Transfer.get_by_id(m.ref_id).status for m in messages] == [
        "completed",
        "completed",
    ]
    case_id = Transfer.get_by_id(messages[0].ref_id).case_id
    assert Case.get_by_id(case_id).status == "closed"


def due_now(message):
    OutboxMessage.update(next_attempt_at=utcnow()).where(
        OutboxMessage.id == message.id
    ).execute()


def test_slow_push_answers_still_finish(stack, client, homes):
    """The simulator reports on each transfer before it responds to the push."""
    utilities = ("water", "power", "gas", "heat")
    messages = registered_pushes(client, homes, utilities)

    with simulator_delays(stack, push_delay=0.8, feedback_delay=0.1):
        for message in messages:
            due_now(message)
            queue.deliver_message(message.id)
        finished = wait_for(
            lambda: all(
                Transfer.get_by_id(m.ref_id).status == "completed" for m in messages
            ),
            seconds=30,
        )

    assert finished, [Transfer.get_by_id(m.ref_id).status for m in messages]
    for message in messages:
        assert fresh(message).state == "done"
        assert [a["new"] for a in arrivals(stack, message.ref_id)] == [True]
        (record,) = sim_transfer(stack, message.ref_id)
        assert [
            (f["status"], f["delivery"], f["attempts"]) for f in record["feedback"]
        ] == [
            ("办理中", "delivered", 1),
            ("办结", "delivered", 1),
        ]
        statuses = [status for status, _ in events(message.ref_id)]
        assert statuses.count("pushed") == 1
        assert statuses[-3:] == ["pushed", "in_progress", "completed"]


def first_report_attempts(stack, transfer_id):
    records = sim_transfer(stack, transfer_id)
    if not records or not records[0]["feedback"]:
        return 0
    return records[0]["feedback"][0]["attempts"]


def test_simulator_retries_conflict(stack, client, homes):
    """A report the hub refuses with 409 is sent again until the hub takes it."""
    (message,) = registered_pushes(client, homes)
    transfer = Transfer.get_by_id(message.ref_id)
    # The utility gets the push by another way than this hub's worker, so the
    # hub has not even claimed it when the first report comes.
    with simulator_delays(stack, feedback_delay=0.1):
        delivery.utility_client(Utility.get(Utility.code == "water")).push_transfer(
            message.payload, message_id=uuid.uuid4().hex
        )
        refused = wait_for(lambda: first_report_attempts(stack, transfer.id) >= 2)
        claim_now(message)
        finished = wait_for(
            lambda: Transfer.get_by_id(transfer.id).status == "completed", seconds=20
        )

    assert refused
    assert finished, Transfer.get_by_id(transfer.id).status
    (record,) = sim_transfer(stack, transfer.id)
    progress, outcome = record["feedback"]
    assert progress["delivery"] == "delivered"
    assert progress["attempts"] >= 2
    assert outcome["delivery"] == "delivered"
    assert fresh(message).state == "done"

"""Batch feedback: a utility reports on several transfers, all or none."""

import json
import threading

import pytest
import requests

from models import Case, OutboxMessage, Transfer
from partners.signing import sign_request
from services import delivery
from tests.hub.flows import assert_error, signed_call
from tests.hub.pushes import claim_now, events, registered_pushes

PATH = "/partner/feedback/batch"


def pushed(client, homes, utilities=("water",)):
    """Return transfers pushed to `utilities` and accepted, one per utility."""
    messages = registered_pushes(client, homes, utilities)
    for message in messages:
        delivery.record_push_response(claim_now(message), {"utility_ref": "REF-1"})
    return [Transfer.get_by_id(m.ref_id) for m in messages]


def water_transfers(client, homes, count):
    """Return `count` pushed water transfers, each of its own case."""
    return [pushed(client, homes)[0] for _ in range(count)]


def item(transfer, status, return_reason=None, **extra):
    body = {
        "transfer_id": str(transfer.id),
        "account_no": transfer.account_no,
        "status": status,
        **extra,
    }
    if return_reason is not None:
        body["return_reason"] = return_reason
    return body


def send(stack, items, partner="water"):
    return signed_call(stack, partner, "POST", PATH, {"items": items})


def snapshot(transfers):
    """Return what a batch may change: statuses, timelines, cases and outbox size."""
    return {
        "statuses": [Transfer.get_by_id(t.id).status for t in transfers],
        "reasons": [Transfer.get_by_id(t.id).return_reason for t in transfers],
        "timelines": [events(t.id) for t in transfers],
        "cases": [Case.get_by_id(t.case_id).status for t in transfers],
        "outbox": OutboxMessage.select().count(),
    }


def test_valid_batch_records_all(stack, client, homes):
    first, second, third = water_transfers(client, homes, 3)
    items = [
        item(first, "办理中"),
        item(second, "办结"),
        item(first, "办结"),
        item(third, "退件", "原户主银行代扣未解除"),
    ]

    answer = send(stack, items)

    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["changed"] == 4
    assert [i["applied"] for i in body["items"]] == [True, True, True, True]
    assert [i["transfer_id"] for i in body["items"]] == [
        str(t.id) for t in (first, second, first, third)
    ]
    assert [i["status"] for i in body["items"]] == [
        "in_progress",
        "completed",
        "completed",
        "returned",
    ]
    assert Transfer.get_by_id(first.id).status == "completed"
    assert events(first.id)[-2:] == [
        ("in_progress", "utility"),
        ("completed", "utility"),
    ]
    assert Transfer.get_by_id(third.id).return_reason == "原户主银行代扣未解除"
    for transfer in (first, second, third):
        assert Case.get_by_id(transfer.case_id).status == "closed"


# The second item of each batch, what makes it invalid, and the status and
# code the single form gives for it.
INVALID_SECOND_ITEMS = {
    "unknown_status": (
        lambda t, other: item(t, "完成"),
        422,
        "validation_failed",
    ),
    "missing_account": (
        lambda t, other: {"transfer_id": str(t.id), "status": "办结"},
        422,
        "validation_failed",
    ),
    "not_an_object": (lambda t, other: "办结", 422, "validation_failed"),
    "unknown_transfer": (
        lambda t, other: {**item(t, "办结"), "transfer_id": "2000000000"},
        404,
        "transfer_not_found",
    ),
    "wrong_account": (
        lambda t, other: {**item(t, "办结"), "account_no": "NO-SUCH"},
        404,
        "transfer_not_found",
    ),
    "other_utility": (lambda t, other: item(other, "办结"), 404, "transfer_not_found"),
    "return_without_reason": (
        lambda t, other: item(t, "退件"),
        422,
        "return_reason_missing",
    ),
    "backwards": (lambda t, other: item(t, "已受理"), 409, "feedback_out_of_order"),
}


@pytest.mark.parametrize("kind", list(INVALID_SECOND_ITEMS))
def test_invalid_second_item_records_nothing(stack, client, homes, kind):
    make_second, status, code = INVALID_SECOND_ITEMS[kind]
    water, gas = pushed(client, homes, ("water", "gas"))
    first, third = water_transfers(client, homes, 2)
    # The second item's transfer is in progress, so that going back to
    # 已受理 is out of order; the first item finishes another transfer.
    assert signed_call(
        stack, "water", "POST", "/partner/feedback", item(water, "办理中")
    ).json()["applied"]
    before = snapshot([first, water, third, gas])

    answer = send(
        stack,
        [item(first, "办结"), make_second(water, gas), item(third, "办理中")],
    )

    body = assert_error(answer, 422, "batch_rejected")
    failing = body["errors"]["items"]
    assert [(f["index"], f["status"], f["code"]) for f in failing] == [
        (1, status, code)
    ]
    assert failing[0]["message"]
    assert snapshot([first, water, third, gas]) == before


def test_every_failing_item_is_named(stack, client, homes):
    first, second = water_transfers(client, homes, 2)
    before = snapshot([first, second])

    answer = send(
        stack,
        [
            item(first, "办理中"),
            item(second, "完成"),
            item(first, "办结"),
            {**item(second, "办结"), "transfer_id": "abc"},
            item(first, "办理中"),
        ],
    )

    body = assert_error(answer, 422, "batch_rejected")
    failing = body["errors"]["items"]
    assert [(f["index"], f["code"]) for f in failing] == [
        (1, "validation_failed"),
        (3, "transfer_not_found"),
        (4, "transfer_final"),
    ]
    assert "status" in failing[0]["errors"]
    assert snapshot([first, second]) == before


def test_repeated_batch_changes_nothing(stack, client, homes):
    first, second, third = water_transfers(client, homes, 3)
    items = [item(first, "办理中"), item(second, "退件", "账户仍有欠费未结清")]
    assert send(stack, items).json()["changed"] == 2
    after_first = snapshot([first, second, third])

    repeat = send(stack, items)

    assert repeat.status_code == 200, repeat.text
    assert repeat.json()["changed"] == 0
    assert [i["applied"] for i in repeat.json()["items"]] == [False, False]
    assert snapshot([first, second, third]) == after_first

    mixed = send(stack, [*items, item(third, "办理中"), item(first, "办结")])

    assert mixed.status_code == 200, mixed.text
    assert [i["applied"] for i in mixed.json()["items"]] == [False, False, True, True]
    assert Transfer.get_by_id(third.id).status == "in_progress"
    assert Transfer.get_by_id(first.id).status == "completed"
    assert Transfer.get_by_id(second.id).status == "returned"


def test_batch_mixing_two_utilities(stack, client, homes):
    water, gas = pushed(client, homes, ("water", "gas"))
    before = snapshot([water, gas])

    for partner, foreign_index in (("water", 1), ("gas", 0)):
        answer = send(
            stack, [item(water, "办理中"), item(gas, "办理中")], partner=partner
        )
        body = assert_error(answer, 422, "batch_rejected")
        assert [(f["index"], f["code"]) for f in body["errors"]["items"]] == [
            (foreign_index, "transfer_not_found")
        ]
    assert snapshot([water, gas]) == before


def test_signature_covers_batch_body(stack, client, homes):
    first, second = water_transfers(client, homes, 2)
    before = snapshot([first, second])
    signed_body = json.dumps({"items": [item(first, "办理中")]}).encode()
    sent_body = json.dumps(
        {"items": [item(first, "办理中"), item(second, "办结")]}
    ).encode()
    path = "/api/v1" + PATH
    headers = sign_request(
        "water",
        stack.peers.keys.utility_secret("water"),
        "POST",
        path,
        signed_body,
    )
    headers["Content-Type"] = "application/json"

    answer = requests.post(
        stack.hub_url + path, data=sent_body, headers=headers, timeout=10
    )

    assert_error(answer, 401, "signature_invalid")
    assert snapshot([first, second]) == before


def test_batch_size_limit(stack, client, homes):
    (transfer,) = water_transfers(client, homes, 1)

    too_many = send(stack, [item(transfer, "办理中")] * 501)
    empty = send(stack, [])
    largest = send(stack, [item(transfer, "办理中")] * 500)

    body = assert_error(too_many, 422, "validation_failed")
    assert "500" in json.dumps(body["errors"]["json"]["items"])
    assert "501" in json.dumps(body["errors"]["json"]["items"])
    assert_error(empty, 422, "validation_failed")
    assert largest.status_code == 200, largest.text[:300]
    assert largest.json()["changed"] == 1
    assert len(largest.json()["items"]) == 500
    assert events(transfer.id).count(("in_progress", "utility")) == 1


@pytest.mark.parametrize("round_no", range(3))
def test_crossing_batches_both_finish(stack, client, homes, round_no):
    """Two batches naming the same transfers in opposite orders do not deadlock."""
    transfers = water_transfers(client, homes, 3)
    forward = [item(t, "办理中") for t in transfers]
    start = threading.Barrier(2)
    answers = []

    def post(items):
        start.wait()
        answers.append(send(stack, items))

    threads = [
        threading.Thread(target=post, args=(forward,)),
        threading.Thread(target=post, args=(forward[::-1],)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(a.status_code for a in answers) == [200, 200]
    assert sorted(a.json()["changed"] for a in answers) == [0, 3]
    for transfer in transfers:
        assert events(transfer.id).count(("in_progress", "utility")) == 1

"""Pushes and feedback for the hub tests: transfers with pushes written but not
sent, claims as a worker makes them, signed reports and the simulator's view.
"""

import contextlib
import time
from datetime import timedelta

import requests

from models import Business, Case, OutboxMessage, Transfer, TransferEvent
from models.base import utcnow
from models.db import transaction
from services import delivery
from tests.hub.flows import drive_to_submission, signed_call

# Outcome statuses as a utility reports them, the transfer status each sets,
# and the return reason a 退件 needs.
REPORTS = (
    ("已受理", "accepted", None),
    ("办理中", "in_progress", None),
    ("办结", "completed", None),
    ("退件", "returned", "账户仍有欠费未结清"),
)


def registered_pushes(client, homes, utilities=("water",)):
    """Submit a case and write its pushes as registration does, sending none.

    The messages are due only in an hour, so that neither the sweep nor a
    worker sends them unless the test claims them. Returns the messages in
    the order of `utilities`.
    """
    home = homes.make(accounts=[(code, {}) for code in utilities])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    with transaction():
        Business.update(registration_status="completed").where(
            Business.business_no == home.business_no
        ).execute()
        delivery.queue_case_pushes(Case.get_by_id(case_id))
    transfer_ids = [t.id for t in Transfer.select().where(Transfer.case == case_id)]
    query = OutboxMessage.select().where(
        (OutboxMessage.kind == delivery.PUSH) & OutboxMessage.ref_id.in_(transfer_ids)
    )
    OutboxMessage.update(next_attempt_at=utcnow() + timedelta(hours=1)).where(
        OutboxMessage.id.in_([m.id for m in query])
    ).execute()
    by_utility = {m.utility_code: m for m in query}
    return [by_utility[code] for code in utilities]


def claim_now(message):
    """Claim a message as a worker does just before sending it; return it."""
    OutboxMessage.update(next_attempt_at=utcnow()).where(
        OutboxMessage.id == message.id
    ).execute()
    claimed = delivery.claim(message.id)
    assert claimed is not None, f"message {message.id} could not be claimed"
    return claimed


def report(stack, message, status, return_reason=None, partner=None):
    """Send a signed report on the message's transfer, as its utility."""
    transfer = Transfer.get_by_id(message.ref_id)
    body = {
        "transfer_id": str(transfer.id),
        "account_no": transfer.account_no,
        "status": status,
    }
    if return_reason is not None:
        body["return_reason"] = return_reason
    return signed_call(
        stack, partner or message.utility_code, "POST", "/partner/feedback", body
    )


def events(transfer_id):
    """Return the timeline of a transfer as (status, actor) pairs, oldest first."""
    query = (
        TransferEvent.select()
        .where(TransferEvent.transfer == transfer_id)
        .order_by(TransferEvent.id)
    )
    return [(event.status, event.actor) for event in query]


def fresh(message):
    return OutboxMessage.get_by_id(message.id)


def wait_for(condition, seconds=10.0, step=0.1):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return False


def arrivals(stack, transfer_id=None):
    """Return what the utility simulator received, by push or export."""
    params = {"transfer_id": str(transfer_id)} if transfer_id is not None else {}
    response = requests.get(
        stack.peers.utility_sim_url + "/_sim/pushes", params=params, timeout=10
    )
    response.raise_for_status()
    return response.json()["pushes"]


def sim_transfer(stack, transfer_id):
    response = requests.get(
        stack.peers.utility_sim_url + "/_sim/transfers",
        params={"transfer_id": str(transfer_id)},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()["transfers"]


@contextlib.contextmanager
def simulator_delays(stack, **seconds):
    """Change the simulator's delays for the block, then restore them."""
    url = stack.peers.utility_sim_url + "/_sim/settings"
    before = requests.get(url, timeout=10).json()
    requests.put(url, json=seconds, timeout=10).raise_for_status()
    try:
        yield
    finally:
        requests.put(url, json=before, timeout=10).raise_for_status()

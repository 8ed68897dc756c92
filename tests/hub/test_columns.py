"""Every state name the services write fits the column that stores it.

SQLite ignores VARCHAR lengths and PostgreSQL enforces them, so a name that is
too long passes on one backend and fails on the other.
"""

import pytest

from models import (
    Business,
    Case,
    OutboxMessage,
    Payment,
    Refund,
    Transfer,
    TransferEvent,
)
from services import delivery, feedback, registry, timeline

EVENT_NAMES = set(timeline.STATUSES) | set(timeline.NOTES)
CASE_STATES = {"open", "submitted", "in_progress", "closed", "withdrawn"}
OUTBOX_STATES = {"pending", "done", "failed", "awaiting_collection", "cancelled"}
PAYMENT_STATES = {
    "creating",
    "pending",
    "paid",
    "closed",
    "failed",
    "paid_late",
    "paid_twice",
}
REFUND_STATES = {"pending", "processing", "succeeded", "failed"}


@pytest.mark.parametrize(
    ("field", "values"),
    [
        (TransferEvent.status, EVENT_NAMES),
        (Transfer.status, set(timeline.STATUSES)),
        (Transfer.status, set(feedback.FEEDBACK_STATUSES.values())),
        (Case.status, CASE_STATES),
        (OutboxMessage.state, OUTBOX_STATES),
        (Payment.status, PAYMENT_STATES),
        (Refund.status, REFUND_STATES),
        (OutboxMessage.kind, set(delivery.handlers())),
        (Business.registration_status, set(registry.REGISTRATION_STATUSES)),
        (Business.business_type, set(registry.BUSINESS_TYPES)),
    ],
    ids=lambda item: getattr(item, "name", None),
)
def test_state_names_fit_column(field, values):
    too_long = {value for value in values if len(value) > field.max_length}
    assert too_long == set()

"""Messages to partners, written in the same transaction as the change."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import SealedJSONField


class OutboxMessage(BaseModel):
    """A message to send to a partner, kept until the partner takes it."""

    kind = peewee.CharField(max_length=32)
    ref_id = peewee.IntegerField()
    utility_code = peewee.CharField(max_length=32)
    payload = SealedJSONField()
    state = peewee.CharField(max_length=32, default="pending")
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(default=utcnow, index=True)
    # Set by each claim. A message claimed at least once may have reached the
    # partner even if no response was recorded, because the sender can die first.
    claimed_at = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    done_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("kind", "ref_id"), True),)


class PartnerMessage(BaseModel):
    """A signed partner message id already seen, to reject replays."""

    message_id = peewee.CharField(max_length=64, unique=True)
    partner = peewee.CharField(max_length=32)
    received_at = peewee.DateTimeField(default=utcnow, index=True)

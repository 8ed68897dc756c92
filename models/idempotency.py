"""Answers kept under the Idempotency-Key a client sent with a write."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import SealedField


class IdempotencyRecord(BaseModel):
    """One client's key, the request it came with, and the answer given."""

    # The caller the key belongs to, such as citizen:12 or staff:3, so that two
    # clients choosing the same key never see each other's answers.
    owner = peewee.CharField(max_length=48)
    key = peewee.CharField(max_length=128)
    method = peewee.CharField(max_length=8)
    path = peewee.CharField(max_length=255)
    # SHA-256 of the request body, to tell a repeat from a different request.
    body_digest = peewee.CharField(max_length=64)
    # in_flight until the first request finishes, then done.
    state = peewee.CharField(max_length=16, default="in_flight")
    status_code = peewee.IntegerField(null=True)
    content_type = peewee.CharField(max_length=100, null=True)
    # Sealed, because an answer may name the caller.
    response_body = SealedField(null=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    completed_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("owner", "key"), True),)

"""Signing keys of the partner systems, kept so that they can be rotated."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import SealedField


class PartnerKey(BaseModel):
    """A shared HMAC secret of one partner: `registry` or a utility's code.

    A partner may have several active keys while it moves to a new one: every
    active key verifies, and the oldest signs what the hub sends.
    """

    partner = peewee.CharField(max_length=32, index=True)
    secret = SealedField()
    created_at = peewee.DateTimeField(default=utcnow)
    retired_at = peewee.DateTimeField(null=True)

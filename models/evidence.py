"""The evidence log: a signed hash chain of what happened on each case."""

import peewee

from models.base import BaseModel, utcnow

# The hash that the first entry links back to.
GENESIS_HASH = "0" * 64


class EvidenceEntry(BaseModel):
    """One signed entry; `entry_hash` covers every other column but `signature`.

    Entries hold digests and masked values, never personal data in clear.
    """

    seq = peewee.IntegerField(unique=True)
    prev_hash = peewee.CharField(max_length=64)
    # The hash of the case's previous entry, so one case's entries form a
    # chain of their own that can be checked without the rest of the log.
    case_prev_hash = peewee.CharField(max_length=64)
    kind = peewee.CharField(max_length=32)
    case_id = peewee.IntegerField(null=True, index=True)
    transfer_id = peewee.IntegerField(null=True)
    occurred_at = peewee.CharField(max_length=32)
    payload_digest = peewee.CharField(max_length=64)
    detail = peewee.TextField()
    key_id = peewee.CharField(max_length=64)
    entry_hash = peewee.CharField(max_length=64, unique=True)
    signature = peewee.CharField(max_length=128)


class EvidenceHead(BaseModel):
    """The single row naming the last entry; writers lock it to append."""

    seq = peewee.IntegerField(default=0)
    entry_hash = peewee.CharField(max_length=64, default=GENESIS_HASH)
    updated_at = peewee.DateTimeField(default=utcnow)


class EvidenceKey(BaseModel):
    """A signing key's public half, kept so old entries verify after rotation."""

    key_id = peewee.CharField(max_length=64, unique=True)
    public_key = peewee.CharField(max_length=64)
    created_at = peewee.DateTimeField(default=utcnow)

"""The model base class and the clock the models use."""

from datetime import UTC, datetime

import peewee

from models.db import database

# Primary keys are 32-bit on PostgreSQL (SERIAL), and SQLite cannot bind an
# integer past 64 bits, so a larger number names no row on either backend.
MAX_ID = 2**31 - 1


def utcnow():
    """Return the current time as a naive UTC datetime, as every column stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


def is_storable_id(value):
    """Return whether `value` is in the range of primary keys, so a lookup is safe."""
    return 0 < value <= MAX_ID


def parse_id(text):
    """Return the primary key that `text` spells in ASCII digits, or None."""
    if not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if is_storable_id(value) else None


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

"""The model base class and the clock the models use."""

from datetime import UTC, datetime

import peewee

from models.db import database


def utcnow():
    """Return the current time as a naive UTC datetime, as every column stores it."""
    return datetime.now(UTC).replace(tzinfo=None)


class BaseModel(peewee.Model):
    class Meta:
        database = database
        legacy_table_names = False

"""Alerts raised for transfers that passed their utility's service time."""

import peewee

from models.base import BaseModel, utcnow
from models.cases import Transfer
from models.utilities import Utility


class OverdueAlert(BaseModel):
    """An alert to a utility that one of its transfers passed its due time."""

    transfer = peewee.ForeignKeyField(
        Transfer, backref="overdue_alerts", unique=True, on_delete="CASCADE"
    )
    utility = peewee.ForeignKeyField(Utility, backref="overdue_alerts")
    due_at = peewee.DateTimeField()
    raised_at = peewee.DateTimeField(default=utcnow, index=True)

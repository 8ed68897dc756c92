"""Utilities, their accounts, and the transfer agreements they publish."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import SealedField, SealedJSONField
from models.registry import Unit


class Utility(BaseModel):
    """A service organisation with customer accounts (water, power, gas, heat, TV)."""

    code = peewee.CharField(max_length=32, unique=True)
    service_org = peewee.CharField(max_length=100, unique=True)
    kind = peewee.CharField(max_length=16)
    base_url = peewee.CharField(max_length=255, null=True)
    # "system" receives pushes over HTTP; "channel" collects an export.
    connection = peewee.CharField(max_length=16, default="system")
    # Working days the utility has to finish a transfer; empty for the default.
    service_days = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)


class AccountLink(BaseModel):
    """A utility account and the unit it belongs to, where that is known."""

    utility = peewee.ForeignKeyField(Utility, backref="accounts")
    account_no = peewee.CharField(max_length=64)
    unit = peewee.ForeignKeyField(Unit, backref="accounts", null=True)
    holder_name = SealedField(null=True)
    holder_id_numbers = SealedJSONField(null=True)
    account_address = peewee.TextField(null=True)
    source = peewee.CharField(max_length=16)
    match_result = peewee.CharField(max_length=16, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("utility", "account_no"), True),)


class Agreement(BaseModel):
    """One published version of a utility's transfer agreement."""

    utility = peewee.ForeignKeyField(Utility, backref="agreements")
    version = peewee.IntegerField()
    title = peewee.CharField(max_length=200)
    body = peewee.TextField()
    published_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("utility", "version"), True),)

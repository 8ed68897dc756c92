"""Accounts that the online checks could not place, waiting for their utility."""

import peewee

from models.base import BaseModel, utcnow
from models.cases import Case, Transfer
from models.fields import JSONField, SealedField, SealedJSONField
from models.registry import Business, Unit
from models.staff import Staff
from models.utilities import Utility


class ReconciliationItem(BaseModel):
    """One account for a utility to check by hand and then link or reject.

    The migration adds a partial unique index, so that an account has at most
    one open item per case.
    """

    utility = peewee.ForeignKeyField(Utility, backref="reconciliation_items")
    account_no = peewee.CharField(max_length=64)
    # applicant: an applicant asked for the check while adding the account.
    source = peewee.CharField(max_length=16)
    case = peewee.ForeignKeyField(
        Case, backref="account_reviews", null=True, on_delete="CASCADE"
    )
    business = peewee.ForeignKeyField(Business, null=True)
    unit = peewee.ForeignKeyField(Unit, null=True)
    # The codes of the checks the account failed, such as account_holder_mismatch.
    reasons = JSONField()
    # The units the account might belong to, where a roster suggests several.
    candidates = JSONField(null=True)
    # The holder as the utility's system returned it, where it could be asked.
    holder_name = SealedField(null=True)
    holder_id_numbers = SealedJSONField(null=True)
    account_address = peewee.TextField(null=True)
    # open, linked or rejected
    status = peewee.CharField(max_length=16, default="open")
    decision_note = peewee.TextField(null=True)
    # Empty when the utility's system decided by a signed request.
    decided_by = peewee.ForeignKeyField(Staff, null=True)
    # staff or system
    decided_via = peewee.CharField(max_length=16, null=True)
    # The transfer that linking added, or found, in the case.
    transfer = peewee.ForeignKeyField(Transfer, null=True)
    created_at = peewee.DateTimeField(default=utcnow, index=True)
    decided_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("utility", "status"), False),)

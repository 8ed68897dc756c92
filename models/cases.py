"""Citizens, their joint-handling cases, and one transfer per account."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import JSONField, SealedField
from models.registry import Business
from models.utilities import AccountLink, Agreement, Utility


class Citizen(BaseModel):
    """A mini-program user with the real-name identity the platform verified."""

    openid = peewee.CharField(max_length=64, unique=True)
    name = SealedField()
    id_type = peewee.CharField(max_length=32)
    id_number = SealedField()
    id_index = peewee.CharField(max_length=64, index=True)
    phone = SealedField(null=True)
    verified_at = peewee.DateTimeField(default=utcnow)
    created_at = peewee.DateTimeField(default=utcnow)


class RefreshToken(BaseModel):
    """An issued refresh token; each is used once and then replaced."""

    jti = peewee.CharField(max_length=64, unique=True)
    citizen = peewee.ForeignKeyField(Citizen, backref="refresh_tokens", null=True)
    # Staff tokens name the staff member instead; the table is shared so that
    # refresh and revocation work the same for everyone.
    staff_id = peewee.IntegerField(null=True, index=True)
    # Every token refreshed from one login shares a family, so that a stolen
    # token used twice revokes the thief's copies as well as the owner's.
    family = peewee.CharField(max_length=32, index=True, null=True)
    expires_at = peewee.DateTimeField()
    used_at = peewee.DateTimeField(null=True)
    revoked_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)


class Case(BaseModel):
    """Joint handling of one registration business."""

    business = peewee.ForeignKeyField(Business, backref="cases", unique=True)
    # The owner who opened the case, or on whose behalf an agency opened it;
    # empty when registry window staff opened it for someone at the counter.
    citizen = peewee.ForeignKeyField(Citizen, backref="cases", null=True)
    status = peewee.CharField(max_length=16, default="open")
    opened_at = peewee.DateTimeField(default=utcnow)
    submitted_at = peewee.DateTimeField(null=True)
    closed_at = peewee.DateTimeField(null=True)
    # When the people's names and ID numbers were masked after retention.
    personal_data_dropped_at = peewee.DateTimeField(null=True)


class Transfer(BaseModel):
    """The transfer of one utility account within a case."""

    case = peewee.ForeignKeyField(Case, backref="transfers", on_delete="CASCADE")
    utility = peewee.ForeignKeyField(Utility)
    account_no = peewee.CharField(max_length=64)
    account = peewee.ForeignKeyField(AccountLink, null=True)
    added_by_applicant = peewee.BooleanField(default=False)
    account_confirmed = peewee.BooleanField(default=False)
    confirmed_at = peewee.DateTimeField(null=True)
    agreement = peewee.ForeignKeyField(Agreement, null=True)
    agreement_accepted_at = peewee.DateTimeField(null=True)
    arrears_fen = peewee.IntegerField(null=True)
    arrears_checked_at = peewee.DateTimeField(null=True)
    # The utility's latest result on whether the account can transfer, with
    # its items, and when the hub asked.
    check_result = JSONField(null=True)
    checked_at = peewee.DateTimeField(null=True)
    status = peewee.CharField(max_length=32, default="draft")
    return_reason = peewee.TextField(null=True)
    # When the utility took the push (or collected it) and the end of its
    # service time after that; see services/deadlines.py.
    delivered_at = peewee.DateTimeField(null=True)
    due_at = peewee.DateTimeField(null=True, index=True)
    overdue_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("case", "utility", "account_no"), True),)


class TransferEvent(BaseModel):
    """One entry of a transfer's timeline."""

    transfer = peewee.ForeignKeyField(Transfer, backref="events", on_delete="CASCADE")
    status = peewee.CharField(max_length=32)
    actor = peewee.CharField(max_length=16)
    # The agency or window that acted for the applicant, shown on the timeline.
    actor_name = peewee.CharField(max_length=100, null=True)
    note = peewee.TextField(null=True)
    return_reason = peewee.TextField(null=True)
    occurred_at = peewee.DateTimeField(default=utcnow)


class Delegation(BaseModel):
    """An owner's authorisation for an agency to act on a case."""

    business = peewee.ForeignKeyField(Business, backref="delegations")
    # Empty when granted before the case was opened, so the agency may open it.
    case = peewee.ForeignKeyField(
        Case, backref="delegations", on_delete="CASCADE", null=True
    )
    granted_by = peewee.ForeignKeyField(Citizen)
    agency_name = peewee.CharField(max_length=100)
    agency_credit_code = peewee.CharField(max_length=18)
    scope = peewee.CharField(max_length=200)
    expires_at = peewee.DateTimeField()
    revoked_at = peewee.DateTimeField(null=True)
    revoked_by = peewee.ForeignKeyField(Citizen, null=True, backref="+")
    created_at = peewee.DateTimeField(default=utcnow)

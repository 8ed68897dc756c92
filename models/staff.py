"""Staff: agencies, customer service, registry windows, utilities, and what they did."""

import peewee

from models.base import BaseModel, utcnow
from models.cases import Case, Citizen, Delegation, Transfer
from models.fields import SealedField
from models.registry import Business
from models.utilities import Utility


class Organisation(BaseModel):
    """A body whose staff use the service: an agency, a service desk, a utility."""

    # agency, service_desk, registry_window, utility or operator
    kind = peewee.CharField(max_length=16)
    name = peewee.CharField(max_length=100, unique=True)
    # Agencies are named in delegations by their unified social credit code.
    credit_code = peewee.CharField(max_length=18, null=True, unique=True)
    utility = peewee.ForeignKeyField(Utility, null=True, backref="organisations")
    created_at = peewee.DateTimeField(default=utcnow)


class Staff(BaseModel):
    """A person who logs in with a username and password for an organisation."""

    username = peewee.CharField(max_length=64, unique=True)
    password_hash = peewee.CharField(max_length=255)
    # agent, service, window, utility or admin
    role = peewee.CharField(max_length=16)
    organisation = peewee.ForeignKeyField(Organisation, backref="staff")
    display_name = SealedField()
    active = peewee.BooleanField(default=True)
    failed_logins = peewee.IntegerField(default=0)
    locked_until = peewee.DateTimeField(null=True)
    must_change_password = peewee.BooleanField(default=True)
    password_changed_at = peewee.DateTimeField(null=True)
    last_login_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)


class CounterConsent(BaseModel):
    """An applicant's consent, given at a registry window, to be served there."""

    business = peewee.ForeignKeyField(Business, backref="counter_consents")
    case = peewee.ForeignKeyField(Case, null=True, backref="counter_consents")
    staff = peewee.ForeignKeyField(Staff)
    organisation = peewee.ForeignKeyField(Organisation)
    # The owner standing at the counter, found by the blind index of the ID shown.
    applicant_index = peewee.CharField(max_length=64)
    # signed_form or e_signature, with the form's number where it has one.
    method = peewee.CharField(max_length=16)
    reference = peewee.CharField(max_length=64, null=True)
    expires_at = peewee.DateTimeField()
    recorded_at = peewee.DateTimeField(default=utcnow)


class CaseAction(BaseModel):
    """An audit entry: one step on a case, its actor and the authority used."""

    case = peewee.ForeignKeyField(Case, backref="actions", on_delete="CASCADE")
    transfer = peewee.ForeignKeyField(Transfer, null=True, on_delete="CASCADE")
    action = peewee.CharField(max_length=24)
    # applicant, agent, window or utility
    actor_role = peewee.CharField(max_length=16)
    citizen = peewee.ForeignKeyField(Citizen, null=True)
    staff = peewee.ForeignKeyField(Staff, null=True)
    delegation = peewee.ForeignKeyField(Delegation, null=True)
    consent = peewee.ForeignKeyField(CounterConsent, null=True)
    request_id = peewee.CharField(max_length=64, null=True)
    detail = peewee.TextField(null=True)
    occurred_at = peewee.DateTimeField(default=utcnow, index=True)


class LookupRecord(BaseModel):
    """One customer-service lookup: who asked, when, for what, and why."""

    staff = peewee.ForeignKeyField(Staff, backref="lookups")
    organisation = peewee.ForeignKeyField(Organisation)
    # business_no, unit_code, account_no, id_number or case
    criterion = peewee.CharField(max_length=16)
    # The value asked for, sealed because it may be an ID number.
    asked = SealedField()
    reason = peewee.TextField()
    results = peewee.IntegerField()
    request_id = peewee.CharField(max_length=64, null=True)
    occurred_at = peewee.DateTimeField(default=utcnow, index=True)

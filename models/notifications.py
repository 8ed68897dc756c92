"""Notices to the people of a case, their channel choices, and release notices."""

import peewee

from models.base import BaseModel, utcnow
from models.cases import Case, Citizen
from models.fields import JSONField, SealedField
from models.registry import Business


class SubscribeChoice(BaseModel):
    """A citizen's result of the mini-program's subscribe request for one template.

    `remaining` counts the one-time messages accepted and not yet used; a
    long-term template needs one acceptance and ignores it.
    """

    citizen = peewee.ForeignKeyField(Citizen, on_delete="CASCADE")
    template = peewee.CharField(max_length=32)
    # accept, reject or ban, as wx.requestSubscribeMessage reports them.
    decision = peewee.CharField(max_length=16)
    remaining = peewee.IntegerField(default=0)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("citizen", "template"), True),)


class SmsSetting(BaseModel):
    """Whether one citizen, agency staff member or phone number takes SMS.

    `subject` is `citizen:<id>`, `staff:<id>` or `phone:<blind index>`. Every
    number an SMS goes to gets a phone row, so that its opt-out token finds
    it. `opted_in` is null until someone decides.
    """

    subject = peewee.CharField(max_length=80, unique=True)
    opted_in = peewee.BooleanField(null=True)
    # The number an agency's staff member gave for notices; citizens and
    # sellers have theirs from the identity provider or the registry.
    phone = SealedField(null=True)
    opt_out_token = peewee.CharField(max_length=32, null=True, unique=True)
    # citizen, staff or link: who made the last decision.
    decided_by = peewee.CharField(max_length=16, null=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class Notice(BaseModel):
    """One message about one event of a case, to one person, on one channel."""

    case = peewee.ForeignKeyField(Case, on_delete="CASCADE")
    # The event and what it is about, e.g. completed:transfer:12 or opened.
    event = peewee.CharField(max_length=64)
    # p:<blind index of the ID number> for owners and previous owners,
    # staff:<id> for an agency's staff member.
    recipient = peewee.CharField(max_length=80)
    # owner, previous_owner or agent
    role = peewee.CharField(max_length=16)
    # subscribe or sms
    channel = peewee.CharField(max_length=16)
    template = peewee.CharField(max_length=32)
    params = JSONField()
    # pending, sent, refused (fell back to SMS), skipped, failed, or unconfirmed
    # (refused after an earlier attempt that may have been delivered)
    state = peewee.CharField(max_length=16, default="pending")
    detail = peewee.CharField(max_length=64, null=True)
    partner_ref = peewee.CharField(max_length=64, null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    sent_at = peewee.DateTimeField(null=True)

    class Meta:
        indexes = ((("case", "event", "recipient", "channel"), True),)


class ReleaseNotice(BaseModel):
    """Proof for the sellers that every account of a case left their name."""

    case = peewee.ForeignKeyField(Case, unique=True, on_delete="CASCADE")
    business = peewee.ForeignKeyField(Business)
    # One entry per transfer: utility code and name, account number, completion time.
    items = JSONField()
    issued_at = peewee.DateTimeField(default=utcnow)

"""The registry's export of units, and utilities' roster uploads with their results."""

import peewee

from models.base import BaseModel, utcnow
from models.fields import JSONField, SealedJSONField
from models.utilities import Utility


class RegistryUnit(BaseModel):
    """A unit of the registry's export, with its owners, for roster linkage."""

    unit_code = peewee.CharField(max_length=28, unique=True)
    certificate_no = peewee.CharField(max_length=64, null=True)
    location = peewee.TextField()
    usage = peewee.CharField(max_length=32, null=True)
    building_area = peewee.DecimalField(max_digits=12, decimal_places=2, null=True)
    inner_area = peewee.DecimalField(max_digits=12, decimal_places=2, null=True)
    # [[name, id_number], ...] for current and earlier owners, sealed.
    owners = SealedJSONField()
    previous_owners = SealedJSONField()
    imported_at = peewee.DateTimeField(default=utcnow)


class RosterJob(BaseModel):
    """One roster a utility uploaded, linked in the background."""

    utility = peewee.ForeignKeyField(Utility, backref="roster_jobs")
    # queued, running, done or failed
    status = peewee.CharField(max_length=16, default="queued")
    filename = peewee.CharField(max_length=255)
    encoding = peewee.CharField(max_length=32)
    uploaded_by = peewee.CharField(max_length=48)
    rows_read = peewee.IntegerField(default=0)
    rows_done = peewee.IntegerField(default=0)
    # [{"line": n, "reason": "..."}] for rows left out or kept with a field
    # ignored, at most ROSTER_MAX_PROBLEMS of them; the rest are only counted.
    problems = JSONField(default=list)
    problems_left_out = peewee.IntegerField(default=0)
    linked = peewee.IntegerField(default=0)
    for_review = peewee.IntegerField(default=0)
    unmatched = peewee.IntegerField(default=0)
    pairs_compared = peewee.IntegerField(default=0)
    # What the upload changed in the stored accounts: new, moved, unchanged...
    changes = JSONField(null=True)
    error = peewee.TextField(null=True)
    # Names the sealed upload on disk and is part of its associated data.
    upload_id = peewee.CharField(max_length=32, null=True)
    # Runs started so far; a running job whose heartbeat is older than
    # ROSTER_LEASE_SECONDS is queued again, up to ROSTER_MAX_ATTEMPTS runs.
    attempts = peewee.IntegerField(default=0)
    heartbeat_at = peewee.DateTimeField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)


class RosterEntry(BaseModel):
    """The linkage result for one account of a roster job (Annex 1 return fields)."""

    job = peewee.ForeignKeyField(RosterJob, backref="entries", on_delete="CASCADE")
    line = peewee.IntegerField()
    account_no = peewee.CharField(max_length=64)
    unit_code = peewee.CharField(max_length=28, null=True)
    certificate_no = peewee.CharField(max_length=64, null=True)
    location = peewee.TextField(null=True)
    # 一致 (linked), 待核对 (for review) or 未匹配 (no candidate)
    match_result = peewee.CharField(max_length=8)
    score = peewee.FloatField()
    reasons = JSONField(default=list)
    # What storing the account changed (new, moved, unchanged...), kept so
    # that a run started again counts the change its first run made.
    change = peewee.CharField(max_length=16, null=True)

    class Meta:
        indexes = ((("job", "account_no"), True),)

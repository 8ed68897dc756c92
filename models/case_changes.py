"""A row for every change to what a case's view shows, written by triggers."""

import peewee

from models.base import BaseModel, utcnow


class CaseChange(BaseModel):
    """One committed change to a case or to a row its view reads.

    Database triggers insert these (see migration 011), so every write path,
    bulk updates included, is covered without the code remembering to. The
    count and the highest id of a case's rows change whenever a change
    commits, which lets a server tell whether a view it rendered is current.
    The triggers only insert rows, so two transactions that change one case
    do not wait for each other on a shared row.
    """

    id = peewee.BigAutoField()
    case_id = peewee.IntegerField()
    changed_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("case_id", "id"), False),)

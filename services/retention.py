"""Dropping the personal data of cases closed longer than the retention period.

A case that ended (all transfers final, or withdrawn) keeps its people's names
and ID numbers for PERSONAL_DATA_RETENTION_DAYS, for questions and disputes.
After that the names and numbers on its registration business are replaced by
their masked forms, the registry's raw body is dropped, and the people can no
longer be found by ID number. The case, its transfers and its timeline stay,
because they hold no personal data and the utilities' records refer to them.
"""

import logging
from datetime import timedelta

from flask import current_app

from domain.masking import mask_id_number, mask_name
from models import Business, Case, CounterConsent, Party, ReconciliationItem
from models.base import utcnow
from models.db import transaction

log = logging.getLogger(__name__)

ENDED = ("closed", "withdrawn")


def cases_due(now=None, limit=100):
    days = current_app.config["PERSONAL_DATA_RETENTION_DAYS"]
    horizon = (now or utcnow()) - timedelta(days=days)
    return list(
        Case.select()
        .where(
            Case.status.in_(ENDED)
            & (Case.closed_at < horizon)
            & Case.personal_data_dropped_at.is_null()
        )
        .order_by(Case.closed_at)
        .limit(limit)
    )


def forget_due_cases(now=None):
    """Drop the personal data of every case past retention; return how many."""
    dropped = 0
    for case in cases_due(now):
        forget_case(case)
        dropped += 1
    return dropped


def forget_case(case):
    """Replace the people of one ended case by their masked forms."""
    with transaction():
        for party in Party.select().where(Party.business == case.business_id):
            party.name = mask_name(party.name)
            party.id_number = mask_id_number(party.id_number)
            party.phone = None
            # An index no ID number hashes to, so lookups no longer find it.
            party.id_index = f"dropped:{party.id}"
            party.save()
        Business.update(payload={"personal_data": "dropped"}).where(
            Business.id == case.business_id
        ).execute()
        CounterConsent.update(applicant_index="dropped").where(
            CounterConsent.business == case.business_id
        ).execute()
        ReconciliationItem.update(holder_name=None, holder_id_numbers=None).where(
            ReconciliationItem.case == case
        ).execute()
        Case.update(personal_data_dropped_at=utcnow()).where(
            Case.id == case.id
        ).execute()
    log.info("personal data dropped case=%s closed_at=%s", case.id, case.closed_at)

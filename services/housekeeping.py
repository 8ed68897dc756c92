"""Deleting records that have outlived their purpose."""

import logging
from datetime import timedelta

from flask import current_app
from peewee import SQL, fn

from models import CaseChange, IdempotencyRecord
from models.base import utcnow
from services import deadlines

log = logging.getLogger(__name__)


def forget_old_idempotency_keys():
    """Delete idempotency keys older than IDEMPOTENCY_TTL_SECONDS; return how many."""
    seconds = current_app.config["IDEMPOTENCY_TTL_SECONDS"]
    horizon = utcnow() - timedelta(seconds=seconds)
    deleted = (
        IdempotencyRecord.delete()
        .where(IdempotencyRecord.created_at < horizon)
        .execute()
    )
    if deleted:
        log.info("idempotency keys forgotten count=%d", deleted)
    return deleted


def mark_overdue_transfers():
    """Alert utilities to transfers newly past their due time; return how many."""
    return len(deadlines.mark_overdue())


# Rows are pruned in batches, so that one sweep never holds a long lock.
CASE_CHANGE_BATCH = 10_000


def forget_old_case_changes():
    """Delete case changes older than a day that are not their case's newest.

    Servers compare the count and the newest id of a case's changes with those
    of a view they keep for at most CASE_VIEW_CACHE_SECONDS. Every kept view
    is younger than the rows deleted here, so it counted them, and after the
    deletion no kept view's revision can match by chance. Keeping each case's
    newest row keeps its highest id where it was.
    """
    seconds = max(24 * 3600, 2 * current_app.config["CASE_VIEW_CACHE_SECONDS"])
    horizon = utcnow() - timedelta(seconds=seconds)
    newer = CaseChange.alias("newer")
    old = (
        CaseChange.select(CaseChange.id)
        .where(
            (CaseChange.changed_at < horizon)
            & fn.EXISTS(
                newer.select(SQL("1")).where(
                    (newer.case_id == CaseChange.case_id) & (newer.id > CaseChange.id)
                )
            )
        )
        .order_by(CaseChange.id)
        .limit(CASE_CHANGE_BATCH)
    )
    deleted = CaseChange.delete().where(CaseChange.id.in_(old)).execute()
    if deleted:
        log.info("old case changes deleted count=%d", deleted)
    return deleted

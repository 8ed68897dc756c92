"""Deleting records that have outlived their purpose."""

import logging
from datetime import timedelta

from flask import current_app

from models import IdempotencyRecord
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

"""The platform operators' desk: deliveries that failed, payments that disagree."""

import logging

from models import OutboxMessage, Payment, Transfer
from models.base import is_storable_id, utcnow
from models.db import locked, transaction
from services import access, delivery, timeline
from services.errors import Conflict, NotFound

log = logging.getLogger(__name__)

DELIVERY_STATES = ("pending", "failed", "awaiting_collection", "done")


def deliveries(state=None, utility_code=None):
    """Return outbox messages, the undelivered ones first by default."""
    query = OutboxMessage.select()
    if state is not None:
        query = query.where(OutboxMessage.state == state)
    else:
        query = query.where(OutboxMessage.state != "done")
    if utility_code is not None:
        query = query.where(OutboxMessage.utility_code == utility_code)
    return query.order_by(OutboxMessage.created_at.desc(), OutboxMessage.id.desc())


def retry_delivery(message_id):
    """Send a failed or waiting message again at once; return the message.

    A message the partner rejected goes back to pending. A push is built again
    from the transfer, because the rejection may have come from data that has
    been corrected since, and the transfer's timeline records the resend.
    """
    message = None
    if is_storable_id(message_id):
        message = OutboxMessage.get_or_none(OutboxMessage.id == message_id)
    if message is None:
        raise NotFound("delivery_not_found", "该推送记录不存在。")
    with transaction():
        message = locked(
            OutboxMessage.select().where(OutboxMessage.id == message.id)
        ).get()
        if message.state not in ("pending", "failed"):
            raise Conflict(
                "delivery_not_retryable",
                f"该推送当前为“{message.state}”，只有待发送或失败的推送可以重发。",
            )
        was_failed = message.state == "failed"
        message.state = "pending"
        message.next_attempt_at = utcnow()
        if message.kind == delivery.PUSH:
            transfer = Transfer.get_by_id(message.ref_id)
            message.payload = delivery.build_push(transfer)
            timeline.record(transfer, "push_retry", "system")
            access.record_action(transfer.case, "retry_push", transfer)
        message.save()
    delivery.wake()
    log.info(
        "delivery retry requested message=%s kind=%s was_failed=%s",
        message.id,
        message.kind,
        was_failed,
    )
    return OutboxMessage.get_by_id(message.id)


def flagged_payments():
    return (
        Payment.select()
        .where(Payment.flag.is_null(False))
        .order_by(Payment.created_at.desc(), Payment.id.desc())
    )

"""The platform operators' desk: deliveries that failed, payments that disagree.

Also the checks of the Redis servers that readiness and the worker depend on.
"""

import logging
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

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


# URL schemes that redis-py opens; the limits library writes a Unix socket
# as redis+unix://.
REDIS_SCHEMES = ("redis", "rediss", "unix")
LIMITS_REDIS_SCHEMES = {"redis": "redis", "rediss": "rediss", "redis+unix": "unix"}


def redis_dependencies(config):
    """Return {dependency: Redis URL} for the queue and rate limits kept in Redis.

    Sentinel and cluster storage of the rate limits are not listed, because
    one ping cannot tell whether they work.
    """
    found = {}
    queue_url = config.get("QUEUE_URL") or ""
    if urlsplit(queue_url).scheme in REDIS_SCHEMES:
        found["queue"] = queue_url
    limits_url = config.get("RATELIMIT_STORAGE_URI") or config.get(
        "RATE_LIMIT_STORAGE_URL", ""
    )
    scheme = urlsplit(limits_url).scheme
    if scheme in LIMITS_REDIS_SCHEMES:
        found["rate_limits"] = urlunsplit(
            urlsplit(limits_url)._replace(scheme=LIMITS_REDIS_SCHEMES[scheme])
        )
    return found


def redis_error(url, timeout):
    """Ping the Redis at `url` once; return None, or why it did not respond.

    Connecting and the reply each get `timeout` seconds, without retries.
    """
    client = redis.Redis.from_url(
        url,
        socket_connect_timeout=timeout,
        socket_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        client.ping()
    except redis.TimeoutError:
        return f"timed out after {timeout} s"
    except redis.RedisError as error:
        return str(error) or type(error).__name__
    finally:
        client.close()
    return None


def without_password(url):
    """Return `url` with any user name and password taken out, for messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=host))

"""Idempotency-Key on writes: a retried request gets the first answer again.

A client that does not know whether its write arrived (a timeout, a dropped
connection) sends it again with the same `Idempotency-Key` header:

- the same key and the same body return the first answer, marked with
  `Idempotent-Replayed: true`, and change nothing;
- the same key with a different body gets 422 `idempotency_key_reused`;
- a key whose first request is still running gets 409 `idempotency_in_flight`;
- a request that failed (any 4xx or 5xx) keeps no record, so it may be
  retried with the same key.

Keys belong to the caller who sent them and are kept IDEMPOTENCY_TTL_SECONDS
(24 hours by default).
"""

import functools
import hashlib
import logging
from datetime import timedelta

import peewee
from flask import g, make_response, request

from models import IdempotencyRecord
from models.base import utcnow
from models.db import transaction
from services.errors import Conflict, Invalid

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_KEY_LENGTH = IdempotencyRecord.key.max_length

# A first request still marked in flight after this long died with its
# process, so a retry may take the key over.
ABANDONED_AFTER = timedelta(minutes=2)


PARAMETER = {
    "in": "header",
    "name": HEADER,
    "required": False,
    "schema": {"type": "string", "minLength": 1, "maxLength": MAX_KEY_LENGTH},
    "description": (
        "A new key, such as a UUID, for each distinct write. Sent again with the "
        "same body, the first answer is returned with `Idempotent-Replayed: true`; "
        "with another body the answer is 422, and while the first request runs, "
        "409. Keys are kept for 24 hours."
    ),
}


def idempotent_operation(blp):
    """Honour an Idempotency-Key on the view, and document the header.

    Place it below the authentication decorator, so that keys belong to the
    caller.
    """

    def decorate(view):
        return blp.doc(parameters=[PARAMETER])(idempotent(view))

    return decorate


def idempotent(view):
    """Honour an Idempotency-Key on `view`, which must run after authentication."""

    @functools.wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(HEADER)
        if key is None:
            return view(*args, **kwargs)
        _check_key(key)
        owner = _owner()
        digest = hashlib.sha256(request.get_data()).hexdigest()
        replay = _claim(owner, key, digest)
        if replay is not None:
            return replay
        try:
            response = make_response(view(*args, **kwargs))
        except BaseException:
            _release(owner, key)
            raise
        if response.status_code >= 400:
            _release(owner, key)
            return response
        _complete(owner, key, response)
        return response

    return wrapper


def _check_key(key):
    if (
        not (1 <= len(key) <= MAX_KEY_LENGTH)
        or not key.isascii()
        or not all(33 <= ord(char) <= 126 for char in key)
    ):
        raise Invalid(
            "idempotency_key_invalid",
            f"{HEADER} 须为 1 到 {MAX_KEY_LENGTH} 个可见 ASCII 字符，建议使用 UUID。",
            errors={
                "headers": {HEADER: [f"1 to {MAX_KEY_LENGTH} visible ASCII characters"]}
            },
        )


def _owner():
    caller = getattr(g, "caller", None)
    if caller is not None:
        return str(caller)
    partner = getattr(g, "partner", None)
    return f"partner:{partner}" if partner else "anonymous"


def _claim(owner, key, digest):
    """Record the key as in flight, or return the stored answer to replay."""
    try:
        with transaction():
            IdempotencyRecord.create(
                owner=owner,
                key=key,
                method=request.method,
                path=request.path[:255],
                body_digest=digest,
            )
        return None
    except peewee.IntegrityError:
        pass
    record = IdempotencyRecord.get(
        (IdempotencyRecord.owner == owner) & (IdempotencyRecord.key == key)
    )
    if (record.method, record.path, record.body_digest) != (
        request.method,
        request.path[:255],
        digest,
    ):
        log.info("idempotency key reused with another request owner=%s", owner)
        raise Invalid(
            "idempotency_key_reused",
            f"该 {HEADER} 已用于另一个请求；新的请求请使用新的键。",
            errors={"headers": {HEADER: ["already used for a different request"]}},
        )
    if record.state == "done":
        log.info("idempotent request replayed owner=%s record=%s", owner, record.id)
        response = make_response(record.response_body or "", record.status_code)
        response.content_type = record.content_type or "application/json"
        response.headers[REPLAYED_HEADER] = "true"
        return response
    if utcnow() - record.created_at > ABANDONED_AFTER:
        log.warning("idempotency key taken over after abandon record=%s", record.id)
        with transaction():
            IdempotencyRecord.update(created_at=utcnow()).where(
                IdempotencyRecord.id == record.id
            ).execute()
        return None
    raise Conflict(
        "idempotency_in_flight",
        "使用该键的请求仍在处理中，请稍后再试。",
    )


def _release(owner, key):
    with transaction():
        IdempotencyRecord.delete().where(
            (IdempotencyRecord.owner == owner)
            & (IdempotencyRecord.key == key)
            & (IdempotencyRecord.state == "in_flight")
        ).execute()


def _complete(owner, key, response):
    with transaction():
        IdempotencyRecord.update(
            state="done",
            status_code=response.status_code,
            content_type=response.content_type,
            response_body=response.get_data(as_text=True),
            completed_at=utcnow(),
        ).where(
            (IdempotencyRecord.owner == owner) & (IdempotencyRecord.key == key)
        ).execute()

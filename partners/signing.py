"""HMAC-SHA256 signatures on requests between the hub and partner systems.

Both directions use the same scheme. The sender signs

    METHOD \\n PATH_WITH_QUERY \\n MESSAGE_ID \\n TIMESTAMP \\n BODY

with the shared secret of the partner and sends four headers. The receiver
recomputes the signature, compares it in constant time, rejects timestamps
outside the window and message ids it has already seen.
"""

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass

PARTNER_HEADER = "X-Lianban-Partner"
MESSAGE_ID_HEADER = "X-Lianban-Message-Id"
TIMESTAMP_HEADER = "X-Lianban-Timestamp"
SIGNATURE_HEADER = "X-Lianban-Signature"

WINDOW_SECONDS = 300


class SignatureError(Exception):
    """A request whose signature headers are missing, stale or wrong."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SignedHeaders:
    partner: str
    message_id: str
    timestamp: int
    signature: str


def compute_signature(secret, method, path, message_id, timestamp, body):
    """Return the hex HMAC-SHA256 of one request under `secret`."""
    prefix = f"{method.upper()}\n{path}\n{message_id}\n{timestamp}\n"
    mac = hmac.new(secret.encode(), prefix.encode(), hashlib.sha256)
    mac.update(body or b"")
    return mac.hexdigest()


def sign_request(partner, secret, method, path, body=b"", message_id=None, now=None):
    """Return the headers that sign one request from `partner`."""
    message_id = message_id or uuid.uuid4().hex
    timestamp = int(now if now is not None else time.time())
    signature = compute_signature(secret, method, path, message_id, timestamp, body)
    return {
        PARTNER_HEADER: partner,
        MESSAGE_ID_HEADER: message_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: signature,
    }


def read_headers(headers):
    """Parse the four signature headers, raising SignatureError when malformed."""
    values = {
        name: headers.get(name)
        for name in (
            PARTNER_HEADER,
            MESSAGE_ID_HEADER,
            TIMESTAMP_HEADER,
            SIGNATURE_HEADER,
        )
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise SignatureError(
            "signature_missing",
            f"Missing signature headers: {', '.join(missing)}.",
        )
    try:
        timestamp = int(values[TIMESTAMP_HEADER])
    except ValueError:
        raise SignatureError(
            "signature_invalid",
            f"{TIMESTAMP_HEADER} must be Unix seconds as an integer.",
        ) from None
    return SignedHeaders(
        partner=values[PARTNER_HEADER],
        message_id=values[MESSAGE_ID_HEADER],
        timestamp=timestamp,
        signature=values[SIGNATURE_HEADER],
    )


def verify_signature(signed, secrets, method, path, body, now=None):
    """Check `signed` against any of the partner's current `secrets`.

    More than one secret is accepted so that a key can be rotated without
    downtime. Replay refusal by message id is the caller's job, because it
    needs storage shared by every process.
    """
    now = int(now if now is not None else time.time())
    if abs(now - signed.timestamp) > WINDOW_SECONDS:
        raise SignatureError(
            "signature_expired",
            f"The request timestamp is more than {WINDOW_SECONDS} seconds from "
            "the server clock; sign it again with the current time.",
        )
    for secret in secrets:
        expected = compute_signature(
            secret, method, path, signed.message_id, signed.timestamp, body
        )
        if hmac.compare_digest(expected, signed.signature):
            return
    raise SignatureError(
        "signature_invalid",
        "The request signature does not match; check the shared secret "
        "and that the exact body bytes were signed.",
    )

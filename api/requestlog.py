"""A request id on every request and every log line written during it."""

import logging
import os
import re
import time

from flask import g, request

log = logging.getLogger(__name__)

REQUEST_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]{8,64}$")
CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def printable(text):
    """Escape control characters, so that a client cannot start a log line."""
    return CONTROL_CHARACTERS.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


class OneLineFormatter(logging.Formatter):
    """Write each event's message on one line, whatever values it carries.

    A traceback still follows on its own lines, after the message.
    """

    def formatMessage(self, record):
        return printable(super().formatMessage(record))


class RequestContextFilter(logging.Filter):
    """Add `request_id` and `case_id` to each record, or `-` outside a request."""

    def filter(self, record):
        from flask import has_request_context

        if has_request_context():
            record.request_id = getattr(g, "request_id", "-")
            record.case_id = getattr(g, "case_id", "-")
        else:
            record.request_id = getattr(record, "request_id", "-")
            record.case_id = getattr(record, "case_id", "-")
        return True


def request_id_for(requested):
    """Return the client's X-Request-Id when well formed, else a new id."""
    if REQUEST_ID_PATTERN.match(requested):
        return requested
    return os.urandom(16).hex()


def log_request(method, path, status, seconds, **ids):
    """Write the one line a request gets; `ids` fill in ids outside Flask."""
    log.info(
        "%s %s status=%s ms=%.1f",
        method,
        path,
        status,
        seconds * 1000,
        extra=ids or None,
    )


def init_app(app):
    @app.before_request
    def assign_request_id():
        g.request_id = request_id_for(request.headers.get("X-Request-Id", ""))
        g.started = time.monotonic()

    @app.after_request
    def log_response(response):
        elapsed = time.monotonic() - g.get("started", time.monotonic())
        response.headers["X-Request-Id"] = g.get("request_id", "")
        log_request(request.method, request.path, response.status_code, elapsed)
        return response


def configure_logging(level=logging.INFO):
    """Send one line per event to stderr with the request and case ids.

    werkzeug's own access lines are dropped, because each request already has
    a line with its id, status and time.
    """
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    handler = logging.StreamHandler()
    handler.setLevel(level)
    handler.addFilter(RequestContextFilter())
    handler.setFormatter(
        OneLineFormatter(
            "%(asctime)s %(levelname)s %(name)s "
            "[req=%(request_id)s case=%(case_id)s] %(message)s"
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

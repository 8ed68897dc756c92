"""Shared pieces of the partner peers: the utility table, time, JSON errors, serving.

The hub's seeding code imports `UTILITIES` too, so that the hub and the utility
simulator agree on codes and service organisation names.
"""

import argparse
import datetime as dt
import json
import logging
import os
import re
import signal
import sys
import threading
import time
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from flask import Flask, Response
from werkzeug.exceptions import HTTPException
from werkzeug.serving import WSGIRequestHandler, make_server

from domain.utilities import UTILITIES, UtilityInfo

logger = logging.getLogger(__name__)


# The hub and the simulator share one table of utilities.
Utility = UtilityInfo

UTILITY_BY_CODE: dict[str, Utility] = {utility.code: utility for utility in UTILITIES}

try:
    TIMEZONE: dt.tzinfo = ZoneInfo("Asia/Shanghai")
except ZoneInfoNotFoundError:
    # China has kept UTC+8 without daylight saving time since 1991, so a fixed
    # offset gives the same strings when the system has no time zone database.
    TIMEZONE = dt.timezone(dt.timedelta(hours=8), "CST")


def now_iso() -> str:
    """Return the current time as ISO 8601 with the +08:00 offset, in seconds."""
    return dt.datetime.now(TIMEZONE).isoformat(timespec="seconds")


class RequestError(Exception):
    """An error that a peer returns to its client as `{"code", "message"}`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_error(status: int, code: str, message: str) -> Response:
    body = json.dumps({"code": code, "message": message}, ensure_ascii=False)
    return Response(body, status=status, mimetype="application/json")


def install_json_errors(app: Flask) -> None:
    """Make `app` return RequestError and every HTTP error as a JSON body."""

    @app.errorhandler(RequestError)
    def handle_request_error(error: RequestError):
        return json_error(error.status, error.code, error.message)

    @app.errorhandler(HTTPException)
    def handle_http_exception(error: HTTPException):
        code = (error.name or "error").lower().replace(" ", "_")
        return json_error(error.code or 500, code, error.description or code)


def parse_json_body(data: bytes) -> object:
    """Decode a UTF-8 JSON request body, raising RequestError 400 when it is not."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise RequestError(
            400, "invalid_json", f"The request body is not valid UTF-8 JSON: {error}."
        ) from None


_QUERY = re.compile(r"\?[^'\"]*")


class QueryFreeRequestHandler(WSGIRequestHandler):
    """Request handler that logs the path without its query string.

    The identity provider takes the app secret in the query string, and a
    customer-service lookup may carry an ID number there, so neither the
    access line nor an error about a malformed request line writes it.
    """

    def log_error(self, format, *args):
        scrubbed = [
            _QUERY.sub("?…", arg) if isinstance(arg, str) else arg for arg in args
        ]
        super().log_error(format, *scrubbed)

    def log_request(self, code="-", size="-"):
        # `command` and `path` are missing when the request line could not be parsed.
        command = getattr(self, "command", "-")
        path = getattr(self, "path", "").split("?", 1)[0]
        path = "".join(char if char.isprintable() else "?" for char in path)
        status = code.value if hasattr(code, "value") else code
        logging.getLogger("werkzeug").info(
            "%s %s %s %s", self.address_string(), command, path, status
        )


def configure_logging(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def add_server_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1)."
    )
    parser.add_argument(
        "--port",
        type=int,
        default=0,
        help="TCP port to listen on; 0 picks a free port (default 0).",
    )
    parser.add_argument(
        "--port-file",
        type=Path,
        help="File to write the bound port number to once the server listens.",
    )
    parser.add_argument(
        "--keys",
        type=Path,
        required=True,
        help="Directory of development keys; created by peers.devkeys if missing.",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="Python logging level (default INFO)."
    )


PARENT_PID_VARIABLE = "LIANBAN_PEER_PARENT_PID"
PARENT_CHECK_SECONDS = 0.5


def stop_with_parent() -> None:
    """Send SIGTERM to this process once the launching process has exited.

    peers.launch sets LIANBAN_PEER_PARENT_PID for its children. Without the
    variable this does nothing. Polling the parent id also works when the
    launcher dies by a signal, which skips its atexit handlers.
    """
    value = os.environ.get(PARENT_PID_VARIABLE)
    if not value:
        return
    try:
        parent_pid = int(value)
    except ValueError:
        logger.warning("ignoring %s=%r: not a process id", PARENT_PID_VARIABLE, value)
        return

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_SECONDS)
        logger.warning("launching process %d exited, stopping", parent_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def write_port_file(path: Path, port: int) -> None:
    """Write `port` to `path` atomically so that a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(f"{port}\n", encoding="ascii")
    os.replace(temporary, path)


def serve(app: Flask, name: str, host: str, port: int, port_file: Path | None) -> None:
    """Serve `app` with werkzeug's threaded server until SIGTERM or SIGINT."""
    server = make_server(
        host, port, app, threaded=True, request_handler=QueryFreeRequestHandler
    )
    bound_port = server.socket.getsockname()[1]
    # make_server has already bound and started listening, so clients that read
    # the port file now are queued until serve_forever accepts them.
    if port_file is not None:
        write_port_file(port_file, bound_port)

    def stop_on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_on_signal)
    stop_with_parent()
    logger.info("%s listening on http://%s:%d", name, host, bound_port)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        logger.info("%s stopped", name)

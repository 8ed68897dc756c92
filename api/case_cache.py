"""Case views rendered earlier in this process, served again while current.

`GET /cases/{id}` is what a citizen's page polls, and building its view runs
about seventeen queries. Each 200 response is kept per case and caller with the
case's revision: the count and highest id of its `case_change` rows, which
database triggers add in the same transaction as every change the view shows
(see `models.case_changes`). A kept view is served again after one query.
That query checks the revision and everything the full path checks that can
change while the token is valid. The caller must still exist (staff: active,
same role, no password change due), and the token's family must not be
revoked.
Reaching the case through a delegation or counter consent is bounded by its
expiry, and granting or revoking one adds a case change.

Anything else, including every refusal, goes through the full path, so
errors are the full path's errors.
"""

import functools
import json
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

import peewee
from flask import current_app, g

from api import operations, requestlog
from models.base import is_storable_id
from models.db import connect_checked, database

log = logging.getLogger(__name__)

REVISION_SQL = (
    "SELECT (SELECT count(*) FROM case_change WHERE case_id = {p}), "
    "(SELECT max(id) FROM case_change WHERE case_id = {p})"
)
HOLDER_SQL = {
    "citizen": "(SELECT count(*) FROM citizen WHERE id = {p})",
    "staff": (
        "(SELECT count(*) FROM staff WHERE id = {p} AND active = {p} "
        "AND must_change_password = {p} AND role = {p})"
    ),
}
REVOKED_SQL = (
    "(SELECT count(*) FROM refresh_token WHERE family = {p} AND revoked_at IS NOT NULL)"
)


@dataclass(frozen=True)
class KeptView:
    revision: tuple
    # time.time() after which the view is rendered again
    expires_at: float
    # staff role when the view was rendered; None for a citizen
    role: str | None
    body: bytes


class CaseViewCache:
    """A bounded, least-recently-used store of rendered case views."""

    def __init__(self, size, seconds):
        self.size = size
        self.seconds = seconds
        self._views = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            kept = self._views.get(key)
            if kept is not None:
                self._views.move_to_end(key)
            return kept

    def put(self, key, kept):
        if self.size <= 0:
            return
        with self._lock:
            self._views[key] = kept
            self._views.move_to_end(key)
            while len(self._views) > self.size:
                self._views.popitem(last=False)

    def discard(self, key):
        with self._lock:
            self._views.pop(key, None)


def view_cache():
    extensions = current_app.extensions
    if "lianban_case_views" not in extensions:
        config = current_app.config
        extensions["lianban_case_views"] = CaseViewCache(
            config["CASE_VIEW_CACHE_SIZE"], config["CASE_VIEW_CACHE_SECONDS"]
        )
    return extensions["lianban_case_views"]


def _fetch_one(sql, params):
    return database.execute_sql(sql.format(p=database.param), params).fetchone()


def read_revision(case_id):
    """Return the revision of a case: the count and highest id of its changes."""
    return tuple(_fetch_one(REVISION_SQL, (case_id, case_id)))


def _current_state(case_id, claims, role):
    """Return the case's revision and whether the caller and token still hold."""
    kind, _, holder_id = claims["sub"].partition(":")
    sql = f"{REVISION_SQL}, {HOLDER_SQL[kind]}, {REVOKED_SQL}"
    params = [case_id, case_id, int(holder_id)]
    if kind == "staff":
        params += [True, False, role]
    params.append(str(claims["fam"]))
    changes, last_change, holders, revoked = _fetch_one(sql, params)
    return (changes, last_change), holders == 1 and revoked == 0


def _expiry(cache, body=None):
    """Return when a view must be built again, whatever the database shows.

    That is the earliest of the cache's age limit, the end of the delegation
    or consent the caller acts under, and the first due time in the view that
    has not passed, because `overdue` turns true then without any change.
    """
    expires_at = time.time() + cache.seconds
    authority = g.get("authority")
    grant = authority and (authority.delegation or authority.consent)
    if grant is not None:
        grant_expiry = grant.expires_at.replace(tzinfo=UTC).timestamp()
        expires_at = min(expires_at, grant_expiry)
    for due in _pending_due_times(body):
        expires_at = min(expires_at, due)
    return expires_at


def _pending_due_times(body):
    if not body:
        return []
    transfers = json.loads(body).get("transfers") or []
    return [
        datetime.fromisoformat(transfer["due_at"]).timestamp()
        for transfer in transfers
        if transfer.get("due_at") and transfer.get("overdue") is False
    ]


def keeps_case_view(view):
    """Keep each 200 response of `view` for KeptViewServer to serve again.

    `view` takes `case_id` and checks the caller itself, so this goes outside
    the decorators that authenticate.
    """

    @functools.wraps(view)
    def wrapper(case_id):
        cache = view_cache()
        if cache.size <= 0 or not is_storable_id(case_id):
            return view(case_id=case_id)
        # The revision is read before the view, so a change that commits in
        # between makes the kept view look old, never current.
        revision = read_revision(case_id)
        response = view(case_id=case_id)
        if response.status_code == 200:
            caller = g.caller
            body = response.get_data()
            kept = KeptView(
                revision=revision,
                expires_at=_expiry(cache, body),
                role=None if caller.citizen is not None else caller.role,
                body=body,
            )
            cache.put((case_id, g.token_claims["sub"]), kept)
        return response

    return wrapper


class KeptViewServer:
    """WSGI middleware that responds to a repeated `GET /api/v1/cases/{id}` itself.

    A request with a token this process verified, for a view kept for that
    token's holder, costs the one query of `_current_state`, and Flask does
    not run. The response is the same as Flask's: the same body and headers,
    the request id, one log line and the request metrics. Every other
    request, and every doubt (a query string, a changed case, a database
    error), goes to Flask.
    """

    PATH = re.compile(r"/api/v1/cases/([1-9][0-9]{0,9})")
    ROUTE = "/api/v1/cases/<int:case_id>"

    def __init__(self, app):
        self.app = app
        self.next = app.wsgi_app

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        match = None
        if environ["REQUEST_METHOD"] == "GET" and not environ.get("QUERY_STRING"):
            match = self.PATH.fullmatch(environ.get("PATH_INFO", ""))
        body = match and self._kept_body(environ, int(match.group(1)))
        if not body:
            return self.next(environ, start_response)
        request_id = requestlog.request_id_for(environ.get("HTTP_X_REQUEST_ID", ""))
        start_response(
            "200 OK",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(body))),
                ("X-Request-Id", request_id),
            ],
        )
        seconds = time.perf_counter() - started
        requestlog.log_request(
            "GET",
            environ["PATH_INFO"],
            200,
            seconds,
            request_id=request_id,
            case_id=match.group(1),
        )
        operations.record_request("GET", self.ROUTE, 200, seconds)
        return [body]

    def _kept_body(self, environ, case_id):
        cache = self.app.extensions.get("lianban_case_views")
        verified = self.app.extensions.get("lianban_verified_tokens")
        if cache is None or verified is None or not is_storable_id(case_id):
            return None
        scheme, _, token = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != "bearer":
            return None

        claims = verified.get(token.strip(), "access")
        kept = claims and cache.get((case_id, claims["sub"]))
        if not kept or kept.expires_at <= time.time():
            operations.KEPT_CASE_VIEWS.labels("none").inc()
            return None

        try:
            connect_checked()
            try:
                revision, caller_holds = _current_state(case_id, claims, kept.role)
            finally:
                database.close()
        except peewee.DatabaseError as error:
            log.warning(
                "checking a kept case view failed; Flask handles the request "
                "case=%s error=%s",
                case_id,
                type(error).__name__,
            )
            return None

        if not caller_holds or revision != kept.revision:
            operations.KEPT_CASE_VIEWS.labels("stale").inc()
            cache.discard((case_id, claims["sub"]))
            return None
        operations.KEPT_CASE_VIEWS.labels("served").inc()
        return kept.body

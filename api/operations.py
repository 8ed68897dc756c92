"""Liveness, readiness and request metrics for the process that serves the API.

They sit outside /api/v1 and the OpenAPI document, where load balancers and
Prometheus look for them.
"""

import hmac
import logging
import os
import time

import peewee
from flask import Blueprint, current_app, g, request
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    multiprocess,
)

from models import migrate
from models.db import database
from services import operations
from services.errors import Unauthorized

log = logging.getLogger(__name__)

blp = Blueprint("operations", __name__)

REQUESTS = Counter(
    "lianban_http_requests_total",
    "HTTP requests answered, by method, route and status",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "lianban_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and route",
    ["method", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

KEPT_CASE_VIEWS = Counter(
    "lianban_kept_case_views_total",
    "Case views looked up among the kept ones: served, stale, or none kept",
    ["result"],
)


@blp.get("/health")
def health():
    """Return 200 while the process runs; load balancers restart it otherwise."""
    return {"status": "ok"}


@blp.get("/ready")
def ready():
    """Return 200 once the database responds and every migration is applied.

    Where the queue or the rate limits live in Redis, that Redis must respond
    to a ping within READY_TIMEOUT_SECONDS too.
    """
    checks = {}
    try:
        database.execute_sql("SELECT 1")
        checks["database"] = "ok"
    except peewee.DatabaseError as error:
        log.warning("readiness check failed: database error=%s", error)
        checks["database"] = "unreachable"
    if checks["database"] == "ok":
        pending = migrate.router().diff
        checks["migrations"] = "ok" if not pending else f"{len(pending)} pending"
    checks.update(_redis_checks(current_app.config))
    ready_now = all(value == "ok" for value in checks.values())
    return {"status": "ready" if ready_now else "not ready", "checks": checks}, (
        200 if ready_now else 503
    )


def _redis_checks(config):
    timeout = config["READY_TIMEOUT_SECONDS"]
    checks = {}
    errors = {}
    for name, url in operations.redis_dependencies(config).items():
        # The queue and the rate limits often share one Redis; ping it once.
        if url not in errors:
            errors[url] = operations.redis_error(url, timeout)
        if errors[url] is None:
            checks[name] = "ok"
            continue
        log.warning(
            "readiness check failed: %s redis=%s error=%s",
            name,
            operations.without_password(url),
            errors[url],
        )
        checks[name] = "unreachable"
    return checks


@blp.get("/metrics")
def metrics():
    """Write the request metrics in Prometheus text format.

    With METRICS_TOKEN set, the scraper must send it as a bearer token.
    """
    expected = current_app.config["METRICS_TOKEN"]
    if expected:
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not hmac.compare_digest(sent.encode(), expected.encode()):
            raise Unauthorized("metrics_token_invalid", "指标接口需要有效的令牌。")
    registry = None
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        # Under gunicorn each worker writes its samples to files there.
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    body = generate_latest(registry) if registry else generate_latest()
    return body, 200, {"Content-Type": CONTENT_TYPE_LATEST}


def init_app(app):
    app.register_blueprint(blp)

    @app.before_request
    def start_clock():
        g.metrics_started = time.perf_counter()

    @app.after_request
    def count_request(response):
        # The route template, not the path, so that ids do not make new series.
        route = request.url_rule.rule if request.url_rule else "unmatched"
        started = g.get("metrics_started")
        seconds = None if started is None else time.perf_counter() - started
        record_request(request.method, route, response.status_code, seconds)
        return response


def record_request(method, route, status, seconds):
    """Count a request, and time it when `seconds` is known."""
    REQUESTS.labels(method, route, str(status)).inc()
    if seconds is not None:
        LATENCY.labels(method, route).observe(seconds)

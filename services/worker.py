"""The consumer that `lianban worker` runs, quiet while the queue storage is down.

huey's own consumer logs a traceback at every poll that fails, several times
a second per thread, while Redis is away. Here the threads share one
`StorageOutage`: the first failure is logged in one line, each later line
comes after a back-off that doubles up to QUEUE_OUTAGE_MAX_BACKOFF_SECONDS,
and the threads poll no faster than that back-off until the storage responds.
"""

import logging
import sqlite3
import sys
import threading
import time
from urllib.parse import urlsplit

import redis
from huey.consumer import Consumer, Scheduler, Worker

from services import operations

log = logging.getLogger(__name__)

FIRST_BACKOFF_SECONDS = 1.0


class StorageOutage:
    """The queue storage's failures, shared by the consumer's threads."""

    def __init__(self, storage_name, max_backoff):
        self.storage_name = storage_name
        self.max_backoff = max_backoff
        self._lock = threading.Lock()
        self.failures = 0
        self.backoff = FIRST_BACKOFF_SECONDS
        self.down_since = None
        self._next_log = 0.0
        self._suppressed = 0

    def failed(self, error):
        """Count a failed call; log it if the back-off since the last line ran out."""
        with self._lock:
            now = time.monotonic()
            self.failures += 1
            if self.down_since is None:
                self.down_since = now
            if now < self._next_log:
                self._suppressed += 1
                return
            log.error(
                "queue storage unavailable storage=%s down_for=%.0fs "
                "failed_calls_not_logged=%d next_log_in=%.0fs error=%s",
                self.storage_name,
                now - self.down_since,
                self._suppressed,
                self.backoff,
                _one_line(error),
            )
            self._suppressed = 0
            self._next_log = now + self.backoff
            self.backoff = min(self.backoff * 2, self.max_backoff)

    def recovered(self):
        """Note a call that worked; log the end of an outage once."""
        with self._lock:
            if self.down_since is None:
                return
            log.info(
                "queue storage responds again storage=%s down_for=%.0fs",
                self.storage_name,
                time.monotonic() - self.down_since,
            )
            self.down_since = None
            self.backoff = FIRST_BACKOFF_SECONDS
            self._next_log = 0.0
            self._suppressed = 0

    def wait_seconds(self):
        """Return how long a thread should wait before it polls again."""
        with self._lock:
            return self.backoff if self.down_since is not None else 0.0


def _one_line(error):
    return " ".join(str(error).split()) or type(error).__name__


# Errors of the storage itself, as opposed to errors of a task.
STORAGE_ERRORS = (redis.ConnectionError, redis.TimeoutError, sqlite3.OperationalError)


class _OutageLogger:
    """A logger for huey's consumer threads that sends storage errors to the outage.

    huey logs a failed poll with `logger.exception` inside its except block,
    so the error is the one being handled. Other errors are logged as usual.
    """

    def __init__(self, logger, outage):
        self._logger = logger
        self._outage = outage

    def exception(self, message, *args, **kwargs):
        error = sys.exc_info()[1]
        if isinstance(error, STORAGE_ERRORS):
            self._outage.failed(error)
            return
        self._logger.exception(message, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._logger, name)


class QuietWorker(Worker):
    outage = None

    def create_logger(self):
        return _OutageLogger(super().create_logger(), self.outage)

    def loop(self, now=None):
        failures = self.outage.failures
        super().loop(now)
        if self.outage.failures == failures:
            self.outage.recovered()

    def sleep(self):
        wait = self.outage.wait_seconds()
        if wait:
            self.stop_flag.wait(wait)
            return
        super().sleep()


class QuietScheduler(Scheduler):
    outage = None

    def create_logger(self):
        return _OutageLogger(super().create_logger(), self.outage)

    def loop(self, now=None):
        wait = self.outage.wait_seconds()
        if wait:
            # The workers hit the same storage; look again after the back-off.
            self.stop_flag.wait(wait)
            return
        super().loop(now)


class QuietConsumer(Consumer):
    """huey's consumer with one shared, rate-limited report of storage outages."""

    def __init__(self, huey, outage, **options):
        self.outage = outage
        worker_class = type("Worker", (QuietWorker,), {"outage": outage})
        scheduler_class = type("Scheduler", (QuietScheduler,), {"outage": outage})
        self.worker_class = worker_class
        self.scheduler_class = scheduler_class
        super().__init__(huey, **options)


def storage_error(huey, config):
    """Return None if the queue storage responds, or why it does not.

    A Redis queue gets one ping with READY_TIMEOUT_SECONDS to respond; a
    SQLite queue is asked for its length.
    """
    url = config["QUEUE_URL"] or ""
    if urlsplit(url).scheme in operations.REDIS_SCHEMES:
        return operations.redis_error(url, config["READY_TIMEOUT_SECONDS"])
    try:
        huey.storage.queue_size()
    except Exception as error:  # noqa: BLE001 - any storage failure is reported
        return _one_line(error)
    return None

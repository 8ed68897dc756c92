"""Background work on huey: delivering the outbox, polling providers, housekeeping.

The outbox stays the record of what must be sent: a message is written in the
same transaction as the change it follows, and only after the commit is a
task queued to send it. A task that is lost (a crash between the commit and
the queueing, a queue emptied by a restart) is made good by the sweep that
runs every minute. Two tasks for one message send it once, because each
claims the message with a conditional update first.

The queue lives in SQLite beside the database by default (QUEUE_URL unset),
so the embedded setup needs nothing else, and in Redis in production
(QUEUE_URL=redis://127.0.0.1:6379/0). `lianban worker` runs the consumer;
`lianban serve`, the demo and the tests run it in-process with threads.
"""

import logging
import threading
from pathlib import Path

from huey import Huey, crontab
from huey.storage import BlackHoleStorage, RedisStorage, SqliteStorage

from models import Refund
from models.db import database
from services import (
    delivery,
    housekeeping,
    operations,
    payments,
    retention,
    rosters,
    settlement,
)
from services.worker import QuietConsumer, StorageOutage

log = logging.getLogger(__name__)


class UnconfiguredStorage(BlackHoleStorage):
    """The storage until `configure` runs, so that a task queued early fails."""

    def enqueue(self, data, priority=None):
        raise RuntimeError("The queue is not configured; call queue.configure(app).")


huey = Huey("lianban", storage_class=UnconfiguredStorage)
_app = None
_restart_check_lock = threading.Lock()
_restart_check_queued = False


def configure(app):
    """Point the queue at QUEUE_URL, or at a SQLite file in VAR_DIR."""
    global _app
    _app = app
    config = app.config
    url = config["QUEUE_URL"] or f"sqlite:///{Path(config['VAR_DIR']) / 'queue.db'}"
    name = config["QUEUE_NAME"]
    if url.startswith(("redis://", "rediss://", "unix://")):
        huey.storage = RedisStorage(name=name, url=url, blocking=True, read_timeout=1)
    elif url.startswith("sqlite:///"):
        path = Path(url.removeprefix("sqlite:///"))
        path.parent.mkdir(parents=True, exist_ok=True)
        huey.storage = SqliteStorage(name=name, filename=str(path))
    else:
        raise ValueError(
            f"QUEUE_URL must start with redis://, rediss://, unix:// or sqlite:///; "
            f"got {url.split(':', 1)[0]}://"
        )
    log.info("queue configured backend=%s name=%s", type(huey.storage).__name__, name)


def _in_app(work):
    """Run `work` in an app context with its own database connection."""
    with _app.app_context():
        database.connect(reuse_if_open=True)
        try:
            return work()
        finally:
            if not database.is_closed():
                database.close()


@huey.task()
def deliver_message(message_id):
    """Send one outbox message, and queue its next attempt if it failed."""

    def work():
        message = delivery.claim(message_id)
        if message is None:
            # Not due yet: huey may run a scheduled task up to a second early,
            # and a message another task holds is due again when its lease
            # ends. Either way, look again then.
            due = delivery.next_attempt(message_id)
            if due is not None:
                deliver_message.schedule((message_id,), eta=due)
            return
        if not delivery.deliver(message):
            retry = delivery.next_attempt(message_id)
            if retry is not None:
                deliver_message.schedule((message_id,), eta=retry)
        elif message.kind == settlement.REFUND:
            follow_refund.schedule((message.ref_id, 0), delay=1)

    _in_app(work)


# Refunds usually finish within seconds; after these checks the minute sweep
# keeps asking.
REFUND_CHECKS = 8


@huey.task()
def follow_refund(refund_id, checks):
    """Ask the provider about a refund in processing, sooner at first."""

    def work():
        refund = Refund.get_or_none(Refund.id == refund_id)
        if refund is None or settlement.check_refund(refund):
            return
        if refund.status == "processing" and checks + 1 < REFUND_CHECKS:
            follow_refund.schedule((refund_id, checks + 1), delay=2 ** (checks + 1))

    _in_app(work)


def send_due():
    """Queue a delivery for each outbox message that is due now.

    Called after a commit that wrote messages, and by the sweep.
    """
    for message_id in delivery.due_ids():
        deliver_message(message_id)


@huey.task()
def send_due_later():
    """Queue what is due; see `check_after_restart`."""
    _in_app(send_due)


@huey.on_startup()
def check_after_restart():
    """Queue a look for due messages one lease after this consumer starts.

    A worker killed while holding claims leaves its messages pending until
    their leases end, and the tasks it had taken from the queue are gone. This
    look sends them then, instead of at the next minute's sweep. Huey calls
    the hook in every worker thread, and only the first queues the task.
    """
    global _restart_check_queued
    with _restart_check_lock:
        if _restart_check_queued or _app is None:
            return
        _restart_check_queued = True
    delay = _app.config["OUTBOX_LEASE_SECONDS"] + 1
    send_due_later.schedule(delay=delay)
    log.info("queued a look for due messages after a restart delay_s=%d", delay)


@huey.task()
def run_roster_job(job_id):
    """Link an uploaded roster and store its results."""
    _in_app(lambda: rosters.run_job(job_id))


@huey.periodic_task(crontab(minute="*"))
def sweep():
    """Queue what is due, and ask the providers about pending orders and refunds."""

    def work():
        send_due()
        rosters.release_stalled_jobs()
        for job_id in rosters.waiting_job_ids():
            run_roster_job(job_id)
        payments.fail_stalled_orders()
        payments.poll_pending()
        settlement.poll_refunds()
        delivery.forget_old_message_ids()
        housekeeping.forget_old_idempotency_keys()
        housekeeping.mark_overdue_transfers()
        housekeeping.forget_old_case_changes()
        retention.forget_due_cases()

    _in_app(work)


class EmbeddedConsumer(QuietConsumer):
    """A consumer run inside another program, which keeps its own signals.

    Like `lianban worker`, it logs a queue storage outage in one line and
    then at growing intervals, not at every failed poll.
    """

    def _set_signal_handlers(self):
        pass


def start_embedded(app, workers=4):
    """Start a consumer in threads of this process; return it for `stop_embedded`."""
    configure(app)
    where = operations.without_password(
        app.config["QUEUE_URL"] or "the SQLite queue in VAR_DIR"
    )
    consumer = EmbeddedConsumer(
        huey,
        StorageOutage(where, app.config["QUEUE_OUTAGE_MAX_BACKOFF_SECONDS"]),
        workers=workers,
        worker_type="thread",
        initial_delay=0.05,
        backoff=1.5,
        max_delay=app.config["QUEUE_MAX_POLL_SECONDS"],
        check_worker_health=False,
    )
    consumer.start()
    # Messages written while no consumer ran are sent now, not at the sweep.
    with app.app_context():
        send_due()
    return consumer


def stop_embedded(consumer):
    consumer.stop(graceful=True)

"""The background worker that drains the outbox."""

import logging
import threading

from models.db import database
from services import delivery, housekeeping, payments, settlement

log = logging.getLogger(__name__)


class OutboxWorker(threading.Thread):
    """Send due outbox messages until stopped, waking early when new ones arrive."""

    def __init__(self, app, poll_seconds=None):
        super().__init__(name="outbox-worker", daemon=True)
        self.app = app
        self.poll_seconds = poll_seconds or app.config["OUTBOX_POLL_SECONDS"]
        self.stopping = threading.Event()

    def run(self):
        log.info("outbox worker started poll_s=%.1f", self.poll_seconds)
        while not self.stopping.is_set():
            self.run_once()
            delivery.wake_worker.wait(self.poll_seconds)
            delivery.wake_worker.clear()
        log.info("outbox worker stopped")

    def run_once(self):
        with self.app.app_context():
            try:
                database.connect(reuse_if_open=True)
                delivery.deliver_due()
                payments.poll_pending()
                settlement.poll_refunds()
                delivery.forget_old_message_ids()
                housekeeping.forget_old_idempotency_keys()
            except Exception:
                log.exception("outbox pass failed; retrying next pass")
            finally:
                if not database.is_closed():
                    database.close()

    def stop(self):
        self.stopping.set()
        delivery.wake_worker.set()
        self.join(timeout=10)

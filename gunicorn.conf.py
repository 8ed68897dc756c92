"""gunicorn settings for production: `gunicorn -c gunicorn.conf.py wsgi:app`.

Each value can be changed through the environment variable named beside it.
"""

import os
import tempfile

bind = os.environ.get("LIANBAN_BIND", "127.0.0.1:8000")
# Two workers per core is gunicorn's usual starting point for I/O-bound apps;
# each handles several requests at once in threads.
workers = int(os.environ.get("LIANBAN_WORKERS", str(2 * (os.cpu_count() or 1))))
threads = int(os.environ.get("LIANBAN_THREADS", "4"))
# Partner calls time out after PARTNER_READ_TIMEOUT (10 s by default), so a
# request that runs past this is stuck.
timeout = int(os.environ.get("LIANBAN_WORKER_TIMEOUT", "60"))
graceful_timeout = 30
keepalive = 5
# Workers are restarted after this many requests, so that slow leaks cannot
# build up.
max_requests = 10_000
max_requests_jitter = 1_000
# The app is imported once in the master and each worker is forked from it,
# so a restart costs a fork instead of importing the app again, and the
# workers share the imported code's memory. Nothing opens a connection or
# starts a thread at import.
preload_app = True

# The access log writes the path without its query string (%(U)s), because a
# customer-service lookup by ID number carries the number there.
accesslog = "-"
access_log_format = '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms req=%({x-request-id}o)s'
errorlog = "-"

# Prometheus samples from all workers are merged through files in this folder.
os.environ.setdefault(
    "PROMETHEUS_MULTIPROC_DIR", tempfile.mkdtemp(prefix="lianban-metrics-")
)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)

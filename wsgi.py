"""The WSGI entry point for production servers: `gunicorn wsgi:app`.

It builds the app from the environment, logs one line per event with the
request id, and points the task queue at QUEUE_URL, so that requests can
queue work for `lianban worker`, which runs as its own process.
"""

import gc

from api.requestlog import configure_logging
from app import create_app
from services import queue

configure_logging()
app = create_app()
queue.configure(app)

# gunicorn imports this module once in its master (preload_app) and forks the
# workers. Freezing what the import made keeps those objects out of every
# later garbage collection in the workers, which shortens the collections
# that stall a request, and keeps the pages shared between the processes.
gc.freeze()

"""The WSGI entry point for production servers: `gunicorn wsgi:app`.

It builds the app from the environment, logs one line per event with the
request id, and points the task queue at QUEUE_URL, so that requests can
queue work for `lianban worker`, which runs as its own process.
"""

from api.requestlog import configure_logging
from app import create_app
from services import queue

configure_logging()
app = create_app()
queue.configure(app)

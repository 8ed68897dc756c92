"""The WSGI entry point for production servers: `gunicorn wsgi:app`.

It builds the app from the environment. The outbox worker does not run here:
start `lianban worker` as its own process, so that each message is sent by
one worker whatever the number of web processes.
"""

from app import create_app

app = create_app()

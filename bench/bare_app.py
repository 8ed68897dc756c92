"""A bare Flask app that serves one stored response, the baseline of bench/load.py.

    LOAD_BENCH_BODY_FILE=case.json gunicorn -c gunicorn.conf.py \\
        "bench.bare_app:create_app()"

`GET /api/v1/cases/<id>` returns the bytes of LOAD_BENCH_BODY_FILE as
application/json, whatever the id, with no authentication, database or
serialisation. The difference from the service's own endpoint is then the
cost of the work behind that endpoint.
"""

import os
from pathlib import Path

from flask import Flask, Response


def create_app():
    """Build the app around the body file that LOAD_BENCH_BODY_FILE names."""
    body = Path(os.environ["LOAD_BENCH_BODY_FILE"]).read_bytes()
    app = Flask(__name__)

    @app.get("/api/v1/cases/<int:case_id>")
    def get_case(case_id):
        return Response(body, mimetype="application/json")

    return app

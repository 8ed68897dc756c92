"""The Flask application factory."""

import base64
import logging

from flask import Flask, jsonify, redirect, send_from_directory
from flask.sessions import SessionInterface

import api
import models.db
from api import case_cache, errors, limits, openapi, operations, requestlog
from models.fields import data_keys
from services import evidence
from settings import (
    DEVELOPMENT_ENVS,
    load_settings,
    parse_data_keys,
    read_partner_secrets,
)

log = logging.getLogger(__name__)


class NoCookieSessions(SessionInterface):
    """Give every request an empty session that is never saved.

    Callers authenticate with bearer tokens, so Flask's signed cookie session
    would only cost a serializer per request.
    """

    def open_session(self, app, request):
        return self.make_null_session(app)

    def save_session(self, app, session, response):
        return None


def create_app(config=None):
    """Build the app from defaults, the environment and `config`."""
    app = Flask(__name__)
    app.config.update(load_settings(config))
    app.config.update(
        API_TITLE="Lianban",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        JSON_AS_ASCII=False,
    )
    app.json.ensure_ascii = False
    app.session_interface = NoCookieSessions()
    app.config["PARTNER_SECRETS"] = read_partner_secrets(
        app.config["PARTNER_SECRETS_FILE"]
    )
    data_keys.configure(
        parse_data_keys(app.config["DATA_KEYS"]),
        base64.b64decode(app.config["INDEX_KEY"]),
    )

    evidence.init_app(app)

    # The request id comes first, so that even a failed connection is logged
    # and reported with it.
    requestlog.init_app(app)
    models.db.init_app(app)
    rest = openapi.init_api(app)
    errors.init_app(app)
    limits.init_app(app)
    operations.init_app(app)
    for blueprint in api.BLUEPRINTS:
        rest.register_blueprint(blueprint, url_prefix="/api/v1")
    register_pages(app)
    app.wsgi_app = case_cache.KeptViewServer(app)
    return app


# Page folders under static/, each with an index.html whose scripts and styles
# Flask's own static route serves from /static/.
PAGES = {"app": "citizen", "console": "console"}


def register_pages(app):
    """Serve the citizen's page, the staff console and the SMS opt-out page."""
    for prefix, folder in PAGES.items():
        directory = f"{app.static_folder}/{folder}"

        def index(directory=directory):
            return send_from_directory(directory, "index.html")

        def add_slash(prefix=prefix):
            return redirect(f"/{prefix}/", code=308)

        app.add_url_rule(f"/{prefix}/", f"page_{folder}", index)
        app.add_url_rule(f"/{prefix}", f"page_{folder}_slash", add_slash)

    opt_out = f"{app.static_folder}/optout"

    # Every path under /u/ gets the same page, which checks the token's shape
    # itself. It posts the token only when the person confirms, because link
    # scanners and message previews fetch the link too.
    @app.get("/u/", defaults={"token": ""})
    @app.get("/u/<path:token>")
    def page_opt_out(token):
        response = send_from_directory(opt_out, "index.html")
        response.headers["Referrer-Policy"] = "no-referrer"
        response.headers["X-Robots-Tag"] = "noindex"
        return response

    @app.get("/app/config.json")
    def page_config():
        # The identity provider sandbox issues login codes to anyone, so the
        # page offers it only to development and test installs.
        sandbox = app.config["ENV"] in DEVELOPMENT_ENVS and app.config["IDP_URL"]
        return jsonify({"identity_sandbox_url": sandbox or None})

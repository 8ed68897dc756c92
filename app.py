"""The Flask application factory."""

import base64
import logging

from flask import Flask
from flask.sessions import SessionInterface

import api
import models.db
from api import case_cache, errors, limits, openapi, operations, requestlog
from models.fields import data_keys
from settings import load_settings, parse_data_keys, read_partner_secrets

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
    app.wsgi_app = case_cache.KeptViewServer(app)
    return app

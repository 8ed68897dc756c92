"""Rate limits per caller, kept in memory for one process or in Redis for several.

Logins are limited per client address, staff logins also per username, and
password changes per caller, on top of the account lockout; lookups are
limited per staff member. The limits are
settings (LOGIN_RATE_LIMIT, LOGIN_ADDRESS_RATE_LIMIT, LOOKUP_RATE_LIMIT) and a
refusal is a 429 in the API's error shape with a Retry-After header.
"""

from flask import current_app, g, request
from flask_limiter import Limiter
from flask_limiter.util import get_remote_address

limiter = Limiter(key_func=get_remote_address)


def init_app(app):
    app.config.setdefault("RATELIMIT_STORAGE_URI", app.config["RATE_LIMIT_STORAGE_URL"])
    app.config.setdefault("RATELIMIT_HEADERS_ENABLED", True)
    for name in ("RATELIMIT_DEFAULT", "RATELIMIT_APPLICATION"):
        if app.config.get(name):
            raise ValueError(
                f"{name} is not supported: limits are set per operation with the "
                "decorators in api/limits.py."
            )
    limiter.init_app(app)
    # Every limit here is a decorator, which checks its own operation.
    # flask-limiter 4.1 also installs a hook that looks for default and
    # application limits before every request. With none configured it finds
    # nothing, yet costs about a third of a cached case view, so it is removed.
    app.before_request_funcs[None].remove(limiter._check_request_limit)


def _setting(name):
    return lambda: current_app.config[name]


def _username():
    from services.staff import normalise_username

    body = request.get_json(silent=True)
    name = body.get("username") if isinstance(body, dict) else None
    # Normalised as the account lookup does, so that a full-width or upper-case
    # spelling of the same name shares its budget.
    return f"login:{normalise_username(str(name))[:64]}" if name else "login:-"


def _caller():
    return f"caller:{getattr(g, 'caller', None) or get_remote_address()}"


login_per_username = limiter.limit(
    _setting("LOGIN_RATE_LIMIT"), key_func=_username, scope="login-username"
)
# One budget per client address across the staff and the citizen logins.
login_per_address = limiter.shared_limit(
    _setting("LOGIN_ADDRESS_RATE_LIMIT"),
    scope="login-address",
    key_func=lambda: f"login-address:{get_remote_address()}",
)
password_change_per_caller = limiter.limit(
    _setting("LOGIN_RATE_LIMIT"), key_func=_caller, scope="password-change"
)
# One budget per staff member across every lookup endpoint.
lookup_per_caller = limiter.shared_limit(
    _setting("LOOKUP_RATE_LIMIT"), scope="lookup", key_func=_caller
)

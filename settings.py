"""Configuration: defaults, then the environment, then the caller's mapping."""

import base64
import json
import logging
import os
import secrets
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULTS = {
    "ENV": "development",
    "VAR_DIR": "var",
    "DATABASE_URL": None,
    "SECRET_KEY": None,
    "DATA_KEYS": None,
    "INDEX_KEY": None,
    "PUBLIC_URL": "http://127.0.0.1:5000",
    "JWT_ISSUER": "lianban",
    "JWT_AUDIENCE": "lianban-api",
    "ACCESS_TOKEN_SECONDS": 900,
    # Tokens whose signature each server process remembers having checked.
    "VERIFIED_TOKEN_CACHE_SIZE": 10_000,
    # Rendered case views each server process keeps, and for how many seconds.
    "CASE_VIEW_CACHE_SIZE": 5_000,
    "CASE_VIEW_CACHE_SECONDS": 600,
    "REFRESH_TOKEN_SECONDS": 14 * 24 * 3600,
    "IDP_URL": None,
    "IDP_APPID": None,
    "IDP_SECRET": None,
    "WECHATPAY_URL": None,
    "WECHATPAY_KEYS_DIR": None,
    "ALIPAY_URL": None,
    "ALIPAY_KEYS_DIR": None,
    "PARTNER_SECRETS_FILE": None,
    "PAYMENT_TTL_SECONDS": 900,
    # The maximum one order may collect; a larger debt is paid at the counter.
    "PAYMENT_MAX_FEN": 10_000_000,
    "MAX_CONTENT_LENGTH": 1024 * 1024,
    "PARTNER_CONNECT_TIMEOUT": 3.05,
    "PARTNER_READ_TIMEOUT": 10.0,
    "QUEUE_URL": None,
    "QUEUE_NAME": "lianban",
    "QUEUE_MAX_POLL_SECONDS": 0.5,
    "OUTBOX_MAX_BACKOFF_SECONDS": 3600,
    "OUTBOX_LEASE_SECONDS": 60,
    "PASSWORD_HASH_PROFILE": "RFC_9106_LOW_MEMORY",
    "LOGIN_MAX_FAILURES": 5,
    "LOGIN_LOCK_SECONDS": 900,
    "LOGIN_RATE_LIMIT": "10 per minute",
    "LOGIN_ADDRESS_RATE_LIMIT": "120 per minute",
    "LOOKUP_RATE_LIMIT": "60 per minute",
    "RATE_LIMIT_STORAGE_URL": "memory://",
    "COUNTER_CONSENT_SECONDS": 8 * 3600,
    "PAGE_SIZE_MAX": 100,
    "PERSONAL_DATA_RETENTION_DAYS": 3 * 365,
    "ROSTER_MAX_BYTES": 512 * 1024 * 1024,
    "ROSTER_MAX_PROBLEMS": 1000,
    "ROSTER_LEASE_SECONDS": 300,
    "ROSTER_MAX_ATTEMPTS": 3,
    "READY_TIMEOUT_SECONDS": 1.0,
    "QUEUE_OUTAGE_MAX_BACKOFF_SECONDS": 60.0,
    "METER_PHOTO_MAX_BYTES": 5 * 1024 * 1024,
    "IDEMPOTENCY_TTL_SECONDS": 24 * 3600,
    "METRICS_TOKEN": None,
    "TRANSFER_SERVICE_DAYS": 5,
    "EVIDENCE_KEYS": None,
    "SUBSCRIBE_URL": None,
    "SMS_URL": None,
    "SMS_ACCESS_KEY_ID": None,
    "SMS_ACCESS_KEY_SECRET": None,
    "SMS_SIGN_NAME": "泉城联办",
}

# Environment variables are LIANBAN_<KEY>, except the conventional DATABASE_URL.
ENV_NAMES = {key: f"LIANBAN_{key}" for key in DEFAULTS} | {
    "DATABASE_URL": "DATABASE_URL"
}

DEVELOPMENT_ENVS = ("development", "testing")


def _coerce(key, text):
    default = DEFAULTS[key]
    if isinstance(default, bool):
        return text.lower() in ("1", "true", "yes")
    if isinstance(default, int):
        return int(text)
    if isinstance(default, float):
        return float(text)
    return text


def load_settings(overrides=None):
    """Return the settings as a dict, with development secrets filled in."""
    settings = dict(DEFAULTS)
    for key, name in ENV_NAMES.items():
        if name in os.environ:
            settings[key] = _coerce(key, os.environ[name])
    settings.update(overrides or {})

    var_dir = Path(settings["VAR_DIR"])
    if settings["DATABASE_URL"] is None:
        var_dir.mkdir(parents=True, exist_ok=True)
        settings["DATABASE_URL"] = f"sqlite:///{var_dir / 'lianban.db'}"
    _fill_secrets(settings, var_dir)
    return settings


def _fill_secrets(settings, var_dir):
    missing = [k for k in ("SECRET_KEY", "DATA_KEYS", "INDEX_KEY") if not settings[k]]
    if missing and settings["ENV"] not in DEVELOPMENT_ENVS:
        names = ", ".join(ENV_NAMES[key] for key in missing)
        raise RuntimeError(f"{names} must be set outside development.")
    if missing:
        stored = _development_secrets(var_dir)
        for key in missing:
            settings[key] = stored[key]


def _development_secrets(var_dir):
    """Read or create the secrets a development install keeps in its var dir."""
    path = var_dir / "development-secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    var_dir.mkdir(parents=True, exist_ok=True)
    stored = {
        "SECRET_KEY": secrets.token_urlsafe(48),
        "DATA_KEYS": "1:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "INDEX_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
    }
    path.write_text(json.dumps(stored))
    path.chmod(0o600)
    log.info("development secrets created path=%s", path)
    return stored


def parse_data_keys(text):
    """Parse `1:<base64>,2:<base64>` into a mapping of version to key bytes."""
    keys = {}
    for item in text.split(","):
        version, _, encoded = item.strip().partition(":")
        keys[int(version)] = base64.b64decode(encoded)
    return keys


def read_partner_secrets(path):
    """Return the shared secret of each partner from the secrets file."""
    if not path:
        return {}
    data = json.loads(Path(path).read_text())
    found = {code: [entry["secret"]] for code, entry in data["utilities"].items()}
    if "registry" in data:
        found["registry"] = [data["registry"]["secret"]]
    return found

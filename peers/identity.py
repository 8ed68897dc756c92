"""Mini-program identity provider: the code2session login with real-name identity.

It implements the identity provider side of docs/partners.md. A tester requests
a login code from `POST /_sandbox/codes` for a made-up identity, and the hub
exchanges the code at `GET /sns/jscode2session` for the openid and the
identity. A code works once and expires after `--code-lifetime` seconds.

    python -m peers.identity --port 0 --port-file PATH --keys DIR

Codes live in memory and are lost when the process stops. Logs carry openids,
never names, ID numbers, phone numbers, codes or secrets.
"""

import argparse
import base64
import hashlib
import hmac
import logging
import secrets
import sys
import threading
import time
from dataclasses import dataclass

from flask import Flask, jsonify, request

from domain.identifiers import InvalidIdentifier, normalise_id_number, normalise_mobile
from peers.common import (
    RequestError,
    add_server_arguments,
    configure_logging,
    install_json_errors,
    parse_json_body,
    serve,
)
from peers.devkeys import ensure_dev_keys

# Named explicitly because __name__ is "__main__" under `python -m`.
logger = logging.getLogger("peers.identity")

ID_TYPES = (
    "居民身份证",
    "护照",
    "港澳居民来往内地通行证",
    "台湾居民来往大陆通行证",
    "外国人永久居留身份证",
    "军官证",
    "其他",
)
RESIDENT_ID_TYPE = "居民身份证"
DEFAULT_CODE_LIFETIME = 300
# Used and expired codes are remembered this long after they expire, so that
# they get 40163 or 40226 rather than 40029.
USED_CODE_RETENTION = 3600

# errcode values of the mini-program platform.
ERR_INVALID_GRANT_TYPE = 40002
ERR_INVALID_CREDENTIAL = 40013
ERR_INVALID_CODE = 40029
ERR_CODE_USED = 40163
ERR_CODE_EXPIRED = 40226
ERR_MISSING_APPID = 41002
ERR_MISSING_SECRET = 41004
ERR_MISSING_CODE = 41008


@dataclass
class IssuedCode:
    identity: dict
    openid: str
    expires_at: float
    used: bool = False


def derive_openid(idp_secret: str, id_type: str, id_number: str) -> str:
    """Return the openid of one identity: stable, and not guessable without the secret.

    Resident ID numbers are compared with an upper-case check character, because
    a lower-case x is the same X.
    """
    if id_type == RESIDENT_ID_TYPE:
        id_number = id_number.upper()
    message = f"openid\n{id_type}\n{id_number.strip()}".encode()
    digest = hmac.new(idp_secret.encode(), message, hashlib.sha256).digest()
    # An "o" and 27 URL-safe characters: the 28-character shape of a real openid.
    return "o" + base64.urlsafe_b64encode(digest).decode("ascii")[:27]


def _validate_identity(body: object) -> dict:
    if not isinstance(body, dict):
        raise RequestError(400, "invalid_request", "The body must be a JSON object.")
    for name in ("name", "id_number"):
        value = body.get(name)
        if value is None:
            raise RequestError(400, "missing_field", f"{name} is required.")
        if not isinstance(value, str) or not value.strip():
            raise RequestError(
                400, "invalid_field", f"{name} must be a non-empty string."
            )
    id_type = body.get("id_type")
    if id_type is None:
        raise RequestError(400, "missing_field", "id_type is required.")
    if id_type not in ID_TYPES:
        raise RequestError(
            400, "invalid_field", f"id_type must be one of {', '.join(ID_TYPES)}."
        )
    phone = body.get("phone")
    if phone is not None and (not isinstance(phone, str) or not phone.strip()):
        raise RequestError(
            400, "invalid_field", "phone must be a non-empty string when given."
        )
    # The platform only returns identities it verified, so the sandbox rejects
    # ID and phone numbers that no real person could have.
    try:
        id_number = normalise_id_number(id_type, body["id_number"]).value
        phone = normalise_mobile(phone, field="phone") if phone is not None else None
    except InvalidIdentifier as error:
        raise RequestError(
            400, "invalid_field", f"{error.field} is invalid: {error}"
        ) from None
    return {
        "name": body["name"].strip(),
        "id_type": id_type,
        "id_number": id_number,
        "phone": phone,
    }


class IdentityProvider:
    """Issued login codes and the code2session exchange, guarded by one lock."""

    def __init__(self, appid: str, secret: str, code_lifetime: int):
        if isinstance(code_lifetime, bool) or not isinstance(code_lifetime, int):
            raise ValueError("code_lifetime must be a whole number of seconds.")
        if code_lifetime < 1:
            raise ValueError("code_lifetime must be at least 1 second.")
        self.appid = appid
        self.secret = secret
        self.code_lifetime = code_lifetime
        self._lock = threading.Lock()
        self._codes: dict[str, IssuedCode] = {}

    def issue_code(self, identity: dict) -> dict:
        code = secrets.token_hex(16)
        openid = derive_openid(self.secret, identity["id_type"], identity["id_number"])
        now = time.monotonic()
        with self._lock:
            self._forget_old_codes(now)
            self._codes[code] = IssuedCode(identity, openid, now + self.code_lifetime)
        logger.info(
            "issued login code openid=%s expires_in=%s", openid, self.code_lifetime
        )
        return {"code": code, "expires_in": self.code_lifetime}

    def exchange(self, params) -> dict:
        """Return the session for a code2session request, or the errcode response."""
        appid = params.get("appid")
        secret = params.get("secret")
        js_code = params.get("js_code")
        grant_type = params.get("grant_type")
        if not appid:
            return _error(ERR_MISSING_APPID, "appid missing")
        if not secret:
            return _error(ERR_MISSING_SECRET, "appsecret missing")
        if not js_code:
            return _error(ERR_MISSING_CODE, "missing js_code")
        if grant_type != "authorization_code":
            return _error(
                ERR_INVALID_GRANT_TYPE,
                "invalid grant_type, expected authorization_code",
            )
        appid_matches = hmac.compare_digest(appid.encode(), self.appid.encode())
        secret_matches = hmac.compare_digest(secret.encode(), self.secret.encode())
        if not (appid_matches and secret_matches):
            logger.warning("rejected code2session: wrong appid or secret")
            return _error(ERR_INVALID_CREDENTIAL, "invalid appid or secret")

        now = time.monotonic()
        with self._lock:
            self._forget_old_codes(now)
            issued = self._codes.get(js_code)
            if issued is None:
                outcome = _error(ERR_INVALID_CODE, "invalid code")
            elif issued.used:
                outcome = _error(ERR_CODE_USED, "code been used")
            elif now >= issued.expires_at:
                outcome = _error(ERR_CODE_EXPIRED, "code expired")
            else:
                issued.used = True
                outcome = {
                    "openid": issued.openid,
                    "session_key": base64.b64encode(secrets.token_bytes(16)).decode(),
                    "real_name": dict(issued.identity),
                }
        if "errcode" in outcome:
            openid = issued.openid if issued is not None else None
            logger.warning(
                "rejected code2session errcode=%d openid=%s", outcome["errcode"], openid
            )
        else:
            logger.info("code2session succeeded openid=%s", outcome["openid"])
        return outcome

    def _forget_old_codes(self, now: float) -> None:
        cutoff = now - USED_CODE_RETENTION
        old = [
            code for code, issued in self._codes.items() if issued.expires_at < cutoff
        ]
        for code in old:
            del self._codes[code]


def _error(errcode: int, errmsg: str) -> dict:
    return {"errcode": errcode, "errmsg": errmsg}


def create_app(config: dict) -> Flask:
    """Build the identity provider app.

    `config` keys: `appid` and `secret` (required), `code_lifetime` in whole
    seconds (default 300). Raises ValueError on an invalid lifetime.
    """
    provider = IdentityProvider(
        config["appid"],
        config["secret"],
        config.get("code_lifetime", DEFAULT_CODE_LIFETIME),
    )
    app = Flask("peers.identity")
    app.json.ensure_ascii = False
    app.extensions["identity_provider"] = provider
    install_json_errors(app)

    @app.get("/sns/jscode2session")
    def jscode2session():
        # The platform returns 200 for failures too, with errcode and errmsg.
        return jsonify(provider.exchange(request.args))

    @app.post("/_sandbox/codes")
    def sandbox_issue_code():
        identity = _validate_identity(parse_json_body(request.get_data()))
        return jsonify(provider.issue_code(identity))

    @app.after_request
    def allow_pages_to_request_codes(response):
        # The hub's citizen page, served from another origin, requests codes
        # here as the mini-program would, so this endpoint allows CORS.
        if request.path == "/_sandbox/codes":
            response.headers["Access-Control-Allow-Origin"] = "*"
            response.headers["Access-Control-Allow-Methods"] = "POST"
            response.headers["Access-Control-Allow-Headers"] = "Content-Type"
        return response

    @app.get("/_sandbox/health")
    def sandbox_health():
        return jsonify({"status": "ok", "appid": provider.appid})

    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m peers.identity",
        description="Simulate the mini-program identity provider (code2session).",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--code-lifetime",
        type=int,
        default=DEFAULT_CODE_LIFETIME,
        help=f"Seconds a login code stays valid (default {DEFAULT_CODE_LIFETIME}).",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)

    keys = ensure_dev_keys(args.keys)
    try:
        app = create_app(
            {
                "appid": keys.idp_appid,
                "secret": keys.idp_secret,
                "code_lifetime": args.code_lifetime,
            }
        )
    except ValueError as error:
        logger.error("cannot start the identity provider: %s", error)
        return 2
    serve(app, "identity provider", args.host, args.port, args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Mini-program subscribe messages: the platform's access token and send API.

It plays the platform side of subscribe messages on loopback:

- `GET /cgi-bin/token?grant_type=client_credential&appid=&secret=` and
  `POST /cgi-bin/stable_token` issue an access token with `expires_in`;
- `POST /cgi-bin/message/subscribe/send?access_token=` takes
  `{touser, template_id, page, data: {key: {value}}, miniprogram_state, lang}`
  and returns `{errcode, errmsg}` with HTTP 200, as the platform does.

errcode values: 0 ok, 40001 invalid or expired access token, 40003 invalid
openid, 40037 unknown template id, 43101 the user has no subscription left
for the template or refused it, 47003 template data that breaks a field rule.

What the user taps in WeChat is simulated by `POST /_sandbox/subscriptions`.
A one-time template allows one message per accepted request; a long-term
template allows any number until the user turns it off. Accepted messages are
listed by `GET /_sandbox/messages`, `GET /_sandbox/tokens` counts the tokens
issued, and `POST /_sandbox/tokens/expire` expires every issued token.
State lives in memory.

    python -m peers.subscribe_sandbox --port 0 --port-file PATH --keys DIR

Logs carry openids and template ids, never message text.
"""

import argparse
import hmac
import logging
import re
import secrets
import sys
import threading
import time
from dataclasses import dataclass

from flask import Flask, jsonify, request

from peers.common import (
    RequestError,
    add_server_arguments,
    configure_logging,
    install_json_errors,
    now_iso,
    parse_json_body,
    serve,
)
from peers.devkeys import ensure_dev_keys

logger = logging.getLogger("peers.subscribe_sandbox")

DEFAULT_TOKEN_LIFETIME = 7200

ERR_INVALID_TOKEN = 40001
ERR_INVALID_GRANT_TYPE = 40002
ERR_INVALID_OPENID = 40003
ERR_INVALID_APPID = 40013
ERR_INVALID_TEMPLATE = 40037
ERR_INVALID_SECRET = 40125
ERR_MISSING_TOKEN = 41001
ERR_USER_REFUSED = 43101
ERR_INVALID_DATA = 47003

# The templates chosen for the mini-program in the platform's console: each
# field key and its type, and whether the template is long-term.
TEMPLATES = {
    "LBzTransferStatus0000000000000000000000001": {
        "title": "过户进度通知",
        "fields": {
            "thing1": "thing",
            "phrase2": "phrase",
            "thing3": "thing",
            "time4": "time",
            "character_string5": "character_string",
        },
        "long_term": False,
    },
    "LBzReleaseNotice00000000000000000000000002": {
        "title": "户号过户完成证明",
        "fields": {
            "thing1": "thing",
            "character_string2": "character_string",
            "time3": "time",
            "thing4": "thing",
        },
        "long_term": True,
    },
}

OPENID = re.compile(r"^o[A-Za-z0-9_-]{27}$")
CHINESE = re.compile(r"^[\u4e00-\u9fff]+$")
CHARACTER_STRING = re.compile(r"^[\x21-\x7e]+$")
TIME = re.compile(
    r"^(\d{4}年\d{1,2}月\d{1,2}日 ?)?\d{1,2}:\d{2}(:\d{2})?$"
    r"|^\d{4}[-/.]\d{1,2}[-/.]\d{1,2} \d{1,2}:\d{2}(:\d{2})?$"
)


def field_problem(kind, value):
    """Return why `value` breaks the rule of a field of type `kind`, or None."""
    if not isinstance(value, str) or value == "":
        return "must be a non-empty string"
    if any(not char.isprintable() for char in value):
        return "must not contain control characters"
    if kind == "thing" and len(value) > 20:
        return "thing allows at most 20 characters"
    if kind == "phrase" and not (len(value) <= 5 and CHINESE.match(value)):
        return "phrase allows at most 5 Chinese characters"
    if kind == "character_string" and not (
        len(value) <= 32 and CHARACTER_STRING.match(value)
    ):
        return "character_string allows at most 32 letters, digits or symbols"
    if kind == "time" and not TIME.match(value):
        return "time must read like 2026年12月4日 15:01 or 2026-12-04 15:01"
    return None


@dataclass
class Subscription:
    state: str
    remaining: int = 0


class SubscribePlatform:
    """Tokens, subscriptions and accepted messages, guarded by one lock."""

    def __init__(self, appid, secret, token_lifetime):
        self.appid = appid
        self.secret = secret
        self.token_lifetime = token_lifetime
        self._lock = threading.Lock()
        self._tokens = {}
        self.tokens_issued = 0
        self._subscriptions = {}
        self._messages = []

    def issue_token(self, grant_type, appid, secret):
        if grant_type != "client_credential":
            return _error(ERR_INVALID_GRANT_TYPE, "invalid grant_type")
        if not hmac.compare_digest((appid or "").encode(), self.appid.encode()):
            return _error(ERR_INVALID_APPID, "invalid appid")
        if not hmac.compare_digest((secret or "").encode(), self.secret.encode()):
            logger.warning("rejected token request: wrong secret")
            return _error(ERR_INVALID_SECRET, "invalid appsecret")
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = time.monotonic() + self.token_lifetime
            self.tokens_issued += 1
        logger.info("issued access token expires_in=%d", self.token_lifetime)
        return {"access_token": token, "expires_in": self.token_lifetime}

    def expire_tokens(self):
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
        logger.info("expired every access token count=%d", count)
        return count

    def subscribe(self, openid, template_id, result):
        template = TEMPLATES[template_id]
        with self._lock:
            current = self._subscriptions.get((openid, template_id))
            if result != "accept":
                current = Subscription(state=result)
            elif template["long_term"]:
                current = Subscription(state="accept", remaining=1)
            else:
                remaining = current.remaining if current else 0
                current = Subscription(state="accept", remaining=remaining + 1)
            self._subscriptions[(openid, template_id)] = current
        logger.info(
            "subscription recorded openid=%s template=%s result=%s remaining=%d",
            openid,
            template_id,
            result,
            current.remaining,
        )
        return {"state": current.state, "remaining": current.remaining}

    def send(self, access_token, body):
        """Return the platform's response to one send request."""
        problem = self._token_problem(access_token)
        if problem:
            return problem
        if not isinstance(body, dict):
            return _error(ERR_INVALID_DATA, "argument invalid! body must be an object")
        touser = body.get("touser")
        template_id = body.get("template_id")
        if not isinstance(touser, str) or not OPENID.match(touser):
            return _error(ERR_INVALID_OPENID, "invalid openid")
        template = TEMPLATES.get(template_id)
        if template is None:
            return _error(ERR_INVALID_TEMPLATE, "invalid template_id")
        problem = _data_problem(template, body.get("data"))
        if problem:
            return _error(ERR_INVALID_DATA, f"argument invalid! {problem}")
        with self._lock:
            outcome = self._take_quota(touser, template_id, template)
            if outcome is None:
                msgid = len(self._messages) + 1
                self._messages.append(
                    {
                        "msgid": msgid,
                        "touser": touser,
                        "template_id": template_id,
                        "page": body.get("page"),
                        "data": body["data"],
                        "miniprogram_state": body.get("miniprogram_state", "formal"),
                        "lang": body.get("lang", "zh_CN"),
                        "received_at": now_iso(),
                    }
                )
        if outcome is not None:
            logger.info(
                "message rejected openid=%s template=%s errcode=%d",
                touser,
                template_id,
                outcome["errcode"],
            )
            return outcome
        logger.info("message accepted openid=%s template=%s", touser, template_id)
        return {"errcode": 0, "errmsg": "ok", "msgid": msgid}

    def _token_problem(self, access_token):
        if not access_token:
            return _error(ERR_MISSING_TOKEN, "access_token missing")
        with self._lock:
            expires_at = self._tokens.get(access_token)
        if expires_at is None or expires_at <= time.monotonic():
            logger.info("rejected an invalid or expired access token")
            return _error(
                ERR_INVALID_TOKEN,
                "invalid credential, access_token is invalid or not latest",
            )
        return None

    def _take_quota(self, openid, template_id, template):
        subscription = self._subscriptions.get((openid, template_id))
        if subscription is None or subscription.state != "accept":
            return _error(ERR_USER_REFUSED, "user refuse to accept the msg")
        if template["long_term"]:
            return None
        if subscription.remaining < 1:
            return _error(ERR_USER_REFUSED, "user refuse to accept the msg")
        subscription.remaining -= 1
        return None

    def messages(self, touser=None, template_id=None):
        with self._lock:
            listed = list(self._messages)
        return [
            message
            for message in listed
            if (touser is None or message["touser"] == touser)
            and (template_id is None or message["template_id"] == template_id)
        ]


def _data_problem(template, data):
    if not isinstance(data, dict):
        return "data must be an object"
    for key in data:
        if key not in template["fields"]:
            return f"data.{key} is not a field of this template"
    for key, kind in template["fields"].items():
        entry = data.get(key)
        if not isinstance(entry, dict) or "value" not in entry:
            return f"data.{key}.value is empty"
        problem = field_problem(kind, entry["value"])
        if problem:
            return f"data.{key}.value invalid: {problem}"
    return None


def _error(errcode, errmsg):
    return {"errcode": errcode, "errmsg": errmsg}


def create_app(config):
    """Build the sandbox app; `config` has `appid`, `secret`, `token_lifetime`."""
    platform = SubscribePlatform(
        config["appid"],
        config["secret"],
        config.get("token_lifetime", DEFAULT_TOKEN_LIFETIME),
    )
    app = Flask("peers.subscribe_sandbox")
    app.json.ensure_ascii = False
    app.extensions["subscribe_platform"] = platform
    install_json_errors(app)

    @app.get("/cgi-bin/token")
    def token():
        args = request.args
        return jsonify(
            platform.issue_token(
                args.get("grant_type"), args.get("appid"), args.get("secret")
            )
        )

    @app.post("/cgi-bin/stable_token")
    def stable_token():
        body = parse_json_body(request.get_data())
        if not isinstance(body, dict):
            raise RequestError(400, "invalid_request", "The body must be an object.")
        return jsonify(
            platform.issue_token(
                body.get("grant_type"), body.get("appid"), body.get("secret")
            )
        )

    @app.post("/cgi-bin/message/subscribe/send")
    def send():
        body = parse_json_body(request.get_data())
        return jsonify(platform.send(request.args.get("access_token"), body))

    @app.post("/_sandbox/subscriptions")
    def sandbox_subscribe():
        body = parse_json_body(request.get_data())
        if not isinstance(body, dict):
            raise RequestError(400, "invalid_request", "The body must be an object.")
        if body.get("template_id") not in TEMPLATES:
            raise RequestError(400, "invalid_field", "template_id is unknown.")
        if body.get("result") not in ("accept", "reject", "ban"):
            raise RequestError(
                400, "invalid_field", "result must be accept, reject or ban."
            )
        if not isinstance(body.get("openid"), str) or not body["openid"]:
            raise RequestError(400, "invalid_field", "openid is required.")
        return jsonify(
            platform.subscribe(body["openid"], body["template_id"], body["result"])
        )

    @app.get("/_sandbox/messages")
    def sandbox_messages():
        return jsonify(
            platform.messages(
                request.args.get("touser"), request.args.get("template_id")
            )
        )

    @app.post("/_sandbox/tokens/expire")
    def sandbox_expire_tokens():
        return jsonify({"expired": platform.expire_tokens()})

    @app.get("/_sandbox/tokens")
    def sandbox_tokens():
        return jsonify({"issued": platform.tokens_issued})

    @app.get("/_sandbox/templates")
    def sandbox_templates():
        return jsonify(TEMPLATES)

    @app.get("/_sandbox/health")
    def sandbox_health():
        return jsonify({"status": "ok", "appid": platform.appid})

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m peers.subscribe_sandbox",
        description="Simulate the mini-program subscribe-message platform.",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--token-lifetime",
        type=int,
        default=DEFAULT_TOKEN_LIFETIME,
        help=f"Seconds an access token is valid (default {DEFAULT_TOKEN_LIFETIME}).",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    keys = ensure_dev_keys(args.keys)
    app = create_app(
        {
            "appid": keys.idp_appid,
            "secret": keys.idp_secret,
            "token_lifetime": args.token_lifetime,
        }
    )
    serve(app, "subscribe sandbox", args.host, args.port, args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The client for mini-program subscribe messages: access token and send.

The platform returns HTTP 200 with `errcode` for most failures. An access
token is cached per appid until shortly before `expires_in` runs out, and a
send that the platform rejects with an invalid-token errcode gets a fresh
token and is tried once more.
"""

import logging
import threading
import time

import requests

from partners.http import PartnerError, new_session, read_json

log = logging.getLogger(__name__)

PARTNER = "subscribe"
# A token is renewed this many seconds before its `expires_in` runs out.
TOKEN_MARGIN_SECONDS = 300
TOKEN_ERRORS = (40001, 42001)
USER_REFUSED = 43101
INVALID_OPENID = 40003
INVALID_DATA = 47003
# errcode -1 is the platform's "system busy, try again later".
BUSY = -1

_tokens = {}
_tokens_lock = threading.Lock()


class NotDelivered(PartnerError):
    """The platform will not deliver to this user; another channel should try."""


def forget_tokens():
    """Drop every cached access token, as a restart would."""
    with _tokens_lock:
        _tokens.clear()


class SubscribeClient:
    def __init__(self, base_url, appid, secret, session=None, timeout=(3.05, 10)):
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.session = session or new_session()
        self.timeout = timeout

    def access_token(self, refresh=False):
        """Return a cached access token, or fetch a new one."""
        key = (self.base_url, self.appid)
        with _tokens_lock:
            cached = _tokens.get(key)
            if cached and not refresh and cached[1] > time.monotonic():
                return cached[0]
            token, expires_in = self._fetch_token()
            lifetime = max(expires_in - TOKEN_MARGIN_SECONDS, expires_in / 2)
            _tokens[key] = (token, time.monotonic() + lifetime)
            return token

    def send(self, openid, template_id, data, page, state="formal", ref=None):
        """Send one subscribe message; return the platform's msgid.

        Raises NotDelivered when the user has no subscription left, refused,
        or the openid is invalid, and PartnerError for other failures, with
        `retryable` set when trying later may help.
        """
        body = {
            "touser": openid,
            "template_id": template_id,
            "page": page,
            "data": {key: {"value": value} for key, value in data.items()},
            "miniprogram_state": state,
            "lang": "zh_CN",
        }
        answer = self._send(body, self.access_token())
        if answer.get("errcode") in TOKEN_ERRORS:
            log.info(
                "access token rejected; refreshing once ref=%s errcode=%s",
                ref,
                answer.get("errcode"),
            )
            answer = self._send(body, self.access_token(refresh=True))
        return self._msgid(answer, template_id, ref)

    def _msgid(self, answer, template_id, ref):
        errcode = answer.get("errcode", 0)
        if errcode == 0:
            return answer.get("msgid")
        errmsg = str(answer.get("errmsg", ""))[:120]
        log.warning(
            "subscribe message failed ref=%s template=%s errcode=%s errmsg=%s",
            ref,
            template_id,
            errcode,
            errmsg,
        )
        if errcode in (USER_REFUSED, INVALID_OPENID):
            raise NotDelivered(PARTNER, errmsg, code=errcode, retryable=False)
        retryable = errcode in TOKEN_ERRORS or errcode == BUSY
        raise PartnerError(
            PARTNER, f"errcode {errcode}: {errmsg}", code=errcode, retryable=retryable
        )

    def _fetch_token(self):
        params = {
            "grant_type": "client_credential",
            "appid": self.appid,
            "secret": self.secret,
        }
        answer = self._call("GET", "/cgi-bin/token", params=params)
        if "access_token" not in answer:
            errcode = answer.get("errcode")
            log.warning("access token request failed errcode=%s", errcode)
            raise PartnerError(PARTNER, f"token errcode {errcode}", code=errcode)
        return answer["access_token"], int(answer.get("expires_in", 7200))

    def _send(self, body, token):
        return self._call(
            "POST",
            "/cgi-bin/message/subscribe/send",
            params={"access_token": token},
            json=body,
        )

    def _call(self, method, path, **kwargs):
        try:
            response = self.session.request(
                method, self.base_url + path, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            log.warning(
                "subscribe platform unreachable path=%s error=%s",
                path,
                type(error).__name__,
            )
            raise PartnerError(PARTNER, type(error).__name__) from error
        if response.status_code != 200:
            log.warning(
                "subscribe platform status path=%s status=%s",
                path,
                response.status_code,
            )
            raise PartnerError(
                PARTNER, f"HTTP {response.status_code}", status=response.status_code
            )
        return read_json(PARTNER, response)

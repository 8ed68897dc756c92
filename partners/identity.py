"""The client for the mini-program identity provider."""

import logging
from dataclasses import dataclass

from partners.http import PartnerError, new_session, read_json

log = logging.getLogger(__name__)

# errcode values the platform returns for a bad login code.
CODE_ERRORS = {40029: "invalid", 40163: "used", 40226: "expired"}


class LoginCodeRejected(PartnerError):
    """The login code is invalid, used or expired; the user must log in again."""


@dataclass(frozen=True)
class Identity:
    openid: str
    name: str
    id_type: str
    id_number: str
    phone: str | None


class IdentityClient:
    def __init__(self, base_url, appid, secret, session=None, timeout=(3.05, 10)):
        self.base_url = base_url.rstrip("/")
        self.appid = appid
        self.secret = secret
        self.session = session or new_session()
        self.timeout = timeout

    def exchange_code(self, code):
        """Exchange a login code for the openid and the real-name identity."""
        params = {
            "appid": self.appid,
            "secret": self.secret,
            "js_code": code,
            "grant_type": "authorization_code",
        }
        try:
            response = self.session.get(
                f"{self.base_url}/sns/jscode2session",
                params=params,
                timeout=self.timeout,
            )
        except Exception as error:
            log.warning("identity provider unreachable error=%s", type(error).__name__)
            raise PartnerError("idp", type(error).__name__) from error
        if response.status_code != 200:
            log.warning("identity provider status=%s", response.status_code)
            raise PartnerError("idp", f"HTTP {response.status_code}")
        data = read_json("idp", response)
        return self._identity(data)

    def _identity(self, data):
        errcode = data.get("errcode", 0)
        if errcode in CODE_ERRORS:
            raise LoginCodeRejected(
                "idp", CODE_ERRORS[errcode], code=errcode, retryable=False
            )
        if errcode:
            log.warning("identity provider error errcode=%s", errcode)
            raise PartnerError(
                "idp", f"errcode {errcode}", code=errcode, retryable=False
            )
        real_name = data.get("real_name")
        if not data.get("openid") or not isinstance(real_name, dict):
            log.warning("identity provider response lacks openid or real_name")
            raise PartnerError("idp", "answer lacks openid or real_name")
        return Identity(
            openid=data["openid"],
            name=real_name.get("name", ""),
            id_type=real_name.get("id_type", ""),
            id_number=real_name.get("id_number", ""),
            phone=real_name.get("phone"),
        )

"""Shared pieces of the HTTP clients for partner systems."""

import json
import logging

import requests

from partners.signing import sign_request

log = logging.getLogger(__name__)


class PartnerError(Exception):
    """A failed partner call. `retryable` is true when trying again may help."""

    def __init__(self, partner, message, status=None, code=None, retryable=True):
        super().__init__(message)
        self.partner = partner
        self.status = status
        self.code = code
        self.retryable = retryable


def new_session():
    session = requests.Session()
    session.headers["User-Agent"] = "lianban/0.1"
    return session


def read_json(partner, response):
    """Return the JSON body of `response`, or raise PartnerError for garbage."""
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        log.warning(
            "partner response is not JSON partner=%s status=%s",
            partner,
            response.status_code,
        )
        raise PartnerError(
            partner, "answer is not JSON", status=response.status_code
        ) from None


class SignedClient:
    """A client that signs each request with the partner's shared secret."""

    def __init__(self, partner, base_url, secret, session=None, timeout=(3.05, 10)):
        self.partner = partner
        self.base_url = base_url.rstrip("/")
        self.secret = secret
        self.session = session or new_session()
        self.timeout = timeout

    def request(self, method, path, payload=None, message_id=None):
        """Send one signed request and return the response, whatever its status."""
        body = b""
        if payload is not None:
            body = json.dumps(payload, ensure_ascii=False).encode()
        url = self.base_url + path
        parsed = requests.utils.urlparse(url)
        signed_path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        headers = sign_request(
            self.partner, self.secret, method, signed_path, body, message_id
        )
        headers["Content-Type"] = "application/json"
        try:
            return self.session.request(
                method, url, data=body or None, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as error:
            log.warning(
                "partner call failed partner=%s %s %s error=%s",
                self.partner,
                method,
                path,
                type(error).__name__,
            )
            raise PartnerError(self.partner, f"{type(error).__name__}") from error

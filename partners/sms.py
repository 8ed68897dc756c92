"""The client for the SMS gateway: signed SendSms requests.

The request is signed with HMAC-SHA1 over the sorted form fields, as
peers/sms_sandbox.py describes. Numbers never reach the log; failures are
logged with the caller's reference and the gateway's request id.
"""

import base64
import hashlib
import hmac
import json
import logging
import secrets
import time
from urllib.parse import quote

import requests

from partners.http import PartnerError, new_session, read_json

log = logging.getLogger(__name__)

PARTNER = "sms"
# Codes after which the same request may succeed later.
RETRYABLE_CODES = {
    "isv.BUSINESS_LIMIT_CONTROL",
    "SignatureNonceUsed",
    "InvalidTimeStamp.Expired",
    "Throttling.User",
    "isp.SYSTEM_ERROR",
}
INVALID_NUMBER = "isv.MOBILE_NUMBER_ILLEGAL"


def _encode(text):
    # RFC 3986 unreserved characters stay; everything else, space too, is %XX.
    return quote(str(text), safe="-_.~")


def signature(secret, fields):
    """Return the request signature of a POST with these form fields."""
    canonical = "&".join(
        f"{_encode(name)}={_encode(fields[name])}" for name in sorted(fields)
    )
    text = f"POST&{_encode('/')}&{_encode(canonical)}"
    digest = hmac.new(f"{secret}&".encode(), text.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


class NumberRejected(PartnerError):
    """The gateway rejected the phone number; no retry will help."""


class SmsClient:
    def __init__(
        self,
        base_url,
        access_key_id,
        access_key_secret,
        sign_name,
        session=None,
        timeout=(3.05, 10),
    ):
        self.base_url = base_url.rstrip("/")
        self.access_key_id = access_key_id
        self.access_key_secret = access_key_secret
        self.sign_name = sign_name
        self.session = session or new_session()
        self.timeout = timeout

    def send(self, phone, template_code, params, ref=None):
        """Send one templated message; return the gateway's BizId.

        `ref` goes to the gateway as OutId, so `find_sent` can find the message.
        """
        answer = self._call(
            {
                "Action": "SendSms",
                "PhoneNumbers": phone,
                "SignName": self.sign_name,
                "TemplateCode": template_code,
                "TemplateParam": json.dumps(params, ensure_ascii=False),
                "OutId": str(ref or ""),
            },
            ref,
        )
        return self._biz_id(answer, ref, template_code)

    def find_sent(self, phone, day, ref):
        """Return the BizId of the message with OutId `ref` sent on `day`, or None.

        `day` is a date in China time. The gateway keeps these details for
        some days only, so look up recent messages.
        """
        answer = self._call(
            {
                "Action": "QuerySendDetails",
                "PhoneNumber": phone,
                "SendDate": day.strftime("%Y%m%d"),
                "PageSize": "50",
                "CurrentPage": "1",
            },
            ref,
        )
        if answer.get("Code") != "OK":
            self._biz_id(answer, ref, "QuerySendDetails")
        details = answer.get("SmsSendDetailDTOs", {}).get("SmsSendDetailDTO", [])
        for detail in details:
            if detail.get("OutId") == ref:
                return detail.get("BizId") or "found"
        return None

    def _call(self, action_fields, ref):
        fields = {
            **action_fields,
            "Format": "JSON",
            "Version": "2017-05-25",
            "AccessKeyId": self.access_key_id,
            "Timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "SignatureMethod": "HMAC-SHA1",
            "SignatureVersion": "1.0",
            "SignatureNonce": secrets.token_hex(16),
        }
        fields["Signature"] = signature(self.access_key_secret, fields)
        try:
            response = self.session.post(
                self.base_url + "/", data=fields, timeout=self.timeout
            )
        except requests.RequestException as error:
            log.warning(
                "sms gateway unreachable ref=%s error=%s", ref, type(error).__name__
            )
            raise PartnerError(PARTNER, type(error).__name__) from error
        if response.status_code >= 500:
            log.warning(
                "sms gateway status ref=%s status=%s", ref, response.status_code
            )
            raise PartnerError(
                PARTNER, f"HTTP {response.status_code}", status=response.status_code
            )
        return read_json(PARTNER, response)

    def _biz_id(self, answer, ref, template_code):
        code = answer.get("Code")
        if code == "OK":
            return answer.get("BizId")
        log.warning(
            "sms rejected ref=%s template=%s code=%s request_id=%s",
            ref,
            template_code,
            code,
            answer.get("RequestId"),
        )
        if code == INVALID_NUMBER:
            raise NumberRejected(PARTNER, code, code=code, retryable=False)
        raise PartnerError(
            PARTNER, str(code), code=code, retryable=code in RETRYABLE_CODES
        )

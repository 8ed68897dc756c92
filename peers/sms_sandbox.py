"""A signed HTTP SMS gateway in the shape of the common Chinese SMS APIs.

`POST /` takes form fields: `Action=SendSms`, `AccessKeyId`, `PhoneNumbers`
(comma-separated), `SignName`, `TemplateCode`, `TemplateParam` (a JSON object
of strings), optional `OutId`, and `Timestamp` (UTC, `2026-12-04T08:00:00Z`),
`SignatureNonce`, `SignatureMethod=HMAC-SHA1`, `SignatureVersion=1.0` and
`Signature`. The signature is the base64 HMAC-SHA1, under the access key
secret followed by `&`, of `POST&%2F&` and the percent-encoded canonical
query: every other field sorted by name, each name and value percent-encoded
(RFC 3986, space as %20), joined by `=` and `&`.

The response is JSON: `{"RequestId", "Code", "Message", "BizId"}`, with `Code`
`OK` on success. An error has HTTP 400 (403 for signature and key errors)
and one of these codes: `isv.MOBILE_NUMBER_ILLEGAL`, `isv.SMS_TEMPLATE_ILLEGAL`,
`isv.SMS_SIGNATURE_ILLEGAL`, `isv.TEMPLATE_MISSING_PARAMETERS`,
`isv.INVALID_JSON_PARAM`, `isv.PARAM_LENGTH_LIMIT`,
`isv.BUSINESS_LIMIT_CONTROL` (too many messages to one number in a minute),
`InvalidAccessKeyId.NotFound`, `SignatureDoesNotMatch`, `SignatureNonceUsed`,
`InvalidTimeStamp.Expired`, `MissingParameter`.

`Action=QuerySendDetails` with `PhoneNumber` and `SendDate` (yyyyMMdd, China
time), signed the same way, lists the messages sent to that number that day
under `SmsSendDetailDTOs.SmsSendDetailDTO`, each with its `OutId` and `BizId`.

Accepted messages are listed by `GET /_sandbox/messages[?phone=]` with their
text, so tests can read them. `PUT /_sandbox/settings` changes the limit per
number. State lives in memory. Logs carry biz ids and masked numbers only.

    python -m peers.sms_sandbox --port 0 --port-file PATH --keys DIR
"""

import argparse
import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from flask import Flask, jsonify, request

from domain.masking import mask_phone
from peers.common import (
    TIMEZONE,
    RequestError,
    add_server_arguments,
    configure_logging,
    install_json_errors,
    now_iso,
    parse_json_body,
    serve,
)

logger = logging.getLogger("peers.sms_sandbox")

SIGN_NAME = "泉城联办"
DEFAULT_PER_NUMBER_LIMIT = 30
TIMESTAMP_WINDOW_SECONDS = 900
MAX_NUMBERS = 1000
MOBILE = re.compile(r"^1[3-9]\d{9}$")
PLACEHOLDER = re.compile(r"\$\{(\w+)\}")

# Approved templates: their text and the longest value each variable may take.
TEMPLATES = {
    "SMS_LB_STATUS": {
        "text": "您的${utility}过户${status}。${detail}业务号${business_no}。"
        "退订请访问 https://lianban.example/u/${token}",
        "max_length": 35,
    },
    "SMS_LB_RELEASE": {
        "text": "业务号${business_no}的户号已全部过户，您不再是以下户号的户主："
        "${items}。退订请访问 https://lianban.example/u/${token}",
        "max_length": 300,
    },
}


def ensure_sms_keys(directory):
    """Create `sms.json` with an access key pair in `directory`; return its content."""
    path = Path(directory) / "sms.json"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        content = {
            "access_key_id": "LTAI" + secrets.token_hex(10),
            "access_key_secret": secrets.token_urlsafe(24),
            "sign_name": SIGN_NAME,
        }
        temporary = path.with_name(f".sms.json.{secrets.token_hex(4)}")
        temporary.write_text(json.dumps(content, ensure_ascii=False, indent=2))
        temporary.chmod(0o600)
        try:
            # A second process that lost the race keeps the first one's keys.
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return json.loads(path.read_text())


def percent(text):
    return quote(str(text), safe="-_.~")


def string_to_sign(method, fields):
    """Return the text that the request signature covers."""
    canonical = "&".join(
        f"{percent(name)}={percent(fields[name])}"
        for name in sorted(fields)
        if name != "Signature"
    )
    return f"{method}&{percent('/')}&{percent(canonical)}"


def sign(secret, method, fields):
    digest = hmac.new(
        f"{secret}&".encode(), string_to_sign(method, fields).encode(), hashlib.sha1
    ).digest()
    return base64.b64encode(digest).decode()


class SmsGatewayError(Exception):
    def __init__(self, code, message, status=400):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


class SmsGateway:
    """Keys, the per-number limit and the accepted messages, under one lock."""

    def __init__(self, keys, per_number_limit):
        self.keys = keys
        self.per_number_limit = per_number_limit
        self._lock = threading.Lock()
        self._nonces = {}
        self._recent = {}
        self._messages = []

    def call(self, fields):
        """Run one signed action; return the response fields besides Code."""
        self._check_signature(fields)
        action = fields.get("Action")
        if action == "SendSms":
            return {"BizId": self.send(fields)}
        if action == "QuerySendDetails":
            return self.query(fields)
        raise SmsGatewayError("InvalidAction.NotFound", "Specified api is not found")

    def query(self, fields):
        """Return the messages sent to one number on one day (SendDate yyyyMMdd)."""
        number = fields.get("PhoneNumber") or ""
        if not MOBILE.match(number):
            raise SmsGatewayError("isv.MOBILE_NUMBER_ILLEGAL", "手机号码格式错误")
        day = fields.get("SendDate") or ""
        if not re.fullmatch(r"\d{8}", day):
            raise SmsGatewayError("isv.INVALID_PARAMETERS", "SendDate must be yyyyMMdd")
        with self._lock:
            found = [
                {
                    "PhoneNum": m["phone"],
                    "SendStatus": 3,
                    "Content": m["text"],
                    "TemplateCode": m["template_code"],
                    "OutId": m["out_id"],
                    "BizId": m["biz_id"],
                    "SendDate": m["received_at"],
                }
                for m in self._messages
                if m["phone"] == number and m["day"] == day
            ]
        return {
            "TotalCount": len(found),
            "SmsSendDetailDTOs": {"SmsSendDetailDTO": found},
        }

    def send(self, fields):
        numbers = self._numbers(fields.get("PhoneNumbers"))
        if fields.get("SignName") != self.keys["sign_name"]:
            raise SmsGatewayError("isv.SMS_SIGNATURE_ILLEGAL", "签名不合法")
        template = TEMPLATES.get(fields.get("TemplateCode"))
        if template is None:
            raise SmsGatewayError("isv.SMS_TEMPLATE_ILLEGAL", "模板不合法")
        text = self._render(template, fields.get("TemplateParam"))
        biz_id = f"{int(time.time())}{secrets.randbelow(10**8):08d}"
        with self._lock:
            self._take_limit(numbers)
            for number in numbers:
                self._messages.append(
                    {
                        "biz_id": biz_id,
                        "phone": number,
                        "sign_name": fields["SignName"],
                        "template_code": fields["TemplateCode"],
                        "params": json.loads(fields["TemplateParam"]),
                        "text": f"【{fields['SignName']}】{text}",
                        "out_id": fields.get("OutId"),
                        "received_at": now_iso(),
                        "day": datetime.now(TIMEZONE).strftime("%Y%m%d"),
                    }
                )
        logger.info(
            "sms accepted biz_id=%s template=%s numbers=%s",
            biz_id,
            fields["TemplateCode"],
            ",".join(mask_phone(number) for number in numbers),
        )
        return biz_id

    def _check_signature(self, fields):
        for name in ("AccessKeyId", "Signature", "SignatureNonce", "Timestamp"):
            if not fields.get(name):
                raise SmsGatewayError("MissingParameter", f"{name} is mandatory")
        if fields["AccessKeyId"] != self.keys["access_key_id"]:
            raise SmsGatewayError(
                "InvalidAccessKeyId.NotFound", "Specified access key is not found.", 403
            )
        expected = sign(self.keys["access_key_secret"], "POST", fields)
        if not hmac.compare_digest(expected, fields["Signature"]):
            logger.warning("rejected a request with a wrong signature")
            raise SmsGatewayError(
                "SignatureDoesNotMatch", "Specified signature is not matched.", 403
            )
        try:
            sent = datetime.strptime(fields["Timestamp"], "%Y-%m-%dT%H:%M:%SZ")
        except ValueError:
            raise SmsGatewayError(
                "InvalidTimeStamp.Format", "Timestamp must be yyyy-MM-ddTHH:mm:ssZ."
            ) from None
        age = abs(time.time() - sent.replace(tzinfo=UTC).timestamp())
        if age > TIMESTAMP_WINDOW_SECONDS:
            raise SmsGatewayError("InvalidTimeStamp.Expired", "Timestamp has expired.")
        now = time.monotonic()
        with self._lock:
            for nonce, seen in list(self._nonces.items()):
                if now - seen > TIMESTAMP_WINDOW_SECONDS * 2:
                    del self._nonces[nonce]
            if fields["SignatureNonce"] in self._nonces:
                raise SmsGatewayError(
                    "SignatureNonceUsed", "Specified signature nonce was used already."
                )
            self._nonces[fields["SignatureNonce"]] = now

    def _numbers(self, text):
        if not text:
            raise SmsGatewayError("MissingParameter", "PhoneNumbers is mandatory")
        numbers = text.split(",")
        if len(numbers) > MAX_NUMBERS:
            raise SmsGatewayError("isv.MOBILE_COUNT_OVER_LIMIT", "手机号码数量超过限制")
        if not all(MOBILE.match(number) for number in numbers):
            raise SmsGatewayError("isv.MOBILE_NUMBER_ILLEGAL", "手机号码格式错误")
        return numbers

    def _render(self, template, text):
        try:
            params = json.loads(text or "")
        except json.JSONDecodeError:
            raise SmsGatewayError("isv.INVALID_JSON_PARAM", "JSON参数不合法") from None
        if not isinstance(params, dict) or not all(
            isinstance(value, str) for value in params.values()
        ):
            raise SmsGatewayError(
                "isv.INVALID_JSON_PARAM", "模板变量须为 JSON 对象，值均为字符串"
            )
        names = PLACEHOLDER.findall(template["text"])
        missing = [name for name in names if name not in params]
        if missing:
            raise SmsGatewayError(
                "isv.TEMPLATE_MISSING_PARAMETERS", f"模板变量缺少参数: {missing[0]}"
            )
        too_long = [n for n in names if len(params[n]) > template["max_length"]]
        if too_long:
            raise SmsGatewayError(
                "isv.PARAM_LENGTH_LIMIT", f"变量长度受限: {too_long[0]}"
            )
        return PLACEHOLDER.sub(lambda match: params[match[1]], template["text"])

    def _take_limit(self, numbers):
        now = time.monotonic()
        for number in numbers:
            recent = self._recent.setdefault(number, deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= self.per_number_limit:
                logger.info(
                    "sms rejected by the limit per number number=%s", mask_phone(number)
                )
                raise SmsGatewayError("isv.BUSINESS_LIMIT_CONTROL", "触发号码天级流控")
        for number in numbers:
            self._recent[number].append(now)

    def messages(self, phone=None):
        with self._lock:
            listed = list(self._messages)
        return [m for m in listed if phone is None or m["phone"] == phone]


def create_app(config):
    """Build the gateway; `config` has `keys` (from sms.json), `per_number_limit`."""
    gateway = SmsGateway(
        config["keys"], config.get("per_number_limit", DEFAULT_PER_NUMBER_LIMIT)
    )
    app = Flask("peers.sms_sandbox")
    app.json.ensure_ascii = False
    app.extensions["sms_gateway"] = gateway
    install_json_errors(app)

    @app.post("/")
    def send():
        request_id = secrets.token_hex(16).upper()
        try:
            answer = gateway.call(request.form.to_dict())
        except SmsGatewayError as error:
            logger.info("sms rejected request_id=%s code=%s", request_id, error.code)
            body = {
                "RequestId": request_id,
                "Code": error.code,
                "Message": error.message,
            }
            return jsonify(body), error.status
        return jsonify(
            {"RequestId": request_id, "Code": "OK", "Message": "OK", **answer}
        )

    @app.get("/_sandbox/messages")
    def sandbox_messages():
        return jsonify(gateway.messages(request.args.get("phone")))

    @app.put("/_sandbox/settings")
    def sandbox_settings():
        body = parse_json_body(request.get_data())
        limit = body.get("per_number_limit") if isinstance(body, dict) else None
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise RequestError(
                400, "invalid_field", "per_number_limit must be a whole number >= 1."
            )
        gateway.per_number_limit = limit
        return jsonify({"per_number_limit": limit})

    @app.get("/_sandbox/health")
    def sandbox_health():
        return jsonify({"status": "ok"})

    return app


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m peers.sms_sandbox",
        description="Simulate a signed HTTP SMS gateway.",
    )
    add_server_arguments(parser)
    parser.add_argument(
        "--per-number-limit",
        type=int,
        default=DEFAULT_PER_NUMBER_LIMIT,
        help="Messages one number may get per minute "
        f"(default {DEFAULT_PER_NUMBER_LIMIT}).",
    )
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    keys = ensure_sms_keys(args.keys)
    app = create_app({"keys": keys, "per_number_limit": args.per_number_limit})
    serve(app, "sms sandbox", args.host, args.port, args.port_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())

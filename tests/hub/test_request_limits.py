"""Bodies that are too large, too deep or not JSON, and log lines kept whole."""

import logging

import pytest

from api.requestlog import OneLineFormatter
from tests.hub.flows import assert_error, error_at, signed_call


@pytest.fixture
def logged_in(client, homes):
    home = homes.make(accounts=[("water", {})])
    client.login(home.buyer)
    return home


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded"]
)
def test_non_json_body_is_415(client, logged_in, content_type):
    response = client.session.post(
        client.api + "/cases",
        data=f'{{"business_no": "{logged_in.business_no}"}}'.encode(),
        headers={
            "Authorization": f"Bearer {client.token}",
            "Content-Type": content_type,
        },
        timeout=10,
    )

    body = assert_error(response, 415, "unsupported_media_type")
    assert error_at(body, "headers", "Content-Type")


def test_signed_non_json_body_is_415(stack, homes):
    response = signed_call(
        stack,
        "registry",
        "PUT",
        "/registry/businesses/T000000001",
        b'{"business_type": "\xe8\xb5\xa0\xe4\xb8\x8e"}',
        headers={"Content-Type": "text/plain"},
    )

    assert_error(response, 415, "unsupported_media_type")


def test_oversized_body_is_413(client, logged_in):
    padding = "x" * (2 * 1024 * 1024)
    response = client.session.post(
        client.api + "/cases",
        json={"business_no": logged_in.business_no, "padding": padding},
        headers={"Authorization": f"Bearer {client.token}"},
        timeout=30,
    )

    assert_error(response, 413, "payload_too_large")


@pytest.mark.parametrize("path", ["/auth/miniprogram-login", "/auth/refresh", "/cases"])
def test_deeply_nested_json_is_400(client, logged_in, path):
    body = b"[" * 100_000 + b"]" * 100_000
    response = client.session.post(
        client.api + path,
        data=body,
        headers={
            "Authorization": f"Bearer {client.token}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )

    assert_error(response, 400, "bad_request")


def test_post_without_body_is_accepted(client, logged_in):
    case = client.call("POST", "/cases", {"business_no": logged_in.business_no})
    transfer_id = case["transfers"][0]["transfer_id"]

    response = client.session.post(
        f"{client.api}/cases/{case['case_id']}/transfers/{transfer_id}/confirmation",
        headers={"Authorization": f"Bearer {client.token}"},
        timeout=10,
    )

    assert response.status_code == 200
    assert response.json()["account_confirmed"] is True


@pytest.mark.parametrize("character", ["\n", "\r", "\x00", "\x1b", "\x7f"])
def test_log_message_stays_on_one_line(character):
    record = logging.LogRecord(
        "api",
        logging.INFO,
        __file__,
        1,
        "GET %s",
        (f"/cases/1{character}FORGED",),
        None,
    )
    record.request_id = record.case_id = "-"

    line = OneLineFormatter("%(message)s").format(record)

    assert character not in line
    assert line == f"GET /cases/1\\x{ord(character):02x}FORGED"


@pytest.mark.parametrize("path", ["/auth/miniprogram-login", "/auth/refresh", "/cases"])
def test_huge_integer_is_400(client, logged_in, path):
    body = b'{"code": ' + b"9" * 4301 + b"}"
    response = client.session.post(
        client.api + path,
        data=body,
        headers={
            "Authorization": f"Bearer {client.token}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )

    assert_error(response, 400, "bad_request")


def test_oversized_chunked_body_is_413(client, logged_in):
    def chunks():
        yield b'{"business_no": "'
        for _ in range(3 * 1024):
            yield b"x" * 1024
        yield b'"}'

    response = client.session.post(
        client.api + "/cases",
        data=chunks(),
        headers={
            "Authorization": f"Bearer {client.token}",
            "Content-Type": "application/json",
        },
        timeout=30,
    )

    assert_error(response, 413, "payload_too_large")


def test_unknown_path_with_form_is_404(client):
    response = client.session.post(
        client.api + "/nonexistent", data={"x": "1"}, timeout=10
    )

    assert_error(response, 404, "not_found")


def test_oversized_notifications_answer_in_provider_format(stack):
    import requests

    padding = b"x" * (2 * 1024 * 1024)
    wechat = requests.post(
        stack.hub_url + "/api/v1/payments/notify/wechatpay",
        data=padding,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    alipay = requests.post(
        stack.hub_url + "/api/v1/payments/notify/alipay",
        data={"x": padding},
        timeout=30,
    )

    assert wechat.status_code == 413
    assert wechat.json()["code"] == "FAIL"
    assert alipay.status_code == 413
    assert alipay.text == "fail"

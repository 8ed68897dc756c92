"""Tests of the mini-program identity provider, run as a real process."""

import time

import pytest
import requests

from peers.launch import start_peers

CODE_LIFETIME = 1
IDENTITY = {
    "name": "张伟",
    "id_type": "居民身份证",
    "id_number": "37010219800101100X",
    "phone": "13800000000",
}


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("identity")
    # No hub is needed here; the utility simulator starts but receives nothing.
    with start_peers(
        workdir,
        "http://127.0.0.1:9",
        include_wechatpay=False,
        code_lifetime=CODE_LIFETIME,
    ) as running:
        yield running


def issue_code(peers, identity=IDENTITY) -> str:
    response = requests.post(peers.idp_url + "/_sandbox/codes", json=identity)
    assert response.status_code == 200, response.text
    return response.json()["code"]


def exchange(peers, code, **overrides) -> dict:
    params = {
        "appid": peers.keys.idp_appid,
        "secret": peers.keys.idp_secret,
        "js_code": code,
        "grant_type": "authorization_code",
    }
    params.update(overrides)
    params = {name: value for name, value in params.items() if value is not None}
    response = requests.get(peers.idp_url + "/sns/jscode2session", params=params)
    assert response.status_code == 200
    return response.json()


def test_code_works_once(peers):
    code = issue_code(peers)

    session = exchange(peers, code)
    again = exchange(peers, code)

    assert "errcode" not in session
    assert session["openid"].startswith("o")
    assert len(session["openid"]) == 28
    assert session["session_key"]
    assert session["real_name"] == IDENTITY
    assert again["errcode"] == 40163
    assert again["errmsg"]


def test_sandbox_code_has_lifetime(peers):
    response = requests.post(peers.idp_url + "/_sandbox/codes", json=IDENTITY)
    assert response.json()["expires_in"] == CODE_LIFETIME
    assert len(response.json()["code"]) >= 16


def test_expired_code_is_40226(peers):
    code = issue_code(peers)
    time.sleep(CODE_LIFETIME + 0.2)
    assert exchange(peers, code)["errcode"] == 40226


def test_unknown_code_is_40029(peers):
    assert exchange(peers, "0" * 32)["errcode"] == 40029


def test_wrong_secret_is_40013(peers):
    code = issue_code(peers)
    assert exchange(peers, code, secret="f" * 32)["errcode"] == 40013
    assert exchange(peers, code, appid="wx0000000000000000")["errcode"] == 40013
    # A rejected exchange does not use up the code.
    assert "openid" in exchange(peers, code)


@pytest.mark.parametrize(
    ("missing", "errcode"),
    [("appid", 41002), ("secret", 41004), ("js_code", 41008), ("grant_type", 40002)],
)
def test_missing_parameter_has_errcode(peers, missing, errcode):
    answer = exchange(peers, "0" * 32, **{missing: None})
    assert answer["errcode"] == errcode
    assert answer["errmsg"]


def test_wrong_grant_type_is_40002(peers):
    assert exchange(peers, "0" * 32, grant_type="password")["errcode"] == 40002


def test_openid_stable_per_identity(peers):
    first = exchange(peers, issue_code(peers))["openid"]
    second = exchange(peers, issue_code(peers))["openid"]
    lower_x = {**IDENTITY, "id_number": IDENTITY["id_number"].lower()}
    third = exchange(peers, issue_code(peers, lower_x))["openid"]
    other = {**IDENTITY, "id_number": "370102199001011231"}
    fourth = exchange(peers, issue_code(peers, other))["openid"]
    passport = {**IDENTITY, "id_type": "护照"}
    fifth = exchange(peers, issue_code(peers, passport))["openid"]

    assert second == first
    assert third == first
    assert fourth != first
    assert fifth != first


def test_phone_is_optional(peers):
    identity = {"name": "李娜", "id_type": "护照", "id_number": "E12345678"}
    session = exchange(peers, issue_code(peers, identity))
    assert session["real_name"] == {**identity, "phone": None}


@pytest.mark.parametrize(
    ("change", "code", "field"),
    [
        ({"name": None}, "missing_field", "name"),
        ({"name": "  "}, "invalid_field", "name"),
        ({"id_number": 370102}, "invalid_field", "id_number"),
        ({"id_number": ""}, "invalid_field", "id_number"),
        ({"id_type": None}, "missing_field", "id_type"),
        ({"id_type": "驾驶证"}, "invalid_field", "id_type"),
        ({"phone": 13800000000}, "invalid_field", "phone"),
        ({"id_number": "370102198001011001"}, "invalid_field", "id_number"),
        ({"id_number": "1234"}, "invalid_field", "id_number"),
        ({"phone": "12345"}, "invalid_field", "phone"),
    ],
)
def test_sandbox_rejects_invalid_identity(peers, change, code, field):
    identity = {**IDENTITY, **change}
    identity = {name: value for name, value in identity.items() if value is not None}
    response = requests.post(peers.idp_url + "/_sandbox/codes", json=identity)
    assert response.status_code == 400
    assert response.json()["code"] == code
    assert field in response.json()["message"]


def test_sandbox_rejects_body_not_json(peers):
    response = requests.post(peers.idp_url + "/_sandbox/codes", data=b"name=x")
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_json"


def test_sandbox_health(peers):
    response = requests.get(peers.idp_url + "/_sandbox/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"

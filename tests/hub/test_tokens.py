"""Bearer tokens that the API must reject with 401 in its error shape."""

import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest

from tests.hub.conftest import STAFF_PASSWORD
from tests.hub.flows import assert_error, citizen_request

CLAIMS = ("exp", "iat", "iss", "aud", "sub", "typ", "jti", "fam")


@pytest.fixture(params=["citizen", "staff"])
def session(request, client, homes, staffing):
    """Log a new citizen or agency staff member in; return the pair and claims.

    Every refusal below holds for both kinds of token.
    """
    if request.param == "citizen":
        pair = client.login(homes.person())
    else:
        member, _ = staffing.member("agent", login=False)
        pair = client.staff_login(member.username, STAFF_PASSWORD)
    claims = jwt.decode(pair["access_token"], options={"verify_signature": False})
    return pair, claims


def base64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header, claims, key=b""):
    """Encode a JWT by hand, signed with HMAC-SHA256 under `key`, or unsigned."""
    head = base64url(json.dumps(header).encode())
    body = base64url(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    signature = hmac.new(key, signing_input, hashlib.sha256).digest() if key else b""
    return f"{head}.{body}.{base64url(signature)}"


def crafted(stack, claims, algorithm="HS256", **changes):
    """Sign `claims` with the app's secret after applying `changes`.

    A change to None drops that claim.
    """
    claims = dict(claims)
    for name, value in changes.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return jwt.encode(claims, stack.app.config["SECRET_KEY"], algorithm=algorithm)


def get_cases(client, token):
    return citizen_request(client, "GET", "/cases", token=token)


def test_crafted_token_accepted(stack, client, session):
    _, claims = session
    token = crafted(stack, claims, jti="crafted-control")

    response = get_cases(client, token)

    assert response.status_code == 200
    assert response.json()["items"] == []


@pytest.mark.parametrize(
    "header",
    [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Token abc"],
    ids=["absent", "empty", "scheme-only", "blank", "basic", "other-scheme"],
)
def test_header_missing(client, header):
    headers = {} if header is None else {"Authorization": header}

    response = client.session.get(client.api + "/cases", headers=headers, timeout=10)

    assert_error(response, 401, "token_missing")


@pytest.mark.parametrize(
    "token",
    ["abc", "a.b.c", "Bearer", "....", "é.é.é"],
    ids=["one-part", "three-parts", "scheme-twice", "dots", "non-ascii"],
)
def test_garbage_token(client, token):
    assert_error(get_cases(client, token), 401, "token_invalid")


def test_alg_none(client, session):
    _, claims = session
    token = hand_made({"alg": "none", "typ": "JWT"}, claims)

    assert_error(get_cases(client, token), 401, "token_invalid")


def test_alg_hs512_right_key(stack, client, session):
    _, claims = session
    token = crafted(stack, claims, algorithm="HS512")

    assert_error(get_cases(client, token), 401, "token_invalid")


def test_alg_rs256_header_hmac_signed(stack, client, session):
    _, claims = session
    key = stack.app.config["SECRET_KEY"].encode()
    token = hand_made({"alg": "RS256", "typ": "JWT"}, claims, key)

    assert_error(get_cases(client, token), 401, "token_invalid")


def test_expired(stack, client, session):
    _, claims = session
    now = int(time.time())

    token = crafted(stack, claims, iat=now - 1000, exp=now - 60)

    assert_error(get_cases(client, token), 401, "token_expired")


@pytest.mark.parametrize(
    ("claim", "value"),
    [
        ("aud", "another-api"),
        ("iss", "another-issuer"),
        ("typ", "refresh"),
        ("typ", "id"),
        ("sub", 1),
        ("sub", "citizen:0"),
        ("sub", "citizen:99999999999999999999"),
        ("sub", "citizen:²"),
        ("sub", "citizen:-1"),
        ("sub", "agent:1"),
        ("sub", "staff:0"),
        ("sub", "staff:99999999999999999999"),
        ("sub", "staff:x"),
        ("sub", ""),
        ("exp", "tomorrow"),
        ("iat", "today"),
    ],
    ids=lambda value: str(value),
)
def test_wrong_claim(stack, client, session, claim, value):
    _, claims = session
    token = crafted(stack, claims, **{claim: value})

    assert_error(get_cases(client, token), 401, "token_invalid")


@pytest.mark.parametrize("claim", CLAIMS)
def test_missing_claim(stack, client, session, claim):
    _, claims = session
    token = crafted(stack, claims, **{claim: None})

    assert_error(get_cases(client, token), 401, "token_invalid")


def test_tampered_signature(client, session):
    pair, _ = session
    head, body, signature = pair["access_token"].split(".")
    flipped = "A" if signature[10] != "A" else "B"
    token = f"{head}.{body}.{signature[:10]}{flipped}{signature[11:]}"

    assert_error(get_cases(client, token), 401, "token_invalid")


def test_tampered_claims(client, session):
    pair, claims = session
    head, _, signature = pair["access_token"].split(".")
    changed = dict(claims, sub="citizen:1")
    token = f"{head}.{base64url(json.dumps(changed).encode())}.{signature}"

    assert_error(get_cases(client, token), 401, "token_invalid")


def test_refresh_token_as_access(client, session):
    pair, _ = session

    assert_error(get_cases(client, pair["refresh_token"]), 401, "token_invalid")


def refresh(client, token):
    return client.session.post(
        client.api + "/auth/refresh", json={"refresh_token": token}, timeout=10
    )


def test_access_token_at_refresh(client, session):
    pair, _ = session

    assert_error(refresh(client, pair["access_token"]), 401, "token_invalid")


def test_refresh_token_used_twice(client, session):
    pair, _ = session

    first = refresh(client, pair["refresh_token"])
    second = refresh(client, pair["refresh_token"])

    assert first.status_code == 200
    assert_error(second, 401, "token_reused")
    # Either holder of the copied token may be the thief, so the whole
    # family is revoked, including the pair the first use returned.
    renewed = first.json()
    assert_error(get_cases(client, renewed["access_token"]), 401, "token_revoked")
    assert_error(refresh(client, renewed["refresh_token"]), 401, "token_revoked")
    assert_error(get_cases(client, pair["access_token"]), 401, "token_revoked")


def test_new_login_after_revocation(client, homes):
    person = homes.person()
    pair = client.login(person)
    refresh(client, pair["refresh_token"])
    refresh(client, pair["refresh_token"])

    again = client.login(person)

    assert get_cases(client, again["access_token"]).status_code == 200


def test_refresh_token_unknown_jti(stack, client, homes):
    pair = client.login(homes.person())
    claims = jwt.decode(pair["refresh_token"], options={"verify_signature": False})
    token = crafted(stack, claims, jti="never-issued")

    assert_error(refresh(client, token), 401, "token_reused")


def test_refresh_token_expired(stack, client, homes):
    pair = client.login(homes.person())
    claims = jwt.decode(pair["refresh_token"], options={"verify_signature": False})
    now = int(time.time())
    token = crafted(stack, claims, iat=now - 1000, exp=now - 60)

    assert_error(refresh(client, token), 401, "token_expired")
    assert refresh(client, pair["refresh_token"]).status_code == 200

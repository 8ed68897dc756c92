"""Idempotency-Key: a retried write returns the first answer and changes nothing."""

import concurrent.futures
import hashlib
import json
from datetime import UTC, datetime, timedelta

import pytest
import requests

from models import Citizen, Delegation, IdempotencyRecord
from models.base import utcnow
from models.fields import data_keys
from services import housekeeping
from tests.hub.flows import assert_error

AGENCY = {
    "agency_name": "济南安居房产经纪有限公司",
    "agency_credit_code": "91370100MA3C5LXX1K",
    "scope": ["view"],
}


def later(days=30):
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def post(client, path, body, key):
    # Bytes go on the wire as they are, so a non-ASCII key can be sent.
    headers = {
        "Authorization": f"Bearer {client.token}",
        "Idempotency-Key": key.encode(),
        "Content-Type": "application/json",
    }
    return client.session.post(
        client.api + path, data=encode(body), headers=headers, timeout=10
    )


def encode(body):
    return json.dumps(body, ensure_ascii=False).encode()


@pytest.fixture
def owner_home(client, homes):
    home = homes.make()
    client.login(home.buyer)
    home.body = {**AGENCY, "business_no": home.business_no, "expires_at": later()}
    return home


def delegations_of(home):
    return (
        Delegation.select()
        .join_from(Delegation, Delegation.business.rel_model)
        .where(Delegation.business.rel_model.business_no == home.business_no)
    )


def test_repeat_returns_the_first_answer(client, owner_home):
    first = post(client, "/delegations", owner_home.body, "key-repeat-1")
    second = post(client, "/delegations", owner_home.body, "key-repeat-1")

    assert first.status_code == 201
    assert second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers
    assert delegations_of(owner_home).count() == 1


def test_other_body_with_the_same_key_is_refused(client, owner_home):
    post(client, "/delegations", owner_home.body, "key-other-body")
    changed = {**owner_home.body, "scope": ["view", "pay"]}

    response = post(client, "/delegations", changed, "key-other-body")

    assert_error(response, 422, "idempotency_key_reused")
    assert delegations_of(owner_home).count() == 1


def test_same_key_on_another_path_is_refused(client, owner_home):
    case = post(client, "/cases", {"business_no": owner_home.business_no}, "key-path")

    response = post(
        client,
        f"/cases/{case.json()['case_id']}/submission",
        {"business_no": owner_home.business_no},
        "key-path",
    )

    assert_error(response, 422, "idempotency_key_reused")


def test_key_in_flight_gets_409(client, owner_home):
    citizen = Citizen.get(
        Citizen.id_index == data_keys.blind_index(owner_home.buyer.id_number)
    )
    IdempotencyRecord.create(
        owner=f"citizen:{citizen.id}",
        key="key-in-flight",
        method="POST",
        path="/api/v1/delegations",
        body_digest=hashlib.sha256(encode(owner_home.body)).hexdigest(),
    )

    response = post(client, "/delegations", owner_home.body, "key-in-flight")

    assert_error(response, 409, "idempotency_in_flight")


def test_abandoned_key_is_taken_over(client, owner_home):
    first = post(client, "/delegations", owner_home.body, "key-abandoned")
    IdempotencyRecord.update(
        state="in_flight", created_at=utcnow() - timedelta(minutes=10)
    ).where(IdempotencyRecord.key == "key-abandoned").execute()
    other = {**owner_home.body, "scope": ["view", "pay"]}

    assert first.status_code == 201
    assert_error(
        post(client, "/delegations", other, "key-abandoned"),
        422,
        "idempotency_key_reused",
    )
    again = post(client, "/delegations", owner_home.body, "key-abandoned")
    assert again.status_code == 201
    assert "Idempotent-Replayed" not in again.headers


def test_failed_request_keeps_no_key(client, owner_home):
    bad = {**owner_home.body, "scope": ["everything"]}

    refused = post(client, "/delegations", bad, "key-after-failure")
    fixed = post(client, "/delegations", owner_home.body, "key-after-failure")

    assert refused.status_code == 422
    assert fixed.status_code == 201
    assert delegations_of(owner_home).count() == 1


def test_keys_belong_to_their_caller(client, homes, owner_home):
    post(client, "/delegations", owner_home.body, "key-shared-name")
    other_home = homes.make()
    client.login(other_home.buyer)
    body = {**owner_home.body, "business_no": other_home.business_no}

    response = post(client, "/delegations", body, "key-shared-name")

    assert response.status_code == 201
    assert "Idempotent-Replayed" not in response.headers
    assert response.json()["business_no"] == other_home.business_no


@pytest.mark.parametrize(
    "key", ["", "x" * 129, "键值", "with space", "tab\tkey"], ids=repr
)
def test_invalid_key_is_refused(client, owner_home, key):
    response = post(client, "/delegations", owner_home.body, key)

    assert_error(response, 422, "idempotency_key_invalid")
    assert delegations_of(owner_home).count() == 0


def test_parallel_copies_create_one(client, owner_home):
    def send(_):
        return post(client, "/delegations", owner_home.body, "key-parallel")

    with concurrent.futures.ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(send, range(6)))

    statuses = sorted(a.status_code for a in answers)
    assert set(statuses) <= {201, 409}
    assert statuses.count(201) >= 1
    assert delegations_of(owner_home).count() == 1
    created = {a.json()["delegation_id"] for a in answers if a.status_code == 201}
    assert len(created) == 1


def test_old_keys_are_forgotten(app, client, owner_home):
    post(client, "/delegations", owner_home.body, "key-old")
    post(client, "/delegations", {**owner_home.body, "scope": ["pay"]}, "key-new")
    IdempotencyRecord.update(created_at=utcnow() - timedelta(hours=25)).where(
        IdempotencyRecord.key == "key-old"
    ).execute()

    housekeeping.forget_old_idempotency_keys()

    keys = {r.key for r in IdempotencyRecord.select()}
    assert "key-old" not in keys
    assert "key-new" in keys


def test_openapi_documents_the_header(stack):
    spec = requests.get(stack.hub_url + "/api/v1/openapi.json", timeout=10).json()
    creates = [
        ("/api/v1/cases", "post"),
        ("/api/v1/delegations", "post"),
        ("/api/v1/window/cases", "post"),
        ("/api/v1/cases/{case_id}/transfers/{transfer_id}/payments", "post"),
    ]

    for path, method in creates:
        names = {p["name"] for p in spec["paths"][path][method].get("parameters", [])}
        assert "Idempotency-Key" in names, path

"""Rotating partners' keys; onboarding and reconnecting utilities by configuration."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from demo import scenarios
from models import OutboxMessage, PartnerKey, Utility
from services import catalog, partner_keys, queue
from tests.hub.flows import assert_error, drive_to_submission, signed_call

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def new_registry_key(app):
    key, secret = partner_keys.add_key("registry")
    yield key, secret
    PartnerKey.delete().where(PartnerKey.partner == "registry").execute()


def put_business(stack, homes, secret):
    from tests.hub.flows import new_business

    business_no, payload = new_business(homes)
    return signed_call(
        stack,
        "registry",
        "PUT",
        f"/registry/businesses/{business_no}",
        payload,
        secret=secret,
    )


def test_old_and_new_keys_both_verify(stack, homes, new_registry_key):
    _, secret = new_registry_key

    with_new = put_business(stack, homes, secret)
    with_old = put_business(stack, homes, stack.registry_secret)

    assert with_new.status_code == 201, with_new.text
    assert with_old.status_code == 201, with_old.text


def test_retired_key_is_rejected(stack, homes, new_registry_key):
    _, secret = new_registry_key

    partner_keys.retire_key("registry", secret=stack.registry_secret)

    assert_error(
        put_business(stack, homes, stack.registry_secret), 401, "signature_invalid"
    )
    assert put_business(stack, homes, secret).status_code == 201


def test_hub_signs_with_the_oldest_active_key(app):
    first, _ = partner_keys.add_key("gas", "g" * 40)
    try:
        configured = app.config["PARTNER_SECRETS"]["gas"][0]
        assert partner_keys.signing_key("gas") == configured
        partner_keys.retire_key("gas", secret=configured)
        assert partner_keys.signing_key("gas") == "g" * 40
    finally:
        PartnerKey.delete().where(PartnerKey.partner == "gas").execute()


def test_short_key_is_refused(app):
    with pytest.raises(Exception) as raised:
        partner_keys.add_key("water", "too-short")

    assert raised.value.code == "partner_key_short"


def test_new_utility_signs_with_its_key(stack, app):
    utility, created = catalog.register_utility(
        "test-water", "济南测试水务有限公司", "water", "channel"
    )
    _, secret = partner_keys.add_key("test-water")
    try:
        answer = signed_call(
            stack, "test-water", "GET", "/partner/exports", secret=secret
        )
        unknown = signed_call(
            stack, "no-such", "GET", "/partner/exports", secret=secret
        )
    finally:
        PartnerKey.delete().where(PartnerKey.partner == "test-water").execute()

    assert created
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"transfers": []}
    assert_error(unknown, 401, "partner_unknown")


@pytest.mark.parametrize(
    ("code", "kind", "connection", "base_url"),
    [
        ("Bad Code", "water", "channel", None),
        ("ok-code", "sewage", "channel", None),
        ("ok-code", "water", "system", None),
        ("ok-code", "water", "system", "ftp://x"),
        ("ok-code", "water", "pigeon", None),
    ],
    ids=["code", "kind", "system-without-url", "not-http", "connection"],
)
def test_bad_utility_settings_are_refused(app, code, kind, connection, base_url):
    with pytest.raises(ValueError):
        catalog.register_utility(code, "某机构", kind, connection, base_url)

    assert not Utility.select().where(Utility.code == "ok-code").exists()


def test_pushes_follow_a_utility_to_another_channel(stack, client, homes, app):
    home = homes.make(accounts=[("gas", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    queue.stop_embedded(stack.worker)
    base_url = Utility.get(Utility.code == "gas").base_url
    try:
        client.put_business(
            home.business_no, scenarios.business_payload(home, "completed")
        )
        transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0][
            "transfer_id"
        ]
        message = OutboxMessage.get(
            (OutboxMessage.kind == "push_transfer")
            & (OutboxMessage.ref_id == transfer_id)
        )
        assert message.state == "pending"

        _, moved = catalog.set_connection("gas", "channel")
        exported = signed_call(stack, "gas", "GET", "/partner/exports")
    finally:
        catalog.set_connection("gas", "system", base_url)
        stack.worker = queue.start_embedded(stack.app)

    assert moved == 1
    assert [t["transfer_id"] for t in exported.json()["transfers"]] == [
        str(transfer_id)
    ]
    assert OutboxMessage.get_by_id(message.id).state == "done"
    progress = client.call("GET", f"/cases/{case_id}/progress")
    assert progress["transfers"][0]["status"] == "collected"


def test_commands_register_and_switch_a_utility(tmp_path):
    env = {**os.environ, "LIANBAN_VAR_DIR": str(tmp_path)}
    env.pop("DATABASE_URL", None)
    lianban = [str(Path(sys.executable).parent / "lianban")]

    def run(*args):
        return subprocess.run(
            lianban + list(args),
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )

    assert run("db", "upgrade").returncode == 0
    added = run(
        "utility", "add", "jn-heat2", "--name", "济南测试热力有限公司", "--kind", "heat"
    )
    switched = run(
        "utility",
        "set-connection",
        "jn-heat2",
        "system",
        "--base-url",
        "http://127.0.0.1:9/heat",
    )
    refused = run(
        "utility", "set-connection", "jn-heat2", "system", "--base-url", "ftp://nowhere"
    )
    listed = run("utility", "list")
    keys = run("partner-key", "list")

    assert added.returncode == 0, added.stderr
    assert "signing key (shown once" in added.stdout
    assert switched.returncode == 0, switched.stderr
    assert "now system" in switched.stdout
    assert refused.returncode != 0
    assert "http:// or https://" in refused.stderr
    assert "jn-heat2\theat\tsystem\thttp://127.0.0.1:9/heat" in listed.stdout
    assert "jn-heat2\tactive" in keys.stdout.replace("1\t", "", 1)
    assert json.dumps("x")

"""Generated requests against every operation of the served OpenAPI document.

Schemathesis builds requests from each operation's schema, valid and not, and
checks that none gets a server error and that every answer matches the
documented schema and status codes. Requests go out as an owner of a real
case, so that object endpoints reach their checks past authentication. The
number of examples per operation is bounded to keep the run to a minute or
two; FUZZ_EXAMPLES raises it for a longer search.
"""

import os
import tempfile

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from app import create_app
from demo.client import HubClient

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


def served_document():
    """Return the OpenAPI document the app serves, built without a server.

    The document is needed when tests are collected, before the stack starts,
    and it depends on no database or setting that the stack changes.
    """
    app = create_app(
        {
            "ENV": "testing",
            "VAR_DIR": tempfile.mkdtemp(prefix="lianban-fuzz-"),
            "DATABASE_URL": "sqlite:///:memory:",
        }
    )
    with app.test_client() as http:
        return http.get("/api/v1/openapi.json").get_json()


@pytest.fixture(scope="module")
def owner(stack):
    from models.db import database
    from tests.hub.conftest import Homes

    client = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    with stack.app.app_context(), database.connection_context():
        home = Homes(stack, stack.app).make(accounts=[("water", {"arrears_fen": 900})])
    client.login(home.buyer)
    client.call("POST", "/cases", {"business_no": home.business_no})
    return client


schema = schemathesis.openapi.from_dict(served_document())


@schema.parametrize()
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
)
def test_operation(case, stack, owner):
    case.call_and_validate(
        base_url=stack.hub_url,
        headers={"Authorization": f"Bearer {owner.token}"},
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_schema_conformance,
        ],
        timeout=15,
    )

"""NUL characters are rejected wherever a request can carry them."""

import pytest

from tests.hub.flows import assert_error, citizen_request


@pytest.mark.parametrize(
    "body",
    [
        {"business_no": "JN\u00002026"},
        {"business_no": "JN2026", "nested": ["a", {"b": "\u0000"}]},
        {"key\u0000": "value"},
    ],
    ids=["value", "nested", "key"],
)
def test_nul_in_json_is_rejected(client, homes, body):
    client.login(homes.person())

    response = citizen_request(client, "POST", "/cases", body)

    error = assert_error(response, 400, "bad_request")
    assert error["errors"] == {"json": ["NUL characters are not accepted"]}


def test_nul_in_query_is_rejected(staffing):
    _, service = staffing.member("service")

    response = citizen_request(
        service, "GET", "/lookup/cases?business_no=JN%002026&reason=checking"
    )

    error = assert_error(response, 400, "bad_request")
    assert error["errors"] == {"query": ["NUL characters are not accepted"]}

"""The served OpenAPI document is valid and documents security and errors."""

import re

import pytest
import requests
from openapi_spec_validator import validate

HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
OBJECT_PARAMETERS = ("{case_id}", "{transfer_id}", "{payment_id}")
ERROR_PROPERTY_TYPES = {
    "status": "integer",
    "code": "string",
    "message": "string",
    "request_id": "string",
    "errors": "object",
}
ERROR_REF = "#/components/schemas/Error"
PARTNER_HEADERS = (
    "X-Lianban-Partner",
    "X-Lianban-Message-Id",
    "X-Lianban-Timestamp",
    "X-Lianban-Signature",
)
EMPTY_BODY_OPERATIONS = (
    "/cases/{case_id}/transfers/{transfer_id}/confirmation",
    "/cases/{case_id}/submission",
)
# The notification returns WeChat Pay's own error body for a failed check.
NOTIFY = "/api/v1/payments/notify/wechatpay"
# Values for path parameters when calling an operation without credentials.
PATH_VALUES = {"business_no": "B0000001"}


@pytest.fixture(scope="module")
def spec(stack):
    response = requests.get(stack.hub_url + "/api/v1/openapi.json", timeout=10)
    response.raise_for_status()
    return response.json()


def operations(spec):
    """Return (path, method, operation) for every operation in the document."""
    return [
        (path, method, operation)
        for path, item in spec["paths"].items()
        for method, operation in item.items()
        if method in HTTP_METHODS
    ]


def requires(operation, scheme):
    return any(scheme in requirement for requirement in operation.get("security", []))


def label(path, method):
    return f"{method.upper()} {path}"


def test_openapi_document_valid(spec):
    # Raises OpenAPIValidationError naming the first invalid part.
    validate(spec)


def test_error_schema_types(spec):
    schema = spec["components"]["schemas"]["Error"]

    for field, expected in ERROR_PROPERTY_TYPES.items():
        assert schema["properties"][field]["type"] == expected, field
    assert set(schema["required"]) == {"status", "code", "message", "request_id"}


ALIPAY_NOTIFY = "/api/v1/payments/notify/alipay"


def test_error_responses_use_error_schema(spec):
    wrong = []
    for path, method, operation in operations(spec):
        for status, response in operation["responses"].items():
            if status.startswith(("1", "2", "3")) or "$ref" in response:
                continue
            if path == NOTIFY and status == "401":
                continue
            # Alipay reads only the plain-text body `success` or `fail`.
            if path == ALIPAY_NOTIFY:
                continue
            schema = response["content"]["application/json"]["schema"]
            if schema != {"$ref": ERROR_REF}:
                wrong.append(f"{label(path, method)} {status}")

    assert wrong == []


def test_shared_error_responses_use_error_schema(spec):
    for key, response in spec["components"]["responses"].items():
        schema = response["content"]["application/json"]["schema"]
        assert schema == {"$ref": ERROR_REF}, key


def test_security_schemes(spec):
    schemes = spec["components"]["securitySchemes"]
    bearer = schemes["bearerAuth"]
    partner = schemes["partnerSignature"]

    assert bearer["type"] == "http"
    assert bearer["scheme"] == "bearer"
    assert bearer["bearerFormat"] == "JWT"
    assert partner["type"] == "apiKey"
    assert partner["in"] == "header"
    for header in PARTNER_HEADERS:
        assert header in partner["description"], header
    assert "METHOD\\nPATH\\nMESSAGE_ID\\nTIMESTAMP\\n" in partner["description"]


def test_every_operation_declares_security(spec):
    schemes = set(spec["components"]["securitySchemes"])
    undeclared = []
    unknown = []
    for path, method, operation in operations(spec):
        if "security" not in operation:
            undeclared.append(label(path, method))
            continue
        for requirement in operation["security"]:
            unknown.extend(set(requirement) - schemes)

    assert undeclared == []
    assert unknown == []


def test_public_operations(spec):
    public = {
        label(path, method)
        for path, method, operation in operations(spec)
        if operation["security"] == []
    }

    assert public == {
        "POST /api/v1/auth/miniprogram-login",
        "POST /api/v1/auth/login",
        "POST /api/v1/auth/refresh",
        "GET /api/v1/utilities",
        "GET /api/v1/agreements/{service_org}",
        "POST /api/v1/payments/notify/wechatpay",
        "POST /api/v1/payments/notify/alipay",
        "POST /api/v1/notifications/sms-opt-out",
    }


def test_bearer_operations_document_401_and_403(spec):
    citizen = [
        (path, method, operation)
        for path, method, operation in operations(spec)
        if requires(operation, "bearerAuth")
    ]
    missing = [
        label(path, method)
        for path, method, operation in citizen
        if not {"401", "403"} <= set(operation["responses"])
    ]

    assert len(citizen) >= 15
    assert missing == []


def test_partner_operations_document_401(spec):
    missing = [
        label(path, method)
        for path, method, operation in operations(spec)
        if requires(operation, "partnerSignature")
        and "401" not in operation["responses"]
    ]

    assert missing == []


def test_object_operations_document_404(spec):
    objects = [
        (path, method, operation)
        for path, method, operation in operations(spec)
        if any(parameter in path for parameter in OBJECT_PARAMETERS)
    ]
    missing = [
        label(path, method)
        for path, method, operation in objects
        if "404" not in operation["responses"]
    ]

    assert len(objects) >= 13
    assert missing == []


def test_json_body_operations_document_body_errors(spec):
    missing = []
    for path, method, operation in operations(spec):
        content = operation.get("requestBody", {}).get("content", {})
        if "application/json" not in content:
            continue
        for status in ("413", "415"):
            if status not in operation["responses"]:
                missing.append(f"{label(path, method)} {status}")

    assert missing == []


@pytest.mark.parametrize("path", EMPTY_BODY_OPERATIONS)
def test_empty_body_optional(spec, path):
    body = spec["paths"]["/api/v1" + path]["post"]["requestBody"]
    schema_ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]

    assert body["required"] is False
    assert schema["properties"] == {}
    assert schema["additionalProperties"] is False


@pytest.mark.parametrize("field", ["building_area", "inner_area"])
def test_area_bounds_numeric(spec, field):
    business = spec["paths"]["/api/v1/registry/businesses/{business_no}"]["put"]
    schema_ref = business["requestBody"]["content"]["application/json"]["schema"]
    schema = spec["components"]["schemas"][schema_ref["$ref"].rsplit("/", 1)[-1]]
    area = schema["properties"][field]

    assert area["minimum"] == 0
    assert area["maximum"] == 9999999999.99
    assert not isinstance(area["minimum"], str)
    assert not isinstance(area["maximum"], str)


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/api/v1/payments/{payment_id}/qr.png", "image/png"),
        ("/api/v1/payments/{payment_id}/qr.svg", "image/svg+xml"),
        ("/api/v1/partner/exports", "text/csv"),
        ("/api/v1/partner/exports", "application/json"),
    ],
)
def test_success_content_types(spec, path, content_type):
    success = spec["paths"][path]["get"]["responses"]["200"]

    assert content_type in success["content"]


def test_notify_documents_body(spec):
    operation = spec["paths"][NOTIFY]["post"]
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}

    assert operation["requestBody"]["required"] is True
    assert "application/json" in operation["requestBody"]["content"]
    assert operation["description"]
    assert headers == {
        "Wechatpay-Timestamp",
        "Wechatpay-Nonce",
        "Wechatpay-Signature",
        "Wechatpay-Serial",
    }


def test_secured_operations_reject_anonymous(spec, stack):
    """Each operation that declares security returns 401 without credentials."""
    answers = {}
    for path, method, operation in operations(spec):
        if not operation["security"]:
            continue
        url = re.sub(r"\{(\w+)\}", lambda m: PATH_VALUES.get(m.group(1), "1"), path)
        response = requests.request(method, stack.hub_url + url, timeout=10)
        answers[label(path, method)] = (
            response.status_code,
            response.json().get("code"),
            response.json().get("request_id") is not None,
        )

    expected = {}
    for path, method, operation in operations(spec):
        if requires(operation, "bearerAuth"):
            expected[label(path, method)] = (401, "token_missing", True)
        elif requires(operation, "partnerSignature"):
            expected[label(path, method)] = (401, "signature_missing", True)
    assert answers == expected


def test_payment_body_chooses_wallet(spec):
    path = "/api/v1/cases/{case_id}/transfers/{transfer_id}/payments"
    body = spec["paths"][path]["post"]["requestBody"]
    schema_ref = body["content"]["application/json"]["schema"]["$ref"]
    schema = spec["components"]["schemas"][schema_ref.rsplit("/", 1)[-1]]

    assert body["required"] is False
    assert schema["properties"]["provider"]["enum"] == ["wechatpay", "alipay"]
    assert schema["properties"]["provider"]["default"] == "wechatpay"

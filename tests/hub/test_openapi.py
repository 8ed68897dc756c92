"""The served OpenAPI document lists every fixed path of the public contract."""

import pytest
import requests

# The fixed paths that mini-programs, agencies, the registry and utilities are
# written against, with the methods each one must take.
CONTRACT = {
    "/cases": {"get", "post"},
    "/cases/{case_id}": {"get"},
    "/cases/{case_id}/accounts": {"get", "post"},
    "/cases/{case_id}/transfers/{transfer_id}/confirmation": {"post"},
    "/agreements/{service_org}": {"get"},
    "/cases/{case_id}/transfers/{transfer_id}/agreement": {"post"},
    "/cases/{case_id}/arrears": {"get"},
    "/cases/{case_id}/transfers/{transfer_id}/payments": {"post"},
    "/payments/{payment_id}": {"get"},
    "/payments/{payment_id}/qr.png": {"get"},
    "/payments/{payment_id}/qr.svg": {"get"},
    "/cases/{case_id}/submission": {"post"},
    "/cases/{case_id}/progress": {"get"},
    "/cases/{case_id}/delegations": {"post"},
    "/lookup/cases": {"get"},
    "/lookup/cases/{case_id}": {"get"},
    "/auth/miniprogram-login": {"post"},
    "/auth/login": {"post"},
    "/auth/refresh": {"post"},
    "/registry/businesses/{business_no}": {"put"},
    "/partner/feedback": {"post"},
}
HTTP_METHODS = {"get", "put", "post", "delete", "options", "head", "patch", "trace"}
INTEGER_PARAMETERS = {"case_id", "transfer_id", "payment_id"}


@pytest.fixture(scope="module")
def spec(stack):
    response = requests.get(stack.hub_url + "/api/v1/openapi.json", timeout=10)
    response.raise_for_status()
    return response.json()


def test_openapi_version(spec):
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "Lianban"


@pytest.mark.parametrize(("path", "methods"), CONTRACT.items(), ids=list(CONTRACT))
def test_openapi_lists_path(spec, path, methods):
    served = spec["paths"].get("/api/v1" + path)

    assert served is not None, sorted(spec["paths"])
    assert methods <= set(served) & HTTP_METHODS


@pytest.mark.parametrize("path", [p for p in CONTRACT if "{" in p], ids=str)
def test_openapi_path_parameters(spec, path):
    served = spec["paths"]["/api/v1" + path]
    parameters = {p["name"]: p for p in served.get("parameters", [])}
    named = {part[1:-1] for part in path.split("/") if part.startswith("{")}

    assert set(parameters) == named
    for name in named:
        assert parameters[name]["in"] == "path"
        assert parameters[name]["required"] is True
        expected = "integer" if name in INTEGER_PARAMETERS else "string"
        assert parameters[name]["schema"]["type"] == expected


@pytest.mark.parametrize(
    ("path", "method"),
    [(p, m) for p, methods in CONTRACT.items() for m in methods if m != "get"],
    ids=lambda item: str(item),
)
def test_openapi_documents_validation(spec, path, method):
    operation = spec["paths"]["/api/v1" + path][method]

    assert "requestBody" in operation
    assert "422" in operation["responses"]

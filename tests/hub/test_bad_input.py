"""Bad input and steps out of order get one error shape, a 4xx, and no writes."""

import copy
import json
import random
import time

import pytest

from demo import scenarios
from models import AccountLink, Agreement, Business, Party, Unit, UnitCode, Utility
from models.fields import data_keys
from partners.signing import sign_request
from services import catalog
from tests.hub.flows import (
    assert_error,
    citizen_request,
    drive_to_submission,
    error_at,
    new_business,
    signed_call,
)

VALID_UNIT_CODE = "370102001001GB00123F00010101"
MALFORMED = b'{"name": "unfinished",'
WATER = "济南水务集团有限公司"


def unit_code_with(position, char):
    """Return the valid unit code with the 1-based `position` replaced by `char`."""
    return VALID_UNIT_CODE[: position - 1] + char + VALID_UNIT_CODE[position:]


def wrong_check_char(id_number):
    """Return the resident ID with a check character that does not match."""
    wrong = "1" if id_number[-1] != "1" else "2"
    return id_number[:-1] + wrong


# --- the registry's PUT --------------------------------------------------------


def _set(**changes):
    def change(payload):
        payload.update(changes)

    return change


def _set_owner(index, **changes):
    def change(payload):
        payload["owners"][index].update(changes)

    return change


def _add_second_owner(**changes):
    def change(payload):
        second = copy.deepcopy(payload["previous_owners"][0])
        second.update(changes)
        payload["owners"].append(second)

    return change


def _break_owner_check_char(payload):
    owner = payload["owners"][0]
    owner["id_number"] = wrong_check_char(owner["id_number"])


def _break_second_owner(payload):
    second = copy.deepcopy(payload["previous_owners"][0])
    second["id_number"] = wrong_check_char(second["id_number"])
    payload["owners"].append(second)


UNIT_CODE_POSITIONS = [
    (1, "A", "county_code"),
    (8, "X", "cadastral_district"),
    (11, "-", "cadastral_subdistrict"),
    (13, "Q", "land_ownership"),
    (14, "Q", "land_right"),
    (17, "O", "parcel_serial"),
    (20, "G", "fixture_type"),
    (28, "A", "unit_serial"),
]

# (case id, change to the valid body, errors path, text expected in its message)
REGISTRY_FIELD_CASES = [
    ("unknown-top-field", _set(floor=5), ("json", "floor"), "Unknown field"),
    (
        "unknown-owner-field",
        _set_owner(0, nickname="小王"),
        ("json", "owners", 0, "nickname"),
        "Unknown field",
    ),
    (
        "unknown-account-field",
        _set(accounts=[{"service_org": WATER, "account_no": "SW1", "meter": 1}]),
        ("json", "accounts", 0, "meter"),
        "Unknown field",
    ),
    ("owners-as-text", _set(owners="王伟"), ("json", "owners"), None),
    (
        "status-as-number",
        _set(registration_status=1),
        ("json", "registration_status"),
        None,
    ),
    ("unit-code-as-number", _set(unit_code=3701), ("json", "unit_code"), "string"),
    ("area-as-text", _set(building_area="八十八"), ("json", "building_area"), None),
    ("area-not-a-number", _set(building_area="NaN"), ("json", "building_area"), None),
    ("area-negative", _set(inner_area="-1.00"), ("json", "inner_area"), None),
    (
        "area-beyond-column",
        _set(building_area="12345678901234.00"),
        ("json", "building_area"),
        None,
    ),
    ("owners-empty", _set(owners=[]), ("json", "owners"), None),
    (
        "business-type-unknown",
        _set(business_type="租赁"),
        ("json", "business_type"),
        None,
    ),
    (
        "status-unknown",
        _set(registration_status="registered"),
        ("json", "registration_status"),
        None,
    ),
    (
        "unit-code-short",
        _set(unit_code=VALID_UNIT_CODE[:27]),
        ("json", "unit_code"),
        "[unit_code.length]",
    ),
    (
        "former-unit-code-broken",
        _set(former_unit_codes=[unit_code_with(13, "Q")]),
        ("json", "former_unit_codes", 0),
        "[unit_code.land_ownership]",
    ),
    (
        "certificate-no-year",
        _set(certificate_no="鲁济南市不动产权第0001234号"),
        ("json", "certificate_no"),
        "[certificate_no.year]",
    ),
    (
        "certificate-no-beyond-column",
        _set(certificate_no="鲁(2026)济南市" + "历下区" * 20 + "不动产权第0001234号"),
        ("json", "certificate_no"),
        None,
    ),
    (
        "resident-id-check-char",
        _break_owner_check_char,
        ("json", "owners", 0, "id_number"),
        "[resident_id.checksum]",
    ),
    (
        "second-owner-check-char",
        _break_second_owner,
        ("json", "owners", 1, "id_number"),
        "[resident_id.checksum]",
    ),
    (
        "id-type-unknown",
        _set_owner(0, id_type="身份证"),
        ("json", "owners", 0, "id_type"),
        None,
    ),
    (
        "second-owner-id-type-unknown",
        _add_second_owner(id_type="ID card"),
        ("json", "owners", 1, "id_type"),
        None,
    ),
]


def assert_no_business(business_no, unit_code):
    assert Business.get_or_none(Business.business_no == business_no) is None
    assert Unit.get_or_none(Unit.unit_code == unit_code) is None
    assert UnitCode.get_or_none(UnitCode.code == unit_code) is None


@pytest.mark.parametrize(
    ("change", "path", "text"),
    [case[1:] for case in REGISTRY_FIELD_CASES],
    ids=[case[0] for case in REGISTRY_FIELD_CASES],
)
def test_registry_put_rejects_field(stack, homes, app, change, path, text):
    business_no, payload = new_business(homes)
    change(payload)

    response = signed_call(
        stack, "registry", "PUT", f"/registry/businesses/{business_no}", payload
    )

    body = assert_error(response, 422, "validation_failed")
    messages = error_at(body, *path)
    assert messages, body["errors"]
    if text is not None:
        assert text in " ".join(map(str, messages))
    assert_no_business(business_no, payload["unit_code"])


@pytest.mark.parametrize(("position", "char", "rule"), UNIT_CODE_POSITIONS)
def test_registry_unit_code_names_rule(stack, homes, app, position, char, rule):
    business_no, payload = new_business(homes)
    payload["unit_code"] = unit_code_with(position, char)

    response = signed_call(
        stack, "registry", "PUT", f"/registry/businesses/{business_no}", payload
    )

    body = assert_error(response, 422, "validation_failed")
    [message] = error_at(body, "json", "unit_code")
    assert f"position {position}" in message
    assert f"[unit_code.{rule}]" in message
    assert repr(char) in message
    assert_no_business(business_no, payload["unit_code"])


def test_registry_put_malformed_json(stack, homes, app):
    business_no, payload = new_business(homes)

    response = signed_call(
        stack, "registry", "PUT", f"/registry/businesses/{business_no}", MALFORMED
    )

    body = assert_error(response, 400, "bad_request")
    assert error_at(body, "json")
    assert_no_business(business_no, payload["unit_code"])


@pytest.mark.parametrize(
    "business_no", ["AB", "T_00000001", "X" * 65, "T.00000001"], ids=str
)
def test_registry_put_bad_business_no(stack, homes, app, business_no):
    _, payload = new_business(homes)

    response = signed_call(
        stack, "registry", "PUT", f"/registry/businesses/{business_no}", payload
    )

    body = assert_error(response, 422, "business_no_invalid")
    assert error_at(body, "path", "business_no")
    assert_no_business(business_no, payload["unit_code"])


# --- nothing half-written --------------------------------------------------------


def test_registry_invalid_second_owner_writes_nothing(stack, homes, app):
    business_no, payload = new_business(homes)
    broken = copy.deepcopy(payload)
    _break_second_owner(broken)
    path = f"/registry/businesses/{business_no}"

    rejected = signed_call(stack, "registry", "PUT", path, broken)
    assert_error(rejected, 422, "validation_failed")
    assert_no_business(business_no, payload["unit_code"])

    accepted = signed_call(stack, "registry", "PUT", path, payload)
    assert accepted.status_code == 201
    assert accepted.json()["created"] is True


def test_registry_unknown_utility_writes_nothing(stack, homes, app):
    business_no, payload = new_business(homes)
    water_account = f"SW{random.randrange(10**8):08d}"
    payload["accounts"] = [
        {"service_org": WATER, "account_no": water_account},
        {"service_org": "济南自来水公司", "account_no": "ZLS0001"},
    ]
    owner_index = data_keys.blind_index(payload["owners"][0]["id_number"])

    response = signed_call(
        stack, "registry", "PUT", f"/registry/businesses/{business_no}", payload
    )

    body = assert_error(response, 422, "unknown_utility")
    assert error_at(body, "accounts", "service_org") == ["济南自来水公司"]
    assert_no_business(business_no, payload["unit_code"])
    assert Party.select().where(Party.id_index == owner_index).count() == 0
    assert AccountLink.get_or_none(AccountLink.account_no == water_account) is None


def test_registry_repeat_changes_nothing(stack, homes, app):
    home = homes.make(accounts=[("water", {})])
    before = Business.get(Business.business_no == home.business_no)
    payload = scenarios.business_payload(home, "accepted")
    path = f"/registry/businesses/{home.business_no}"

    first = signed_call(stack, "registry", "PUT", path, payload)
    second = signed_call(stack, "registry", "PUT", path, payload)

    assert first.status_code == 200
    assert second.status_code == 200
    assert first.json()["created"] is False
    assert second.json() == first.json()
    after = Business.get(Business.business_no == home.business_no)
    assert after.updated_at == before.updated_at
    assert after.payload_digest == before.payload_digest
    assert Party.select().where(Party.business == after).count() == 2


def test_registry_completed_cannot_reopen(stack, homes, app):
    home = homes.make(accounts=[("water", {})], status="completed")
    path = f"/registry/businesses/{home.business_no}"
    moved_back = scenarios.business_payload(home, "accepted")

    response = signed_call(stack, "registry", "PUT", path, moved_back)

    assert_error(response, 409, "registration_status_conflict")
    business = Business.get(Business.business_no == home.business_no)
    assert business.registration_status == "completed"


def test_registry_completed_cannot_change(stack, homes, app):
    home = homes.make(accounts=[("water", {})], status="completed")
    path = f"/registry/businesses/{home.business_no}"
    changed = scenarios.business_payload(home, "completed")
    changed["location"] = "历下区燕子山路9号"

    response = signed_call(stack, "registry", "PUT", path, changed)

    assert_error(response, 409, "business_closed")
    business = Business.get(Business.business_no == home.business_no)
    assert business.location == home.location


# --- citizen endpoints -------------------------------------------------------------


@pytest.fixture
def opened(client, homes):
    """Log in as the buyer of a new home and open its case with one water account."""
    home = homes.make(accounts=[("water", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    home.case_id = case["case_id"]
    home.transfer_id = case["transfers"][0]["transfer_id"]
    return home


LOGIN = "/auth/miniprogram-login"
REFRESH = "/auth/refresh"
CASES = "/cases"
ACCOUNTS = "/cases/{case}/accounts"
TRANSFER = "/cases/{case}/transfers/{transfer}"
CONFIRM = TRANSFER + "/confirmation"
AGREE = TRANSFER + "/agreement"
PAY = TRANSFER + "/payments"
SUBMIT = "/cases/{case}/submission"
DELEGATE = "/cases/{case}/delegations"
CREDIT_CODE = "91370100MA3C5LXX1K"
DELEGATION = {
    "agency_name": "济南安居房产经纪有限公司",
    "agency_credit_code": CREDIT_CODE,
    "scope": ["view", "confirm"],
    "expires_at": "2030-01-01T00:00:00+08:00",
}

# (case id, path, body: bytes are sent raw, status, code, errors path)
CITIZEN_CASES = [
    ("login-malformed", LOGIN, MALFORMED, 400, "bad_request", ("json",)),
    (
        "login-unknown-field",
        LOGIN,
        {"code": "x", "openid": "o"},
        422,
        None,
        ("json", "openid"),
    ),
    ("login-code-number", LOGIN, {"code": 5}, 422, None, ("json", "code")),
    ("login-code-empty", LOGIN, {"code": ""}, 422, None, ("json", "code")),
    ("login-body-list", LOGIN, ["code"], 422, None, ("json", "_schema")),
    ("refresh-malformed", REFRESH, MALFORMED, 400, "bad_request", ("json",)),
    (
        "refresh-unknown-field",
        REFRESH,
        {"refresh_token": "x", "access_token": "y"},
        422,
        None,
        ("json", "access_token"),
    ),
    (
        "refresh-token-list",
        REFRESH,
        {"refresh_token": ["x"]},
        422,
        None,
        ("json", "refresh_token"),
    ),
    ("open-malformed", CASES, MALFORMED, 400, "bad_request", ("json",)),
    ("open-body-null", CASES, b"null", 422, None, ("json", "_schema")),
    (
        "open-unknown-field",
        CASES,
        {"business_no": "JN0001", "unit_code": VALID_UNIT_CODE},
        422,
        None,
        ("json", "unit_code"),
    ),
    (
        "open-business-no-number",
        CASES,
        {"business_no": 20261204},
        422,
        None,
        ("json", "business_no"),
    ),
    (
        "open-business-no-short",
        CASES,
        {"business_no": "JN"},
        422,
        None,
        ("json", "business_no"),
    ),
    ("add-malformed", ACCOUNTS, MALFORMED, 400, "bad_request", ("json",)),
    (
        "add-unknown-field",
        ACCOUNTS,
        {"service_org": WATER, "account_no": "SW00000001", "holder_name": "王伟"},
        422,
        None,
        ("json", "holder_name"),
    ),
    (
        "add-account-no-number",
        ACCOUNTS,
        {"service_org": WATER, "account_no": 12345678},
        422,
        None,
        ("json", "account_no"),
    ),
    (
        "add-account-no-spaces",
        ACCOUNTS,
        {"service_org": WATER, "account_no": "SW 0000 0001"},
        422,
        None,
        ("json", "account_no"),
    ),
    (
        "add-service-org-missing",
        ACCOUNTS,
        {"account_no": "SW00000001"},
        422,
        None,
        ("json", "service_org"),
    ),
    (
        "add-unknown-utility",
        ACCOUNTS,
        {"service_org": "济南自来水公司", "account_no": "SW00000001"},
        422,
        "unknown_utility",
        ("json", "service_org"),
    ),
    ("confirm-malformed", CONFIRM, MALFORMED, 400, "bad_request", ("json",)),
    (
        "confirm-unknown-field",
        CONFIRM,
        {"account_confirmed": True},
        422,
        None,
        ("json", "account_confirmed"),
    ),
    ("agree-malformed", AGREE, MALFORMED, 400, "bad_request", ("json",)),
    ("agree-version-text", AGREE, {"version": "1"}, 422, None, ("json", "version")),
    ("agree-version-float", AGREE, {"version": 1.0}, 422, None, ("json", "version")),
    ("agree-version-bool", AGREE, {"version": True}, 422, None, ("json", "version")),
    ("agree-version-zero", AGREE, {"version": 0}, 422, None, ("json", "version")),
    ("agree-version-missing", AGREE, {}, 422, None, ("json", "version")),
    (
        "agree-unknown-field",
        AGREE,
        {"version": 1, "accepted": True},
        422,
        None,
        ("json", "accepted"),
    ),
    ("pay-malformed", PAY, MALFORMED, 400, "bad_request", ("json",)),
    ("pay-unknown-field", PAY, {"amount_fen": 1}, 422, None, ("json", "amount_fen")),
    ("submit-malformed", SUBMIT, MALFORMED, 400, "bad_request", ("json",)),
    ("submit-unknown-field", SUBMIT, {"force": True}, 422, None, ("json", "force")),
    ("delegate-malformed", DELEGATE, MALFORMED, 400, "bad_request", ("json",)),
    (
        "delegate-unknown-field",
        DELEGATE,
        {**DELEGATION, "agent_phone": "13800000000"},
        422,
        None,
        ("json", "agent_phone"),
    ),
    (
        "delegate-scope-text",
        DELEGATE,
        {**DELEGATION, "scope": "view"},
        422,
        None,
        ("json", "scope"),
    ),
    (
        "delegate-scope-unknown",
        DELEGATE,
        {**DELEGATION, "scope": ["all"]},
        422,
        None,
        ("json", "scope", 0),
    ),
    (
        "delegate-scope-empty",
        DELEGATE,
        {**DELEGATION, "scope": []},
        422,
        None,
        ("json", "scope"),
    ),
    (
        "delegate-expiry-naive",
        DELEGATE,
        {**DELEGATION, "expires_at": "2030-01-01T00:00:00"},
        422,
        None,
        ("json", "expires_at"),
    ),
    (
        "delegate-expiry-past",
        DELEGATE,
        {**DELEGATION, "expires_at": "2020-01-01T00:00:00+08:00"},
        422,
        "delegation_expired",
        ("json", "expires_at"),
    ),
    (
        "delegate-expiry-beyond-calendar",
        DELEGATE,
        {**DELEGATION, "expires_at": "9999-12-31T23:00:00-12:00"},
        422,
        "delegation_expiry_invalid",
        ("json", "expires_at"),
    ),
    (
        "delegate-credit-code-letter",
        DELEGATE,
        {**DELEGATION, "agency_credit_code": "91370100MA3C5LXXIK"},
        422,
        "agency_credit_code_invalid",
        ("json", "agency_credit_code"),
    ),
    (
        "delegate-credit-code-short",
        DELEGATE,
        {**DELEGATION, "agency_credit_code": "91370100"},
        422,
        None,
        ("json", "agency_credit_code"),
    ),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "code", "errors_path"),
    [case[1:] for case in CITIZEN_CASES],
    ids=[case[0] for case in CITIZEN_CASES],
)
def test_citizen_body_rejected(client, opened, path, body, status, code, errors_path):
    url = path.format(case=opened.case_id, transfer=opened.transfer_id)

    response = citizen_request(client, "POST", url, body)

    error = assert_error(response, status, code or "validation_failed")
    assert error_at(error, *errors_path), error.get("errors")
    case = client.call("GET", f"/cases/{opened.case_id}")
    assert case["status"] == "open"
    assert len(case["transfers"]) == 1
    assert case["transfers"][0]["account_confirmed"] is False
    assert case["transfers"][0]["agreement_accepted"] is False


def test_agreement_unknown_utility(client):
    response = client.session.get(client.api + "/agreements/济南自来水公司", timeout=10)

    body = assert_error(response, 422, "unknown_utility")
    assert error_at(body, "path", "service_org")
    assert "济南水务集团有限公司" in body["message"]


def test_agreement_known_by_code(client):
    agreement = client.call("GET", "/agreements/water")

    assert agreement["service_org"] == WATER
    assert agreement["version"] >= 1


def test_open_unknown_business_no(client, opened):
    response = citizen_request(client, "POST", CASES, {"business_no": "NOSUCH0001"})

    assert_error(response, 404, "business_not_found")


# --- partner feedback -------------------------------------------------------------

FEEDBACK = "/partner/feedback"

# (case id, body: bytes are sent raw, status, code, errors path)
FEEDBACK_CASES = [
    ("malformed", MALFORMED, 400, "bad_request", ("json",)),
    (
        "unknown-field",
        {"transfer_id": "1", "account_no": "SW1", "status": "办结", "operator": "张"},
        422,
        "validation_failed",
        ("json", "operator"),
    ),
    (
        "transfer-id-number",
        {"transfer_id": 1, "account_no": "SW1", "status": "办结"},
        422,
        "validation_failed",
        ("json", "transfer_id"),
    ),
    (
        "status-unknown",
        {"transfer_id": "1", "account_no": "SW1", "status": "完成"},
        422,
        "validation_failed",
        ("json", "status"),
    ),
    (
        "status-missing",
        {"transfer_id": "1", "account_no": "SW1"},
        422,
        "validation_failed",
        ("json", "status"),
    ),
    (
        "returned-without-reason",
        {"transfer_id": "1", "account_no": "SW1", "status": "退件"},
        422,
        "return_reason_missing",
        ("json", "return_reason"),
    ),
    (
        "returned-empty-reason",
        {
            "transfer_id": "1",
            "account_no": "SW1",
            "status": "退件",
            "return_reason": "",
        },
        422,
        "return_reason_missing",
        ("json", "return_reason"),
    ),
]


@pytest.mark.parametrize(
    ("body", "status", "code", "errors_path"),
    [case[1:] for case in FEEDBACK_CASES],
    ids=[case[0] for case in FEEDBACK_CASES],
)
def test_feedback_body_rejected(stack, body, status, code, errors_path):
    response = signed_call(stack, "water", "POST", FEEDBACK, body)

    error = assert_error(response, status, code)
    assert error_at(error, *errors_path), error.get("errors")


@pytest.mark.parametrize(
    "transfer_id",
    ["999999999", "99999999999999999999", "²", "١٢", "-1", "abc"],
    ids=[
        "missing",
        "beyond-64-bit",
        "superscript",
        "arabic-digits",
        "negative",
        "text",
    ],
)
def test_feedback_unknown_transfer(stack, transfer_id):
    body = {"transfer_id": transfer_id, "account_no": "SW00000001", "status": "办结"}

    response = signed_call(stack, "water", "POST", FEEDBACK, body)

    assert_error(response, 404, "transfer_not_found")


# --- steps out of order -------------------------------------------------------------


def test_confirm_twice(client, opened):
    path = CONFIRM.format(case=opened.case_id, transfer=opened.transfer_id)
    client.call("POST", path, {})

    response = citizen_request(client, "POST", path, {})

    assert_error(response, 409, "already_confirmed")


def test_accept_twice(client, opened):
    path = TRANSFER.format(case=opened.case_id, transfer=opened.transfer_id)
    client.call("POST", path + "/confirmation", {})
    client.call("POST", path + "/agreement", {"version": 1})

    response = citizen_request(client, "POST", path + "/agreement", {"version": 1})

    assert_error(response, 409, "already_accepted")


def test_accept_before_confirming(client, opened):
    path = AGREE.format(case=opened.case_id, transfer=opened.transfer_id)

    response = citizen_request(client, "POST", path, {"version": 1})

    assert_error(response, 409, "confirm_first")


def test_accept_outdated_version(client, homes, app):
    utility = Utility.get(Utility.code == "laiwu-power")
    latest = (
        Agreement.select()
        .where(Agreement.utility == utility)
        .order_by(Agreement.version.desc())
        .first()
    )
    published = catalog.publish_agreement("laiwu-power", latest.title, latest.body)
    assert published.version == latest.version + 1
    home = homes.make(accounts=[("laiwu-power", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    path = TRANSFER.format(
        case=case["case_id"], transfer=case["transfers"][0]["transfer_id"]
    )
    client.call("POST", path + "/confirmation", {})

    old = citizen_request(client, "POST", path + "/agreement", {"version": 1})
    ahead = citizen_request(
        client, "POST", path + "/agreement", {"version": latest.version + 2}
    )

    body = assert_error(old, 409, "agreement_outdated")
    assert error_at(body, "json", "version")
    assert_error(ahead, 409, "agreement_outdated")
    current = client.call("GET", "/agreements/国网莱芜供电公司")["version"]
    assert current == latest.version + 1
    client.call("POST", path + "/agreement", {"version": current})


def test_submit_before_confirming(client, opened):
    path = SUBMIT.format(case=opened.case_id)

    response = citizen_request(client, "POST", path, {})

    body = assert_error(response, 409, "steps_missing")
    assert error_at(body, "transfers", opened.transfer_id) == [
        "account_confirmed",
        "agreement_accepted",
    ]
    assert client.call("GET", f"/cases/{opened.case_id}")["status"] == "open"


def test_add_account_twice(client, opened):
    path = ACCOUNTS.format(case=opened.case_id)
    account = {"service_org": WATER, "account_no": opened.accounts[0].account_no}

    response = citizen_request(client, "POST", path, account)

    assert_error(response, 409, "account_already_added")
    assert len(client.call("GET", f"/cases/{opened.case_id}")["transfers"]) == 1


def test_pay_without_arrears(client, opened):
    path = PAY.format(case=opened.case_id, transfer=opened.transfer_id)

    response = citizen_request(client, "POST", path, {})

    assert_error(response, 409, "nothing_to_pay")


def _wait_for_clear_arrears(client, case_id, seconds=10):
    deadline = time.monotonic() + seconds
    while True:
        arrears = client.call("GET", f"/cases/{case_id}/arrears")[0]
        if arrears["state"] == "clear" or time.monotonic() > deadline:
            return arrears
        time.sleep(0.1)


def test_pay_settled_debt(client, homes):
    home = homes.make(accounts=[("water", {"arrears_fen": 1500})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    path = PAY.format(
        case=case["case_id"], transfer=case["transfers"][0]["transfer_id"]
    )
    payment = client.call("POST", path, {})
    client.pay_in_sandbox(payment["code_url"])
    assert client.wait_for_payment(payment["payment_id"])["status"] == "paid"
    assert _wait_for_clear_arrears(client, case["case_id"])["state"] == "clear"

    again = citizen_request(client, "POST", path, {})
    image = citizen_request(client, "GET", f"/payments/{payment['payment_id']}/qr.png")

    assert_error(again, 409, "nothing_to_pay")
    assert_error(image, 409, "payment_not_payable")
    assert image.json()["message"] == "该笔缴费已支付，二维码已不能使用，无需再扫码。"


def test_payment_states_named():
    from api.views import PAYMENT_STATES
    from tests.hub.test_columns import PAYMENT_STATES as STORED

    assert set(PAYMENT_STATES) == STORED


SUBMITTED_CASE_CHANGES = [
    (CONFIRM, {}),
    (AGREE, {"version": 1}),
    (ACCOUNTS, {"service_org": WATER, "account_no": "SW00000001"}),
    (SUBMIT, {}),
]


def test_submitted_case_is_closed(client, homes):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]

    for path, body in SUBMITTED_CASE_CHANGES:
        url = path.format(case=case_id, transfer=transfer_id)
        response = citizen_request(client, "POST", url, body)
        assert_error(response, 409, "case_not_open")
    assert client.call("GET", f"/cases/{case_id}")["status"] == "submitted"


def test_feedback_before_push(stack, client, opened):
    body = {
        "transfer_id": str(opened.transfer_id),
        "account_no": opened.accounts[0].account_no,
        "status": "办理中",
    }

    response = signed_call(stack, "water", "POST", FEEDBACK, body)

    assert_error(response, 409, "transfer_not_pushed")
    transfer = client.call("GET", f"/cases/{opened.case_id}")["transfers"][0]
    assert transfer["status"] == "draft"


def test_feedback_wrong_account_no(stack, client, opened):
    body = {
        "transfer_id": str(opened.transfer_id),
        "account_no": "SW00000000",
        "status": "办理中",
    }

    response = signed_call(stack, "water", "POST", FEEDBACK, body)

    assert_error(response, 404, "transfer_not_found")


def test_feedback_after_final(stack, client, homes):
    home = homes.make(accounts=[("water", {})], status="completed")
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    progress = client.wait_until_final(case_id)
    transfer = progress["transfers"][0]
    assert transfer["status"] == "completed"
    report = {
        "transfer_id": str(transfer["transfer_id"]),
        "account_no": transfer["account_no"],
    }

    in_progress = signed_call(
        stack, "water", "POST", FEEDBACK, {**report, "status": "办理中"}
    )
    returned = signed_call(
        stack,
        "water",
        "POST",
        FEEDBACK,
        {**report, "status": "退件", "return_reason": "用户号有误"},
    )
    repeated = signed_call(
        stack, "water", "POST", FEEDBACK, {**report, "status": "办结"}
    )

    assert_error(in_progress, 409, "transfer_final")
    assert_error(returned, 409, "transfer_final")
    assert repeated.status_code == 200
    assert repeated.json()["applied"] is False
    after = client.call("GET", f"/cases/{case_id}/progress")["transfers"][0]
    assert after["status"] == "completed"
    assert after["return_reason"] is None
    assert len(after["events"]) == len(transfer["events"])


def test_delegation_longer_than_a_year(client, homes):
    from datetime import datetime, timedelta, timezone

    home = homes.make(accounts=[("water", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    too_late = datetime.now(timezone(timedelta(hours=8))) + timedelta(days=400)

    response = citizen_request(
        client,
        "POST",
        f"/cases/{case['case_id']}/delegations",
        {**DELEGATION, "expires_at": too_late.isoformat()},
    )

    body = assert_error(response, 422, "delegation_too_long")
    assert error_at(body, "json", "expires_at")


def test_registry_change_after_case_opened(client, homes):
    home = homes.make(accounts=[("water", {})])
    client.login(home.buyer)
    client.call("POST", "/cases", {"business_no": home.business_no})
    payload = scenarios.business_payload(home, "accepted")
    payload["owners"][0]["name"] = "赵六"

    response = client.session.put(
        client.api + f"/registry/businesses/{home.business_no}",
        data=json.dumps(payload, ensure_ascii=False).encode(),
        headers=sign_request(
            "registry",
            client.registry_secret,
            "PUT",
            f"/api/v1/registry/businesses/{home.business_no}",
            json.dumps(payload, ensure_ascii=False).encode(),
        )
        | {"Content-Type": "application/json"},
        timeout=10,
    )

    assert_error(response, 409, "business_has_case")
    completed = scenarios.business_payload(home, "completed")
    assert client.put_business(home.business_no, completed)["registration_status"] == (
        "completed"
    )

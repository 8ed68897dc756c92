"""Customer-service lookup: one criterion, masked responses, an audit record each."""

import logging
import random
from datetime import datetime, timedelta

import pytest

from demo import scenarios
from models import LookupRecord
from models.db import database
from services import lookup as lookup_service
from tests.hub.flows import assert_error, citizen_request, drive_to_submission

REASON = "12345 热线工单 A-1001：市民询问过户进度"
WATER = "济南水务集团有限公司"
GAS = "济南能源集团有限公司燃气"
MISSING_ID = 2_000_000_000
ACCEPTED = "business_no, unit_code, account_no, id_number"


def lookup(client, path="/lookup/cases", **params):
    """GET a lookup path as the client's caller, with `reason` REASON by default.

    A parameter given as None is left out of the query.
    """
    params.setdefault("reason", REASON)
    headers = {"Authorization": f"Bearer {client.token}"} if client.token else {}
    return client.session.get(
        client.api + path, params=params, headers=headers, timeout=10
    )


def search(client, **body):
    """POST a lookup with its criterion in the body, REASON by default."""
    body.setdefault("reason", REASON)
    headers = {"Authorization": f"Bearer {client.token}"}
    return client.session.post(
        client.api + "/lookup/cases/search", json=body, headers=headers, timeout=10
    )


def open_case(client, home):
    """Log in as the home's buyer, open its case and return the case id."""
    client.login(home.buyer)
    return client.call("POST", "/cases", {"business_no": home.business_no})["case_id"]


def records_of(member):
    return list(
        LookupRecord.select()
        .where(LookupRecord.staff == member.id)
        .order_by(LookupRecord.id)
    )


def masked_id(id_number):
    return id_number[:6] + "*" * 8 + id_number[-4:]


def masked_name(name):
    return name[0] + "*" * (len(name) - 1)


def full_width(text):
    return "".join(chr(ord(char) + 0xFEE0) for char in text)


def person_with_x(homes):
    """Return a person whose resident ID ends in the check character X."""
    for _ in range(500):
        person = homes.person()
        if person.id_number.endswith("X"):
            return person
    raise AssertionError("no ID ending in X among 500 generated people")


@pytest.fixture
def desk(staffing):
    """A customer-service member and their logged-in client."""
    return staffing.member("service")


@pytest.fixture
def found(client, homes):
    """Open a case whose gas account is held by an owner before the seller."""
    home = homes.make(accounts=[("water", {}), ("gas", {"holder": homes.person()})])
    home.case_id = open_case(client, home)
    return home


@pytest.fixture
def decoy(client, homes):
    """Open another case, which no lookup of `found` may return."""
    home = homes.make()
    home.case_id = open_case(client, home)
    return home


# --- finding cases ---------------------------------------------------------------


CRITERIA = {
    "business_no": lambda home: {"business_no": home.business_no},
    "unit_code": lambda home: {"unit_code": home.unit_code},
    "account_no": lambda home: {"account_no": home.accounts[0].account_no},
    "account_no-with-utility": lambda home: {
        "account_no": home.accounts[0].account_no,
        "service_org": WATER,
    },
    "owner-id": lambda home: {"id_number": home.buyer.id_number},
    "previous-owner-id": lambda home: {"id_number": home.sellers[0].id_number},
}


@pytest.mark.parametrize("criterion", CRITERIA)
def test_lookup_criterion_finds_only_its_case(desk, found, decoy, criterion):
    _, service = desk

    response = lookup(service, **CRITERIA[criterion](found))

    assert response.status_code == 200, response.text
    page = response.json()
    assert page["total"] == 1
    assert [item["case_id"] for item in page["items"]] == [found.case_id]
    assert page["items"][0]["business_no"] == found.business_no
    assert page["items"][0]["unit_code"] == found.unit_code
    assert decoy.case_id != found.case_id


def test_lookup_account_no_wrong_utility(desk, found):
    _, service = desk

    page = lookup(
        service, account_no=found.accounts[0].account_no, service_org=GAS
    ).json()

    assert page["total"] == 0
    assert page["items"] == []


def test_lookup_earlier_unit_code(client, homes, desk):
    _, service = desk
    home = homes.make()
    earlier_code = home.unit_code
    current_code = earlier_code[:-8] + f"{random.randrange(10**8):08d}"
    payload = scenarios.business_payload(home, "accepted")
    payload["unit_code"] = current_code
    payload["former_unit_codes"] = [earlier_code]
    client.put_business(home.business_no, payload)
    case_id = open_case(client, home)

    by_earlier = lookup(service, unit_code=earlier_code).json()
    by_current = lookup(service, unit_code=current_code.lower()).json()

    assert [item["case_id"] for item in by_earlier["items"]] == [case_id]
    assert by_earlier["items"][0]["unit_code"] == current_code
    assert [item["case_id"] for item in by_current["items"]] == [case_id]


@pytest.mark.parametrize(
    "spell",
    [
        lambda number: number[:-1] + "x",
        lambda number: full_width(number[:-1]) + "ｘ",
        lambda number: f"  {number[:6]} {number[6:]}\u3000",
    ],
    ids=["lower-case-x", "full-width", "spaces"],
)
def test_lookup_id_number_is_normalised(client, homes, desk, spell):
    _, service = desk
    buyer = person_with_x(homes)
    home = homes.make(buyer=buyer)
    case_id = open_case(client, home)

    response = lookup(service, id_number=spell(buyer.id_number))

    assert response.status_code == 200, response.text
    assert [item["case_id"] for item in response.json()["items"]] == [case_id]


def test_lookup_skips_business_without_case(desk, homes):
    _, service = desk
    home = homes.make()

    page = lookup(service, business_no=home.business_no).json()

    assert page["total"] == 0


def test_lookup_invalid_id_number_rejected(desk, homes):
    member, service = desk
    number = homes.person().id_number
    wrong = number[:-1] + ("1" if number[-1] != "1" else "2")

    response = lookup(service, id_number=wrong)

    body = assert_error(response, 422, "validation_failed")
    [message] = body["errors"]["query"]["id_number"]
    assert "resident_id.checksum" in message
    assert number[:17] not in response.text
    assert records_of(member) == []


def test_lookup_other_id_type(client, homes, desk):
    _, service = desk
    buyer = scenarios.Person(
        homes.person().name, "护照", f"E{random.randrange(10**8):08d}"
    )
    home = homes.make(buyer=buyer)
    case_id = open_case(client, home)

    page = lookup(service, id_number=buyer.id_number.lower(), id_type="护照").json()

    assert [item["case_id"] for item in page["items"]] == [case_id]


# --- masking -------------------------------------------------------------------


def people_of(home):
    return [home.buyer, *home.sellers, *(a.holder for a in home.accounts)]


def test_lookup_list_masks_people(desk, found):
    _, service = desk

    response = lookup(service, business_no=found.business_no)

    [item] = response.json()["items"]
    buyer, seller = found.buyer, found.sellers[0]
    assert item["owners"] == [
        {
            "name": masked_name(buyer.name),
            "id_type": "居民身份证",
            "id_number": masked_id(buyer.id_number),
            "is_me": False,
        }
    ]
    assert item["previous_owners"][0]["id_number"] == masked_id(seller.id_number)
    assert item["previous_owners"][0]["name"] == masked_name(seller.name)
    for person in people_of(found):
        assert person.id_number not in response.text
        assert person.name not in response.text


def test_lookup_case_masks_people(desk, found):
    _, service = desk

    response = lookup(service, f"/lookup/cases/{found.case_id}")

    assert response.status_code == 200, response.text
    case = response.json()
    water, gas = case["transfers"]
    gas_holder = found.accounts[1].holder
    assert case["owners"][0]["id_number"] == masked_id(found.buyer.id_number)
    assert gas["holder_name"] == masked_name(gas_holder.name)
    assert gas["holder_id_numbers"] == [masked_id(gas_holder.id_number)]
    assert gas["holder_relation"] == "other"
    assert water["holder_relation"] == "previous_owner"
    assert water["account_address"].endswith("-***")
    assert found.community_address not in response.text
    for person in people_of(found):
        assert person.id_number not in response.text
        assert person.name not in response.text


def test_lookup_case_shows_each_timeline(client, homes, desk):
    member, service = desk
    home = homes.make(accounts=[("water", {}), ("power", {})])
    case_id = drive_to_submission(client, home)

    response = lookup(service, f"/lookup/cases/{case_id}")

    case = response.json()
    assert case["case_id"] == case_id
    assert case["business_no"] == home.business_no
    assert len(case["transfers"]) == 2
    for transfer in case["transfers"]:
        statuses = [event["status"] for event in transfer["events"]]
        assert "confirmed" in statuses
        assert "agreement_accepted" in statuses
        assert transfer["account_confirmed"] is True
    [record] = records_of(member)
    assert record.criterion == "case"
    assert record.asked == str(case_id)
    assert record.results == 1


# --- the audit record ------------------------------------------------------------


def test_lookup_without_result_is_recorded(desk):
    member, service = desk
    business_no = f"NONE{random.randrange(10**10):010d}"

    response = lookup(service, business_no=business_no, reason=f"  {REASON}  ")

    assert response.json() == {
        "items": [],
        "total": 0,
        "page": 1,
        "page_size": 20,
    }
    [record] = records_of(member)
    assert record.criterion == "business_no"
    assert record.asked == business_no
    assert record.reason == REASON
    assert record.results == 0
    assert record.organisation_id == member.organisation_id
    assert record.request_id == response.headers["X-Request-Id"]


def test_lookup_records_result_count(desk, found):
    member, service = desk

    lookup(service, account_no=found.accounts[1].account_no)

    [record] = records_of(member)
    assert record.criterion == "account_no"
    assert record.asked == found.accounts[1].account_no
    assert record.results == 1


def test_lookup_id_number_sealed_at_rest(app, desk, found):
    member, service = desk
    number = found.sellers[0].id_number

    lookup(service, id_number=number[:-1] + number[-1].lower())

    [record] = records_of(member)
    raw = database.execute_sql(
        f"SELECT asked FROM lookup_record WHERE id = {database.param}", (record.id,)
    ).fetchone()[0]
    assert number not in raw
    assert number[6:14] not in raw
    assert raw.startswith("v")
    assert record.asked == number
    assert record.criterion == "id_number"


def test_lookup_logs_no_id_number(desk, found, caplog):
    caplog.set_level(logging.DEBUG)
    member, service = desk
    number = found.buyer.id_number

    lookup(service, id_number=number)
    lookup(service, f"/lookup/cases/{found.case_id}")

    # urllib3 logs the query string for this test's own client. The hub's
    # access line (werkzeug) leaves the query string out.
    hub_lines = "\n".join(
        record.getMessage()
        for record in caplog.records
        if record.name.split(".")[0] != "urllib3"
    )
    [first, second] = records_of(member)
    assert f"lookup recorded record={first.id}" in hub_lines
    assert f"lookup recorded record={second.id}" in hub_lines
    assert "GET /api/v1/lookup/cases status=200" in hub_lines
    assert number not in hub_lines
    assert found.buyer.name not in hub_lines


def test_missing_case_recorded_as_not_found(desk):
    member, service = desk

    response = lookup(service, f"/lookup/cases/{MISSING_ID}")

    assert_error(response, 404, "case_not_found")
    [record] = records_of(member)
    assert record.criterion == "case"
    assert record.asked == str(MISSING_ID)
    assert record.results == 0


def test_oversized_case_id_is_not_found(desk):
    _, service = desk

    response = lookup(service, f"/lookup/cases/{10**20}")

    assert_error(response, 404, "case_not_found")


# --- bad queries -----------------------------------------------------------------


@pytest.mark.parametrize(
    "reason",
    [None, "", "   ", "abc", "  ab  ", "x" * 201],
    ids=["missing", "empty", "blank", "too-short", "short-after-trim", "too-long"],
)
@pytest.mark.parametrize("path", ["/lookup/cases", f"/lookup/cases/{MISSING_ID}"])
def test_lookup_reason_rejected(desk, path, reason):
    member, service = desk
    criteria = {"business_no": "B0000001"} if path == "/lookup/cases" else {}

    response = lookup(service, path, reason=reason, **criteria)

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["query"]["reason"]
    assert records_of(member) == []


@pytest.mark.parametrize(
    "criteria",
    [{}, {"business_no": "B0000001", "account_no": "SW00000001"}],
    ids=["none", "two"],
)
def test_lookup_needs_exactly_one_criterion(desk, criteria):
    member, service = desk

    response = lookup(service, **criteria)

    body = assert_error(response, 422, "validation_failed")
    [message] = body["errors"]["query"]["_schema"]
    assert ACCEPTED in message
    assert f"Got {len(criteria)}" in message
    assert records_of(member) == []


def test_service_org_needs_account_no(desk):
    _, service = desk

    response = lookup(service, business_no="B0000001", service_org=WATER)

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["query"]["service_org"]


# --- roles -----------------------------------------------------------------------


@pytest.mark.parametrize("role", ["citizen", "agent", "window", "utility"])
def test_lookup_refuses_role(client, homes, staffing, role):
    if role == "citizen":
        client.login(homes.person())
        caller = client
    else:
        _, caller = staffing.member(role)

    for path in ("/lookup/cases", f"/lookup/cases/{MISSING_ID}"):
        response = lookup(caller, path, business_no="B0000001")
        assert_error(response, 403, "role_forbidden")


@pytest.mark.parametrize("role", ["service", "admin"])
def test_lookup_allows_role(staffing, found, role):
    _, caller = staffing.member(role)

    listed = lookup(caller, business_no=found.business_no)
    shown = lookup(caller, f"/lookup/cases/{found.case_id}")

    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 1
    assert shown.status_code == 200, shown.text
    assert shown.json()["case_id"] == found.case_id


@pytest.mark.parametrize("role", ["service", "agent", "utility"])
def test_report_refuses_role(staffing, role):
    _, caller = staffing.member(role)

    for path in ("/lookup/report", "/lookup/records"):
        assert_error(citizen_request(caller, "GET", path), 403, "role_forbidden")


def test_lookup_without_token(client):
    response = lookup(client, business_no="B0000001")

    assert_error(response, 401, "token_missing")


# --- paging ----------------------------------------------------------------------


@pytest.fixture
def three_homes(client, homes):
    """Open three cases that one buyer owns, and return the buyer and case ids."""
    buyer = homes.person()
    case_ids = [open_case(client, homes.make(buyer=buyer)) for _ in range(3)]
    return buyer, case_ids


def test_lookup_pages_newest_first(desk, three_homes):
    _, service = desk
    buyer, case_ids = three_homes

    first = lookup(service, id_number=buyer.id_number, page_size=2).json()
    second = lookup(service, id_number=buyer.id_number, page=2, page_size=2).json()

    assert [item["case_id"] for item in first["items"]] == case_ids[:0:-1]
    assert [item["case_id"] for item in second["items"]] == case_ids[:1]
    assert first["total"] == 3
    assert second["total"] == 3


def test_lookup_page_past_end(desk, three_homes):
    _, service = desk
    buyer, _ = three_homes

    page = lookup(service, id_number=buyer.id_number, page=5, page_size=2).json()

    assert page == {"items": [], "total": 3, "page": 5, "page_size": 2}


def test_lookup_page_size_is_capped(stack, desk, three_homes):
    _, service = desk
    buyer, case_ids = three_homes

    page = lookup(service, id_number=buyer.id_number, page_size=1000).json()

    assert page["page_size"] == stack.app.config["PAGE_SIZE_MAX"]
    assert len(page["items"]) == 3


@pytest.mark.parametrize(
    ("name", "value"),
    [("page", 0), ("page_size", 0), ("page", -1), ("page_size", "many")],
)
def test_lookup_bad_paging_rejected(desk, name, value):
    member, service = desk

    response = lookup(service, business_no="B0000001", **{name: value})

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["query"][name]
    assert records_of(member) == []


# --- rate limit ------------------------------------------------------------------


def test_lookup_budget_is_shared_per_caller(stack, staffing, found, monkeypatch):
    # The limit is read per request, so a lower one applies at once.
    monkeypatch.setitem(stack.app.config, "LOOKUP_RATE_LIMIT", "3 per minute")
    member, service = staffing.member("service")
    _, colleague = staffing.member("service")

    answers = [
        lookup(service, business_no=found.business_no),
        lookup(service, f"/lookup/cases/{found.case_id}"),
        search(service, business_no=found.business_no),
        lookup(service, f"/lookup/cases/{found.case_id}"),
    ]

    assert [a.status_code for a in answers[:3]] == [200] * 3
    assert_error(answers[3], 429, "too_many_requests")
    assert int(answers[3].headers["Retry-After"]) > 0
    assert len(records_of(member)) == 3
    assert lookup(colleague, business_no=found.business_no).status_code == 200


def test_search_by_body_finds_by_id_number(desk, found):
    member, service = desk

    response = search(service, id_number=found.buyer.id_number)

    assert response.status_code == 200, response.text
    assert [c["case_id"] for c in response.json()["items"]] == [found.case_id]
    [record] = records_of(member)
    assert record.criterion == "id_number"
    assert found.buyer.id_number not in response.text


def test_search_by_body_needs_one_criterion(desk, found):
    _, service = desk

    response = search(service, business_no=found.business_no, unit_code=found.unit_code)

    assert_error(response, 422, "validation_failed")


# --- the report and the records --------------------------------------------------


def shanghai(text):
    """Return the naive UTC time of a Shanghai time such as 2021-03-01 09:00."""
    return datetime.fromisoformat(text) - timedelta(hours=8)


def add_records(member, criterion, *times):
    for moment in times:
        LookupRecord.create(
            staff=member,
            organisation=member.organisation_id,
            criterion=criterion,
            asked="B0000001",
            reason=REASON,
            results=0,
            occurred_at=shanghai(moment),
        )


def test_report_counts_each_staff_member(app, staffing):
    admin = staffing.member("admin")[1]
    first, _ = staffing.member("service")
    second, _ = staffing.member("service")
    add_records(first, "business_no", "2021-03-01 00:00", "2021-03-03 12:00")
    add_records(first, "id_number", "2021-03-05 23:59")
    add_records(first, "case", "2021-02-28 23:59", "2021-03-06 00:00")
    add_records(second, "unit_code", "2021-03-02 08:00")

    response = citizen_request(
        admin, "GET", "/lookup/report?from=2021-03-01&to=2021-03-05"
    )

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["from"] == "2021-03-01"
    assert report["to"] == "2021-03-05"
    rows = {row["staff_id"]: row for row in report["staff"]}
    assert set(rows) == {first.id, second.id}
    assert report["lookups"] == 4
    assert rows[first.id]["lookups"] == 3
    assert rows[first.id]["by_criterion"] == {
        "business_no": 2,
        "unit_code": 0,
        "account_no": 0,
        "id_number": 1,
        "case": 0,
    }
    assert rows[first.id]["username"] == first.username
    assert rows[first.id]["organisation"] == first.organisation.name
    assert rows[first.id]["first_at"] == "2021-03-01T00:00:00+08:00"
    assert rows[first.id]["last_at"] == "2021-03-05T23:59:00+08:00"
    assert rows[second.id]["lookups"] == 1
    assert rows[second.id]["by_criterion"]["unit_code"] == 1
    assert [row["staff_id"] for row in report["staff"]] == [first.id, second.id]


def test_report_defaults_to_last_30_days(staffing, found):
    admin = staffing.member("admin")[1]
    member, service = staffing.member("service")
    lookup(service, business_no=found.business_no)
    lookup(service, unit_code=found.unit_code)

    report = citizen_request(admin, "GET", "/lookup/report").json()

    today = lookup_service.today()
    assert report["to"] == today.isoformat()
    assert report["from"] == (today - timedelta(days=29)).isoformat()
    [row] = [row for row in report["staff"] if row["staff_id"] == member.id]
    assert row["lookups"] == 2
    assert row["by_criterion"]["business_no"] == 1
    assert row["by_criterion"]["unit_code"] == 1


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("from=2021-13-01&to=2021-12-31", "from"),
        ("from=yesterday", "from"),
        ("to=2021-02-30", "to"),
        ("from=2021-03-02&to=2021-03-01", "to"),
        ("from=2021-01-01&to=2022-01-02", "to"),
    ],
    ids=["bad-month", "not-a-date", "no-such-day", "to-before-from", "367-days"],
)
def test_report_rejects_dates(staffing, query, field):
    admin = staffing.member("admin")[1]

    response = citizen_request(admin, "GET", f"/lookup/report?{query}")

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["query"][field]


def test_report_takes_366_days(staffing):
    admin = staffing.member("admin")[1]

    response = citizen_request(
        admin, "GET", "/lookup/report?from=2020-01-01&to=2020-12-31"
    )

    assert response.status_code == 200, response.text
    assert response.json()["to"] == "2020-12-31"


def test_records_mask_id_numbers(staffing, found):
    admin = staffing.member("admin")[1]
    member, service = staffing.member("service")
    number = found.buyer.id_number
    lookup(service, id_number=number)
    lookup(service, business_no=found.business_no, reason="来电询问登记进度")

    response = citizen_request(admin, "GET", f"/lookup/records?staff_id={member.id}")

    page = response.json()
    assert page["total"] == 2
    business, person = page["items"]
    assert person["criterion"] == "id_number"
    assert person["asked"] == masked_id(number)
    assert person["results"] == 1
    assert person["reason"] == REASON
    assert person["username"] == member.username
    assert person["organisation"] == member.organisation.name
    assert business["criterion"] == "business_no"
    assert business["asked"] == found.business_no
    assert business["reason"] == "来电询问登记进度"
    assert number not in response.text


def test_records_page_past_end(staffing):
    admin = staffing.member("admin")[1]
    member, service = staffing.member("service")
    lookup(service, business_no="B0000001")

    page = citizen_request(
        admin, "GET", f"/lookup/records?staff_id={member.id}&page=3&page_size=1"
    ).json()

    assert page == {"items": [], "total": 1, "page": 3, "page_size": 1}

"""Customer-service lookup: one criterion, masked responses, an audit record each."""

import json
import logging
import random
from datetime import datetime, timedelta

import pytest

from demo import scenarios
from models import LookupRecord, Transfer
from models.base import MAX_ID
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


# --- numbers out of range --------------------------------------------------------


def report_day(days_from_today):
    return (lookup_service.today() + timedelta(days=days_from_today)).isoformat()


@pytest.mark.parametrize(
    ("query", "fields"),
    [
        (lambda: "to=9999-12-31", {"to"}),
        (lambda: "from=9999-12-31", {"from"}),
        (lambda: "from=0001-01-01&to=0001-01-02", {"from", "to"}),
        (lambda: "to=0001-01-01", {"to"}),
        (lambda: "from=1999-12-31&to=2000-01-05", {"from"}),
        (lambda: f"to={report_day(2)}", {"to"}),
        (lambda: f"from={report_day(2)}&to={report_day(2)}", {"from", "to"}),
    ],
    ids=[
        "last-date",
        "from-last-date",
        "first-dates",
        "to-first-date",
        "before-2000",
        "after-tomorrow",
        "both-after-tomorrow",
    ],
)
def test_report_rejects_days_out_of_range(staffing, query, fields):
    admin = staffing.member("admin")[1]

    response = citizen_request(admin, "GET", f"/lookup/report?{query()}")

    body = assert_error(response, 422, "validation_failed")
    errors = body["errors"]["query"]
    assert set(errors) == fields
    for name in fields:
        [message] = errors[name]
        assert f"from 2000-01-01 to {report_day(1)}" in message
        assert "Asia/Shanghai" in message


@pytest.mark.parametrize(
    ("query", "first_day", "last_day"),
    [
        ("from=2000-01-01&to=2000-12-31", "2000-01-01", "2000-12-31"),
        ("to=2000-01-10", "2000-01-01", "2000-01-10"),
        (f"to={report_day(1)}", report_day(-28), report_day(1)),
        (f"from={report_day(1)}&to={report_day(1)}", report_day(1), report_day(1)),
    ],
    ids=["first-year", "default-from-stops-at-2000", "tomorrow", "only-tomorrow"],
)
def test_report_takes_edge_days(staffing, query, first_day, last_day):
    admin = staffing.member("admin")[1]

    response = citizen_request(admin, "GET", f"/lookup/report?{query}")

    assert response.status_code == 200, response.text
    assert response.json()["from"] == first_day
    assert response.json()["to"] == last_day


def test_report_counts_lookups_of_tomorrow(staffing):
    admin = staffing.member("admin")[1]
    member, _ = staffing.member("service")
    tomorrow = report_day(1)
    add_records(member, "business_no", f"{tomorrow} 00:00", f"{tomorrow} 23:59")

    response = citizen_request(
        admin, "GET", f"/lookup/report?from={tomorrow}&to={tomorrow}"
    )

    [row] = [row for row in response.json()["staff"] if row["staff_id"] == member.id]
    assert row["lookups"] == 2


@pytest.mark.parametrize(
    "staff_id",
    [0, -1, MAX_ID + 1, 2**63, 10**20, 99999999999999999999],
    ids=["zero", "negative", "past-max-id", "past-int64", "1e20", "twenty-nines"],
)
def test_records_reject_staff_id_out_of_range(staffing, staff_id):
    admin = staffing.member("admin")[1]

    response = citizen_request(admin, "GET", f"/lookup/records?staff_id={staff_id}")

    body = assert_error(response, 422, "validation_failed")
    [message] = body["errors"]["query"]["staff_id"]
    assert message == f"staff_id must be from 1 to {MAX_ID}."


def test_records_take_max_staff_id(staffing):
    admin = staffing.member("admin")[1]

    response = citizen_request(admin, "GET", f"/lookup/records?staff_id={MAX_ID}")

    assert response.status_code == 200, response.text
    assert response.json()["total"] == 0


@pytest.mark.parametrize("case_id", [MAX_ID, MAX_ID + 1, 2**63, 10**20], ids=str)
def test_case_id_at_edges_not_found(desk, case_id):
    member, service = desk

    response = lookup(service, f"/lookup/cases/{case_id}")

    assert_error(response, 404, "case_not_found")
    [record] = records_of(member)
    assert record.asked == str(case_id)
    assert record.results == 0


TWENTY_NINES = "99999999999999999999"


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        (
            "/lookup/cases",
            f"business_no=B0000001&reason=核对进度&page={TWENTY_NINES}",
            "page",
        ),
        ("/lookup/records", f"page={TWENTY_NINES}", "page"),
        ("/lookup/records", f"staff_id={TWENTY_NINES}", "staff_id"),
        ("/lookup/records", f"staff_id=-{TWENTY_NINES}", "staff_id"),
    ],
    ids=["cases-page", "records-page", "records-staff-id", "records-staff-id-negative"],
)
def test_huge_query_numbers_rejected(staffing, path, query, field):
    admin = staffing.member("admin")[1]

    response = citizen_request(admin, "GET", f"{path}?{query}")

    body = assert_error(response, 422, "validation_failed")
    assert set(body["errors"]["query"]) == {field}


@pytest.mark.parametrize("path", ["/lookup/cases", "/lookup/records"])
def test_huge_page_size_is_capped(stack, staffing, path):
    admin = staffing.member("admin")[1]
    criteria = (
        "business_no=B0000001&reason=核对进度&" if path == "/lookup/cases" else ""
    )

    response = citizen_request(
        admin, "GET", f"{path}?{criteria}page_size={TWENTY_NINES}"
    )

    assert response.status_code == 200, response.text
    assert response.json()["page_size"] == stack.app.config["PAGE_SIZE_MAX"]


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (TWENTY_NINES, "page"),
        ("1e400", "page"),
        ("-1e400", "page"),
        ("NaN", "page"),
        ("Infinity", "page"),
        ("1e400", "page_size"),
        ("NaN", "page_size"),
    ],
    ids=lambda value: value,
)
def test_search_body_numbers_out_of_range(desk, raw, field):
    member, service = desk
    body = (
        f'{{"business_no": "B0000001", "reason": "{REASON}", "{field}": {raw}}}'
    ).encode()

    response = citizen_request(service, "POST", "/lookup/cases/search", body)

    errors = assert_error(response, 422, "validation_failed")["errors"]
    assert errors["json"][field]
    assert records_of(member) == []


def test_search_body_huge_page_size_is_capped(stack, desk):
    _, service = desk

    response = search(service, business_no="B0000001", page_size=10**30)

    assert response.status_code == 200, response.text
    assert response.json()["page_size"] == stack.app.config["PAGE_SIZE_MAX"]


# --- business and account numbers as typed ---------------------------------------


SPELLINGS = {
    "lower-case": str.lower,
    "full-width": full_width,
    "full-width-lower-case": lambda number: full_width(number.lower()),
    "spaces": lambda number: f" \u3000{number}\t ",
    "zero-width": lambda number: f"\ufeff{number[:4]}\u200b{number[4:]}\u200b",
}


@pytest.mark.parametrize("spelling", SPELLINGS)
@pytest.mark.parametrize(
    ("criterion", "stored"),
    [
        ("business_no", lambda home: home.business_no),
        ("account_no", lambda home: home.accounts[0].account_no),
    ],
    ids=["business_no", "account_no"],
)
def test_number_found_however_typed(desk, found, decoy, criterion, stored, spelling):
    member, service = desk
    number = stored(found)
    typed = SPELLINGS[spelling](number)

    response = lookup(service, **{criterion: typed})

    assert response.status_code == 200, response.text
    assert [item["case_id"] for item in response.json()["items"]] == [found.case_id]
    [record] = records_of(member)
    assert record.criterion == criterion
    assert record.asked == number
    assert record.results == 1


@pytest.mark.parametrize("criterion", ["business_no", "account_no"])
def test_search_body_number_found_however_typed(desk, found, criterion):
    member, service = desk
    number = (
        found.business_no
        if criterion == "business_no"
        else found.accounts[0].account_no
    )

    response = search(service, **{criterion: f" {full_width(number.lower())} "})

    assert response.status_code == 200, response.text
    assert [item["case_id"] for item in response.json()["items"]] == [found.case_id]
    [record] = records_of(member)
    assert record.asked == number


def test_lower_case_business_no_is_found(client, homes, desk):
    member, service = desk
    home = homes.make()
    stored = home.business_no.lower()
    client.put_business(stored, scenarios.business_payload(home, "accepted"))
    client.login(home.buyer)
    case_id = client.call("POST", "/cases", {"business_no": stored})["case_id"]

    for typed in (stored, stored.upper(), full_width(stored)):
        page = lookup(service, business_no=typed).json()
        assert [item["case_id"] for item in page["items"]] == [case_id], typed
    assert {record.asked for record in records_of(member)} == {stored.upper()}


def test_lower_case_account_no_is_found(desk, found):
    _, service = desk
    number = found.accounts[0].account_no
    Transfer.update(account_no=number.lower()).where(
        (Transfer.case == found.case_id) & (Transfer.account_no == number)
    ).execute()

    for typed in (number, number.lower(), full_width(number)):
        page = lookup(service, account_no=typed, service_org=WATER).json()
        assert [item["case_id"] for item in page["items"]] == [found.case_id], typed


@pytest.mark.parametrize(
    "typed",
    ["JN 2026", "JN_2026", "登记2026001", "JN\u20282026", "x" * 65],
    ids=["inner-space", "underscore", "chinese", "line-separator", "too-long"],
)
def test_invalid_business_no_rejected(desk, typed):
    member, service = desk

    response = lookup(service, business_no=typed)

    body = assert_error(response, 422, "validation_failed")
    assert body["errors"]["query"]["business_no"]
    assert records_of(member) == []


# --- text the database cannot store ----------------------------------------------


INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u202e"]


@pytest.mark.parametrize("char", INVISIBLE, ids=lambda char: f"U+{ord(char):04X}")
@pytest.mark.parametrize("path", ["/lookup/cases", f"/lookup/cases/{MISSING_ID}"])
def test_invisible_characters_count_for_nothing(desk, path, char):
    member, service = desk
    criteria = {"business_no": "B0000001"} if path == "/lookup/cases" else {}

    response = lookup(service, path, reason=f"{char}ab{char * 3}c{char}", **criteria)

    body = assert_error(response, 422, "validation_failed")
    [message] = body["errors"]["query"]["reason"]
    assert "4 to 200 characters" in message
    assert records_of(member) == []


def test_invisible_characters_left_out_of_reason(desk):
    member, service = desk

    response = lookup(
        service, business_no="B0000001", reason=f"\ufeff\u200b {REASON}\u200b"
    )

    assert response.status_code == 200, response.text
    [record] = records_of(member)
    assert record.reason == REASON


LINE_BREAKERS = ["\u0007", "\t", "\n", "\r", "\u001f", "\u007f", "\u0085"]
LINE_BREAKERS += ["\u2028", "\u2029"]


@pytest.mark.parametrize("char", LINE_BREAKERS, ids=lambda char: f"U+{ord(char):04X}")
@pytest.mark.parametrize("path", ["/lookup/cases", f"/lookup/cases/{MISSING_ID}"])
def test_reason_control_character_rejected(desk, path, char):
    member, service = desk
    criteria = {"business_no": "B0000001"} if path == "/lookup/cases" else {}

    response = lookup(service, path, reason=f"热线{char}工单 A-1001", **criteria)

    body = assert_error(response, 422, "validation_failed")
    [message] = body["errors"]["query"]["reason"]
    assert message.startswith("reason contains the ")
    assert f"U+{ord(char):04X}" in message
    assert records_of(member) == []


@pytest.mark.parametrize(
    ("field", "criteria"),
    [
        ("reason", {"business_no": "B0000001"}),
        ("business_no", {}),
        ("account_no", {}),
        ("service_org", {"account_no": "SW00000001"}),
    ],
)
@pytest.mark.parametrize("char", ["\u0001", "\u001b", "\t"], ids=["SOH", "ESC", "TAB"])
def test_control_character_rejected_in_text(desk, field, criteria, char):
    member, service = desk
    params = {"reason": REASON, **criteria, field: f"JN2026{char}0001"}

    response = lookup(service, **params)

    body = assert_error(response, 422, "validation_failed")
    [message] = body["errors"]["query"][field]
    code = f"U+{ord(char):04X}"
    assert message.startswith(f"{field} contains the control character {code}")
    assert records_of(member) == []


@pytest.mark.parametrize("path", ["/lookup/cases", f"/lookup/cases/{MISSING_ID}"])
def test_nul_in_query_rejected_before_lookup(desk, path):
    member, service = desk
    criteria = {"business_no": "B0000001"} if path == "/lookup/cases" else {}

    response = lookup(service, path, reason="热线\u0000工单 A-1001", **criteria)

    body = assert_error(response, 400, "bad_request")
    assert body["errors"] == {"query": ["NUL characters are not accepted"]}
    assert records_of(member) == []


def test_nul_in_body_rejected_before_lookup(desk):
    member, service = desk

    response = search(service, business_no="B0000001", reason="热线\u0000工单 A-1001")

    body = assert_error(response, 400, "bad_request")
    assert body["errors"] == {"json": ["NUL characters are not accepted"]}
    assert records_of(member) == []


@pytest.mark.parametrize("field", ["reason", "account_no", "service_org"])
def test_search_body_unpaired_surrogate_rejected(desk, field):
    member, service = desk
    body = {"reason": REASON, "account_no": "SW00000001", "service_org": WATER}
    # A valid pair (U+10000), then a lone high surrogate, which json.dumps
    # writes as the escape \ud800.
    body[field] = "SW\ud800\udc00x\ud800"

    response = citizen_request(
        service, "POST", "/lookup/cases/search", json.dumps(body).encode()
    )

    errors = assert_error(response, 422, "validation_failed")["errors"]
    [message] = errors["json"][field]
    assert "unpaired surrogate U+D800" in message
    assert records_of(member) == []


# --- scope of a utility's own hotline --------------------------------------------


@pytest.fixture
def hotline(staffing):
    """Customer service of the water utility and their logged-in client."""
    organisation = staffing.organisation("utility", utility="water")
    return staffing.member("service", organisation=organisation)


@pytest.fixture
def elsewhere(client, homes):
    """Open a case whose only account is at the power utility."""
    home = homes.make(accounts=[("power", {})])
    home.case_id = open_case(client, home)
    return home


@pytest.mark.parametrize("criterion", CRITERIA)
def test_hotline_finds_own_utility_cases(hotline, found, criterion):
    member, service = hotline

    response = lookup(service, **CRITERIA[criterion](found))

    assert response.status_code == 200, response.text
    assert [item["case_id"] for item in response.json()["items"]] == [found.case_id]
    [record] = records_of(member)
    assert record.results == 1


SEARCHES = {
    "business_no": lambda home: {"business_no": home.business_no},
    "unit_code": lambda home: {"unit_code": home.unit_code},
    "account_no": lambda home: {"account_no": home.accounts[0].account_no},
    "owner-id": lambda home: {"id_number": home.buyer.id_number},
    "previous-owner-id": lambda home: {"id_number": home.sellers[0].id_number},
}


@pytest.mark.parametrize("criterion", SEARCHES)
def test_hotline_misses_other_utility_cases(hotline, elsewhere, criterion):
    member, service = hotline

    listed = lookup(service, **SEARCHES[criterion](elsewhere))
    posted = search(service, **SEARCHES[criterion](elsewhere))

    assert listed.json()["total"] == 0
    assert listed.json()["items"] == []
    assert posted.json()["total"] == 0
    assert [record.results for record in records_of(member)] == [0, 0]


def test_hotline_misses_case_without_transfer(client, homes, hotline):
    _, service = hotline
    home = homes.make(accounts=())
    case_id = open_case(client, home)

    listed = lookup(service, business_no=home.business_no)
    shown = lookup(service, f"/lookup/cases/{case_id}")

    assert listed.json()["total"] == 0
    assert_error(shown, 404, "case_not_found")


def test_hotline_counts_only_own_cases(client, homes, hotline):
    member, service = hotline
    buyer = homes.person()
    water_case = open_case(client, homes.make(buyer=buyer))
    open_case(client, homes.make(buyer=buyer, accounts=[("power", {})]))
    open_case(client, homes.make(buyer=buyer, accounts=[("gas", {})]))

    page = lookup(service, id_number=buyer.id_number).json()

    assert page["total"] == 1
    assert [item["case_id"] for item in page["items"]] == [water_case]
    [record] = records_of(member)
    assert record.results == 1


def test_hotline_other_case_answers_as_missing(hotline, found, elsewhere):
    member, service = hotline

    own = lookup(service, f"/lookup/cases/{found.case_id}")
    other = lookup(service, f"/lookup/cases/{elsewhere.case_id}")
    missing = lookup(service, f"/lookup/cases/{MISSING_ID}")

    assert own.status_code == 200, own.text
    assert own.json()["case_id"] == found.case_id
    other_body = assert_error(other, 404, "case_not_found")
    missing_body = assert_error(missing, 404, "case_not_found")
    assert other_body["message"] == missing_body["message"]
    assert set(other_body) == set(missing_body)
    assert elsewhere.business_no not in other.text
    own_record, other_record, missing_record = records_of(member)
    assert own_record.results == 1
    assert other_record.criterion == "case"
    assert other_record.asked == str(elsewhere.case_id)
    assert other_record.results == 0
    assert missing_record.results == 0


def test_hotline_of_other_utility_sees_its_cases(staffing, found, elsewhere):
    gas = staffing.member(
        "service", organisation=staffing.organisation("utility", "gas")
    )
    power = staffing.member(
        "service", organisation=staffing.organisation("utility", "power")
    )
    _, gas_service = gas
    _, power_service = power

    assert lookup(gas_service, f"/lookup/cases/{found.case_id}").status_code == 200
    assert lookup(gas_service, f"/lookup/cases/{elsewhere.case_id}").status_code == 404
    assert lookup(power_service, f"/lookup/cases/{found.case_id}").status_code == 404
    assert (
        lookup(power_service, f"/lookup/cases/{elsewhere.case_id}").status_code == 200
    )


@pytest.mark.parametrize("kind", ["service_desk", "registry_window"])
def test_city_service_sees_every_case(staffing, found, elsewhere, kind):
    _, service = staffing.member("service", organisation=staffing.organisation(kind))

    for home in (found, elsewhere):
        listed = lookup(service, business_no=home.business_no)
        shown = lookup(service, f"/lookup/cases/{home.case_id}")
        assert [item["case_id"] for item in listed.json()["items"]] == [home.case_id]
        assert shown.status_code == 200, shown.text


def test_admin_sees_every_case(staffing, found, elsewhere):
    _, admin = staffing.member("admin")

    for home in (found, elsewhere):
        assert lookup(admin, business_no=home.business_no).json()["total"] == 1
        assert lookup(admin, f"/lookup/cases/{home.case_id}").status_code == 200

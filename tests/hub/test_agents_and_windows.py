"""Agencies act for buyers by delegation; window staff act by counter consent."""

from datetime import UTC, datetime, timedelta

import pytest

from models import (
    Business,
    CaseAction,
    CounterConsent,
    Delegation,
    Transfer,
    TransferEvent,
)
from models.base import utcnow
from tests.hub.flows import assert_error, citizen_request

ALL_SCOPES = ["view", "accounts", "confirm", "agreement", "pay", "submit"]


def later(days=30):
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


def grant(buyer, home, agency, scope=ALL_SCOPES, case_id=None):
    body = {
        "agency_name": agency.name,
        "agency_credit_code": agency.credit_code,
        "scope": scope,
        "expires_at": later(),
    }
    if case_id is None:
        return buyer.call(
            "POST", "/delegations", {**body, "business_no": home.business_no}
        )
    return buyer.call("POST", f"/cases/{case_id}/delegations", body)


def finish_steps(actor, case_id):
    for account in actor.call("GET", f"/cases/{case_id}/accounts"):
        path = f"/cases/{case_id}/transfers/{account['transfer_id']}"
        actor.call("POST", f"{path}/confirmation", {})
        agreement = actor.call("GET", f"/agreements/{account['service_org']}")
        actor.call("POST", f"{path}/agreement", {"version": agreement["version"]})
    return actor.call("POST", f"/cases/{case_id}/submission", {})


@pytest.fixture
def agency_pair(staffing):
    agency = staffing.organisation("agency")
    member, agent = staffing.member("agent", organisation=agency)
    return agency, member, agent


def test_agent_opens_and_submits_for_the_buyer(client, homes, agency_pair):
    agency, member, agent = agency_pair
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    client.login(home.buyer)
    grant(client, home, agency)

    case = agent.call("POST", "/cases", {"business_no": home.business_no})
    submitted = finish_steps(agent, case["case_id"])

    assert submitted["status"] == "submitted"
    actions = list(
        CaseAction.select()
        .where(CaseAction.case == case["case_id"])
        .order_by(CaseAction.id)
    )
    assert [a.action for a in actions] == [
        "open",
        "confirm",
        "agreement",
        "confirm",
        "agreement",
        "submit",
    ]
    assert {a.actor_role for a in actions} == {"agent"}
    assert {a.staff_id for a in actions} == {member.id}
    assert {a.citizen_id for a in actions} == {None}
    assert all(a.delegation_id is not None for a in actions)
    assert client.call("GET", f"/cases/{case['case_id']}")["status"] == "submitted"


def test_agent_steps_show_the_agency_on_the_timeline(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency)
    case = agent.call("POST", "/cases", {"business_no": home.business_no})

    finish_steps(agent, case["case_id"])

    events = list(
        TransferEvent.select()
        .join(Transfer)
        .where(
            (Transfer.case == case["case_id"])
            & TransferEvent.status.in_(["confirmed", "agreement_accepted", "submitted"])
        )
    )
    assert len(events) == 3
    assert {e.actor for e in events} == {"agent"}
    assert {e.actor_name for e in events} == {agency.name}


def test_delegation_granted_first_is_tied_to_the_case(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    delegation = grant(client, home, agency)

    assert delegation["case_id"] is None
    case = agent.call("POST", "/cases", {"business_no": home.business_no})

    assert Delegation.get_by_id(delegation["delegation_id"]).case_id == case["case_id"]


def test_agent_without_delegation_cannot_open_or_see(client, homes, agency_pair):
    _, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})

    opened = citizen_request(agent, "POST", "/cases", {"business_no": home.business_no})
    seen = citizen_request(agent, "GET", f"/cases/{case['case_id']}")

    assert_error(opened, 404, "business_not_found")
    assert_error(seen, 404, "case_not_found")
    assert agent.call("GET", "/cases")["items"] == []


def test_delegation_to_another_agency_does_not_help(client, homes, staffing):
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, staffing.organisation("agency"))
    _, outsider = staffing.member("agent")

    response = citizen_request(
        outsider, "POST", "/cases", {"business_no": home.business_no}
    )

    assert_error(response, 404, "business_not_found")


def test_scope_limits_the_agent(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency, scope=["view"])
    case = agent.call("POST", "/cases", {"business_no": home.business_no})
    transfer = case["transfers"][0]["transfer_id"]
    path = f"/cases/{case['case_id']}/transfers/{transfer}"

    confirm = citizen_request(agent, "POST", f"{path}/confirmation", {})
    submit = citizen_request(agent, "POST", f"/cases/{case['case_id']}/submission", {})

    assert_error(confirm, 403, "delegation_scope")
    assert_error(submit, 403, "delegation_scope")
    # The message names the scope as the owner saw it when granting.
    assert "（需要“确认户号”）" in confirm.json()["message"]
    assert "（需要“提交联办”）" in submit.json()["message"]
    assert (
        agent.call("GET", f"/cases/{case['case_id']}/progress")["case_id"]
        == (case["case_id"])
    )


def test_every_scope_has_a_name():
    from services.access import ACTION_SCOPES, SCOPE_NAMES
    from services.delegations import SCOPES

    assert set(SCOPE_NAMES) == set(SCOPES)
    assert {scope for scope in ACTION_SCOPES.values() if scope} <= set(SCOPE_NAMES)


def test_agent_sees_people_masked(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency)

    response = citizen_request(
        agent, "POST", "/cases", {"business_no": home.business_no}
    )

    assert response.status_code == 201
    assert home.buyer.id_number not in response.text
    assert home.buyer.name not in response.text
    for seller in home.sellers:
        assert seller.id_number not in response.text


def test_revocation_ends_access_at_once(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    delegation = grant(client, home, agency, case_id=case["case_id"])
    assert agent.call("GET", f"/cases/{case['case_id']}")["case_id"] == case["case_id"]
    revocation = (
        f"/cases/{case['case_id']}/delegations/{delegation['delegation_id']}/revocation"
    )

    first = client.call("POST", revocation)
    second = client.call("POST", revocation)

    assert first["state"] == "revoked"
    assert second["revoked_at"] == first["revoked_at"]
    assert_error(
        citizen_request(agent, "GET", f"/cases/{case['case_id']}"),
        404,
        "case_not_found",
    )


def test_agent_cannot_grant_or_revoke(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    delegation = grant(client, home, agency, case_id=case["case_id"])
    base = f"/cases/{case['case_id']}/delegations"

    revoke = citizen_request(
        agent, "POST", f"{base}/{delegation['delegation_id']}/revocation"
    )
    regrant = citizen_request(
        agent,
        "POST",
        base,
        {
            "agency_name": agency.name,
            "agency_credit_code": agency.credit_code,
            "scope": ALL_SCOPES,
            "expires_at": later(300),
        },
    )

    assert_error(revoke, 403, "role_forbidden")
    assert_error(regrant, 403, "role_forbidden")


def test_expired_delegation_ends_access(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    delegation = grant(client, home, agency)
    case = agent.call("POST", "/cases", {"business_no": home.business_no})

    Delegation.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        Delegation.id == delegation["delegation_id"]
    ).execute()

    assert_error(
        citizen_request(agent, "GET", f"/cases/{case['case_id']}"),
        404,
        "case_not_found",
    )
    listed = client.call("GET", "/delegations")["items"]
    assert [d["state"] for d in listed] == ["expired"]


def test_granting_again_replaces_the_delegation(client, homes, agency_pair):
    agency, _, _ = agency_pair
    home = homes.make()
    client.login(home.buyer)

    first = grant(client, home, agency, scope=["view"])
    second = grant(client, home, agency, scope=["view", "pay"])

    states = {
        d["delegation_id"]: d["state"]
        for d in client.call("GET", "/delegations")["items"]
    }
    assert states == {
        first["delegation_id"]: "revoked",
        second["delegation_id"]: "active",
    }
    assert second["scope"] == ["view", "pay"]


def test_agency_sees_only_its_own_delegations(client, homes, staffing, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, staffing.organisation("agency"))
    mine = grant(client, home, agency)
    case = agent.call("POST", "/cases", {"business_no": home.business_no})

    seen = agent.call("GET", f"/cases/{case['case_id']}/delegations")
    owner_sees = client.call("GET", f"/cases/{case['case_id']}/delegations")

    assert [d["delegation_id"] for d in seen["items"]] == [mine["delegation_id"]]
    assert owner_sees["total"] == 2


def test_only_an_owner_may_grant_by_business(client, homes, agency_pair):
    agency, _, _ = agency_pair
    home = homes.make()
    client.login(home.sellers[0])

    response = citizen_request(
        client,
        "POST",
        "/delegations",
        {
            "business_no": home.business_no,
            "agency_name": agency.name,
            "agency_credit_code": agency.credit_code,
            "scope": ["view"],
            "expires_at": later(),
        },
    )

    assert_error(response, 404, "business_not_found")


@pytest.mark.parametrize(
    ("path", "extra"),
    [
        ("/cases", {"citizen_id": 1}),
        ("/delegations", {"granted_by": 1}),
        ("/delegations", {"revoked_at": "2030-01-01T00:00:00+08:00"}),
    ],
    ids=["case-citizen", "delegation-granter", "delegation-revoked"],
)
def test_fields_callers_may_not_set_are_refused(
    client, homes, agency_pair, path, extra
):
    agency, _, _ = agency_pair
    home = homes.make()
    client.login(home.buyer)
    body = {"business_no": home.business_no, **extra}
    if path == "/delegations":
        body.update(
            agency_name=agency.name,
            agency_credit_code=agency.credit_code,
            scope=["view"],
            expires_at=later(),
        )

    response = citizen_request(client, "POST", path, body)

    error = assert_error(response, 422, "validation_failed")
    assert list(extra) == list(error["errors"]["json"])


def test_warning_for_an_agency_without_an_account(client, homes, staffing):
    home = homes.make()
    client.login(home.buyer)
    code = staffing.people.developer("x").id_number

    answer = client.call(
        "POST",
        "/delegations",
        {
            "business_no": home.business_no,
            "agency_name": "济南未开通房产经纪有限公司",
            "agency_credit_code": code,
            "scope": ["view"],
            "expires_at": later(),
        },
    )

    assert any("尚未开通" in warning for warning in answer["warnings"])


@pytest.fixture
def window_pair(staffing):
    office = staffing.organisation("registry_window")
    member, clerk = staffing.member("window", organisation=office)
    return office, member, clerk


def counter_body(home, person, method="signed_form"):
    return {
        "business_no": home.business_no,
        "applicant": {"id_type": person.id_type, "id_number": person.id_number},
        "consent_method": method,
        "consent_reference": "SQ20261204001",
    }


def test_window_opens_and_submits_with_consent(homes, window_pair):
    office, member, clerk = window_pair
    home = homes.make(accounts=[("water", {}), ("power", {})])

    case = clerk.call("POST", "/window/cases", counter_body(home, home.buyer))
    submitted = finish_steps(clerk, case["case_id"])

    assert case["consent"]["method"] == "signed_form"
    assert submitted["status"] == "submitted"
    consent = CounterConsent.get_by_id(case["consent"]["consent_id"])
    assert consent.case_id == case["case_id"]
    assert consent.staff_id == member.id
    actions = CaseAction.select().where(CaseAction.case == case["case_id"])
    assert {a.actor_role for a in actions} == {"window"}
    assert {a.staff_id for a in actions} == {member.id}
    assert "submit" in {a.action for a in actions}
    assert home.buyer.id_number not in str(case)


def test_window_joins_a_case_the_buyer_opened(client, homes, window_pair):
    _, _, clerk = window_pair
    home = homes.make()
    client.login(home.buyer)
    opened = client.call("POST", "/cases", {"business_no": home.business_no})

    response = citizen_request(
        clerk, "POST", "/window/cases", counter_body(home, home.buyer, "e_signature")
    )

    assert response.status_code == 200
    assert response.json()["case_id"] == opened["case_id"]


@pytest.mark.parametrize(
    ("who", "code"),
    [("seller", "applicant_not_owner"), ("stranger", "applicant_not_owner")],
)
def test_window_refuses_someone_not_an_owner(homes, window_pair, who, code):
    _, _, clerk = window_pair
    home = homes.make()
    person = home.sellers[0] if who == "seller" else homes.person()

    response = citizen_request(
        clerk, "POST", "/window/cases", counter_body(home, person)
    )

    assert_error(response, 422, code)
    consents = (
        CounterConsent.select()
        .join(Business)
        .where(Business.business_no == home.business_no)
    )
    assert consents.count() == 0


def test_window_refuses_an_invalid_id_number(homes, window_pair):
    _, _, clerk = window_pair
    home = homes.make()
    body = counter_body(home, home.buyer)
    body["applicant"]["id_number"] = "370102199001011234"

    response = citizen_request(clerk, "POST", "/window/cases", body)

    assert_error(response, 422, "applicant_id_invalid")


def test_other_window_and_expired_consent_see_nothing(homes, staffing, window_pair):
    _, _, clerk = window_pair
    _, other_clerk = staffing.member("window")
    home = homes.make()
    case = clerk.call("POST", "/window/cases", counter_body(home, home.buyer))
    path = f"/cases/{case['case_id']}"

    assert_error(citizen_request(other_clerk, "GET", path), 404, "case_not_found")
    CounterConsent.update(expires_at=utcnow() - timedelta(seconds=1)).where(
        CounterConsent.id == case["consent"]["consent_id"]
    ).execute()
    assert_error(citizen_request(clerk, "GET", path), 404, "case_not_found")


@pytest.mark.parametrize("role", ["citizen", "agent", "service", "utility", "admin"])
def test_only_window_staff_use_the_counter(client, homes, staffing, role):
    home = homes.make()
    if role == "citizen":
        caller = client
        client.login(home.buyer)
    else:
        _, caller = staffing.member(role)

    response = citizen_request(
        caller, "POST", "/window/cases", counter_body(home, home.buyer)
    )

    assert_error(response, 403, "role_forbidden")


def test_owner_sees_who_acted(client, homes, agency_pair):
    agency, _, agent = agency_pair
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency)
    case = agent.call("POST", "/cases", {"business_no": home.business_no})
    finish_steps(agent, case["case_id"])

    actions = client.call("GET", f"/cases/{case['case_id']}/actions")["items"]

    assert [a["action"] for a in actions] == [
        "open",
        "confirm",
        "agreement",
        "submit",
    ]
    assert {a["actor_role"] for a in actions} == {"agent"}
    assert {a["actor_name"] for a in actions} == {agency.name}
    assert not any(a["by_me"] for a in actions)
    assert all(
        a["by_me"]
        for a in agent.call("GET", f"/cases/{case['case_id']}/actions")["items"]
    )


def test_window_checks_the_id_type(homes, window_pair):
    _, _, clerk = window_pair
    home = homes.make()
    body = counter_body(home, home.buyer)
    body["applicant"]["id_type"] = "护照"

    response = citizen_request(clerk, "POST", "/window/cases", body)

    assert_error(response, 422, "applicant_id_type_mismatch")


def test_window_form_number_serves_one_business(homes, window_pair):
    _, _, clerk = window_pair
    first, second = homes.make(), homes.make()
    clerk.call("POST", "/window/cases", counter_body(first, first.buyer))

    again = citizen_request(
        clerk, "POST", "/window/cases", counter_body(second, second.buyer)
    )

    assert_error(again, 409, "consent_reference_used")


def test_granting_again_says_it_replaced(client, homes, agency_pair):
    agency, _, _ = agency_pair
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency, scope=["view"])

    second = grant(client, home, agency, scope=["view", "pay"])

    assert any("已撤销您此前" in warning for warning in second["warnings"])

"""Kept case views: served again only while nothing they show has changed."""

import importlib
import json
import logging
import re
import time
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from api import case_cache, views
from models import (
    AccountLink,
    Business,
    Case,
    CaseChange,
    CounterConsent,
    Delegation,
    Party,
    ReconciliationItem,
    Staff,
    Transfer,
    Unit,
    Utility,
)
from models.base import utcnow
from models.db import database, is_sqlite
from services import access, housekeeping
from services import staff as staff_service
from services.tokens import VerifiedTokens
from tests.hub.flows import citizen_request, drive_to_submission

SOURCES = importlib.import_module("models.migrations.011_case_changes").SOURCES


def tables_with_triggers():
    """Return the tables that have a case-change trigger in this database."""
    if is_sqlite():
        sql = (
            "SELECT DISTINCT tbl_name FROM sqlite_master "
            "WHERE type = 'trigger' AND name LIKE {p}"
        )
    else:
        sql = (
            "SELECT DISTINCT event_object_table FROM information_schema.triggers "
            "WHERE trigger_name LIKE {p}"
        )
    rows = database.execute_sql(sql.format(p=database.param), ("case_change_%",))
    return {row[0] for row in rows.fetchall()}


def served_count():
    value = REGISTRY.get_sample_value(
        "lianban_kept_case_views_total", {"result": "served"}
    )
    return value or 0


def fresh_view(case_id, citizen):
    """Build the case view that the full path returns, for comparison."""
    case = Case.get_by_id(case_id)
    caller = access.Caller(citizen=citizen)
    return json.loads(
        json.dumps(views.CaseSchema().dump(views.case_view(case, caller)))
    )


def owner_citizen(client):
    from models import Citizen
    from services import tokens

    claims = tokens.jwt.decode(client.token, options={"verify_signature": False})
    return Citizen.get_by_id(int(claims["sub"].split(":")[1]))


def assert_current(client, case_id):
    """GET the case twice and check both responses equal a freshly built view."""
    citizen = owner_citizen(client)
    first = client.call("GET", f"/cases/{case_id}")
    second = client.call("GET", f"/cases/{case_id}")
    expected = fresh_view(case_id, citizen)
    assert first == expected
    assert second == expected
    return second


def test_repeated_get_is_served_from_kept_view(client, homes):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    path = f"/cases/{case['case_id']}"

    first = citizen_request(client, "GET", path)
    before = served_count()
    second = citizen_request(client, "GET", path)

    assert served_count() == before + 1
    assert second.status_code == 200
    assert second.content == first.content
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert re.fullmatch(r"[0-9a-f]{32}", second.headers["X-Request-Id"])
    assert second.headers["X-Request-Id"] != first.headers["X-Request-Id"]


def test_kept_view_keeps_client_request_id(client, homes):
    home = homes.make()
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    path = f"/cases/{case['case_id']}"
    client.call("GET", path)

    response = client.session.get(
        client.api + path,
        headers={
            "Authorization": f"Bearer {client.token}",
            "X-Request-Id": "kept-view-check-01",
        },
        timeout=10,
    )

    assert response.status_code == 200
    assert response.headers["X-Request-Id"] == "kept-view-check-01"


def test_every_step_of_the_flow_shows_at_once(client, homes, stack):
    home = homes.make(accounts=[("water", {"arrears_fen": 1250}), ("gas", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    case_id = case["case_id"]
    assert_current(client, case_id)

    for account in client.call("GET", f"/cases/{case_id}/accounts"):
        transfer_path = f"/cases/{case_id}/transfers/{account['transfer_id']}"
        client.call("POST", f"{transfer_path}/confirmation", {})
        shown = assert_current(client, case_id)
        confirmed = next(
            t for t in shown["transfers"] if t["transfer_id"] == account["transfer_id"]
        )
        assert confirmed["account_confirmed"] is True

        agreement = client.call("GET", f"/agreements/{account['service_org']}")
        client.call(
            "POST", f"{transfer_path}/agreement", {"version": agreement["version"]}
        )
        shown = assert_current(client, case_id)
        accepted = next(
            t for t in shown["transfers"] if t["transfer_id"] == account["transfer_id"]
        )
        assert accepted["agreement_version"] == agreement["version"]

    water = next(t for t in shown["transfers"] if t["utility_kind"] == "water")
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{water['transfer_id']}/payments", {}
    )
    client.pay_in_sandbox(payment["code_url"])
    client.wait_for_payment(payment["payment_id"])
    assert_current(client, case_id)

    client.call("POST", f"/cases/{case_id}/submission", {})
    shown = assert_current(client, case_id)
    assert shown["status"] == "submitted"

    from demo import scenarios

    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    client.wait_until_final(case_id)
    shown = assert_current(client, case_id)
    assert shown["status"] == "closed"
    assert {t["status"] for t in shown["transfers"]} == {"completed"}


def test_each_source_table_moves_revision(client, homes, app):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    case = Case.get_by_id(case_id)
    transfer = Transfer.get(Transfer.case == case)
    business = Business.get_by_id(case.business_id)
    link = AccountLink.get_by_id(transfer.account_id)
    utility = Utility.get_by_id(transfer.utility_id)
    party = Party.get(Party.business == business)
    now = utcnow()
    item = ReconciliationItem.create(
        utility=utility,
        account_no="KEPT-0001",
        case=case,
        business=business,
        unit=business.unit_id,
        source="applicant",
        reasons=["holder_mismatch"],
        status="open",
    )
    delegation = Delegation.create(
        business=business,
        case=case,
        granted_by=case.citizen_id,
        agency_name="测试中介",
        agency_credit_code="91370100MA3C000001",
        scope="confirm",
        expires_at=now + timedelta(days=1),
    )
    changes = {
        "case": lambda: Case.update(submitted_at=now).where(Case.id == case_id),
        "transfer": lambda: Transfer.update(arrears_fen=1).where(
            Transfer.id == transfer.id
        ),
        "reconciliation_item": lambda: ReconciliationItem.update(
            decision_note="checked"
        ).where(ReconciliationItem.id == item.id),
        "business": lambda: Business.update(certificate_no="鲁(2026)测试").where(
            Business.id == business.id
        ),
        "party": lambda: Party.update(position=party.position).where(
            Party.id == party.id
        ),
        "delegation": lambda: Delegation.update(revoked_at=now).where(
            Delegation.id == delegation.id
        ),
        "counter_consent": None,
        "unit": lambda: Unit.update(usage="住宅").where(Unit.id == business.unit_id),
        "account_link": lambda: AccountLink.update(
            account_address="燕子山路测试地址"
        ).where(AccountLink.id == link.id),
        "utility": lambda: Utility.update(connection="channel").where(
            Utility.id == utility.id
        ),
    }
    assert set(changes) == set(SOURCES)

    try:
        for table, change in changes.items():
            if change is None:
                continue
            before = case_cache.read_revision(case_id)
            change().execute()
            assert case_cache.read_revision(case_id) != before, table
    finally:
        Utility.update(connection=utility.connection).where(
            Utility.id == utility.id
        ).execute()


def test_counter_consent_makes_a_new_revision(client, homes, staffing):
    home = homes.make()
    case_id = drive_to_submission(client, home)
    case = Case.get_by_id(case_id)
    member, _ = staffing.member("window")
    before = case_cache.read_revision(case_id)

    CounterConsent.create(
        business=case.business_id,
        staff=member,
        organisation=member.organisation_id,
        applicant_index="kept-view-test",
        method="signed_form",
        reference=f"F{case_id:08d}",
        expires_at=utcnow() + timedelta(hours=1),
    )

    assert case_cache.read_revision(case_id) != before


def test_unshown_change_keeps_the_revision(client, homes):
    home = homes.make()
    case_id = drive_to_submission(client, home)
    transfer = Transfer.get(Transfer.case == case_id)
    before = case_cache.read_revision(case_id)

    Utility.update(base_url=Utility.base_url).where(
        Utility.id == transfer.utility_id
    ).execute()
    AccountLink.update(match_result="一致").where(
        AccountLink.id == transfer.account_id
    ).execute()

    assert case_cache.read_revision(case_id) == before


class QueryTables(logging.Handler):
    """Collect the tables named in the SQL that peewee logs."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.tables = set()

    def emit(self, record):
        sql = record.msg[0] if isinstance(record.msg, tuple) else str(record.msg)
        for name in re.findall(r'(?:FROM|JOIN) "([a-z_]+)"', sql):
            self.tables.add(name)


def test_case_view_reads_only_tables_with_triggers(client, homes, app):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    case_id = drive_to_submission(client, home)
    citizen = owner_citizen(client)
    collector = QueryTables()
    peewee_log = logging.getLogger("peewee")
    level = peewee_log.level
    peewee_log.addHandler(collector)
    peewee_log.setLevel(logging.DEBUG)
    try:
        fresh_view(case_id, citizen)
    finally:
        peewee_log.removeHandler(collector)
        peewee_log.setLevel(level)

    # Agreements are versions that never change once published.
    immutable = {"agreement"}
    assert collector.tables
    assert collector.tables - immutable <= tables_with_triggers()


def test_logout_ends_kept_views_at_once(client, homes):
    home = homes.make()
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    path = f"/cases/{case['case_id']}"
    client.call("GET", path)
    client.call("GET", path)

    logout = citizen_request(client, "POST", "/auth/logout")
    response = citizen_request(client, "GET", path)

    assert logout.status_code == 204

    assert response.status_code == 401


def test_deactivated_agent_loses_kept_view(client, homes, staffing):
    from tests.hub.test_agents_and_windows import grant

    agency = staffing.organisation("agency")
    member, agent = staffing.member("agent", organisation=agency)
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency)
    case = agent.call("POST", "/cases", {"business_no": home.business_no})
    path = f"/cases/{case['case_id']}"
    agent.call("GET", path)
    agent.call("GET", path)

    staff_service.deactivate(Staff.get_by_id(member.id))
    response = citizen_request(agent, "GET", path)

    assert response.status_code == 401


def test_revoked_delegation_ends_agents_kept_view(client, homes, staffing):
    from tests.hub.test_agents_and_windows import grant

    agency = staffing.organisation("agency")
    _, agent = staffing.member("agent", organisation=agency)
    home = homes.make()
    client.login(home.buyer)
    delegation = grant(client, home, agency)
    case = agent.call("POST", "/cases", {"business_no": home.business_no})
    path = f"/cases/{case['case_id']}"
    agent.call("GET", path)
    agent.call("GET", path)

    client.call(
        "POST",
        f"/cases/{case['case_id']}/delegations/{delegation['delegation_id']}"
        "/revocation",
        {},
    )
    response = citizen_request(agent, "GET", path)

    assert response.status_code == 404


def test_co_owners_get_their_own_views(client, homes, stack):
    from demo.client import HubClient

    co_owner = homes.person()
    home = homes.make(co_owners=[co_owner])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    path = f"/cases/{case['case_id']}"
    other = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    other.login(co_owner)

    for _ in range(2):
        mine = client.call("GET", path)
        theirs = other.call("GET", path)
        me = [p for p in mine["owners"] if p["is_me"]]
        them = [p for p in theirs["owners"] if p["is_me"]]
        assert [p["id_number"] for p in me] == [home.buyer.id_number]
        assert [p["id_number"] for p in them] == [co_owner.id_number]


def test_kept_view_ends_with_the_delegation(app):
    from flask import g

    ends = utcnow() + timedelta(minutes=5)
    delegation = Delegation(expires_at=ends)
    cache = case_cache.CaseViewCache(size=10, seconds=600)
    with app.test_request_context():
        g.authority = access.Authority(None, "agent", delegation=delegation)
        expires_at = case_cache._expiry(cache)

    assert expires_at == pytest.approx(ends.replace(tzinfo=UTC).timestamp())


def test_cache_drops_least_recently_used():
    cache = case_cache.CaseViewCache(size=2, seconds=600)
    kept = case_cache.KeptView((1, 1), time.time() + 60, None, b"{}")
    cache.put((1, "citizen:1"), kept)
    cache.put((2, "citizen:1"), kept)
    assert cache.get((1, "citizen:1")) is kept
    cache.put((3, "citizen:1"), kept)

    assert cache.get((2, "citizen:1")) is None
    assert cache.get((1, "citizen:1")) is kept
    assert cache.get((3, "citizen:1")) is kept


def test_verified_token_forgotten_after_expiry():
    tokens = VerifiedTokens(size=10)
    tokens.add("a.b.c", "access", {"exp": time.time() - 1, "sub": "citizen:1"})
    tokens.add("d.e.f", "access", {"exp": time.time() + 60, "sub": "citizen:2"})

    assert tokens.get("a.b.c", "access") is None
    assert tokens.get("d.e.f", "access")["sub"] == "citizen:2"
    assert tokens.get("d.e.f", "refresh") is None


def test_old_case_changes_pruned_but_newest_kept(client, homes, app):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    case_id = drive_to_submission(client, home)
    other_id = drive_to_submission(client, homes.make())
    rows = CaseChange.select().where(CaseChange.case_id == case_id)
    newest = max(row.id for row in rows)
    assert rows.count() > 2
    recent_count, recent_newest = case_cache.read_revision(other_id)
    two_days_ago = utcnow() - timedelta(days=2)
    CaseChange.update(changed_at=two_days_ago).where(
        CaseChange.case_id == case_id
    ).execute()
    before = case_cache.read_revision(case_id)

    housekeeping.forget_old_case_changes()

    assert [row.id for row in rows.clone()] == [newest]
    assert case_cache.read_revision(case_id) == (1, newest)
    assert case_cache.read_revision(case_id) != before
    assert case_cache.read_revision(other_id) == (recent_count, recent_newest)


def test_kept_view_ends_at_first_due_time(app):
    cache = case_cache.CaseViewCache(size=10, seconds=3600)
    soon = time.time() + 120
    later = time.time() + 600
    body = json.dumps(
        {
            "transfers": [
                {"due_at": _iso(later), "overdue": False},
                {"due_at": _iso(soon), "overdue": False},
                {"due_at": _iso(soon - 600), "overdue": True},
                {"due_at": None, "overdue": False},
            ]
        }
    ).encode()
    with app.test_request_context():
        expires_at = case_cache._expiry(cache, body)

    assert expires_at == pytest.approx(soon, abs=1)


def _iso(timestamp):
    return datetime.fromtimestamp(timestamp, UTC).isoformat()

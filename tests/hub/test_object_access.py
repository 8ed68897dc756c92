"""Every endpoint that takes an id, called as every kind of caller.

The table below says who may reach each one. A caller who may not gets
exactly the answer it would get for an id that does not exist, so ids reveal
nothing. An endpoint added to the OpenAPI document without a row here fails
the suite, so no new endpoint escapes the check.
"""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from demo import scenarios
from demo.client import HubClient
from models import (
    Case,
    OutboxMessage,
    ReconciliationItem,
    ReleaseNotice,
    RosterJob,
    Utility,
)
from models.db import database
from tests.hub.conftest import Staffing
from tests.hub.flows import citizen_request, drive_to_submission

MISSING_ID = 2_000_000_000
CASE = {"owner", "agent", "window"}
NOBODY = set()

# Who gets through, by operation. The callers are: owner (a buyer named on
# the case), seller (a previous owner named on it), other_citizen, agent (its
# agency has a delegation from the owner), other_agent, window (its office
# has the owner's counter consent), other_window, service, admin, utility
# (staff of the case's water utility), other_utility (staff of another
# utility) and anonymous (no token).
EXPECTED = {
    "GET /cases/{case_id}": CASE,
    "GET /cases/{case_id}/accounts": CASE,
    "POST /cases/{case_id}/accounts": CASE,
    "GET /cases/{case_id}/arrears": CASE,
    "GET /cases/{case_id}/progress": CASE,
    "GET /cases/{case_id}/payments": CASE,
    "POST /cases/{case_id}/payments": CASE,
    "GET /cases/{case_id}/transfer-checks": CASE,
    "POST /cases/{case_id}/submission": CASE,
    "POST /cases/{case_id}/withdrawal": CASE,
    "POST /cases/{case_id}/transfers/{transfer_id}/confirmation": CASE,
    "POST /cases/{case_id}/transfers/{transfer_id}/agreement": CASE,
    "POST /cases/{case_id}/transfers/{transfer_id}/payments": CASE,
    "POST /cases/{case_id}/transfers/{transfer_id}/meter-reading/dispute": CASE,
    "GET /cases/{case_id}/delegations": CASE,
    "GET /cases/{case_id}/actions": CASE,
    "GET /cases/{case_id}/evidence": CASE,
    "POST /cases/{case_id}/delegations": {"owner"},
    "POST /cases/{case_id}/delegations/{delegation_id}/revocation": {"owner"},
    "GET /lookup/cases/{case_id}": {"service", "admin"},
    # The utility's staff reach only their own utility's transfers and items.
    "GET /utility/transfers/{transfer_id}": {"utility"},
    "POST /utility/transfers/{transfer_id}/feedback": {"utility"},
    "POST /utility/transfers/{transfer_id}/reopen": {"utility"},
    "GET /partner/reconciliations/{item_id}": {"utility"},
    "GET /partner/rosters/{job_id}": {"utility"},
    "GET /partner/rosters/{job_id}/results": {"utility"},
    "POST /partner/reconciliations/{item_id}": {"utility"},
    "POST /admin/deliveries/{delivery_id}/retry": {"admin"},
    "GET /payments/{payment_id}": CASE,
    "GET /payments/{payment_id}/qr.png": CASE,
    "GET /payments/{payment_id}/qr.svg": CASE,
    # Only a previous owner of the home reads its release notice, and the
    # case as the seller sees it.
    "GET /release-notices/{release_notice_id}": {"seller"},
    "GET /previous-owner/cases/{case_id}": {"seller"},
    "POST /previous-owner/cases/{case_id}/transfers/{transfer_id}"
    "/meter-reading/dispute": {"seller"},
    # Public, or signed by partner systems: no bearer token gets through.
    "GET /agreements/{service_org}": "public",
    "PUT /registry/businesses/{business_no}": NOBODY,
}

CALLERS = (
    "owner",
    "seller",
    "other_citizen",
    "agent",
    "other_agent",
    "window",
    "other_window",
    "service",
    "admin",
    "utility",
    "other_utility",
    "anonymous",
)
DENIED = {401, 403, 404}


def new_client(stack):
    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


def later(days=30):
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


@pytest.fixture(scope="module")
def cast(stack):
    """Staff of every kind, made once for the module's cases."""
    with stack.app.app_context(), database.connection_context():
        staffing = Staffing(stack, stack.app)
        agency = staffing.organisation("agency")
        office = staffing.organisation("registry_window")
        return {
            "agency": agency,
            "agent": staffing.member("agent", organisation=agency)[1],
            "other_agent": staffing.member("agent")[1],
            "window": staffing.member("window", organisation=office)[1],
            "other_window": staffing.member("window")[1],
            "service": staffing.member("service")[1],
            "admin": staffing.member("admin")[1],
            "utility": staffing.member("utility", utility="water")[1],
            "other_utility": staffing.member("utility", utility="power")[1],
            "spare_agency": staffing.organisation("agency"),
        }


class World:
    """One case with every kind of caller around it."""

    def __init__(self, stack, homes, cast):
        self.home = homes.make(accounts=[("water", {"arrears_fen": 2500}), ("gas", {})])
        owner = new_client(stack)
        owner.login(self.home.buyer)
        case = owner.call("POST", "/cases", {"business_no": self.home.business_no})
        self.case_id = case["case_id"]
        water = next(t for t in case["transfers"] if t["utility_kind"] == "water")
        self.transfer_id = water["transfer_id"]
        self.service_org = water["service_org"]
        payment = owner.call(
            "POST",
            f"/cases/{self.case_id}/transfers/{self.transfer_id}/payments",
            {},
        )
        self.payment_id = payment["payment_id"]
        self.delegation_id = self._grant(owner, cast["agency"])["delegation_id"]
        spare = self._grant(owner, cast["spare_agency"])
        self.spare_delegation_id = spare["delegation_id"]
        cast["window"].call(
            "POST",
            "/window/cases",
            {
                "business_no": self.home.business_no,
                "applicant": {"id_number": self.home.buyer.id_number},
                "consent_method": "signed_form",
                "consent_reference": f"SQ-MATRIX-{self.case_id}",
            },
        )
        # A registered case whose transfer the water utility has received.
        pushed = homes.make(accounts=[("water", {})])
        other_owner = new_client(stack)
        case_id = drive_to_submission(other_owner, pushed)
        other_owner.call("POST", f"/cases/{case_id}/submission", {})
        other_owner.put_business(
            pushed.business_no, scenarios.business_payload(pushed, "completed")
        )
        self.pushed_transfer_id = other_owner.call("GET", f"/cases/{case_id}")[
            "transfers"
        ][0]["transfer_id"]
        # An account the owner asked the water utility to check by hand.
        self.item_id = ReconciliationItem.create(
            utility=Utility.get(Utility.code == "water"),
            account_no="SW55555555",
            source="applicant",
            case=self.case_id,
            reasons=["account_holder_mismatch"],
        ).id
        # A finished roster job of the water utility.
        self.job_id = RosterJob.create(
            utility=Utility.get(Utility.code == "water"),
            filename="roster.csv",
            encoding="UTF-8",
            uploaded_by="partner:water",
            status="done",
        ).id
        # A delivered message, so that an operator's retry has an id to act on.
        self.delivery_id = OutboxMessage.create(
            kind="report_payment",
            ref_id=self.payment_id,
            utility_code="water",
            payload={},
            state="done",
        ).id
        self.release_notice_id = ReleaseNotice.create(
            case=self.case_id,
            business=Case.get_by_id(self.case_id).business_id,
            items=[],
        ).id
        seller = new_client(stack)
        seller.login(self.home.sellers[0])
        other_citizen = new_client(stack)
        other_citizen.login(homes.person())
        self.callers = {
            **{name: cast[name] for name in CALLERS if name in cast},
            "owner": owner,
            "seller": seller,
            "other_citizen": other_citizen,
            "anonymous": new_client(stack),
        }

    def _grant(self, owner, agency):
        return owner.call(
            "POST",
            f"/cases/{self.case_id}/delegations",
            {
                "agency_name": agency.name,
                "agency_credit_code": agency.credit_code,
                "scope": ["view", "accounts", "confirm", "agreement", "pay", "submit"],
                "expires_at": later(),
            },
        )

    def ids(self, template, missing=False):
        utility_side = template.startswith("/utility/")
        real = {
            "case_id": self.case_id,
            "transfer_id": self.pushed_transfer_id
            if utility_side
            else self.transfer_id,
            "item_id": self.item_id,
            "job_id": self.job_id,
            "payment_id": self.payment_id,
            "delegation_id": self.spare_delegation_id,
            "delivery_id": self.delivery_id,
            "release_notice_id": self.release_notice_id,
            "service_org": self.service_org,
            "business_no": self.home.business_no,
        }
        if missing:
            real = {
                key: value if isinstance(value, str) else MISSING_ID
                for key, value in real.items()
            }
        return real

    def body(self, method, path):
        if method != "POST":
            return None
        if path.endswith("/feedback"):
            return {"status": "办理中"}
        if path.endswith("/reopen"):
            return {"note": "代扣已解除"}
        if path.startswith("/partner/reconciliations/"):
            return {"decision": "reject", "note": "核对不符"}
        if path.endswith("/accounts"):
            return {"service_org": self.service_org, "account_no": "SW99999999"}
        if path.endswith("/agreement"):
            return {"version": 1}
        if path.endswith("/delegations"):
            return {
                "agency_name": "济南安居房产经纪有限公司",
                "agency_credit_code": "91370100MA3C5LXX1K",
                "scope": ["view"],
                "expires_at": later(),
            }
        return {}


@pytest.fixture(scope="module")
def spec(stack):
    response = requests.get(stack.hub_url + "/api/v1/openapi.json", timeout=10)
    response.raise_for_status()
    return response.json()


def object_operations(spec):
    return sorted(
        f"{method.upper()} {path.removeprefix('/api/v1')}"
        for path, item in spec["paths"].items()
        for method in item
        if method in {"get", "post", "put", "delete", "patch"} and "{" in path
    )


def test_every_object_endpoint_has_a_row(spec):
    served = object_operations(spec)

    assert sorted(EXPECTED) == served


@pytest.mark.parametrize("operation", sorted(EXPECTED))
def test_who_gets_through(stack, homes, cast, operation):
    world = World(stack, homes, cast)
    method, template = operation.split(" ", 1)
    query = "?reason=核对过户进度" if template.startswith("/lookup/") else ""
    path = template.format(**world.ids(template)) + query
    missing_path = template.format(**world.ids(template, missing=True)) + query
    body = world.body(method, template)
    allowed = EXPECTED[operation]

    through = set()
    for name in CALLERS:
        caller = world.callers[name]
        missing = citizen_request(caller, method, missing_path, body)
        answer = citizen_request(caller, method, path, body)
        if answer.status_code not in DENIED:
            through.add(name)
            continue
        # Refused: exactly as for an id that does not exist.
        assert answer.status_code == missing.status_code, (name, answer.text)
        assert answer.json()["code"] == missing.json()["code"], (name, answer.text)

    if allowed == "public":
        assert through == set(CALLERS)
    else:
        assert through == allowed


# Who writes to each operation in the check of fields nobody may set.
CALLER_OF = {
    "/utility/transfers/{transfer_id}/feedback": "utility",
    "/utility/transfers/{transfer_id}/reopen": "utility",
    "/partner/reconciliations/{item_id}": "utility",
}

# Operations that read no body at all, so whatever is sent is ignored.
WITHOUT_BODY = {
    "POST /cases/{case_id}/delegations/{delegation_id}/revocation",
    "POST /admin/deliveries/{delivery_id}/retry",
}
# Operations whose body is a multipart form, which reject unknown fields
# themselves (tested with each operation).
MULTIPART = {
    "POST /cases/{case_id}/transfers/{transfer_id}/meter-reading/dispute",
    "POST /previous-owner/cases/{case_id}/transfers/{transfer_id}"
    "/meter-reading/dispute",
}
WRITES = sorted(
    op
    for op in EXPECTED
    if op.startswith("POST ") and op not in WITHOUT_BODY | MULTIPART
)


@pytest.mark.parametrize("operation", WRITES)
def test_fields_nobody_may_set_are_refused(stack, homes, cast, operation):
    world = World(stack, homes, cast)
    _, template = operation.split(" ", 1)
    body = {**world.body("POST", template), "state": "closed", "citizen_id": 1}

    answer = citizen_request(
        world.callers[CALLER_OF.get(template, "owner")],
        "POST",
        template.format(**world.ids(template)),
        body,
    )

    assert answer.status_code == 422, answer.text
    assert set(answer.json()["errors"]["json"]) == {"state", "citizen_id"}

"""Every paged list: bad pages refused, large sizes capped, far pages empty."""

from datetime import UTC, datetime, timedelta

import pytest
import requests

from demo.client import HubClient
from models import Case, ReleaseNotice, RosterJob, Utility
from models.db import database
from tests.hub.conftest import Homes, Staffing
from tests.hub.flows import assert_error, citizen_request

# The caller who reads each paged list, and the query it needs besides paging.
PAGED = {
    "/cases": ("owner", ""),
    "/delegations": ("owner", ""),
    "/cases/{case_id}/delegations": ("owner", ""),
    "/cases/{case_id}/actions": ("owner", ""),
    "/cases/{case_id}/payments": ("owner", ""),
    "/admin/deliveries": ("admin", ""),
    "/admin/payments/flagged": ("admin", ""),
    "/lookup/cases": ("service", "business_no=JN0000&reason=核对过户进度"),
    "/lookup/records": ("admin", ""),
    "/utility/transfers": ("utility", ""),
    "/partner/reconciliations": ("utility", ""),
    "/partner/rosters": ("utility", ""),
    "/partner/rosters/{job_id}/results": ("utility", ""),
    "/utility/alerts": ("utility", ""),
    "/supervision/transfers": ("admin", ""),
    "/release-notices": ("seller", ""),
    "/previous-owner/cases": ("seller", ""),
}


@pytest.fixture(scope="module")
def paged_paths(stack):
    spec = requests.get(stack.hub_url + "/api/v1/openapi.json", timeout=10).json()
    return sorted(
        path.removeprefix("/api/v1")
        for path, item in spec["paths"].items()
        if any(p["name"] == "page" for p in item.get("get", {}).get("parameters", []))
    )


@pytest.fixture(scope="module")
def readers(stack):
    """An owner with a case and a delegation, and staff of each kind, made once."""
    owner = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    with stack.app.app_context(), database.connection_context():
        homes = Homes(stack, stack.app)
        home = homes.make()
        owner.login(home.buyer)
        case = owner.call("POST", "/cases", {"business_no": home.business_no})
        seller = HubClient(
            stack.hub_url,
            stack.peers.idp_url,
            stack.peers.wechatpay_url,
            stack.registry_secret,
        )
        seller.login(home.sellers[0])
        ReleaseNotice.create(
            case=case["case_id"],
            business=Case.get_by_id(case["case_id"]).business_id,
            items=[],
        )
        owner.call(
            "POST",
            f"/cases/{case['case_id']}/delegations",
            {
                "agency_name": "济南安居房产经纪有限公司",
                "agency_credit_code": "91370100MA3C5LXX1K",
                "scope": ["view"],
                "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            },
        )
        staffing = Staffing(stack, stack.app)
        callers = {"owner": owner, "seller": seller}
        for role in ("admin", "service", "utility"):
            callers[role] = staffing.member(role)[1]
        job = RosterJob.create(
            utility=Utility.get(Utility.code == "water"),
            filename="roster.csv",
            encoding="UTF-8",
            uploaded_by="partner:water",
            status="done",
        )
    return callers, {"case_id": case["case_id"], "job_id": job.id}


def test_every_paged_list_is_covered(paged_paths):
    assert sorted(PAGED) == paged_paths


@pytest.mark.parametrize("path", sorted(PAGED))
@pytest.mark.parametrize(
    "paging",
    ["page=0", "page=-1", "page=x", "page=1000001", "page_size=0", "page_size=-5"],
)
def test_bad_paging_is_refused(readers, path, paging):
    callers, ids = readers
    role, query = PAGED[path]
    url = f"{path.format(**ids)}?{query}&{paging}"

    response = citizen_request(callers[role], "GET", url)

    assert_error(response, 422, "validation_failed")


@pytest.mark.parametrize("path", sorted(PAGED))
def test_large_page_size_is_capped(stack, readers, path):
    callers, ids = readers
    role, query = PAGED[path]

    answer = callers[role].call("GET", f"{path.format(**ids)}?{query}&page_size=5000")

    assert answer["page_size"] == stack.app.config["PAGE_SIZE_MAX"]
    assert len(answer["items"]) <= answer["page_size"]


@pytest.mark.parametrize("path", sorted(PAGED))
def test_page_past_the_end_keeps_the_total(readers, path):
    callers, ids = readers
    role, query = PAGED[path]
    base = f"{path.format(**ids)}?{query}"

    first = callers[role].call("GET", f"{base}&page=1&page_size=1")
    far = callers[role].call("GET", f"{base}&page=1000000&page_size=1")

    assert far["items"] == []
    assert far["total"] == first["total"]
    assert far["page"] == 1000000
    assert len(first["items"]) == min(1, first["total"])


def test_pages_split_the_list(client, homes):
    buyer = homes.person()
    opened = []
    for _ in range(3):
        home = homes.make(buyer=buyer)
        client.login(buyer)
        opened.append(
            client.call("POST", "/cases", {"business_no": home.business_no})["case_id"]
        )

    pages = [client.call("GET", f"/cases?page={n}&page_size=2") for n in (1, 2)]

    assert [p["total"] for p in pages] == [3, 3]
    listed = [c["case_id"] for p in pages for c in p["items"]]
    assert sorted(listed) == sorted(opened)
    assert len(pages[0]["items"]) == 2

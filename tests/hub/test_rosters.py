"""Rosters uploaded by utilities, linked in the background, stored in place."""

import csv
import io
import time
from pathlib import Path
from urllib.parse import quote

import pytest

from models import AccountLink, ReconciliationItem, RosterEntry, RosterJob, Utility
from models.db import database
from services import rosters
from tests.hub.flows import assert_error, signed_call

DATA = Path(__file__).resolve().parents[1] / "linkage" / "data" / "generated"
WATER = "济南水务集团有限公司"
# Percent-encoded, because the signature covers the query string as sent.
LINKED = quote("一致")
RESULT_HEADERS = [
    "服务机构名称",
    "用户编号",
    "不动产单元代码",
    "不动产权证号",
    "坐落",
    "比对结果",
]


def roster_of(service_org):
    """Return the generated roster's header and the rows of one utility."""
    with open(DATA / "roster.csv", encoding="utf-8", newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], [row for row in rows[1:] if row[0] == service_org]


def as_csv(header, rows, encoding="utf-8"):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue().encode(encoding)


def truth():
    with open(DATA / "truth.csv", encoding="utf-8", newline="") as f:
        return {row["用户号"]: row["不动产单元代码"] for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def registry_units(stack):
    with stack.app.app_context(), database.connection_context():
        rosters.import_units(DATA / "units.csv")


def upload(
    stack, body, partner="water", filename="roster.csv", content_type="text/csv"
):
    return signed_call(
        stack,
        partner,
        "POST",
        f"/partner/rosters?filename={filename}",
        body,
        headers={"Content-Type": content_type},
    )


def wait_done(stack, job_id, partner="water", seconds=60):
    deadline = time.monotonic() + seconds
    while True:
        job = signed_call(stack, partner, "GET", f"/partner/rosters/{job_id}").json()
        if job["status"] in ("done", "failed") or time.monotonic() > deadline:
            return job
        time.sleep(0.2)


@pytest.fixture(scope="module")
def water_job(stack, registry_units):
    header, rows = roster_of(WATER)
    response = upload(stack, as_csv(header, rows))
    assert response.status_code == 202, response.text
    job = wait_done(stack, response.json()["job_id"])
    return job, rows


def test_upload_links_in_the_background(water_job):
    job, rows = water_job

    assert job["status"] == "done", job
    assert job["rows_read"] == len(rows)
    assert job["percent_done"] == 100
    assert job["rows_matched"] + job["for_review"] + job["unmatched"] == len(rows)
    assert job["rows_matched"] > 0.8 * len(rows)
    assert job["encoding"] == "UTF-8"
    assert job["changes"]["new"] == len(rows)


def test_automatic_links_are_right(stack, water_job):
    job, _ = water_job
    expected = truth()

    response = signed_call(
        stack,
        "water",
        "GET",
        f"/partner/rosters/{job['job_id']}/results?match_result={LINKED}&page_size=100",
    )
    linked = response.json()
    pages = [linked]
    for page in range(2, linked["total"] // 100 + 2):
        pages.append(
            signed_call(
                stack,
                "water",
                "GET",
                f"/partner/rosters/{job['job_id']}/results"
                f"?match_result={LINKED}&page_size=100&page={page}",
            ).json()
        )
    items = [item for page in pages for item in page["items"]]

    assert len(items) == job["rows_matched"]
    wrong = [i for i in items if expected[i["account_no"]] != i["unit_code"]]
    assert len(wrong) <= 0.002 * len(items), wrong[:3]


def test_results_as_annex_csv(stack, water_job):
    job, rows = water_job

    response = signed_call(
        stack,
        "water",
        "GET",
        f"/partner/rosters/{job['job_id']}/results",
        headers={"Accept": "text/csv"},
    )

    assert response.headers["Content-Type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert table[0] == RESULT_HEADERS
    assert len(table) == len(rows) + 1
    assert {row[0] for row in table[1:]} == {WATER}
    assert {row[5] for row in table[1:]} <= {"一致", "待核对", "未匹配"}
    assert {row[1] for row in table[1:]} == {row[1] for row in rows}


def test_links_are_stored_for_the_main_flow(water_job, app):
    job, rows = water_job
    water = Utility.get(Utility.code == "water")

    stored = AccountLink.select().where(
        (AccountLink.utility == water)
        & AccountLink.account_no.in_([row[1] for row in rows])
        & AccountLink.unit.is_null(False)
    )

    assert stored.count() == job["rows_matched"]


def test_review_items_carry_candidates(stack, water_job, app):
    job, _ = water_job
    if not job["for_review"]:
        pytest.skip("the generated roster left nothing for review")

    listed = signed_call(
        stack, "water", "GET", "/partner/reconciliations?status=open&page_size=100"
    ).json()

    roster_items = [i for i in listed["items"] if i["source"] == "roster"]
    assert len(roster_items) >= 1
    assert roster_items[0]["candidates"]
    assert roster_items[0]["candidates"][0]["unit_code"]
    labels = (
        roster_items[0]["reason_labels"]
        + roster_items[0]["candidates"][0]["reason_labels"]
    )
    assert labels
    assert all(any("\u4e00" <= char <= "\u9fff" for char in label) for label in labels)


def test_review_item_linked_by_hand(stack, water_job, app):
    job, _ = water_job
    item = (
        ReconciliationItem.select()
        .where(
            (ReconciliationItem.source == "roster")
            & (ReconciliationItem.status == "open")
        )
        .first()
    )
    if item is None:
        pytest.skip("the generated roster left nothing for review")
    chosen = item.candidates[0]["unit_code"]

    missing = signed_call(
        stack,
        "water",
        "POST",
        f"/partner/reconciliations/{item.id}",
        {"decision": "link", "note": "人工核对"},
    )
    decided = signed_call(
        stack,
        "water",
        "POST",
        f"/partner/reconciliations/{item.id}",
        {"decision": "link", "note": "人工核对", "unit_code": chosen},
    )

    assert_error(missing, 422, "unit_code_missing")
    assert decided.status_code == 200, decided.text
    link = AccountLink.get(
        (AccountLink.utility == item.utility_id)
        & (AccountLink.account_no == item.account_no)
    )
    assert link.unit.unit_code == chosen
    assert link.source == "reconciliation"
    other = next(
        (c["unit_code"] for c in item.candidates if c["unit_code"] != chosen),
        "370102001001GB00001F00019999",
    )
    changed = signed_call(
        stack,
        "water",
        "POST",
        f"/partner/reconciliations/{item.id}",
        {"decision": "link", "note": "人工核对", "unit_code": other},
    )
    assert_error(changed, 409, "reconciliation_decided")


def test_upload_again_updates_in_place(stack, water_job, app):
    job, rows = water_job
    header, _ = roster_of(WATER)
    before = AccountLink.select().count()

    response = upload(stack, as_csv(header, rows))
    again = wait_done(stack, response.json()["job_id"])

    assert again["status"] == "done"
    assert again["changes"]["new"] == 0
    by_hand = AccountLink.select().where(
        (AccountLink.source == "reconciliation")
        & AccountLink.account_no.in_([row[1] for row in rows])
    )
    assert again["changes"]["kept_by_hand"] == by_hand.count()
    assert all(link.match_result == "一致" and link.unit_id for link in by_hand)
    assert sum(again["changes"].values()) - again["changes"]["not_in_upload"] == len(
        rows
    )
    assert AccountLink.select().count() == before


def test_gbk_upload_is_read(stack, registry_units):
    header, rows = roster_of(WATER)

    response = upload(stack, as_csv(header, rows[:20], encoding="gbk"))
    job = wait_done(stack, response.json()["job_id"])

    assert job["encoding"] == "GBK"
    assert job["rows_read"] == 20


@pytest.mark.parametrize("encoding", ["utf-16", "latin-1"])
def test_unreadable_encoding_is_refused(stack, registry_units, encoding):
    header = ["服务机构名称", "用户号", "用户名称", "用户证件号码", "房屋地址"]
    body = "\n".join([",".join(header), "Müller,1,2,3,4"])
    data = body.encode(encoding, errors="replace")

    response = upload(stack, data, filename="bad-encoding.csv")

    error = assert_error(response, 422, "roster_unreadable")
    assert "bad-encoding.csv" in error["message"]


def test_bad_rows_are_reported_by_line(stack, registry_units):
    header, rows = roster_of(WATER)
    broken = [list(rows[0]), [WATER, "", "无号", "", "某地"], list(rows[1])]

    response = upload(stack, as_csv(header, broken))
    job = wait_done(stack, response.json()["job_id"])

    assert job["status"] == "done"
    assert [p["line"] for p in job["problems"] if p["dropped"]] == [3]
    assert job["rows_done"] == 2


def test_other_utilities_rows_are_left_out(stack, registry_units):
    header, water_rows = roster_of(WATER)
    _, gas_rows = roster_of("济南能源集团有限公司燃气")

    response = upload(stack, as_csv(header, water_rows[:3] + gas_rows[:2]))
    job = wait_done(stack, response.json()["job_id"])

    assert job["rows_done"] == 3
    assert len([p for p in job["problems"] if p["dropped"]]) == 2


def test_another_utility_cannot_see_the_job(stack, water_job):
    job, _ = water_job

    response = signed_call(stack, "gas", "GET", f"/partner/rosters/{job['job_id']}")

    assert_error(response, 404, "roster_job_not_found")


def test_json_upload_is_refused(stack, registry_units):
    response = upload(stack, b'{"a": 1}', content_type="application/json")

    assert_error(response, 415, "unsupported_media_type")


def test_empty_upload_is_refused(stack, registry_units):
    response = upload(stack, b"   ")

    assert_error(response, 422, "roster_empty")


def test_utility_staff_may_upload(stack, staffing, registry_units):
    _, member = staffing.member("utility", utility="water")
    header, rows = roster_of(WATER)

    response = member.session.post(
        member.api + "/partner/rosters",
        data=as_csv(header, rows[:5]),
        headers={
            "Authorization": f"Bearer {member.token}",
            "Content-Type": "text/csv",
        },
        timeout=10,
    )

    assert response.status_code == 202, response.text
    assert response.json()["rows_read"] == 5


def test_results_wait_for_the_job(stack, app, registry_units):
    water = Utility.get(Utility.code == "water")
    queued = RosterJob.create(
        utility=water, filename="x.csv", encoding="UTF-8", uploaded_by="test"
    )

    response = signed_call(
        stack, "water", "GET", f"/partner/rosters/{queued.id}/results"
    )

    assert_error(response, 409, "roster_job_not_done")


def test_case_finds_the_accounts_a_roster_linked(stack, client, homes, water_job):
    job, _ = water_job
    entry = (
        RosterEntry.select()
        .where(
            (RosterEntry.job == job["job_id"]) & (RosterEntry.match_result == "一致")
        )
        .first()
    )
    buyer = homes.person()
    business_no = f"RL{entry.id:010d}"
    client.put_business(
        business_no,
        {
            "business_type": "二手房买卖",
            "registration_status": "accepted",
            "unit_code": entry.unit_code,
            "location": entry.location,
            "usage": "住宅",
            "owners": [buyer.as_party()],
            "previous_owners": [homes.person().as_party()],
        },
    )
    client.login(buyer)

    case = client.call("POST", "/cases", {"business_no": business_no})

    accounts = {(t["service_org"], t["account_no"]) for t in case["transfers"]}
    assert (WATER, entry.account_no) in accounts


def test_writers_are_not_locked_out_by_a_roster(stack, homes, registry_units):
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime, timedelta

    from demo.client import HubClient

    owners = []
    for _ in range(20):
        home = homes.make()
        owner = HubClient(
            stack.hub_url,
            stack.peers.idp_url,
            stack.peers.wechatpay_url,
            stack.registry_secret,
        )
        owner.login(home.buyer)
        owners.append((owner, home))
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    header, _ = roster_of(WATER)
    with open(DATA / "roster.csv", encoding="utf-8", newline="") as f:
        everyone = list(csv.reader(f))[1:]
    uploads = {}
    for service_org, partner in (
        (WATER, "water"),
        ("济南能源集团有限公司燃气", "gas"),
        ("国网济南供电公司", "power"),
        ("济南能源集团有限公司热力", "heat"),
    ):
        rows = [row for row in everyone if row[0] == service_org]
        uploads[partner] = upload(stack, as_csv(header, rows), partner=partner)

    def write(pair):
        owner, home = pair
        statuses = []
        for n in range(5):
            response = owner.session.post(
                owner.api + "/delegations",
                json={
                    "business_no": home.business_no,
                    "agency_name": f"济南测试{n}房产经纪有限公司",
                    "agency_credit_code": "91370100MA3C5LXX1K",
                    "scope": ["view"],
                    "expires_at": expires,
                },
                headers={"Authorization": f"Bearer {owner.token}"},
                timeout=30,
            )
            statuses.append((response.status_code, response.text[:200]))
        return statuses

    with ThreadPoolExecutor(20) as pool:
        answers = [status for batch in pool.map(write, owners) for status in batch]

    assert [a for a in answers if a[0] != 201] == []
    for partner, response in uploads.items():
        assert wait_done(stack, response.json()["job_id"], partner)["status"] == "done"


def test_units_made_at_once_by_several_jobs(stack, registry_units):
    from concurrent.futures import ThreadPoolExecutor

    from models import RegistryUnit, Unit
    from models.db import transaction

    codes = [
        row.unit_code
        for row in RegistryUnit.select()
        .where(RegistryUnit.unit_code.not_in(Unit.select(Unit.unit_code)))
        .limit(30)
    ]

    def make(_):
        with stack.app.app_context(), database.connection_context():
            with transaction():
                return len(rosters._units_for(codes))

    with ThreadPoolExecutor(6) as pool:
        made = list(pool.map(make, range(6)))

    assert made == [len(codes)] * 6
    assert Unit.select().where(Unit.unit_code.in_(codes)).count() == len(codes)

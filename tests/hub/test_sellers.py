"""The previous owner's view of a home they sold: completion and final readings."""

import hashlib
import os
import time
from io import BytesIO

import pytest
import requests
from PIL import Image

from demo import scenarios
from demo.client import HubClient
from models import CaseAction
from tests.hub.flows import assert_error, citizen_request, drive_to_submission
from tests.hub.test_meter_readings import (
    dispute,
    registered_case,
    wait_for_readings,
)

MISSING_ID = 2_000_000_000
# The fields of a transfer in the seller's view. None of them names the buyer.
TRANSFER_KEYS = {
    "transfer_id",
    "service_org",
    "utility_kind",
    "account_no",
    "status",
    "status_label",
    "completed_at",
    "return_reason",
    "final_reading",
}


def new_client(stack):
    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


@pytest.fixture
def seller_of(stack):
    """Log in as the first seller of a home; return the client."""

    def login(home):
        client = new_client(stack)
        client.login(home.sellers[0])
        return client

    return login


def simulator_reading(stack, transfer_id):
    response = requests.get(
        stack.peers.utility_sim_url + "/_sim/meter-readings",
        params={"transfer_id": str(transfer_id)},
        timeout=10,
    )
    response.raise_for_status()
    (reading,) = response.json()["readings"]
    return reading


def meter_photo():
    """Return a PNG of random pixels, whose digest no other test sends.

    Tests find a dispute at the utility simulator by the photo's SHA-256.
    """
    buffer = BytesIO()
    Image.frombytes("RGB", (16, 12), os.urandom(16 * 12 * 3)).save(buffer, "PNG")
    return buffer.getvalue()


def seller_dispute(client, case_id, transfer_id, note, photo):
    path = (
        f"/previous-owner/cases/{case_id}/transfers/{transfer_id}/meter-reading/dispute"
    )
    return client.session.post(
        client.api + path,
        headers={"Authorization": f"Bearer {client.token}"},
        data={"note": note},
        files={"photo": ("meter.png", photo, "image/png")},
        timeout=10,
    )


def opened_case(client, homes):
    """Open a case for a new home with water, its registration still pending.

    Nothing reaches a utility, so no transfer is left in flight for the
    tests that count what the utilities received.
    """
    home = homes.make(accounts=[("water", {})])
    return home, drive_to_submission(client, home)


def drive_and_register(client, home):
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    return case_id


def completed_case(client, homes, accounts):
    """Drive a home to 办结 with its readings taken; return (home, case_id)."""
    home, case_id = registered_case(client, homes, accounts)
    client.wait_until_final(case_id)
    metered = sum(1 for utility, _ in accounts if utility != "tv")
    wait_for_readings(client, case_id, metered)
    return home, case_id


def test_seller_sees_utility_readings(stack, client, homes, seller_of):
    home, case_id = completed_case(client, homes, [("water", {}), ("gas", {})])
    seller = seller_of(home)

    listed = seller.call("GET", "/previous-owner/cases")
    shown = seller.call("GET", f"/previous-owner/cases/{case_id}")

    assert [item["case_id"] for item in listed["items"]] == [case_id]
    assert listed["total"] == 1
    assert listed["items"][0] == shown
    assert shown["business_no"] == home.business_no
    assert shown["status"] == "closed"
    assert shown["status_label"] == "已办结"
    by_account = {t["account_no"]: t for t in shown["transfers"]}
    assert set(by_account) == {account.account_no for account in home.accounts}
    for transfer in shown["transfers"]:
        simulated = simulator_reading(stack, transfer["transfer_id"])
        assert simulated["account_no"] == transfer["account_no"]
        assert transfer["final_reading"] == {
            "value": simulated["value"],
            "unit": simulated["unit"],
            "read_at": simulated["read_at"],
            "method": simulated["method"],
            "disputed": False,
        }
        assert transfer["status"] == "completed"
        assert transfer["status_label"] == "办结"
        assert transfer["completed_at"].endswith("+08:00")
    assert by_account[home.accounts[0].account_no]["final_reading"]["unit"] == "m³"
    assert by_account[home.accounts[1].account_no]["utility_kind"] == "gas"


def test_returned_transfer_shows_reason_and_no_reading(client, homes, seller_of):
    """A returned account stays in the seller's name: the seller learns why,
    and no transfer-day reading ends a bill."""
    home, case_id = completed_case(
        client, homes, [("water", {}), ("power", {"direct_debit": True})]
    )

    shown = seller_of(home).call("GET", f"/previous-owner/cases/{case_id}")

    by_kind = {t["utility_kind"]: t for t in shown["transfers"]}
    assert by_kind["power"]["status"] == "returned"
    assert by_kind["power"]["return_reason"] == "原户主银行代扣未解除"
    assert by_kind["power"]["final_reading"] is None
    assert by_kind["water"]["return_reason"] is None
    assert by_kind["water"]["final_reading"] is not None


def test_release_notice_lists_reading_beside_completion(
    stack, client, homes, seller_of
):
    home, case_id = completed_case(client, homes, [("water", {}), ("power", {})])
    seller = seller_of(home)
    shown = seller.call("GET", f"/previous-owner/cases/{case_id}")

    notice = seller.call("GET", f"/release-notices/{shown['release_notice_id']}")

    assert notice["case_id"] == case_id
    sold = {t["account_no"]: t for t in shown["transfers"]}
    assert [item["account_no"] for item in notice["items"]] == [
        account.account_no for account in home.accounts
    ]
    for item in notice["items"]:
        transfer = sold[item["account_no"]]
        assert item["final_reading"] == transfer["final_reading"]
        simulated = simulator_reading(stack, transfer["transfer_id"])
        assert item["final_reading"]["value"] == simulated["value"]
        # The notice writes minutes in Asia/Shanghai, the view the full time.
        assert (
            transfer["completed_at"].replace("T", " ").startswith(item["completed_at"])
        )
    listed = seller.call("GET", "/release-notices")
    mine = [n for n in listed["items"] if n["case_id"] == case_id]
    assert mine[0]["items"] == notice["items"]


def test_unmetered_account_has_no_reading(client, homes, seller_of, sim):
    home = homes.make(accounts=[("water", {}), ("tv", {})])
    case_id = drive_and_register(client, home)
    wait_for_readings(client, case_id, 1)
    seller = seller_of(home)

    waiting = seller.call("GET", f"/previous-owner/cases/{case_id}")
    sim.collect("tv")
    client.wait_until_final(case_id)
    done = seller.call("GET", f"/previous-owner/cases/{case_id}")

    before = {t["utility_kind"]: t for t in waiting["transfers"]}
    assert before["tv"]["status"] == "awaiting_collection"
    assert before["tv"]["completed_at"] is None
    assert before["tv"]["final_reading"] is None
    assert waiting["release_notice_id"] is None
    after = {t["utility_kind"]: t for t in done["transfers"]}
    assert after["tv"]["status"] == "completed"
    assert after["tv"]["completed_at"] is not None
    assert after["tv"]["final_reading"] is None
    notice = seller.call("GET", f"/release-notices/{done['release_notice_id']}")
    readings = {item["utility"]: item["final_reading"] for item in notice["items"]}
    assert readings["tv"] is None
    assert readings["water"] == after["water"]["final_reading"]


def test_buyer_personal_data_masked(client, homes, seller_of):
    home, case_id = opened_case(client, homes)
    seller = seller_of(home)

    response = citizen_request(seller, "GET", f"/previous-owner/cases/{case_id}")

    assert response.status_code == 200
    shown = response.json()
    buyer = home.buyer
    assert shown["owners"] == [
        {"name": shown["owners"][0]["name"], "is_me": False},
    ]
    assert shown["owners"][0]["name"] != buyer.name
    assert shown["owners"][0]["name"][0] == buyer.name[0]
    assert shown["previous_owners"] == [{"name": home.sellers[0].name, "is_me": True}]
    assert buyer.name not in response.text
    assert buyer.id_number not in response.text
    assert home.sellers[0].id_number not in response.text
    assert [set(t) for t in shown["transfers"]] == [TRANSFER_KEYS]


def test_buyer_and_stranger_get_not_found(stack, client, homes, seller_of):
    home, case_id = opened_case(client, homes)
    stranger = new_client(stack)
    stranger.login(homes.person())
    seller = seller_of(home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]

    answers = {
        "buyer": citizen_request(client, "GET", f"/previous-owner/cases/{case_id}"),
        "stranger": citizen_request(
            stranger, "GET", f"/previous-owner/cases/{case_id}"
        ),
        "missing": citizen_request(
            seller, "GET", f"/previous-owner/cases/{MISSING_ID}"
        ),
        "buyer dispute": seller_dispute(
            client, case_id, transfer_id, "读数不对", meter_photo()
        ),
    }

    for caller, answer in answers.items():
        body = assert_error(answer, 404, "previous_owner_case_not_found")
        assert "原权利人" in body["message"], caller
    assert client.call("GET", "/previous-owner/cases")["total"] == 0
    assert stranger.call("GET", "/previous-owner/cases")["items"] == []
    # The seller, in turn, does not reach the buyer's case.
    assert_error(
        citizen_request(seller, "GET", f"/cases/{case_id}"), 404, "case_not_found"
    )


def test_seller_pages_split_the_list(stack, homes, seller_of):
    seller_person = homes.person()
    buyer = new_client(stack)
    opened = []
    for _ in range(3):
        home = homes.make(sellers=[seller_person])
        buyer.login(home.buyer)
        case = buyer.call("POST", "/cases", {"business_no": home.business_no})
        opened.append(case["case_id"])
    seller = seller_of(home)

    pages = [
        seller.call("GET", f"/previous-owner/cases?page={n}&page_size=2")
        for n in (1, 2, 3)
    ]

    assert [p["total"] for p in pages] == [3, 3, 3]
    assert [len(p["items"]) for p in pages] == [2, 1, 0]
    listed = [c["case_id"] for p in pages for c in p["items"]]
    # Newest first.
    assert listed == sorted(opened, reverse=True)
    assert {c["status"] for p in pages for c in p["items"]} == {"open"}


def sent_disputes(stack, photo, seconds=20):
    """Wait for the disputes with this photo to reach the utility; return them."""
    digest = hashlib.sha256(photo).hexdigest()
    deadline = time.monotonic() + seconds
    while True:
        listed = requests.get(
            stack.peers.utility_sim_url + "/_sim/meter-disputes", timeout=10
        ).json()["disputes"]
        sent = [d for d in listed if d["photo_sha256"] == digest]
        if sent or time.monotonic() > deadline:
            return sent
        time.sleep(0.1)


def test_seller_dispute_counts_for_both_sides(stack, client, homes, seller_of):
    home, case_id = completed_case(client, homes, [("water", {})])
    seller = seller_of(home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]
    photo = meter_photo()

    accepted = seller_dispute(
        seller, case_id, transfer_id, "交房时表上是 1200 吨", photo
    )
    buyer_after = dispute(client, case_id, transfer_id, "读数偏低", meter_photo())
    seller_again = seller_dispute(
        seller, case_id, transfer_id, "再次提出", meter_photo()
    )

    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["transfer_id"] == transfer_id
    assert accepted.json()["final_reading"]["disputed"] is True
    assert_error(buyer_after, 409, "reading_disputed")
    assert_error(seller_again, 409, "reading_disputed")
    case = client.call("GET", f"/cases/{case_id}")
    assert case["transfers"][0]["final_reading"]["disputed"] is True
    events = client.call("GET", f"/cases/{case_id}/progress")["transfers"][0]["events"]
    disputed = [e for e in events if e["status"] == "meter_disputed"]
    assert [e["note"] for e in disputed] == [
        "原权利人对过户日读数提出异议：交房时表上是 1200 吨"
    ]
    assert disputed[0]["actor"] == "previous_owner"
    action = CaseAction.get(
        (CaseAction.case == case_id) & (CaseAction.action == "dispute_reading")
    )
    assert action.actor_role == "previous_owner"
    assert action.citizen_id is not None
    sent = sent_disputes(stack, photo)
    assert [d["note"] for d in sent] == ["交房时表上是 1200 吨"]
    assert sent[0]["photo_bytes"] == len(photo)
    reading = simulator_reading(stack, transfer_id)
    assert sent[0]["reading_id"] == reading["reading_id"]


def test_seller_dispute_bad_requests_rejected(client, homes, seller_of):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]
    _, other_case_id = opened_case(client, homes)
    other = client.call("GET", f"/cases/{other_case_id}")["transfers"][0]
    seller = seller_of(home)

    unread = seller_dispute(seller, case_id, transfer_id, "读数不对", meter_photo())
    foreign = seller_dispute(
        seller, case_id, other["transfer_id"], "读数不对", meter_photo()
    )
    bad_photo = seller_dispute(seller, case_id, transfer_id, "读数不对", b"GIF89a")

    assert_error(unread, 404, "reading_not_found")
    assert_error(foreign, 404, "transfer_not_found")
    # Without a reading the photo is never looked at.
    assert_error(bad_photo, 404, "reading_not_found")

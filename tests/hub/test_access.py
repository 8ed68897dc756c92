"""Citizens see only the cases of homes they own, with others' data masked."""

import pytest

from demo.client import HubClient
from models import Delegation, Payment, Transfer
from tests.hub.flows import assert_error, citizen_request

MISSING_ID = 2_000_000_000
OVERSIZED_ID = 10**20
WATER = "济南水务集团有限公司"
DELEGATION = {
    "agency_name": "济南安居房产经纪有限公司",
    "agency_credit_code": "91370100MA3C5LXX1K",
    "scope": ["view"],
    "expires_at": "2030-01-01T00:00:00+08:00",
}


def new_client(stack):
    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


@pytest.fixture
def owned(stack, client, homes):
    """Open a case with an owed water account and a pending payment for it."""
    home = homes.make(accounts=[("water", {"arrears_fen": 2500})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    home.case_id = case["case_id"]
    home.transfer_id = case["transfers"][0]["transfer_id"]
    payment = client.call(
        "POST", f"/cases/{home.case_id}/transfers/{home.transfer_id}/payments", {}
    )
    home.payment_id = payment["payment_id"]
    return home


@pytest.fixture
def intruder(stack, homes):
    """Log in a citizen who owns nothing."""
    other = new_client(stack)
    other.login(homes.person())
    return other


def request_pairs(case_id, transfer_id, payment_id):
    """Return (method, path, body) for every citizen endpoint about one case."""
    transfer = f"/cases/{case_id}/transfers/{transfer_id}"
    return [
        ("GET", f"/cases/{case_id}", None),
        ("GET", f"/cases/{case_id}/accounts", None),
        (
            "POST",
            f"/cases/{case_id}/accounts",
            {"service_org": WATER, "account_no": "SW00000001"},
        ),
        ("GET", f"/cases/{case_id}/arrears", None),
        ("GET", f"/cases/{case_id}/progress", None),
        ("POST", f"{transfer}/confirmation", {}),
        ("POST", f"{transfer}/agreement", {"version": 1}),
        ("POST", f"{transfer}/payments", {}),
        ("POST", f"/cases/{case_id}/submission", {}),
        ("POST", f"/cases/{case_id}/delegations", DELEGATION),
        ("GET", f"/payments/{payment_id}", None),
        ("GET", f"/payments/{payment_id}/qr.png", None),
        ("GET", f"/payments/{payment_id}/qr.svg", None),
    ]


REQUEST_NAMES = [
    "case",
    "accounts",
    "add-account",
    "arrears",
    "progress",
    "confirmation",
    "agreement",
    "payments",
    "submission",
    "delegations",
    "payment",
    "qr-png",
    "qr-svg",
]


def error_identity(response):
    """Return what a caller can tell two error responses apart by."""
    body = response.json()
    return response.status_code, body["code"], body["message"]


@pytest.mark.parametrize("index", range(len(REQUEST_NAMES)), ids=REQUEST_NAMES)
def test_other_citizen_gets_not_found(client, owned, intruder, index):
    method, path, body = request_pairs(
        owned.case_id, owned.transfer_id, owned.payment_id
    )[index]
    missing = request_pairs(MISSING_ID, MISSING_ID, MISSING_ID)[index]

    response = citizen_request(intruder, method, path, body)
    expected = citizen_request(intruder, missing[0], missing[1], missing[2])

    code = "payment_not_found" if path.startswith("/payments/") else "case_not_found"
    assert_error(response, 404, code)
    assert error_identity(response) == error_identity(expected)


@pytest.mark.parametrize("index", range(len(REQUEST_NAMES)), ids=REQUEST_NAMES)
def test_oversized_id_not_found(client, owned, index):
    method, path, body = request_pairs(OVERSIZED_ID, OVERSIZED_ID, OVERSIZED_ID)[index]

    response = citizen_request(client, method, path, body)

    code = "payment_not_found" if path.startswith("/payments/") else "case_not_found"
    assert_error(response, 404, code)


def test_oversized_transfer_id(client, owned):
    path = f"/cases/{owned.case_id}/transfers/{OVERSIZED_ID}/confirmation"

    response = citizen_request(client, "POST", path, {})

    assert_error(response, 404, "transfer_not_found")


def test_other_citizen_changes_nothing(app, client, owned, intruder):
    for method, path, body in request_pairs(
        owned.case_id, owned.transfer_id, owned.payment_id
    ):
        citizen_request(intruder, method, path, body)

    transfer = Transfer.get_by_id(owned.transfer_id)
    assert transfer.account_confirmed is False
    assert transfer.agreement_accepted_at is None
    assert transfer.case.status == "open"
    assert Transfer.select().where(Transfer.case == transfer.case).count() == 1
    assert Delegation.select().where(Delegation.case == transfer.case).count() == 0
    assert [p.id for p in Payment.select().where(Payment.transfer == transfer)] == [
        owned.payment_id
    ]


def test_transfer_of_other_case(client, owned, intruder, homes):
    own_home = homes.make(accounts=[("gas", {})])
    intruder.login(own_home.buyer)
    own_case = intruder.call("POST", "/cases", {"business_no": own_home.business_no})
    path = f"/cases/{own_case['case_id']}/transfers/{owned.transfer_id}"

    confirm = citizen_request(intruder, "POST", f"{path}/confirmation", {})
    pay = citizen_request(intruder, "POST", f"{path}/payments", {})

    assert_error(confirm, 404, "transfer_not_found")
    assert_error(pay, 404, "transfer_not_found")
    owner_view = client.call("GET", f"/cases/{owned.case_id}")
    assert owner_view["transfers"][0]["account_confirmed"] is False


def test_other_citizen_list_excludes_case(client, owned, intruder):
    assert intruder.call("GET", "/cases")["items"] == []
    listed = client.call("GET", "/cases")["items"]
    assert [c["case_id"] for c in listed] == [owned.case_id]


def test_non_owner_cannot_open_case(stack, client, owned, intruder):
    seller = new_client(stack)
    seller.login(owned.sellers[0])

    stranger = citizen_request(
        intruder, "POST", "/cases", {"business_no": owned.business_no}
    )
    previous_owner = citizen_request(
        seller, "POST", "/cases", {"business_no": owned.business_no}
    )
    unknown = citizen_request(intruder, "POST", "/cases", {"business_no": "NOSUCH01"})

    assert_error(stranger, 404, "business_not_found")
    assert_error(previous_owner, 404, "business_not_found")
    assert error_identity(stranger) == error_identity(unknown)
    assert error_identity(previous_owner) == error_identity(unknown)


def masked_id(id_number):
    return id_number[:6] + "*" * 8 + id_number[-4:]


def masked_name(name):
    return name[0] + "*" * (len(name) - 1)


@pytest.fixture
def shared(stack, client, homes):
    """Open a case for a home the buyer owns with a spouse, and log the spouse in."""
    spouse = homes.person()
    home = homes.make(accounts=[("water", {})], co_owners=[spouse])
    client.login(home.buyer)
    home.case_id = client.call("POST", "/cases", {"business_no": home.business_no})[
        "case_id"
    ]
    home.spouse_client = new_client(stack)
    home.spouse_client.login(spouse)
    return home


def test_co_owner_sees_case(shared):
    spouse = shared.spouse_client

    reopened = citizen_request(
        spouse, "POST", "/cases", {"business_no": shared.business_no}
    )
    case = spouse.call("GET", f"/cases/{shared.case_id}")

    assert reopened.status_code == 200
    assert reopened.json()["case_id"] == shared.case_id
    assert case["case_id"] == shared.case_id
    listed = spouse.call("GET", "/cases")["items"]
    assert [c["case_id"] for c in listed] == [shared.case_id]
    assert len(spouse.call("GET", f"/cases/{shared.case_id}/accounts")) == 1
    assert spouse.call("GET", f"/cases/{shared.case_id}/progress")["case_id"] == (
        shared.case_id
    )


def test_co_owner_sees_buyer_masked(shared):
    buyer, spouse = shared.buyer, shared.co_owners[0]

    owners = shared.spouse_client.call("GET", f"/cases/{shared.case_id}")["owners"]

    buyer_view, spouse_view = owners
    assert buyer_view["id_number"] == masked_id(buyer.id_number)
    assert buyer_view["id_number"] != buyer.id_number
    assert buyer_view["name"] == masked_name(buyer.name)
    assert buyer_view["is_me"] is False
    assert spouse_view["id_number"] == spouse.id_number
    assert spouse_view["name"] == spouse.name
    assert spouse_view["is_me"] is True


def test_buyer_sees_self_unmasked(client, shared):
    buyer, spouse, seller = shared.buyer, shared.co_owners[0], shared.sellers[0]

    case = client.call("GET", f"/cases/{shared.case_id}")

    buyer_view, spouse_view = case["owners"]
    assert buyer_view["id_number"] == buyer.id_number
    assert buyer_view["name"] == buyer.name
    assert buyer_view["is_me"] is True
    assert spouse_view["id_number"] == masked_id(spouse.id_number)
    assert spouse_view["name"] == masked_name(spouse.name)
    [seller_view] = case["previous_owners"]
    assert seller_view["id_number"] == masked_id(seller.id_number)
    assert seller_view["name"] == masked_name(seller.name)


def test_account_holder_masked(client, shared):
    seller = shared.sellers[0]

    [account] = client.call("GET", f"/cases/{shared.case_id}/accounts")

    assert account["holder_name"] == masked_name(seller.name)
    assert account["holder_id_numbers"] == [masked_id(seller.id_number)]
    assert account["holder_relation"] == "previous_owner"


def test_add_account_of_other_home(client, homes):
    other = homes.make(accounts=[("water", {})])
    home = homes.make(accounts=[("gas", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})

    response = citizen_request(
        client,
        "POST",
        f"/cases/{case['case_id']}/accounts",
        {
            "service_org": "济南水务集团有限公司",
            "account_no": other.accounts[0].account_no,
        },
    )

    body = assert_error(response, 409, "account_linked_elsewhere")
    assert "*" not in response.text
    assert "holder" not in body
    assert len(client.call("GET", f"/cases/{case['case_id']}")["transfers"]) == 1


def test_add_account_held_by_stranger(client, homes):
    stranger = homes.person()
    home = homes.make(
        accounts=[("gas", {}), ("heat", {"holder": stranger, "linked": False})]
    )
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})

    response = citizen_request(
        client,
        "POST",
        f"/cases/{case['case_id']}/accounts",
        {
            "service_org": "济南能源集团有限公司热力",
            "account_no": home.accounts[1].account_no,
        },
    )

    assert_error(response, 409, "account_holder_mismatch")
    assert len(client.call("GET", f"/cases/{case['case_id']}")["transfers"]) == 1


def test_add_seller_account_of_other_flat(client, homes, stack):
    import requests

    home = homes.make(accounts=[("gas", {})])
    seller = home.sellers[0]
    other_flat = "SW" + home.accounts[0].account_no[2:]
    requests.post(
        stack.peers.utility_sim_url + "/_sim/accounts",
        json=[
            {
                "utility": "water",
                "account_no": other_flat,
                "holder_name": seller.name,
                "holder_id_numbers": [seller.id_number],
                "account_address": "燕子山小区99号楼9单元909",
                "arrears_fen": 0,
                "status": "active",
                "direct_debit": False,
            }
        ],
        timeout=10,
    ).raise_for_status()
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})

    response = citizen_request(
        client,
        "POST",
        f"/cases/{case['case_id']}/accounts",
        {"service_org": "济南水务集团有限公司", "account_no": other_flat},
    )

    assert_error(response, 409, "account_address_mismatch")
    assert "*" not in response.text

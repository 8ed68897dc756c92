"""Run the hub and its peers for the browser tests, with homes and staff seeded.

    python -m tests.browser.stack_process --var-dir DIR --ready-file FILE

The hub runs in this process, apart from the test process, because the hub's
data keys are set once per process and the hub tests start a hub of their own.
When the stack is up and seeded, the URLs, the homes and the staff logins are
written to the ready file as JSON. The process stops on SIGTERM or SIGINT.
"""

import argparse
import json
import logging
import signal
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import requests

from demo import scenarios
from demo.client import HubClient
from demo.stack import start_stack
from models import Transfer
from models.db import database
from services import staff as staff_service
from tests.hub.conftest import STAFF_PASSWORD, Homes, Staffing
from tests.hub.flows import drive_to_submission, signed_call, submit_and_register

log = logging.getLogger("tests.browser.stack_process")

CONFIG = {
    "LOGIN_ADDRESS_RATE_LIMIT": "100000 per minute",
    "PASSWORD_HASH_PROFILE": "CHEAPEST",
}


def person_view(person):
    return {
        "name": person.name,
        "id_type": person.id_type,
        "id_number": person.id_number,
        "phone": person.phone,
    }


def home_view(scenario):
    return {
        "business_no": scenario.business_no,
        "location": scenario.location,
        "buyer": person_view(scenario.buyer),
        "sellers": [person_view(seller) for seller in scenario.sellers],
        "accounts": [
            {"utility": account.utility, "account_no": account.account_no}
            for account in scenario.accounts
        ],
        "completed_payload": scenarios.business_payload(scenario, "completed"),
    }


def hub_client(stack):
    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


def seed_citizen_home(homes):
    """Make the home the citizen test walks: water owes ¥42.30, power is debited."""
    return homes.make(
        accounts=[("water", {"arrears_fen": 4230}), ("power", {"direct_debit": True})]
    )


def seed_returned_transfer(stack, homes):
    """Drive a home to the end, so that the power company returns its transfer."""
    home = homes.make(accounts=[("power", {"direct_debit": True})])
    progress = submit_and_complete(stack, home)
    statuses = [transfer["status"] for transfer in progress["transfers"]]
    if statuses != ["returned"]:
        raise RuntimeError(f"the seeded power transfer ended as {statuses}")
    return home


def submit_and_complete(stack, home, wait=True):
    """Submit the home's case and have the registry complete the business.

    Returns the case's progress, after every transfer is final when `wait`.
    """
    return submit_and_register(hub_client(stack), home, wait)


def seed_supervision(stack, homes):
    """Give the supervision report completed, late, returned and open transfers.

    Water, gas and heat complete. Power is returned for its direct debit, and
    a water account that still owes is returned for its arrears. The TV
    company, which has no system link, collects its export and keeps its
    transfer open. One gas transfer gets a due time equal to its delivery
    time, as if the company had completed it late, because a real delay
    takes working days.
    """
    first = homes.make(
        accounts=[("water", {}), ("gas", {}), ("power", {"direct_debit": True})]
    )
    second = homes.make(
        accounts=[("water", {"arrears_fen": 1880}), ("gas", {}), ("heat", {})]
    )
    expected = {
        first.business_no: ["completed", "completed", "returned"],
        second.business_no: ["returned", "completed", "completed"],
    }
    late_gas = None
    for home in (first, second):
        progress = submit_and_complete(stack, home)
        transfers = progress["transfers"]
        statuses = [transfer["status"] for transfer in transfers]
        if statuses != expected[home.business_no]:
            raise RuntimeError(f"the seeded transfers ended as {statuses}")
        late_gas = late_gas or transfers[1]["transfer_id"]
    Transfer.update(due_at=Transfer.delivered_at).where(
        Transfer.id == late_gas
    ).execute()

    tv_home = homes.make(accounts=[("tv", {})])
    submit_and_complete(stack, tv_home, wait=False)
    collected = signed_call(stack, "tv", "GET", "/partner/exports")
    collected.raise_for_status()
    accounts = [item["account_no"] for item in collected.json()["transfers"]]
    if accounts != [tv_home.accounts[0].account_no]:
        raise RuntimeError(f"the TV company collected the accounts {accounts}")


def seed_checked_home(stack, homes):
    """Make a home whose heat utility's transfer check is down for now.

    Water owes ¥15.00 and power has the seller's direct debit, which the
    checks show without stopping the submission. Return the home and the
    heat account as the utility simulator stores it, for the test to change.
    """
    home = homes.make(
        accounts=[
            ("water", {"arrears_fen": 1500}),
            ("power", {"direct_debit": True}),
            ("heat", {}),
        ]
    )
    (heat,) = [
        {**account, "transfer_check_down": True}
        for account in scenarios.simulator_accounts([home])
        if account["utility"] == "heat"
    ]
    response = requests.post(
        stack.peers.utility_sim_url + "/_sim/accounts", json=[heat], timeout=10
    )
    response.raise_for_status()
    return home, heat


def seed_completed_home(stack, homes, accounts, seconds=30):
    """Drive a home to 办结 and wait until every metered account has its reading."""
    home = homes.make(accounts=accounts)
    client = hub_client(stack)
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    progress = client.wait_until_final(case_id, seconds=seconds)
    statuses = [transfer["status"] for transfer in progress["transfers"]]
    if statuses != ["completed"] * len(accounts):
        raise RuntimeError(f"the seeded transfers ended as {statuses}")
    deadline = time.monotonic() + seconds
    while True:
        case = client.call("GET", f"/cases/{case_id}")
        if all(t["final_reading"] for t in case["transfers"]):
            return home, case_id
        if time.monotonic() > deadline:
            raise RuntimeError(f"the readings of case {case_id} were not taken")
        time.sleep(0.2)


def seed_review_item(stack, homes):
    """Have a buyer add a power account in a stranger's name, for checking by hand."""
    stranger = homes.person()
    home = homes.make(
        accounts=[("water", {}), ("power", {"linked": False, "holder": stranger})]
    )
    client = hub_client(stack)
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    power = home.accounts[1]
    client.call(
        "POST",
        f"/cases/{case['case_id']}/accounts",
        {
            "service_org": "国网济南供电公司",
            "account_no": power.account_no,
            "request_review": True,
        },
        expect=(202,),
    )
    return home


def seed_unlisted_account(homes):
    """Make a home whose gas account, in a stranger's name, is not linked to it."""
    return homes.make(
        accounts=[("water", {}), ("gas", {"linked": False, "holder": homes.person()})]
    )


def seed_staff(stack):
    """Create the staff whom the console tests log in as.

    The hotline member has a one-time password. The power company member,
    the supervisor and the administrator have STAFF_PASSWORD.
    """
    staffing = Staffing(stack, stack.app)
    organisation = staffing.organisation("service_desk")
    username = f"hotline{staffing.people.person('370102').id_number[-6:]}"
    member, one_time_password = staff_service.create_staff(
        username, "service", organisation, "客服测试员"
    )
    logins = {
        "service": {"username": member.username, "password": one_time_password},
    }
    utility_member, _ = staffing.member("utility", utility="power", login=False)
    logins["utility"] = {
        "username": utility_member.username,
        "password": STAFF_PASSWORD,
    }
    operator = staffing.organisation("operator")
    for role in ("supervisor", "admin"):
        member, _ = staffing.member(role, operator, login=False)
        logins[role] = {"username": member.username, "password": STAFF_PASSWORD}
    return logins


def seed_agent(stack, home):
    """Create an agent whom the home's buyer authorised, with the case opened."""
    agent, agent_client = Staffing(stack, stack.app).member("agent")
    agency = agent.organisation
    buyer = hub_client(stack)
    buyer.login(home.buyer)
    expires_at = (datetime.now(UTC) + timedelta(days=30)).isoformat(timespec="seconds")
    buyer.call(
        "POST",
        "/delegations",
        {
            "business_no": home.business_no,
            "agency_name": agency.name,
            "agency_credit_code": agency.credit_code,
            "scope": ["view", "confirm", "agreement", "submit"],
            "expires_at": expires_at,
        },
    )
    agent_client.call("POST", "/cases", {"business_no": home.business_no})
    return {"username": agent.username, "password": STAFF_PASSWORD}


def seed_opt_out_seller(stack, homes):
    """Open a case whose seller gave the registry a mobile number.

    The case's opening notice then goes to that number by SMS, with the
    opt-out link in it. Returns the number.
    """
    home = homes.make(accounts=[("water", {})])
    seller = home.sellers[0]
    payload = scenarios.business_payload(home, "accepted")
    payload["previous_owners"][0]["phone"] = seller.phone
    client = hub_client(stack)
    client.put_business(home.business_no, payload)
    client.login(home.buyer)
    client.call("POST", "/cases", {"business_no": home.business_no})
    return seller.phone


def seed(stack):
    with stack.app.app_context(), database.connection_context():
        homes = Homes(stack, stack.app)
        citizen_home = seed_citizen_home(homes)
        returned_home = seed_returned_transfer(stack, homes)
        review_home = seed_review_item(stack, homes)
        unlisted_home = seed_unlisted_account(homes)
        seed_supervision(stack, homes)
        checked_home, heat_account = seed_checked_home(stack, homes)
        # Heat, not gas: the supervision test counts the seed's gas transfers.
        read_home, read_case_id = seed_completed_home(
            stack, homes, [("water", {}), ("heat", {})]
        )
        sold_home, sold_case_id = seed_completed_home(
            stack, homes, [("water", {}), ("power", {})]
        )
        withdrawn_home = homes.make(accounts=[("water", {})])
        double_click_home = homes.make(accounts=[("water", {})])
        debts_home = homes.make(
            accounts=[
                ("water", {"arrears_fen": 1500}),
                ("power", {"arrears_fen": 2300}),
            ]
        )
        logins = seed_staff(stack)
        logins["agent"] = seed_agent(stack, review_home)
        opt_out_phone = seed_opt_out_seller(stack, homes)
    return {
        "hub_url": stack.hub_url,
        "idp_url": stack.peers.idp_url,
        "wechatpay_url": stack.peers.wechatpay_url,
        "alipay_url": stack.peers.alipay_url,
        "utility_sim_url": stack.peers.utility_sim_url,
        "sms_url": stack.peers.sms_url,
        "database_url": stack.app.config["DATABASE_URL"],
        "registry_secret": stack.registry_secret,
        "citizen_home": home_view(citizen_home),
        "returned_home": home_view(returned_home),
        "review_home": home_view(review_home),
        "unlisted_home": {
            **home_view(unlisted_home),
            "gas_account_no": unlisted_home.accounts[1].account_no,
        },
        "checked_home": {**home_view(checked_home), "heat_account": heat_account},
        "read_home": {**home_view(read_home), "case_id": read_case_id},
        "sold_home": {**home_view(sold_home), "case_id": sold_case_id},
        "withdrawn_home": home_view(withdrawn_home),
        "debts_home": home_view(debts_home),
        "double_click_home": home_view(double_click_home),
        "staff": logins,
        "opt_out_phone": opt_out_phone,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--var-dir", required=True, type=Path)
    parser.add_argument("--ready-file", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    signal.signal(signal.SIGINT, lambda *_: stopping.set())

    stack = start_stack(args.var_dir, config=CONFIG, feedback_delay=0.2)
    try:
        ready = seed(stack)
        partial = args.ready_file.with_suffix(".partial")
        partial.write_text(json.dumps(ready, ensure_ascii=False, indent=1))
        partial.replace(args.ready_file)
        log.info("browser test stack ready hub=%s", stack.hub_url)
        stopping.wait()
    finally:
        stack.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

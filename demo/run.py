"""The demo: four cases driven end to end over HTTP, each step printed."""

import logging
import time

import click
import requests

from demo import scenarios
from demo.client import HubClient, HubError
from demo.stack import start_stack

log = logging.getLogger(__name__)


def say(text, indent=0):
    click.echo("  " * indent + text)


def run_demo(var_dir):
    """Start the stack in `var_dir`, run every scenario, return True if all passed."""
    stack = start_stack(var_dir)
    try:
        client = HubClient(
            stack.hub_url,
            stack.peers.idp_url,
            stack.peers.wechatpay_url,
            stack.registry_secret,
        )
        results = [run_scenario(client, stack, s) for s in scenarios.build_scenarios()]
    finally:
        stack.stop()
    passed = sum(results)
    say(f"\n{passed} of {len(results)} demo cases ended as expected.")
    if passed == len(results):
        say("\nTo keep the service running and explore it:")
        say("  .venv/bin/lianban serve   # the hub on 127.0.0.1:5000 with its peers")
        say("  open http://127.0.0.1:5000/api/v1/openapi.json for the API")
        say("  docs/manual-use.md shows how to log in and pay in the sandboxes")
    return passed == len(results)


def run_scenario(client, stack, scenario):
    say(f"\n=== {scenario.title}")
    try:
        case_id = walk_case(client, stack, scenario)
        progress = client.wait_until_final(case_id, poke=lambda: collect_channel(stack))
    except HubError as error:
        say(f"!! the hub refused a step: {error}", 1)
        return False
    print_timeline(progress)
    finals = [t["status"] for t in progress["transfers"]]
    counts = {
        "completed": finals.count("completed"),
        "returned": finals.count("returned"),
    }
    ok = counts == scenario.expect
    say(
        f"result: {counts['completed']} 办结, {counts['returned']} 退件 "
        f"({'as expected' if ok else f'expected {scenario.expect}'})",
        1,
    )
    return ok


def walk_case(client, stack, scenario):
    client.put_business(
        scenario.business_no, scenarios.business_payload(scenario, "accepted")
    )
    say(
        f"registry: business {scenario.business_no} accepted "
        f"({scenario.business_type}, {scenario.location})",
        1,
    )
    client.login(scenario.buyer)
    say("buyer: logged in with a mini-program login code", 1)
    case = client.call("POST", "/cases", {"business_no": scenario.business_no})
    case_id = case["case_id"]
    say(
        f"buyer: opened case {case_id}; owners "
        + ", ".join(f"{o['name']} {o['id_number']}" for o in case["owners"]),
        1,
    )
    add_unlinked_accounts(client, case_id, scenario)
    for account in client.call("GET", f"/cases/{case_id}/accounts"):
        confirm_and_accept(client, case_id, account)
    pay_arrears(client, case_id)
    client.call("POST", f"/cases/{case_id}/submission", {})
    say("buyer: submitted the case for joint handling", 1)
    client.put_business(
        scenario.business_no, scenarios.business_payload(scenario, "completed")
    )
    say("registry: registration completed; transfers are pushed to the utilities", 1)
    return case_id


def add_unlinked_accounts(client, case_id, scenario):
    for account in scenario.accounts:
        if account.linked:
            continue
        org = next(
            u.service_org for u in scenarios_utilities() if u.code == account.utility
        )
        client.call(
            "POST",
            f"/cases/{case_id}/accounts",
            {"service_org": org, "account_no": account.account_no},
        )
        say(
            f"buyer: added unlinked account {org} {account.account_no}, "
            "checked live with the utility",
            1,
        )


def scenarios_utilities():
    from domain.utilities import UTILITIES

    return UTILITIES


def confirm_and_accept(client, case_id, account):
    transfer_path = f"/cases/{case_id}/transfers/{account['transfer_id']}"
    client.call("POST", f"{transfer_path}/confirmation", {})
    agreement = client.call("GET", f"/agreements/{account['service_org']}")
    client.call("POST", f"{transfer_path}/agreement", {"version": agreement["version"]})
    say(
        f"buyer: confirmed {account['service_org']} {account['account_no']} "
        f"(holder {account['holder_name']}, {account['holder_relation']}) and accepted "
        f"agreement v{agreement['version']}",
        1,
    )


def pay_arrears(client, case_id):
    for answer in client.call("GET", f"/cases/{case_id}/arrears"):
        if answer["state"] != "owed":
            continue
        payment = client.call(
            "POST", f"/cases/{case_id}/transfers/{answer['transfer_id']}/payments", {}
        )
        say(
            f"buyer: {answer['service_org']} arrears {payment['amount_display']}; "
            f"QR code {payment['code_url']}",
            1,
        )
        png = client.call("GET", f"/payments/{payment['payment_id']}/qr.png")
        say(
            f"buyer: fetched the QR code image ({len(png)} bytes PNG) and scanned it", 1
        )
        client.pay_in_sandbox(payment["code_url"])
        settled = client.wait_for_payment(payment["payment_id"])
        say(f"payment: {settled['status']} at {settled['paid_at']}", 1)
        left = wait_for_report(client, case_id, answer["transfer_id"])
        say(f"utility: arrears now {left['arrears_display']} ({left['state']})", 1)


def wait_for_report(client, case_id, transfer_id, seconds=10):
    """Poll the arrears until the utility has booked the payment."""
    deadline = time.monotonic() + seconds
    while True:
        after = client.call("GET", f"/cases/{case_id}/arrears")
        left = next(a for a in after if a["transfer_id"] == transfer_id)
        if left["state"] != "paid_pending" or time.monotonic() > deadline:
            return left
        say(f"utility: payment not yet booked ({left['state']}), waiting", 1)
        time.sleep(0.5)


def collect_channel(stack):
    """Have the simulator collect the export of utilities not connected by system."""
    try:
        requests.post(stack.peers.utility_sim_url + "/_sim/collect/tv", timeout=10)
    except requests.RequestException as error:
        log.warning("channel collection failed error=%s", error)


def print_timeline(progress):
    say("timeline:", 1)
    for transfer in progress["transfers"]:
        reason = f" — {transfer['return_reason']}" if transfer["return_reason"] else ""
        say(
            f"{transfer['service_org']} {transfer['account_no']}: "
            f"{transfer['status_label']}{reason}",
            2,
        )
        for event in transfer["events"]:
            note = f" ({event['note']})" if event["note"] else ""
            say(f"{event['occurred_at'][:19]}  {event['label']}{note}", 3)

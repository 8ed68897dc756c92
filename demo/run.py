"""The demo: four cases driven end to end over HTTP, each step printed."""

import logging
import time
from datetime import UTC, datetime, timedelta

import click
import requests

from demo import scenarios
from demo import staff as demo_staff
from demo.client import HubClient, HubError
from demo.evidence_steps import show_deadlines_and_evidence
from demo.notice_steps import show_release_notice
from demo.stack import start_stack

log = logging.getLogger(__name__)


def say(text, indent=0):
    click.echo("  " * indent + text)


def new_client(stack):
    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


def run_demo(var_dir):
    """Start the stack in `var_dir`, run every scenario, return True if all passed."""
    stack = start_stack(var_dir)
    try:
        made = demo_staff.ensure_demo_staff(stack.app)
        agent = new_client(stack)
        agent.staff_login(*_credentials(made, "agent"))
        client = new_client(stack)
        built = scenarios.build_scenarios()
        results = [run_scenario(client, agent, stack, s) for s in built]
        results.append(run_lookup(stack, made, built))
    finally:
        stack.stop()
    passed = sum(results)
    say(f"\n{passed} of {len(results)} demo runs ended as expected.")
    if passed == len(results):
        say("\nTo keep the service running and explore it:")
        say("  .venv/bin/lianban serve   # the hub on 127.0.0.1:5000 with its peers")
        say("  open http://127.0.0.1:5000/api/v1/openapi.json for the API")
        say("  docs/manual-use.md shows how to log in and pay in the sandboxes")
    return passed == len(results)


def _credentials(made, role):
    member = demo_staff.by_role(made, role)
    return member.username, member.password


def run_scenario(client, agent, stack, scenario):
    say(f"\n=== {scenario.title}")
    try:
        case_id = walk_case(client, agent, stack, scenario)
        progress = client.wait_until_final(case_id, poke=lambda: collect_channel(stack))
    except HubError as error:
        say(f"!! the hub refused a step: {error}", 1)
        return False
    print_timeline(progress)
    evidence_held = show_deadlines_and_evidence(client, case_id)
    noticed = show_release_notice(stack, scenario, case_id)
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
    return ok and evidence_held and noticed


def walk_case(client, agent, stack, scenario):
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
    actor, who = client, "buyer"
    if scenario.by_agent:
        actor, who = agent, "agent"
        delegate(client, agent, scenario)
    case = actor.call("POST", "/cases", {"business_no": scenario.business_no})
    case_id = case["case_id"]
    say(
        f"{who}: opened case {case_id}; owners "
        + ", ".join(f"{o['name']} {o['id_number']}" for o in case["owners"]),
        1,
    )
    add_unlinked_accounts(actor, who, case_id, scenario)
    for account in actor.call("GET", f"/cases/{case_id}/accounts"):
        confirm_and_accept(actor, who, case_id, account)
    pay_arrears(actor, who, case_id, scenario, stack)
    actor.call("POST", f"/cases/{case_id}/submission", {})
    say(f"{who}: submitted the case for joint handling", 1)
    client.put_business(
        scenario.business_no, scenarios.business_payload(scenario, "completed")
    )
    say("registry: registration completed; transfers are pushed to the utilities", 1)
    return case_id


def delegate(client, agent, scenario):
    """Have the buyer authorise the demo agency, then show who the agent is."""
    me = agent.call("GET", "/auth/me")
    agency = me["organisation"]
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat(timespec="seconds")
    delegation = client.call(
        "POST",
        "/delegations",
        {
            "business_no": scenario.business_no,
            "agency_name": agency["name"],
            "agency_credit_code": agency["credit_code"],
            "scope": ["view", "accounts", "confirm", "agreement", "pay", "submit"],
            "expires_at": expires,
        },
    )
    say(
        f"buyer: authorised {agency['name']} ({', '.join(delegation['scope'])}) "
        f"until {delegation['expires_at'][:10]}",
        1,
    )
    say(f"agent: {me['display_name']} of {agency['name']} logged in", 1)


def add_unlinked_accounts(client, who, case_id, scenario):
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
            f"{who}: added unlinked account {org} {account.account_no}, "
            "checked live with the utility",
            1,
        )


def scenarios_utilities():
    from domain.utilities import UTILITIES

    return UTILITIES


def confirm_and_accept(client, who, case_id, account):
    transfer_path = f"/cases/{case_id}/transfers/{account['transfer_id']}"
    client.call("POST", f"{transfer_path}/confirmation", {})
    agreement = client.call("GET", f"/agreements/{account['service_org']}")
    client.call("POST", f"{transfer_path}/agreement", {"version": agreement["version"]})
    say(
        f"{who}: confirmed {account['service_org']} {account['account_no']} "
        f"(holder {account['holder_name']}, {account['holder_relation']}) and accepted "
        f"agreement v{agreement['version']}",
        1,
    )


def pay_arrears(client, who, case_id, scenario, stack):
    owed = [
        answer
        for answer in client.call("GET", f"/cases/{case_id}/arrears")
        if answer["state"] == "owed"
    ]
    if len(owed) > 1:
        pay_all_at_once(client, who, case_id, scenario, stack)
        return
    for answer in owed:
        payment = client.call(
            "POST", f"/cases/{case_id}/transfers/{answer['transfer_id']}/payments", {}
        )
        say(
            f"{who}: {answer['service_org']} arrears {payment['amount_display']}; "
            f"QR code {payment['code_url']}",
            1,
        )
        png = client.call("GET", f"/payments/{payment['payment_id']}/qr.png")
        say(
            f"{who}: fetched the QR code image ({len(png)} bytes PNG) and scanned it",
            1,
        )
        client.pay_in_sandbox(payment["code_url"])
        settled = client.wait_for_payment(payment["payment_id"])
        say(f"payment: {settled['status']} at {settled['paid_at']}", 1)
        left = wait_for_report(client, case_id, answer["transfer_id"])
        say(f"utility: arrears now {left['arrears_display']} ({left['state']})", 1)


def pay_all_at_once(client, who, case_id, scenario, stack):
    """Pay every debt with one order; the scenario may pay one at the counter first."""
    payment = client.call("POST", f"/cases/{case_id}/payments", {})
    parts = "、".join(
        f"{share['service_org']} {share['amount_display']}"
        for share in payment["shares"]
    )
    say(f"{who}: one QR code for {payment['amount_display']} ({parts})", 1)
    for account in scenario.accounts:
        if account.counter_paid_fen:
            requests.post(
                stack.peers.utility_sim_url + "/_sim/counter-payments",
                json={
                    "utility": account.utility,
                    "account_no": account.account_no,
                    "amount_fen": account.counter_paid_fen,
                },
                timeout=10,
            ).raise_for_status()
            say(
                f"seller: paid {account.counter_paid_fen / 100:.2f} yuan at the "
                f"{account.utility} counter while the code was open",
                1,
            )
    client.pay_in_sandbox(payment["code_url"])
    settled = client.wait_for_payment(payment["payment_id"])
    say(f"payment: {settled['status']} at {settled['paid_at']}", 1)
    for share in payment["shares"]:
        left = wait_for_report(client, case_id, share["transfer_id"])
        say(
            f"utility: {share['service_org']} arrears now {left['arrears_display']} "
            f"({left['state']})",
            1,
        )
    settled = wait_for_refunds(client, payment["payment_id"])
    for refund in settled["refunds"]:
        say(
            f"refund: {refund['amount_display']} back to the payer, "
            f"{refund['reason']} ({refund['status']})",
            1,
        )


def wait_for_refunds(client, payment_id, seconds=15):
    """Poll the order until every share is booked and every refund has succeeded."""
    deadline = time.monotonic() + seconds
    while True:
        payment = client.call("GET", f"/payments/{payment_id}")
        shares_reported = all(share["reported"] for share in payment["shares"])
        refunds_done = all(r["status"] == "succeeded" for r in payment["refunds"])
        if shares_reported and refunds_done or time.monotonic() > deadline:
            return payment
        time.sleep(0.3)


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
            by = f" [{event['actor_name']}]" if event.get("actor_name") else ""
            say(f"{event['occurred_at'][:19]}  {event['label']}{note}{by}", 3)


def run_lookup(stack, made, built):
    """Look up the returned case as hotline staff would, and print what they see."""
    say("\n=== 客服查询：市民致电 12345 询问退件原因，客服按业务号查询（脱敏）")
    service = new_client(stack)
    service.staff_login(*_credentials(made, "service"))
    returned = next(s for s in built if s.key == "returned")
    reason = "12345 工单：市民来电询问电费过户退件原因"
    try:
        found = service.call(
            "GET",
            f"/lookup/cases?business_no={returned.business_no}&reason={reason}",
        )
        say(f"service: {found['total']} case found for {returned.business_no}", 1)
        case = service.call(
            "GET", f"/lookup/cases/{found['items'][0]['case_id']}?reason={reason}"
        )
    except HubError as error:
        say(f"!! the hub refused the lookup: {error}", 1)
        return False
    for owner in case["owners"]:
        say(f"owner: {owner['name']} {owner['id_number']}", 2)
    for transfer in case["transfers"]:
        why = f" — {transfer['return_reason']}" if transfer["return_reason"] else ""
        say(
            f"{transfer['service_org']} {transfer['account_no']}: "
            f"{transfer['status_label']}{why} (holder {transfer['holder_name']})",
            2,
        )
    unmasked = [
        person.id_number
        for person in (returned.buyer, *returned.sellers)
        if person.id_number in str(case)
    ]
    masked = not unmasked
    say(
        "result: personal data masked, lookup recorded with its reason "
        f"({'as expected' if masked else 'UNMASKED ID NUMBERS SEEN'})",
        1,
    )
    return masked

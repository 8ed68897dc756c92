"""Withdrawing a case: its transfers stop, and money paid through it goes back."""

import time

import requests

from demo import scenarios
from models import Case, CaseAction, OutboxMessage, Payment, Refund, Transfer
from services import delivery, withdrawal
from tests.hub.flows import (
    assert_error,
    citizen_request,
    drive_to_submission,
    share_ids,
)
from tests.hub.test_agents_and_windows import grant


def wait_until(check, seconds=20):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.1)
    raise AssertionError(f"not reached within {seconds} s: {check.__doc__}")


def sim_arrears(stack, utility, account_no):
    response = requests.get(
        stack.peers.utility_sim_url + "/_sim/accounts",
        params={"utility": utility},
        timeout=10,
    )
    response.raise_for_status()
    accounts = response.json()["accounts"]
    return next(a["arrears_fen"] for a in accounts if a["account_no"] == account_no)


def sandbox_order(stack, out_trade_no):
    response = requests.get(
        stack.peers.wechatpay_url + f"/_sandbox/orders/{out_trade_no}", timeout=10
    )
    response.raise_for_status()
    return response.json()


def transfer_of(case, kind):
    return next(t for t in case["transfers"] if t["utility_kind"] == kind)


def pay(client, case_id, transfer_id):
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{transfer_id}/payments", {}
    )
    client.pay_in_sandbox(payment["code_url"])
    return client.wait_for_payment(payment["payment_id"])


def message_state(kind, payment_id):
    """Return the state of the payment's one report or reversal, if written."""
    message = OutboxMessage.get_or_none(
        (OutboxMessage.kind == kind) & OutboxMessage.ref_id.in_(share_ids(payment_id))
    )
    return message and message.state


def test_owner_withdraws_and_money_goes_back(client, homes, stack):
    home = homes.make(
        accounts=[("water", {"arrears_fen": 3000}), ("gas", {"arrears_fen": 1500})]
    )
    case_id = drive_to_submission(client, home)
    case = client.call("GET", f"/cases/{case_id}")
    water = transfer_of(case, "water")
    gas = transfer_of(case, "gas")
    paid = pay(client, case_id, water["transfer_id"])
    wait_until(lambda: message_state(delivery.PAYMENT_REPORT, paid["payment_id"]))
    wait_until(
        lambda: sim_arrears(stack, "water", water["account_no"]) == 0,
    )
    open_order = client.call(
        "POST", f"/cases/{case_id}/transfers/{gas['transfer_id']}/payments", {}
    )

    withdrawn = client.call(
        "POST", f"/cases/{case_id}/withdrawal", {"reason": "买卖双方协商解除"}
    )

    assert withdrawn["status"] == "withdrawn"
    assert {t["status"] for t in withdrawn["transfers"]} == {"withdrawn"}
    assert {t["status_label"] for t in withdrawn["transfers"]} == {"已撤回"}
    progress = client.call("GET", f"/cases/{case_id}/progress")
    for transfer in progress["transfers"]:
        [last] = [e for e in transfer["events"] if e["status"] == "withdrawn"]
        assert last["note"] == "申请人撤回联办：买卖双方协商解除"
        assert last["actor"] == "applicant"
    # Only the paid water account gets its money back on the timeline.
    refunded = {
        t["transfer_id"]: [
            e["note"] for e in t["events"] if e["status"] == "payment_refunded"
        ]
        for t in progress["transfers"]
    }
    assert refunded == {
        water["transfer_id"]: ["联办事项已撤回，已缴欠费原路退回（30.00 元）"],
        gas["transfer_id"]: [],
    }
    actions = [a.action for a in CaseAction.select().where(CaseAction.case == case_id)]
    assert actions[-1] == "withdraw"

    # The paid arrears go back to the payer and onto the seller's account.
    refund = wait_until(
        lambda: Refund.get_or_none(
            (Refund.payment == paid["payment_id"]) & (Refund.status == "succeeded")
        )
    )
    assert refund.amount_fen == 3000
    assert refund.reason == withdrawal.REFUND_REASON
    wait_until(lambda: message_state(withdrawal.REVERSE_PAYMENT, paid["payment_id"]))
    wait_until(
        lambda: message_state(withdrawal.REVERSE_PAYMENT, paid["payment_id"]) == "done"
    )
    assert sim_arrears(stack, "water", water["account_no"]) == 3000

    # The open order is closed at the provider and can no longer be paid.
    wait_until(lambda: Payment.get_by_id(open_order["payment_id"]).status == "closed")
    assert sandbox_order(stack, open_order["out_trade_no"])["trade_state"] == "CLOSED"
    late = requests.post(
        stack.peers.wechatpay_url + "/_sandbox/pay",
        json={"code_url": open_order["code_url"]},
        timeout=10,
    )
    assert late.status_code == 400
    assert sim_arrears(stack, "gas", gas["account_no"]) == 1500


def test_withdrawn_case_takes_no_more_steps(client, homes):
    home = homes.make(accounts=[("water", {"arrears_fen": 800})])
    case_id = drive_to_submission(client, home)
    transfer = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    client.call("POST", f"/cases/{case_id}/withdrawal", {})

    again = citizen_request(client, "POST", f"/cases/{case_id}/withdrawal", {})
    payment = citizen_request(
        client,
        "POST",
        f"/cases/{case_id}/transfers/{transfer['transfer_id']}/payments",
        {},
    )
    submission = citizen_request(client, "POST", f"/cases/{case_id}/submission", {})
    reopened = citizen_request(
        client, "POST", "/cases", {"business_no": home.business_no}
    )

    assert_error(again, 409, "case_withdrawn")
    assert payment.status_code == 409
    assert submission.status_code == 409
    assert_error(reopened, 409, "case_withdrawn")
    checks = citizen_request(client, "GET", f"/cases/{case_id}/transfer-checks")
    assert_error(checks, 409, "case_not_open")


def test_withdrawal_without_reason_has_plain_note(client, homes):
    home = homes.make()
    case_id = drive_to_submission(client, home)

    client.call("POST", f"/cases/{case_id}/withdrawal")
    progress = client.call("GET", f"/cases/{case_id}/progress")

    assert progress["transfers"][0]["events"][-1]["note"] == "申请人撤回联办"


def test_withdrawal_after_registration_refused(client, homes):
    home = homes.make()
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))

    response = citizen_request(client, "POST", f"/cases/{case_id}/withdrawal", {})

    assert_error(response, 409, "registration_completed")
    assert Case.get_by_id(case_id).status != "withdrawn"
    statuses = {t.status for t in Transfer.select().where(Transfer.case == case_id)}
    assert "withdrawn" not in statuses


def test_bad_reason_rejected(client, homes):
    home = homes.make()
    case_id = drive_to_submission(client, home)

    for reason in ("", "长" * 201, 5):
        response = citizen_request(
            client, "POST", f"/cases/{case_id}/withdrawal", {"reason": reason}
        )
        assert_error(response, 422, "validation_failed")

    assert Case.get_by_id(case_id).status == "open"


def test_agent_needs_submit_scope(client, homes, staffing):
    agency = staffing.organisation("agency")
    _, agent = staffing.member("agent", organisation=agency)
    home = homes.make()
    client.login(home.buyer)
    grant(client, home, agency, scope=["view", "confirm"])
    case = agent.call("POST", "/cases", {"business_no": home.business_no})

    response = citizen_request(agent, "POST", f"/cases/{case['case_id']}/withdrawal")

    assert_error(response, 403, "delegation_scope")
    assert Case.get_by_id(case["case_id"]).status == "open"


def test_registry_withdrawal_returns_money(client, homes, stack):
    home = homes.make(accounts=[("water", {"arrears_fen": 2100})])
    case_id = drive_to_submission(client, home)
    water = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    paid = pay(client, case_id, water["transfer_id"])
    client.call("POST", f"/cases/{case_id}/submission", {})

    client.put_business(home.business_no, scenarios.business_payload(home, "withdrawn"))

    case = client.call("GET", f"/cases/{case_id}")
    assert case["status"] == "withdrawn"
    assert case["transfers"][0]["status"] == "withdrawn"
    events = client.call("GET", f"/cases/{case_id}/progress")["transfers"][0]["events"]
    # The withdrawal, then the money it sends back.
    assert [e["status"] for e in events[-2:]] == ["withdrawn", "payment_refunded"]
    assert events[-2]["note"] == "不动产登记业务已撤回"
    assert events[-2]["actor"] == "system"
    assert events[-1]["note"] == "联办事项已撤回，已缴欠费原路退回（21.00 元）"
    refund = wait_until(
        lambda: Refund.get_or_none(
            (Refund.payment == paid["payment_id"]) & (Refund.status == "succeeded")
        )
    )
    assert refund.amount_fen == 2100
    wait_until(
        lambda: message_state(withdrawal.REVERSE_PAYMENT, paid["payment_id"]) == "done"
    )
    assert sim_arrears(stack, "water", water["account_no"]) == 2100


def test_payment_after_withdrawal_is_refunded(client, homes, stack):
    home = homes.make(accounts=[("water", {"arrears_fen": 990})])
    case_id = drive_to_submission(client, home)
    water = client.call("GET", f"/cases/{case_id}")["transfers"][0]
    order = client.call(
        "POST", f"/cases/{case_id}/transfers/{water['transfer_id']}/payments", {}
    )
    # The withdrawal committed after the order was created and before the
    # message closing it was sent: the payer scans in between.
    Case.update(status="withdrawn").where(Case.id == case_id).execute()

    client.pay_in_sandbox(order["code_url"])

    payment = wait_until(
        lambda: Payment.get_or_none(
            (Payment.id == order["payment_id"]) & (Payment.status == "paid_late")
        )
    )
    refund = wait_until(
        lambda: Refund.get_or_none(
            (Refund.payment == payment.id) & (Refund.status == "succeeded")
        )
    )
    assert refund.reason == withdrawal.REFUND_REASON
    assert refund.amount_fen == 990
    assert message_state(delivery.PAYMENT_REPORT, payment.id) is None
    assert sim_arrears(stack, "water", water["account_no"]) == 990


def test_utility_never_sees_withdrawn_transfers(client, homes, staffing):
    home = homes.make(accounts=[("water", {})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]
    client.call("POST", f"/cases/{case_id}/withdrawal", {})
    _, water_staff = staffing.member("utility", utility="water")

    listed = water_staff.call("GET", "/utility/transfers?page_size=100")
    detail = citizen_request(water_staff, "GET", f"/utility/transfers/{transfer_id}")

    assert transfer_id not in [t["transfer_id"] for t in listed["items"]]
    assert_error(detail, 404, "transfer_not_found")


def test_withdrawal_stops_unsent_pushes(client, homes, app):
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    case_id = drive_to_submission(client, home)
    transfers = list(Transfer.select().where(Transfer.case == case_id))
    # A push written but not yet taken: it must never go out now.
    waiting = OutboxMessage.create(
        kind=delivery.PUSH,
        ref_id=transfers[0].id,
        utility_code="water",
        payload={},
        next_attempt_at=Case.get_by_id(case_id).opened_at.replace(year=2099),
    )

    client.call("POST", f"/cases/{case_id}/withdrawal", {})

    assert OutboxMessage.get_by_id(waiting.id).state == "cancelled"
    assert waiting.id not in delivery.due_ids()

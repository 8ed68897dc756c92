"""One order for the arrears of several accounts, split per utility.

Each share of the order is reported to its own utility. The utility's
response states how much went against the debt, and the hub refunds what a
counter payment already covered without anyone asking.
"""

import json
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
import requests
from peewee import fn

from demo import scenarios
from models import (
    OutboxMessage,
    Payment,
    PaymentShare,
    Refund,
    Transfer,
    TransferEvent,
)
from models.base import utcnow
from partners.http import PartnerError
from services import (
    delivery,
    evidence,
    notifications,
    payments,
    settlement,
    withdrawal,
)
from tests.hub.flows import assert_error, citizen_request, drive_to_submission
from tests.hub.test_withdrawal import sim_arrears, wait_until

ARREARS = {"water": 3100, "power": 5250, "gas": 0}


def _home_case(client, homes, arrears=None):
    arrears = arrears or ARREARS
    home = homes.make(
        accounts=[(kind, {"arrears_fen": fen}) for kind, fen in arrears.items()]
    )
    case_id = drive_to_submission(client, home)
    case = client.call("GET", f"/cases/{case_id}")
    transfers = {t["utility_kind"]: t for t in case["transfers"]}
    return home, case_id, transfers


def _case(client, homes, arrears=None):
    _, case_id, transfers = _home_case(client, homes, arrears)
    return case_id, transfers


def _new_bill(stack, home, kind, arrears_fen):
    """Give the account a new debt at its utility, as a monthly bill would."""
    [account] = [
        {**account, "arrears_fen": arrears_fen}
        for account in scenarios.simulator_accounts([home])
        if account["utility"] == kind
    ]
    response = requests.post(
        stack.peers.utility_sim_url + "/_sim/accounts", json=[account], timeout=10
    )
    response.raise_for_status()


def _shares_by_kind(payment, transfers):
    kinds = {t["transfer_id"]: kind for kind, t in transfers.items()}
    return {kinds[share["transfer_id"]]: share for share in payment["shares"]}


def _counter(stack, utility, account_no, amount_fen):
    response = requests.post(
        stack.peers.utility_sim_url + "/_sim/counter-payments",
        json={"utility": utility, "account_no": account_no, "amount_fen": amount_fen},
        timeout=10,
    )
    response.raise_for_status()
    return response.json()


def _reports_done(payment_id):
    shares = PaymentShare.select().where(PaymentShare.payment == payment_id)
    return all(share.reported_at is not None for share in shares)


def _settled(client, payment):
    client.pay_in_sandbox(payment["code_url"])
    paid = client.wait_for_payment(payment["payment_id"])
    assert paid["status"] == "paid"
    wait_until(lambda: _reports_done(payment["payment_id"]))
    return paid


def _refunds_done(payment_id, count):
    done = Refund.select().where(
        (Refund.payment == payment_id) & (Refund.status == "succeeded")
    )
    return done.count() == count


def test_one_order_pays_every_debt(client, homes, stack):
    case_id, transfers = _case(client, homes)

    payment = client.call("POST", f"/cases/{case_id}/payments", {})

    assert payment["amount_fen"] == 3100 + 5250
    assert payment["amount_display"] == "¥83.50"
    assert payment["transfer_id"] is None
    assert payment["case_id"] == case_id
    shares = _shares_by_kind(payment, transfers)
    # The gas account owes nothing and is left out.
    assert set(shares) == {"water", "power"}
    assert shares["water"]["amount_fen"] == 3100
    assert shares["power"]["amount_fen"] == 5250
    assert {share["status"] for share in shares.values()} == {"unpaid"}
    assert payment["service_org"] == "济南水务集团有限公司、国网济南供电公司"

    paid = _settled(client, payment)

    shares = _shares_by_kind(
        client.call("GET", f"/payments/{paid['payment_id']}"), transfers
    )
    assert shares["water"]["status"] == "credited"
    assert shares["water"]["applied_fen"] == 3100
    assert shares["power"]["applied_fen"] == 5250
    assert sim_arrears(stack, "water", transfers["water"]["account_no"]) == 0
    assert sim_arrears(stack, "power", transfers["power"]["account_no"]) == 0
    # The case shows the arrears from the utilities' responses to the reports.
    case = client.call("GET", f"/cases/{case_id}")
    assert {t["arrears_fen"] for t in case["transfers"]} == {0}
    # Each utility heard of its own part, under its own payment id.
    reports = {
        message.payload["account_no"]: message.payload
        for message in OutboxMessage.select().where(
            (OutboxMessage.kind == delivery.PAYMENT_REPORT)
            & OutboxMessage.ref_id.in_(
                [
                    s.id
                    for s in PaymentShare.select().where(
                        PaymentShare.payment == paid["payment_id"]
                    )
                ]
            )
        )
    }
    water_report = reports[transfers["water"]["account_no"]]
    power_report = reports[transfers["power"]["account_no"]]
    assert water_report["amount_fen"] == 3100
    assert power_report["amount_fen"] == 5250
    assert water_report["payment_id"] != power_report["payment_id"]
    assert water_report["payment_id"].startswith(paid["out_trade_no"])
    # Each timeline shows what was paid on it, and the gas timeline nothing.
    progress = client.call("GET", f"/cases/{case_id}/progress")
    kinds = {t["transfer_id"]: kind for kind, t in transfers.items()}
    notes = {
        kinds[t["transfer_id"]]: [
            e["note"] for e in t["events"] if e["status"] == "arrears_paid"
        ]
        for t in progress["transfers"]
    }
    assert notes == {
        "water": ["欠费已缴清（31.00 元）"],
        "power": ["欠费已缴清（52.50 元）"],
        "gas": [],
    }
    # The evidence log has one entry per share, on its transfer.
    entries = [
        entry
        for entry in evidence.case_entries(case_id)
        if entry["kind"] == evidence.PAYMENT
    ]
    assert sorted(entry["transfer_id"] for entry in entries) == sorted(
        [transfers["water"]["transfer_id"], transfers["power"]["transfer_id"]]
    )
    assert Refund.select().where(Refund.payment == paid["payment_id"]).count() == 0


def test_repeated_tap_reuses_the_order(client, homes):
    case_id, _ = _case(client, homes)
    first = client.call("POST", f"/cases/{case_id}/payments", {})

    again = citizen_request(client, "POST", f"/cases/{case_id}/payments", {})

    assert again.status_code == 200
    assert again.json()["payment_id"] == first["payment_id"]


def test_another_choice_replaces_the_open_orders(client, homes, stack):
    case_id, transfers = _case(client, homes)
    water_id = transfers["water"]["transfer_id"]
    single = client.call("POST", f"/cases/{case_id}/transfers/{water_id}/payments", {})

    combined = client.call("POST", f"/cases/{case_id}/payments", {})

    # Only one code can ever be paid for a debt: the water order is closed.
    assert client.call("GET", f"/payments/{single['payment_id']}")["status"] == "closed"
    # And a single order again closes the order for both.
    client.call("POST", f"/cases/{case_id}/transfers/{water_id}/payments", {})
    assert (
        client.call("GET", f"/payments/{combined['payment_id']}")["status"] == "closed"
    )
    orders = client.call("GET", f"/cases/{case_id}/payments")
    assert orders["total"] == 3
    assert [o["status"] for o in orders["items"]] == ["pending", "closed", "closed"]


def test_chosen_accounts_only(client, homes):
    case_id, transfers = _case(client, homes)
    power_id = transfers["power"]["transfer_id"]

    payment = client.call(
        "POST", f"/cases/{case_id}/payments", {"transfer_ids": [power_id]}
    )

    assert payment["amount_fen"] == 5250
    # An order for one account names it, as the per-account endpoint does.
    assert payment["transfer_id"] == power_id
    assert [s["transfer_id"] for s in payment["shares"]] == [power_id]


@pytest.mark.parametrize(
    ("choice", "status", "code"),
    [
        (lambda t: [t["gas"]["transfer_id"]], 409, "nothing_to_pay"),
        (lambda t: [2_000_000_000], 422, "unknown_transfer"),
        (lambda t: [t["water"]["transfer_id"]] * 2, 422, "duplicate_transfer"),
        (lambda t: [], 422, "validation_failed"),
        (lambda t: ["1"], 422, "validation_failed"),
    ],
    ids=["nothing_owed", "foreign_transfer", "twice", "empty", "text"],
)
def test_bad_choice_is_refused(client, homes, choice, status, code):
    case_id, transfers = _case(client, homes)

    response = citizen_request(
        client,
        "POST",
        f"/cases/{case_id}/payments",
        {"transfer_ids": choice(transfers)},
    )

    assert_error(response, status, code)
    assert client.call("GET", f"/cases/{case_id}/payments")["total"] == 0


@pytest.mark.parametrize(
    ("counter_fen", "refunded_fen"),
    [(3100, 3100), (1000, 1000), (1, 1), (3099, 3099), (9000, 3100)],
    ids=["whole_debt", "part", "one_fen", "all_but_one_fen", "more_than_debt"],
)
def test_counter_paid_part_refunded(
    client, homes, stack, app, counter_fen, refunded_fen
):
    """The water debt is paid at the counter after the order was made."""
    case_id, transfers = _case(client, homes)
    payment = client.call("POST", f"/cases/{case_id}/payments", {})
    water_account = transfers["water"]["account_no"]
    _counter(stack, "water", water_account, counter_fen)

    paid = _settled(client, payment)

    wait_until(lambda: _refunds_done(paid["payment_id"], 1))
    answer = client.call("GET", f"/payments/{paid['payment_id']}")
    shares = _shares_by_kind(answer, transfers)
    assert shares["water"]["applied_fen"] == 3100 - refunded_fen
    expected = "refunded" if refunded_fen == 3100 else "credited"
    assert shares["water"]["status"] == expected
    assert shares["power"]["applied_fen"] == 5250
    [refund] = answer["refunds"]
    assert refund["amount_fen"] == refunded_fen
    assert refund["transfer_id"] == transfers["water"]["transfer_id"]
    assert refund["status"] == "succeeded"
    assert answer["refunded_fen"] == refunded_fen
    if refunded_fen == 3100 + 5250:
        assert answer["status_label"] == "已支付，已全额退回"
    else:
        assert answer["status_label"] == f"已支付，已退回 ¥{refunded_fen / 100:.2f}"
    # The debt at the utility is settled once, not twice.
    assert sim_arrears(stack, "water", water_account) == 0
    # The provider returned exactly that much of the order.
    order = requests.get(
        stack.peers.wechatpay_url + f"/_sandbox/orders/{paid['out_trade_no']}",
        timeout=10,
    ).json()
    assert order["refunded_fen"] == refunded_fen
    water_events = TransferEvent.select().where(
        (TransferEvent.transfer == transfers["water"]["transfer_id"])
        & (TransferEvent.status == "overpaid_refunded")
    )
    assert [event.note for event in water_events] == [
        f"欠费已在服务机构结清，多缴金额原路退回（{refunded_fen / 100:.2f} 元）"
    ]
    # The refund is in the case's evidence, on the water transfer.
    [entry] = [
        entry
        for entry in evidence.case_entries(case_id)
        if entry["kind"] == evidence.REFUND
    ]
    assert entry["transfer_id"] == transfers["water"]["transfer_id"]
    detail = json.loads(entry["detail"])
    assert detail["amount_fen"] == refunded_fen
    assert detail["reason"] == "欠费已在服务机构结清"
    with app.app_context():
        assert evidence.verify_case(case_id) == len(evidence.case_entries(case_id))
    # The notice to the people on the case gives the amount.
    transfer = Transfer.get_by_id(transfers["water"]["transfer_id"])
    params = notifications._status_params(transfer, "refunded", None)
    assert params["status"] == "已退款"
    assert params["detail"] == f"多缴{refunded_fen / 100:.2f}元已原路退回"


def test_report_repeated_refunds_once(client, homes, stack, app):
    """A report sent again, as after a crash, refunds nothing more."""
    case_id, transfers = _case(client, homes)
    payment = client.call("POST", f"/cases/{case_id}/payments", {})
    _counter(stack, "water", transfers["water"]["account_no"], 3100)
    paid = _settled(client, payment)
    water_share = PaymentShare.get(
        (PaymentShare.payment == paid["payment_id"])
        & (PaymentShare.transfer == transfers["water"]["transfer_id"])
    )
    report = OutboxMessage.get(
        (OutboxMessage.kind == delivery.PAYMENT_REPORT)
        & (OutboxMessage.ref_id == water_share.id)
    )

    with app.app_context():
        delivery.handlers()[delivery.PAYMENT_REPORT](report)

    refunds = Refund.select().where(Refund.share == water_share)
    assert [refund.amount_fen for refund in refunds] == [3100]


def test_withdrawal_refunds_each_share_rest(client, homes, stack):
    case_id, transfers = _case(client, homes)
    payment = client.call("POST", f"/cases/{case_id}/payments", {})
    _counter(stack, "water", transfers["water"]["account_no"], 1000)
    paid = _settled(client, payment)
    wait_until(lambda: _refunds_done(paid["payment_id"], 1))

    client.call("POST", f"/cases/{case_id}/withdrawal", {"reason": "交易取消"})

    wait_until(lambda: _refunds_done(paid["payment_id"], 3))
    answer = client.call("GET", f"/payments/{paid['payment_id']}")
    by_transfer = {}
    for refund in answer["refunds"]:
        by_transfer.setdefault(refund["transfer_id"], []).append(refund["amount_fen"])
    assert by_transfer == {
        transfers["water"]["transfer_id"]: [1000, 2100],
        transfers["power"]["transfer_id"]: [5250],
    }
    assert answer["refunded_fen"] == answer["amount_fen"]
    assert answer["status_label"] == "已支付，已全额退回"
    assert {s["status"] for s in answer["shares"]} == {"refunded"}
    # Each account's timeline shows what went back.
    progress = client.call("GET", f"/cases/{case_id}/progress")
    kinds = {t["transfer_id"]: kind for kind, t in transfers.items()}
    notes = {
        kinds[t["transfer_id"]]: [
            e["note"] for e in t["events"] if e["status"] == "payment_refunded"
        ]
        for t in progress["transfers"]
    }
    assert notes == {
        "water": ["联办事项已撤回，已缴欠费原路退回（21.00 元）"],
        "power": ["联办事项已撤回，已缴欠费原路退回（52.50 元）"],
        "gas": [],
    }
    total = (
        Refund.select(fn.SUM(Refund.amount_fen))
        .where(Refund.payment == paid["payment_id"])
        .scalar()
    )
    assert total == 8350
    # The utilities put back what the payment had taken off each debt.
    reversals = OutboxMessage.select().where(
        OutboxMessage.kind == withdrawal.REVERSE_PAYMENT
    )
    wait_until(
        lambda: all(
            m.state == "done"
            for m in reversals.where(
                OutboxMessage.ref_id.in_(
                    [
                        s.id
                        for s in PaymentShare.select().where(
                            PaymentShare.payment == paid["payment_id"]
                        )
                    ]
                )
            )
        )
    )
    assert sim_arrears(stack, "water", transfers["water"]["account_no"]) == 2100
    assert sim_arrears(stack, "power", transfers["power"]["account_no"]) == 5250


class _Share:
    id = 1
    amount_fen = 3100


@pytest.mark.parametrize(
    "applied", [-1, 3101, "3100", 3100.0, True, [3100], {"fen": 1}]
)
def test_invalid_applied_amount_retried(applied):
    with pytest.raises(PartnerError):
        delivery._applied_fen({"applied_fen": applied}, _Share(), "water")


@pytest.mark.parametrize(("answer", "expected"), [({}, 3100), ({"applied_fen": 0}, 0)])
def test_applied_amount_read(answer, expected):
    assert delivery._applied_fen(answer, _Share(), "water") == expected


def test_concurrent_taps_leave_one_payable_order(client, homes):
    case_id, _ = _case(client, homes)

    def tap(_):
        return citizen_request(client, "POST", f"/cases/{case_id}/payments", {})

    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(pool.map(tap, range(8)))

    statuses = sorted(response.status_code for response in responses)
    assert set(statuses) <= {200, 201, 409}
    assert statuses.count(201) == 1
    for response in responses:
        if response.status_code == 409:
            assert_error(response, 409, "payment_in_flight")
    orders = client.call("GET", f"/cases/{case_id}/payments")
    assert [order["status"] for order in orders["items"]] == ["pending"]
    created = next(r.json() for r in responses if r.status_code == 201)
    reused = {r.json()["payment_id"] for r in responses if r.status_code == 200}
    assert reused <= {created["payment_id"]}


@pytest.mark.parametrize(
    ("first", "counter_fen"),
    [("single", 0), ("all", 0), ("single", 3100), ("all", 3100)],
    ids=["single_booked", "all_booked", "single_refunded", "all_refunded"],
)
def test_later_bill_is_paid_not_refunded(client, homes, stack, first, counter_fen):
    """A debt that comes after a booked payment is a new debt, whatever came before."""
    home, case_id, transfers = _home_case(client, homes)
    water = transfers["water"]
    if first == "single":
        path = f"/cases/{case_id}/transfers/{water['transfer_id']}/payments"
    else:
        path = f"/cases/{case_id}/payments"
    earlier = client.call("POST", path, {})
    if counter_fen:
        _counter(stack, "water", water["account_no"], counter_fen)
    _settled(client, earlier)
    _new_bill(stack, home, "water", 1000)

    later = client.call(
        "POST", f"/cases/{case_id}/transfers/{water['transfer_id']}/payments", {}
    )
    assert later["amount_fen"] == 1000
    paid = _settled(client, later)

    answer = client.call("GET", f"/payments/{paid['payment_id']}")
    [share] = answer["shares"]
    assert share["status"] == "credited"
    assert share["applied_fen"] == 1000
    assert answer["refunds"] == []
    assert sim_arrears(stack, "water", water["account_no"]) == 0
    [arrears] = [
        a
        for a in client.call("GET", f"/cases/{case_id}/arrears")
        if a["transfer_id"] == water["transfer_id"]
    ]
    assert arrears["state"] == "clear"


def test_second_order_for_debt_refunded(client, homes, stack, app):
    """Two orders open for the same unbooked debt, as after a lost close: the
    second payment to settle is refunded by itself."""
    case_id, transfers = _case(client, homes)
    water_id = transfers["water"]["transfer_id"]
    first = client.call("POST", f"/cases/{case_id}/transfers/{water_id}/payments", {})
    stored = Payment.get_by_id(first["payment_id"])
    second = Payment.create(
        case=case_id,
        provider="wechatpay",
        out_trade_no=payments.new_trade_no(),
        amount_fen=3100,
        description="test order",
        expires_at=stored.expires_at,
        status="pending",
    )
    PaymentShare.create(
        payment=second,
        transfer=water_id,
        amount_fen=3100,
        utility_payment_id=second.out_trade_no,
    )

    with app.app_context():
        outcomes = [
            settlement.settle(order, f"42{index:030d}", 3100, None)
            for index, order in enumerate((stored.out_trade_no, second.out_trade_no))
        ]

    assert outcomes == [settlement.CREDITED, settlement.REFUNDING]
    assert Payment.get_by_id(second.id).status == "paid_twice"
    [refund] = Refund.select().where(Refund.payment == second.id)
    assert refund.amount_fen == 3100
    assert refund.reason == "欠费已由另一笔缴费结清"


def test_order_over_limit_rejected(client, homes, app):
    limit = app.config["PAYMENT_MAX_FEN"]
    arrears = {"water": limit // 2 + 1, "power": limit // 2 + 1}
    case_id, transfers = _case(client, homes, arrears)

    response = citizen_request(client, "POST", f"/cases/{case_id}/payments", {})

    assert_error(response, 409, "amount_over_limit")
    assert "请分户缴纳" in response.json()["message"]
    assert client.call("GET", f"/cases/{case_id}/payments")["total"] == 0
    water_id = transfers["water"]["transfer_id"]
    single = client.call("POST", f"/cases/{case_id}/transfers/{water_id}/payments", {})
    assert single["amount_fen"] == limit // 2 + 1


def test_stalled_order_stops_blocking(client, homes, app):
    """An order left in `creating` by a process that died blocks new orders
    only until the sweep marks it failed."""
    case_id, transfers = _case(client, homes)
    stalled = Payment.create(
        case=case_id,
        provider="wechatpay",
        out_trade_no=payments.new_trade_no(),
        amount_fen=3100,
        description="test order",
        expires_at=utcnow(),
        status="creating",
        created_at=utcnow() - timedelta(minutes=11),
    )
    PaymentShare.create(
        payment=stalled,
        transfer=transfers["water"]["transfer_id"],
        amount_fen=3100,
        utility_payment_id=stalled.out_trade_no,
    )
    blocked = citizen_request(client, "POST", f"/cases/{case_id}/payments", {})
    assert_error(blocked, 409, "payment_in_flight")

    with app.app_context():
        assert payments.fail_stalled_orders() == 1

    assert Payment.get_by_id(stalled.id).status == "failed"
    created = citizen_request(client, "POST", f"/cases/{case_id}/payments", {})
    assert created.status_code == 201

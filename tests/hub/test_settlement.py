"""Each payment is credited once, whatever the provider sends and how often."""

from concurrent.futures import ThreadPoolExecutor

import requests

from models import OutboxMessage, Payment, Refund, TransferEvent
from models.base import utcnow
from tests.hub.flows import drive_to_submission
from tests.hub.notices import wechat_notification

NOTIFY = "/api/v1/payments/notify/wechatpay"


def _order(client, homes, arrears_fen=3100):
    home = homes.make(accounts=[("water", {"arrears_fen": arrears_fen})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    path = f"/cases/{case_id}/transfers/{transfer_id}/payments"
    return transfer_id, client.call("POST", path, {})


def _post(stack, headers, body):
    return requests.post(stack.hub_url + NOTIFY, data=body, headers=headers, timeout=30)


def test_fifty_copies_credit_once(client, homes, stack, app):
    transfer_id, payment = _order(client, homes)
    headers, body = wechat_notification(
        stack.peers.keys, payment["out_trade_no"], payment["amount_fen"]
    )

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: _post(stack, headers, body), range(50)))

    assert [r.status_code for r in responses] == [204] * 50
    assert Payment.get_by_id(payment["payment_id"]).status == "paid"
    credits = TransferEvent.select().where(
        (TransferEvent.transfer == transfer_id)
        & (TransferEvent.status == "arrears_paid")
    )
    assert credits.count() == 1
    reports = OutboxMessage.select().where(
        (OutboxMessage.kind == "report_payment")
        & (OutboxMessage.ref_id == payment["payment_id"])
    )
    assert reports.count() == 1


def test_amount_mismatch_is_flagged(client, homes, stack, app):
    transfer_id, payment = _order(client, homes, arrears_fen=5000)
    headers, body = wechat_notification(stack.peers.keys, payment["out_trade_no"], 1)

    response = _post(stack, headers, body)

    assert response.status_code == 204
    stored = Payment.get_by_id(payment["payment_id"])
    assert stored.status == "pending"
    assert stored.flag.startswith("amount_mismatch: provider reported 1 fen")
    assert (
        not TransferEvent.select()
        .where(
            (TransferEvent.transfer == transfer_id)
            & (TransferEvent.status == "arrears_paid")
        )
        .exists()
    )


def test_payment_on_closed_order_is_refunded(client, homes, stack, app):
    transfer_id, first = _order(client, homes)
    Payment.update(expires_at=utcnow()).where(
        Payment.id == first["payment_id"]
    ).execute()
    path = f"/cases/{_case_of(transfer_id)}/transfers/{transfer_id}/payments"
    second = client.call("POST", path, {})
    assert Payment.get_by_id(first["payment_id"]).status == "closed"

    headers, body = wechat_notification(
        stack.peers.keys, first["out_trade_no"], first["amount_fen"]
    )
    response = _post(stack, headers, body)

    assert response.status_code == 204
    late = Payment.get_by_id(first["payment_id"])
    assert late.status == "paid_late"
    assert late.transaction_id
    refund = Refund.get(Refund.payment == late.id)
    assert refund.amount_fen == first["amount_fen"]
    assert Payment.get_by_id(second["payment_id"]).status == "pending"


def _case_of(transfer_id):
    from models import Transfer

    return Transfer.get_by_id(transfer_id).case_id


def test_late_payment_refund_is_sent(client, homes, stack, app):
    import time

    transfer_id, first = _order(client, homes, arrears_fen=777)
    Payment.update(status="closed").where(Payment.id == first["payment_id"]).execute()
    headers, body = wechat_notification(
        stack.peers.keys, first["out_trade_no"], first["amount_fen"]
    )
    assert _post(stack, headers, body).status_code == 204
    # The sandbox must know the order as paid before it accepts a refund.
    client.pay_in_sandbox(first["code_url"])

    deadline = time.monotonic() + 15
    refund = Refund.get(Refund.payment == first["payment_id"])
    while refund.status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        refund = Refund.get_by_id(refund.id)

    # The sandbox answers PROCESSING first; the worker asks until it is done.
    assert refund.status == "succeeded"
    assert refund.done_at is not None
    assert refund.provider_refund_id
    order = requests.get(
        f"{stack.peers.wechatpay_url}/_sandbox/orders/{first['out_trade_no']}",
        timeout=10,
    ).json()
    assert order["trade_state"] in ("REFUND", "SUCCESS")

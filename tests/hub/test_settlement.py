"""Each payment is credited once, whatever the provider sends and how often."""

from concurrent.futures import ThreadPoolExecutor

import requests

from models import OutboxMessage, Payment, Refund, TransferEvent
from models.base import utcnow
from tests.hub.flows import drive_to_submission, share_ids
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
        & OutboxMessage.ref_id.in_(share_ids(payment["payment_id"]))
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
    # Paid in the sandbox first, because a provider accepts a refund only for
    # an order it knows as paid.
    client.pay_in_sandbox(first["code_url"])
    headers, body = wechat_notification(
        stack.peers.keys, first["out_trade_no"], first["amount_fen"]
    )
    assert _post(stack, headers, body).status_code == 204

    deadline = time.monotonic() + 15
    refund = Refund.get(Refund.payment == first["payment_id"])
    while refund.status != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.2)
        refund = Refund.get_by_id(refund.id)

    # The sandbox reports PROCESSING first, and the worker queries until SUCCESS.
    assert refund.status == "succeeded"
    assert refund.done_at is not None
    assert refund.provider_refund_id
    order = requests.get(
        f"{stack.peers.wechatpay_url}/_sandbox/orders/{first['out_trade_no']}",
        timeout=10,
    ).json()
    assert order["trade_state"] in ("REFUND", "SUCCESS")


def test_paid_pending_while_utility_unreachable(client, homes, stack, app):
    from models import Transfer, Utility

    transfer_id, payment = _order(client, homes, arrears_fen=4400)
    water = Utility.get(Utility.code == "water")
    working_url = water.base_url
    Utility.update(base_url="http://127.0.0.1:9/water").where(
        Utility.id == water.id
    ).execute()
    try:
        client.pay_in_sandbox(payment["code_url"])
        client.wait_for_payment(payment["payment_id"])
        case_id = Transfer.get_by_id(transfer_id).case_id
        [answer] = client.call("GET", f"/cases/{case_id}/arrears")
        assert answer["state"] == "paid_pending"
        assert answer["arrears_fen"] == 4400
        report = OutboxMessage.get(
            (OutboxMessage.kind == "report_payment")
            & OutboxMessage.ref_id.in_(share_ids(payment["payment_id"]))
        )
        assert report.state == "pending"
    finally:
        Utility.update(base_url=working_url).where(Utility.id == water.id).execute()

    OutboxMessage.update(next_attempt_at=utcnow()).where(
        OutboxMessage.id == report.id
    ).execute()
    import time

    deadline = time.monotonic() + 10
    while OutboxMessage.get_by_id(report.id).state != "done":
        assert time.monotonic() < deadline, "the payment report was never retried"
        time.sleep(0.2)
    [answer] = client.call("GET", f"/cases/{case_id}/arrears")
    assert answer["state"] == "clear"


def test_merchant_signed_notification_refused(client, homes, stack, app):
    _, payment = _order(client, homes)
    headers, body = wechat_notification(
        stack.peers.keys,
        payment["out_trade_no"],
        payment["amount_fen"],
        signing_key_path=stack.peers.keys.merchant_private_key_path,
    )

    response = _post(stack, headers, body)

    assert response.status_code == 401
    assert response.json()["code"] == "FAIL"
    assert Payment.get_by_id(payment["payment_id"]).status == "pending"


def test_unknown_serial_notification_refused(client, homes, stack, app):
    _, payment = _order(client, homes)
    headers, body = wechat_notification(
        stack.peers.keys, payment["out_trade_no"], payment["amount_fen"]
    )
    headers["Wechatpay-Serial"] = "0" * 40

    response = _post(stack, headers, body)

    assert response.status_code == 401
    assert Payment.get_by_id(payment["payment_id"]).status == "pending"


def test_both_wallets_paid_second_refunded(client, homes, stack, app):
    transfer_id, wechat = _order(client, homes, arrears_fen=2100)
    path = f"/cases/{_case_of(transfer_id)}/transfers/{transfer_id}/payments"
    alipay = client.call("POST", path, {"provider": "alipay"})
    requests.post(
        stack.peers.alipay_url + "/_sandbox/pay",
        json={"qr_code": alipay["code_url"]},
        timeout=10,
    ).raise_for_status()
    client.wait_for_payment(alipay["payment_id"])
    # The WeChat code was paid just before it was closed; its notice comes late.
    headers, body = wechat_notification(
        stack.peers.keys, wechat["out_trade_no"], wechat["amount_fen"]
    )

    assert _post(stack, headers, body).status_code == 204

    assert Payment.get_by_id(alipay["payment_id"]).status == "paid"
    assert Payment.get_by_id(wechat["payment_id"]).status == "paid_late"
    assert Refund.get(Refund.payment == wechat["payment_id"]).amount_fen == 2100
    credits = TransferEvent.select().where(
        (TransferEvent.transfer == transfer_id)
        & (TransferEvent.status == "arrears_paid")
    )
    assert credits.count() == 1

"""Paying arrears with Alipay, and switching wallets, through the hub."""

import requests

from models import Payment
from tests.hub.flows import drive_to_submission


def _transfer(client, homes, arrears_fen):
    home = homes.make(accounts=[("water", {"arrears_fen": arrears_fen})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    return case_id, f"/cases/{case_id}/transfers/{transfer_id}/payments"


def _alipay_pay(stack, qr_code):
    response = requests.post(
        stack.peers.alipay_url + "/_sandbox/pay", json={"qr_code": qr_code}, timeout=10
    )
    response.raise_for_status()


def test_alipay_pays_arrears(client, homes, stack, app):
    case_id, path = _transfer(client, homes, arrears_fen=12345)

    payment = client.call("POST", path, {"provider": "alipay"})
    assert payment["provider"] == "alipay"
    assert payment["amount_fen"] == 12345
    assert payment["code_url"].startswith("https://qr.alipay.com/")
    _alipay_pay(stack, payment["code_url"])
    settled = client.wait_for_payment(payment["payment_id"])

    assert settled["status"] == "paid"
    stored = Payment.get_by_id(payment["payment_id"])
    assert stored.transaction_id


def test_switching_wallet_closes_first_code(client, homes, stack, app):
    _, path = _transfer(client, homes, arrears_fen=2000)
    wechat = client.call("POST", path, {})

    alipay = client.call("POST", path, {"provider": "alipay"})

    assert alipay["payment_id"] != wechat["payment_id"]
    assert Payment.get_by_id(wechat["payment_id"]).status == "closed"
    order = requests.get(
        f"{stack.peers.wechatpay_url}/_sandbox/orders/{wechat['out_trade_no']}",
        timeout=10,
    ).json()
    assert order["trade_state"] == "CLOSED"


def test_unknown_wallet_rejected(client, homes):
    _, path = _transfer(client, homes, arrears_fen=500)

    response = client.session.post(
        client.api + path,
        json={"provider": "unionpay"},
        headers={"Authorization": f"Bearer {client.token}"},
        timeout=10,
    )

    assert response.status_code == 422
    assert response.json()["errors"]["json"]["provider"]


def test_forged_alipay_notification_refused(client, homes, stack, app):
    _, path = _transfer(client, homes, arrears_fen=900)
    payment = client.call("POST", path, {"provider": "alipay"})

    response = requests.post(
        stack.hub_url + "/api/v1/payments/notify/alipay",
        data={
            "out_trade_no": payment["out_trade_no"],
            "trade_status": "TRADE_SUCCESS",
            "total_amount": "9.00",
            "sign_type": "RSA2",
            "sign": "Zm9yZ2Vk",
        },
        timeout=10,
    )

    assert response.status_code == 400
    assert response.text == "fail"
    assert Payment.get_by_id(payment["payment_id"]).status == "pending"

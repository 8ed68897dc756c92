"""Payment orders: expiry, replacement and notifications that never arrive."""

import requests

from models import Payment
from models.base import utcnow
from tests.hub.flows import drive_to_submission


def _start(client, homes, arrears_fen=2500):
    home = homes.make(accounts=[("water", {"arrears_fen": arrears_fen})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    path = f"/cases/{case_id}/transfers/{transfer_id}/payments"
    return path, client.call("POST", path, {})


def _sandbox_order(stack, out_trade_no):
    response = requests.get(
        f"{stack.peers.wechatpay_url}/_sandbox/orders/{out_trade_no}", timeout=10
    )
    response.raise_for_status()
    return response.json()


def test_repeated_start_reuses_order(client, homes):
    path, first = _start(client, homes)

    second = client.call("POST", path, {})

    assert second["payment_id"] == first["payment_id"]
    assert second["code_url"] == first["code_url"]


def test_expired_order_closed_before_new(client, homes, stack, app):
    path, first = _start(client, homes)
    Payment.update(expires_at=utcnow()).where(
        Payment.id == first["payment_id"]
    ).execute()

    second = client.call("POST", path, {})

    assert second["payment_id"] != first["payment_id"]
    assert second["code_url"] != first["code_url"]
    assert Payment.get_by_id(first["payment_id"]).status == "closed"
    assert _sandbox_order(stack, first["out_trade_no"])["trade_state"] == "CLOSED"
    assert _sandbox_order(stack, second["out_trade_no"])["trade_state"] == "NOTPAY"


def test_lost_notification_settles_on_query(client, homes, stack, app):
    public_url = stack.app.config["PUBLIC_URL"]
    # The order's notification goes to a port where nothing listens.
    stack.app.config["PUBLIC_URL"] = "http://127.0.0.1:9"
    try:
        _, payment = _start(client, homes, arrears_fen=1234)
    finally:
        stack.app.config["PUBLIC_URL"] = public_url
    client.pay_in_sandbox(payment["code_url"])
    assert Payment.get_by_id(payment["payment_id"]).status == "pending"

    settled = client.call("GET", f"/payments/{payment['payment_id']}")

    assert settled["status"] == "paid"
    assert settled["amount_fen"] == 1234
    stored = Payment.get_by_id(payment["payment_id"])
    assert stored.transaction_id
    order = _sandbox_order(stack, payment["out_trade_no"])
    assert order["notification_accepted"] is False


def test_settled_debt_cannot_be_paid_again(client, homes):
    path, payment = _start(client, homes, arrears_fen=600)
    client.pay_in_sandbox(payment["code_url"])
    client.wait_for_payment(payment["payment_id"])

    response = client.session.post(
        client.api + path,
        json={},
        headers={"Authorization": f"Bearer {client.token}"},
        timeout=10,
    )

    assert response.status_code == 409
    assert response.json()["code"] in ("payment_settling", "nothing_to_pay")


def test_poll_settles_lost_notification(client, homes, stack, app):
    from services import payments

    public_url = stack.app.config["PUBLIC_URL"]
    stack.app.config["PUBLIC_URL"] = "http://127.0.0.1:9"
    try:
        _, payment = _start(client, homes, arrears_fen=4321)
    finally:
        stack.app.config["PUBLIC_URL"] = public_url
    client.pay_in_sandbox(payment["code_url"])

    queried = payments.poll_pending(min_age_seconds=0, limit=10_000)

    assert queried >= 1
    stored = Payment.get_by_id(payment["payment_id"])
    assert stored.status == "paid"
    assert stored.checked_at is not None
    assert payments.poll_pending(min_age_seconds=0, limit=10_000) == 0


def test_poll_closes_expired_unpaid_order(client, homes, stack, app):
    from services import payments

    _, payment = _start(client, homes)
    Payment.update(expires_at=utcnow()).where(
        Payment.id == payment["payment_id"]
    ).execute()

    payments.poll_pending(min_age_seconds=0, limit=10_000)

    assert Payment.get_by_id(payment["payment_id"]).status == "closed"
    assert _sandbox_order(stack, payment["out_trade_no"])["trade_state"] == "CLOSED"


def test_provider_down_leaves_no_open_order(client, homes, stack, app):
    home = homes.make(accounts=[("water", {"arrears_fen": 800})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    path = f"/cases/{case_id}/transfers/{transfer_id}/payments"
    gateway = stack.app.config["WECHATPAY_URL"]
    stack.app.config["WECHATPAY_URL"] = "http://127.0.0.1:9"
    try:
        response = client.session.post(
            client.api + path,
            json={},
            headers={"Authorization": f"Bearer {client.token}"},
            timeout=30,
        )
    finally:
        stack.app.config["WECHATPAY_URL"] = gateway

    assert response.status_code == 502
    assert response.json()["code"] == "payment_provider_error"
    orders = list(Payment.select().where(Payment.transfer == transfer_id))
    assert [order.status for order in orders] == ["failed"]

    retried = client.call("POST", path, {})
    assert retried["status"] == "pending"


def test_order_number_dated_in_china_time():
    """The wallets' bills run by China time, and so does the date in the number."""
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from services import payments

    china = ZoneInfo("Asia/Shanghai")
    before = datetime.now(china).strftime("%Y%m%d")
    number = payments.new_trade_no()
    after = datetime.now(china).strftime("%Y%m%d")

    assert number[2:10] in {before, after}

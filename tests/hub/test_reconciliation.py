"""Daily reconciliation of WeChat Pay's bill with the hub's payments."""

from datetime import datetime
from zoneinfo import ZoneInfo

from models import Payment
from services import reconciliation
from tests.hub.flows import drive_to_submission


def _paid_order(client, homes, stack, arrears_fen, notify=True):
    home = homes.make(accounts=[("water", {"arrears_fen": arrears_fen})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    public_url = stack.app.config["PUBLIC_URL"]
    if not notify:
        stack.app.config["PUBLIC_URL"] = "http://127.0.0.1:9"
    try:
        payment = client.call(
            "POST", f"/cases/{case_id}/transfers/{transfer_id}/payments", {}
        )
    finally:
        stack.app.config["PUBLIC_URL"] = public_url
    client.pay_in_sandbox(payment["code_url"])
    if notify:
        client.wait_for_payment(payment["payment_id"])
    return payment


def test_reconcile_lists_only_differences(client, homes, stack, app):
    booked = _paid_order(client, homes, stack, 1500)
    lost = _paid_order(client, homes, stack, 2600, notify=False)
    changed = _paid_order(client, homes, stack, 3700)
    Payment.update(amount_fen=3600).where(Payment.id == changed["payment_id"]).execute()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()

    differences = reconciliation.reconcile("wechatpay", today)

    by_reference = {d.reference: d for d in differences}
    assert booked["out_trade_no"] not in by_reference
    assert by_reference[lost["out_trade_no"]].kind == "paid_at_provider_only"
    assert "hub has pending" in by_reference[lost["out_trade_no"]].detail
    assert by_reference[changed["out_trade_no"]].kind == "amount_differs"
    assert by_reference[changed["out_trade_no"]].detail == "bill 3700 fen, hub 3600 fen"


def test_reconcile_alipay_bill(client, homes, stack, app):
    import requests

    home = homes.make(accounts=[("water", {"arrears_fen": 5150})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    payment = client.call(
        "POST",
        f"/cases/{case_id}/transfers/{transfer_id}/payments",
        {"provider": "alipay"},
    )
    requests.post(
        stack.peers.alipay_url + "/_sandbox/pay",
        json={"qr_code": payment["code_url"]},
        timeout=10,
    ).raise_for_status()
    client.wait_for_payment(payment["payment_id"])
    Payment.update(status="pending", paid_at=None).where(
        Payment.id == payment["payment_id"]
    ).execute()
    today = datetime.now(ZoneInfo("Asia/Shanghai")).date()

    differences = reconciliation.reconcile("alipay", today)

    by_reference = {d.reference: d for d in differences}
    assert by_reference[payment["out_trade_no"]].kind == "paid_at_provider_only"
    assert "5150 fen" in by_reference[payment["out_trade_no"]].detail

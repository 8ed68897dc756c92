"""Steps of the citizen flow shared by the hub tests."""

import json
import random
import re

import requests

from partners.signing import sign_request

ERROR_KEYS = {"status", "code", "message", "request_id", "errors"}
CHINESE = re.compile(r"[\u4e00-\u9fff]")


def drive_to_submission(client, scenario):
    """Log in as the buyer, open the case, confirm and accept every account."""
    client.login(scenario.buyer)
    case = client.call("POST", "/cases", {"business_no": scenario.business_no})
    for account in client.call("GET", f"/cases/{case['case_id']}/accounts"):
        path = f"/cases/{case['case_id']}/transfers/{account['transfer_id']}"
        client.call("POST", f"{path}/confirmation", {})
        agreement = client.call("GET", f"/agreements/{account['service_org']}")
        client.call("POST", f"{path}/agreement", {"version": agreement["version"]})
    return case["case_id"]


def submit_and_register(client, home, wait=True):
    """Submit the home's case and have the registry complete the business.

    Returns the case's progress, after every transfer is final when `wait`.
    """
    from demo import scenarios

    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    if wait:
        return client.wait_until_final(case_id)
    return client.call("GET", f"/cases/{case_id}/progress")


def new_business(homes):
    """Return a business number and registry body that no test has sent yet."""
    serial = random.randrange(10**10)
    buyer = homes.person()
    seller = homes.person()
    business_no = f"BI{serial:010d}"
    payload = {
        "business_type": "二手房买卖",
        "registration_status": "accepted",
        "certificate_no": f"鲁(2026)济南市不动产权第{serial % 10**7:07d}号",
        "unit_code": f"370102001001GB{serial % 10**5:05d}F{serial % 10**8:08d}",
        "location": f"历下区燕子山路2号{serial % 100}号楼1单元101",
        "usage": "住宅",
        "building_area": "88.50",
        "inner_area": "70.10",
        "owners": [buyer.as_party()],
        "previous_owners": [seller.as_party()],
    }
    return business_no, payload


def signed_call(
    stack,
    partner,
    method,
    path,
    body=None,
    headers=None,
    message_id=None,
    secret=None,
    now=None,
):
    """Call the hub as a partner system, signing with that partner's secret.

    `secret` replaces the partner's own secret and `now` the signing time, so
    tests can send a wrong or stale signature. `headers` override the signed
    ones.
    """
    if secret is None and partner == "registry":
        secret = stack.registry_secret
    elif secret is None:
        secret = stack.peers.keys.utility_secret(partner)
    raw = (
        b""
        if body is None
        else (
            body
            if isinstance(body, bytes)
            else json.dumps(body, ensure_ascii=False).encode()
        )
    )
    full_path = "/api/v1" + path
    signed = sign_request(partner, secret, method, full_path, raw, message_id, now)
    signed["Content-Type"] = "application/json"
    signed.update(headers or {})
    return requests.request(
        method, stack.hub_url + full_path, data=raw or None, headers=signed, timeout=10
    )


def transfer_by_org(progress, utility_kind_name):
    return next(
        t for t in progress["transfers"] if utility_kind_name in t["service_org"]
    )


def citizen_request(client, method, path, body=None, token=None):
    """Send one request as the client's citizen and return the raw response.

    A `bytes` body is sent as it is, labelled as JSON, and any other body is
    encoded as JSON. `token` replaces the client's access token.
    """
    token = token or client.token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    if isinstance(body, bytes):
        headers["Content-Type"] = "application/json"
        return client.session.request(
            method, client.api + path, data=body, headers=headers, timeout=10
        )
    return client.session.request(
        method, client.api + path, json=body, headers=headers, timeout=10
    )


def assert_error(response, status, code):
    """Check that `response` is the API's error shape with `status` and `code`.

    Returns the decoded body, so that the caller can check `errors`.
    """
    assert response.status_code == status, response.text[:500]
    assert response.headers["Content-Type"].startswith("application/json")
    body = response.json()
    assert set(body) <= ERROR_KEYS, body
    assert body["status"] == status
    assert body["code"] == code, body
    assert CHINESE.search(body["message"]), body["message"]
    assert isinstance(body["request_id"], str)
    assert body["request_id"]
    assert isinstance(body.get("errors", {}), dict)
    return body


def error_at(body, *keys):
    """Return the messages under `errors` at the path `keys`, or None."""
    node = body.get("errors")
    for key in keys:
        if not isinstance(node, dict) or str(key) not in node:
            return None
        node = node[str(key)]
    return node


def share_ids(payment_id):
    """Return the ids of a payment's shares, which its reports and reversals name."""
    from models import PaymentShare

    return [
        share.id
        for share in PaymentShare.select()
        .where(PaymentShare.payment == payment_id)
        .order_by(PaymentShare.id)
    ]

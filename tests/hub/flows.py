"""Steps of the citizen flow shared by the hub tests."""

import json

import requests

from partners.signing import sign_request


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


def signed_call(stack, partner, method, path, body=None, headers=None, message_id=None):
    """Call the hub as a partner system, signing with that partner's secret."""
    if partner == "registry":
        secret = stack.registry_secret
    else:
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
    signed = sign_request(partner, secret, method, full_path, raw, message_id)
    signed["Content-Type"] = "application/json"
    signed.update(headers or {})
    return requests.request(
        method, stack.hub_url + full_path, data=raw or None, headers=signed, timeout=10
    )


def transfer_by_org(progress, utility_kind_name):
    return next(
        t for t in progress["transfers"] if utility_kind_name in t["service_org"]
    )

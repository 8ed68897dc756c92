"""An HTTP client that drives the hub as the mini-program and the registry do."""

import json
import time

import requests

from partners.signing import sign_request


class HubError(Exception):
    def __init__(self, response):
        self.status = response.status_code
        try:
            self.body = response.json()
        except ValueError:
            self.body = {"raw": response.text[:200]}
        super().__init__(f"HTTP {self.status}: {self.body}")


class HubClient:
    def __init__(self, hub_url, idp_url, wechatpay_url, registry_secret, timeout=15):
        self.api = hub_url.rstrip("/") + "/api/v1"
        self.idp_url = idp_url
        self.wechatpay_url = wechatpay_url
        self.registry_secret = registry_secret
        self.session = requests.Session()
        self.timeout = timeout
        self.token = None

    def call(self, method, path, body=None, expect=(200, 201)):
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        response = self.session.request(
            method, self.api + path, json=body, headers=headers, timeout=self.timeout
        )
        if response.status_code not in expect:
            raise HubError(response)
        if response.headers.get("Content-Type", "").startswith("application/json"):
            return response.json()
        return response.content

    def put_business(self, business_no, payload):
        """Create or update a business as the registry does, signed."""
        body = json.dumps(payload, ensure_ascii=False).encode()
        path = f"/api/v1/registry/businesses/{business_no}"
        headers = sign_request("registry", self.registry_secret, "PUT", path, body)
        headers["Content-Type"] = "application/json"
        response = self.session.put(
            self.api + f"/registry/businesses/{business_no}",
            data=body,
            headers=headers,
            timeout=self.timeout,
        )
        if response.status_code not in (200, 201):
            raise HubError(response)
        return response.json()

    def login(self, person):
        """Get a login code from the identity sandbox and log in with it."""
        response = self.session.post(
            self.idp_url + "/_sandbox/codes",
            json={
                "name": person.name,
                "id_type": person.id_type,
                "id_number": person.id_number,
                "phone": person.phone,
            },
            timeout=self.timeout,
        )
        response.raise_for_status()
        self.token = None
        pair = self.call(
            "POST", "/auth/miniprogram-login", {"code": response.json()["code"]}
        )
        self.token = pair["access_token"]
        return pair

    def staff_login(self, username, password):
        """Log in as a staff member with a username and password."""
        self.token = None
        pair = self.call(
            "POST", "/auth/login", {"username": username, "password": password}
        )
        self.token = pair["access_token"]
        return pair

    def pay_in_sandbox(self, code_url):
        """Pay an order in the WeChat Pay sandbox, in place of a phone scanning it."""
        response = self.session.post(
            self.wechatpay_url + "/_sandbox/pay",
            json={"code_url": code_url},
            timeout=self.timeout,
        )
        response.raise_for_status()
        return response.json()

    def wait_for_payment(self, payment_id, seconds=15):
        deadline = time.monotonic() + seconds
        while True:
            payment = self.call("GET", f"/payments/{payment_id}")
            if payment["status"] != "pending" or time.monotonic() > deadline:
                return payment
            time.sleep(0.2)

    def wait_until_final(self, case_id, seconds=30, poke=None):
        """Poll the progress until every transfer is 办结 or 退件."""
        deadline = time.monotonic() + seconds
        while True:
            progress = self.call("GET", f"/cases/{case_id}/progress")
            statuses = [t["status"] for t in progress["transfers"]]
            if all(s in ("completed", "returned") for s in statuses):
                return progress
            if time.monotonic() > deadline:
                return progress
            if poke:
                poke()
            time.sleep(0.3)

import json
import requests
from tests.hub.flows import signed_call, drive_to_submission
from demo import scenarios


def test_probe(client, homes, stack, app):
    home = homes.make(accounts=[("water", {})])
    payload = scenarios.business_payload(home, "accepted")
    base = stack.hub_url + "/api/v1"
    def show(label, r):
        print(label, r.status_code, r.text[:400])
    show("malformed reg", signed_call(stack, "registry", "PUT", f"/registry/businesses/{home.business_no}", b"{bad"))
    p = dict(payload, extra=1)
    show("unknown top", signed_call(stack, "registry", "PUT", f"/registry/businesses/{home.business_no}", p))
    p = json.loads(json.dumps(payload)); p["owners"][0]["nick"] = "x"
    show("unknown nested", signed_call(stack, "registry", "PUT", f"/registry/businesses/{home.business_no}", p))
    p = dict(payload, building_area="1e400")
    show("area 1e400", signed_call(stack, "registry", "PUT", f"/registry/businesses/X{home.business_no}", p))
    p = dict(payload, building_area="123456789012345")
    show("area big", signed_call(stack, "registry", "PUT", f"/registry/businesses/Y{home.business_no}", p))
    p = dict(payload, certificate_no="鲁(2023)济南市不动产权" + "甲" * 60 + "第0001234号")
    show("cert long", signed_call(stack, "registry", "PUT", f"/registry/businesses/Z{home.business_no}", p))
    show("long msgid", signed_call(stack, "registry", "PUT", f"/registry/businesses/{home.business_no}", payload, message_id="m" * 100))
    show("bad bno", signed_call(stack, "registry", "PUT", "/registry/businesses/a%20b", payload))
    r = requests.post(base + "/auth/miniprogram-login", data=b"{x", headers={"Content-Type": "application/json"})
    show("login malformed", r)
    r = requests.post(base + "/auth/miniprogram-login", data=b"{}", headers={"Content-Type": "text/plain"})
    show("login text/plain", r)
    r = requests.post(base + "/auth/miniprogram-login", json={"code": 5})
    show("login int", r)
    r = requests.post(base + "/auth/miniprogram-login", json=[1])
    show("login list", r)
    r = requests.get(base + "/agreements/nope")
    show("agreement unknown", r)
    for tid in ("99999999999999999999", "²", "abc"):
        show("fb " + tid, signed_call(stack, "water", "POST", "/partner/feedback", {"transfer_id": tid, "account_no": "x", "status": "办结"}))
    client.login(home.buyer)
    h = {"Authorization": f"Bearer {client.token}"}
    show("huge case", requests.get(base + "/cases/99999999999999999999", headers=h))
    show("huge case2", requests.get(base + "/cases/3000000000", headers=h))
    show("huge payment", requests.get(base + "/payments/99999999999999999999/qr.png", headers=h))
    show("cases malformed", requests.post(base + "/cases", data=b"{", headers=dict(h, **{"Content-Type": "application/json"})))
    show("cases no body", requests.post(base + "/cases", headers=h))
    show("cases null", requests.post(base + "/cases", data=b"null", headers=dict(h, **{"Content-Type": "application/json"})))

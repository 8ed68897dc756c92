"""The same request sent many times at once creates one thing."""

from concurrent.futures import ThreadPoolExecutor

from demo import scenarios
from demo.client import HubClient
from models import Case, Payment
from tests.hub.flows import drive_to_submission, signed_call

COPIES = 6


def _clients(stack, person, count):
    clients = []
    for _ in range(count):
        client = HubClient(
            stack.hub_url,
            stack.peers.idp_url,
            stack.peers.wechatpay_url,
            stack.registry_secret,
        )
        client.login(person)
        clients.append(client)
    return clients


def _post_all(clients, path, body):
    def post(client):
        return client.session.post(
            client.api + path,
            json=body,
            headers={"Authorization": f"Bearer {client.token}"},
            timeout=30,
        )

    with ThreadPoolExecutor(max_workers=len(clients)) as pool:
        return list(pool.map(post, clients))


def test_parallel_open_case_one_case(stack, homes, app):
    home = homes.make(accounts=[("water", {})])
    clients = _clients(stack, home.buyer, COPIES)

    responses = _post_all(clients, "/cases", {"business_no": home.business_no})

    assert sorted(r.status_code for r in responses) == [200] * (COPIES - 1) + [201]
    assert len({r.json()["case_id"] for r in responses}) == 1
    business_cases = Case.select().where(Case.id == responses[0].json()["case_id"])
    assert business_cases.count() == 1


def test_parallel_registry_put_one_business(stack, homes):
    home = homes.make(accounts=[("water", {})])
    home.business_no = home.business_no + "P"
    payload = scenarios.business_payload(home, "accepted")

    def put(_):
        return signed_call(
            stack,
            "registry",
            "PUT",
            f"/registry/businesses/{home.business_no}",
            payload,
        )

    with ThreadPoolExecutor(max_workers=COPIES) as pool:
        responses = list(pool.map(put, range(COPIES)))

    assert sorted(r.status_code for r in responses) == [200] * (COPIES - 1) + [201]


def test_parallel_payment_one_open_order(stack, homes, app, client):
    home = homes.make(accounts=[("water", {"arrears_fen": 990})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    clients = _clients(stack, home.buyer, COPIES)

    responses = _post_all(
        clients, f"/cases/{case_id}/transfers/{transfer_id}/payments", {}
    )

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 201, 409}
    assert statuses.count(201) == 1
    orders = {r.json()["payment_id"] for r in responses if r.status_code < 300}
    assert len(orders) == 1
    for response in responses:
        if response.status_code == 409:
            assert response.json()["code"] == "payment_in_flight"
    open_orders = Payment.select().where(
        (Payment.transfer == transfer_id) & Payment.status.in_(["creating", "pending"])
    )
    assert open_orders.count() == 1


def test_start_while_paying_never_charges_twice(stack, homes, app, client):
    """Starting payments while the first order is being paid gives no new order."""
    home = homes.make(accounts=[("water", {"arrears_fen": 1234})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    path = f"/cases/{case_id}/transfers/{transfer_id}/payments"
    first = client.call("POST", path, {})
    clients = _clients(stack, home.buyer, COPIES)

    with ThreadPoolExecutor(max_workers=COPIES + 1) as pool:
        paying = pool.submit(client.pay_in_sandbox, first["code_url"])
        responses = [
            pool.submit(
                lambda c: c.session.post(
                    c.api + path,
                    json={},
                    headers={"Authorization": f"Bearer {c.token}"},
                    timeout=30,
                ),
                c,
            )
            for c in clients * 3
        ]
        paying.result()
        responses = [future.result() for future in responses]

    client.wait_for_payment(first["payment_id"])
    for response in responses:
        assert response.status_code in (200, 201, 409), response.text
        if response.status_code < 300:
            assert response.json()["payment_id"] == first["payment_id"]
    payable = Payment.select().where(
        (Payment.transfer == transfer_id)
        & Payment.status.in_(["creating", "pending", "paid"])
    )
    assert payable.count() == 1

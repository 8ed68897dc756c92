"""Requests that write while others read and write at the same time."""

from concurrent.futures import ThreadPoolExecutor

from demo.client import HubClient
from tests.hub.flows import drive_to_submission


def _client_for(stack, home):
    client = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    client.login(home.buyer)
    return client


def test_parallel_reads_that_write(stack, homes):
    """GET arrears and accounts store what the utility returned; none may fail."""
    first = homes.make(accounts=[("water", {"arrears_fen": 300}), ("gas", {})])
    second = homes.make(accounts=[("heat", {}), ("power", {})])
    clients = [_client_for(stack, first), _client_for(stack, second)]
    case_ids = [
        clients[0].call("POST", "/cases", {"business_no": first.business_no})[
            "case_id"
        ],
        clients[1].call("POST", "/cases", {"business_no": second.business_no})[
            "case_id"
        ],
    ]

    def poll(index):
        client = _client_for(stack, (first, second)[index % 2])
        case_id = case_ids[index % 2]
        statuses = []
        for round_no in range(8):
            path = "arrears" if round_no % 2 else "accounts"
            response = client.session.get(
                f"{client.api}/cases/{case_id}/{path}",
                headers={"Authorization": f"Bearer {client.token}"},
                timeout=30,
            )
            statuses.append(response.status_code)
        return statuses

    with ThreadPoolExecutor(max_workers=6) as pool:
        results = list(pool.map(poll, range(6)))

    assert [s for statuses in results for s in statuses] == [200] * 48


def test_parallel_payment_and_polling(stack, homes):
    home = homes.make(accounts=[("water", {"arrears_fen": 700})])
    client = _client_for(stack, home)
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}/arrears")[0]["transfer_id"]
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{transfer_id}/payments", {}
    )

    def poll(_):
        poller = _client_for(stack, home)
        return [
            poller.session.get(
                f"{poller.api}/cases/{case_id}/arrears",
                headers={"Authorization": f"Bearer {poller.token}"},
                timeout=30,
            ).status_code
            for _ in range(10)
        ]

    with ThreadPoolExecutor(max_workers=4) as pool:
        polls = pool.map(poll, range(3))
        client.pay_in_sandbox(payment["code_url"])
        settled = client.wait_for_payment(payment["payment_id"])
        statuses = [s for batch in polls for s in batch]

    assert settled["status"] == "paid"
    assert statuses == [200] * 30

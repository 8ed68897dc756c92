"""Logs of a whole case hold no names, ID numbers or phone numbers."""

import logging
from pathlib import Path

from demo import scenarios
from tests.hub.flows import drive_to_submission


def test_case_logs_hold_no_personal_data(client, homes, stack, caplog):
    caplog.set_level(logging.DEBUG)
    first_owner = homes.person()
    home = homes.make(
        accounts=[("water", {"arrears_fen": 500}), ("gas", {"holder": first_owner})]
    )
    case_id = drive_to_submission(client, home)
    water = client.call("GET", f"/cases/{case_id}/arrears")[0]
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{water['transfer_id']}/payments", {}
    )
    client.pay_in_sandbox(payment["code_url"])
    client.wait_for_payment(payment["payment_id"])
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    client.wait_until_final(case_id)

    people = [home.buyer, *home.sellers, first_owner]
    secrets = [p.id_number for p in people] + [p.phone for p in people]
    secrets += [p.name for p in people]
    peer_logs = "".join(
        path.read_text(errors="replace")
        for path in Path(stack.peers.workdir, "logs").glob("*.log")
    )
    # The scan means something only if the hub's and the peers' lines are there.
    assert f"case={case_id}" in caplog.text
    assert "push delivered" in caplog.text
    assert home.accounts[0].account_no in peer_logs
    for value in secrets:
        assert value not in caplog.text
        assert value not in peer_logs


def test_malformed_request_line_logs_no_query(stack, caplog):
    import logging
    import socket
    from urllib.parse import urlsplit

    caplog.set_level(logging.DEBUG)
    number = "370102199705188289"
    address = urlsplit(stack.hub_url)
    # 核 is E6 A0 B8 in UTF-8; the A0 byte splits the request line, which the
    # server then rejects as malformed and logs.
    line = f"GET /api/v1/lookup/cases?id_number={number}&reason=".encode()
    with socket.create_connection((address.hostname, address.port), timeout=5) as sock:
        sock.sendall(line + "核对".encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = sock.recv(4096)

    assert b" 400 " in answer.split(b"\r\n")[0]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "Bad request" in logged
    assert number not in logged

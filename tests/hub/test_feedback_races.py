"""Final reports for one case arriving together still close the case."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from models import Case, Transfer
from tests.hub.flows import signed_call


def case_in_progress(client, homes):
    """Open a case with water and gas accounts whose transfers are in progress."""
    home = homes.make(accounts=[("water", {}), ("gas", {})])
    client.login(home.buyer)
    case = client.call("POST", "/cases", {"business_no": home.business_no})
    Transfer.update(status="in_progress").where(
        Transfer.case == case["case_id"]
    ).execute()
    Case.update(status="in_progress").where(Case.id == case["case_id"]).execute()
    return case


@pytest.mark.parametrize("round_no", range(5))
def test_simultaneous_final_reports_close_the_case(stack, client, homes, round_no):
    case = case_in_progress(client, homes)
    reports = [
        (
            "water" if "水务" in t["service_org"] else "gas",
            {
                "transfer_id": str(t["transfer_id"]),
                "account_no": t["account_no"],
                "status": "办结",
            },
        )
        for t in case["transfers"]
    ]

    with ThreadPoolExecutor(2) as pool:
        answers = list(
            pool.map(
                lambda pair: signed_call(
                    stack, pair[0], "POST", "/partner/feedback", pair[1]
                ),
                reports,
            )
        )

    assert [a.status_code for a in answers] == [200, 200]
    assert Case.get_by_id(case["case_id"]).status == "closed"

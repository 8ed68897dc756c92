"""The public list of utilities, from which a page offers the choice."""

import requests

from domain.utilities import UTILITIES
from models import Utility


def test_every_utility_listed(stack, app):
    response = requests.get(stack.hub_url + "/api/v1/utilities", timeout=10)

    assert response.status_code == 200
    listed = {item["code"]: item for item in response.json()}
    stored = {utility.code: utility for utility in Utility.select()}
    assert set(listed) == set(stored)
    for info in UTILITIES:
        item = listed[info.code]
        assert item["service_org"] == info.service_org
        assert item["kind"] == info.kind
        assert item["connection"] == info.connection
        assert item["pays_online"] is (info.connection == "system")
        expected_days = (
            stored[info.code].service_days or app.config["TRANSFER_SERVICE_DAYS"]
        )
        assert item["service_days"] == expected_days


def test_listed_name_opens_the_agreement(stack):
    listed = requests.get(stack.hub_url + "/api/v1/utilities", timeout=10).json()

    for item in listed:
        agreement = requests.get(
            stack.hub_url + f"/api/v1/agreements/{item['service_org']}", timeout=10
        )
        assert agreement.status_code == 200
        assert agreement.json()["service_org"] == item["service_org"]

"""The hub with its peers as real processes, on SQLite or PostgreSQL.

`LIANBAN_TEST_DATABASE_URL` picks the database; unset, each run uses a fresh
SQLite file. A PostgreSQL database is emptied before the run.
`LIANBAN_TEST_REDIS_URL` moves the queue and the rate limits to Redis; unset,
they live in a SQLite file and in memory.
"""

import itertools
import os
import random
import uuid

import pytest
import requests
from playhouse.db_url import connect

from demo import scenarios
from demo.client import HubClient
from demo.stack import start_stack
from models.db import database
from services import catalog
from services import staff as staff_service

_serial = itertools.count(1)


def _empty_database(url):
    db = connect(url)
    with db:
        for table in db.get_tables():
            db.execute_sql(f'DROP TABLE IF EXISTS "{table}" CASCADE')


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    # Every test logs in from 127.0.0.1, so the per-address login limit is
    # lifted here and tested on an app of its own.
    config = {
        "PAYMENT_TTL_SECONDS": 900,
        "LOGIN_ADDRESS_RATE_LIMIT": "100000 per minute",
        # Strong hashing costs about 0.1 s a login; the tests log in hundreds
        # of staff, and the argon2id format is the same at any cost.
        "PASSWORD_HASH_PROFILE": "CHEAPEST",
    }
    url = os.environ.get("LIANBAN_TEST_DATABASE_URL")
    if url:
        _empty_database(url)
        config["DATABASE_URL"] = url
    redis_url = os.environ.get("LIANBAN_TEST_REDIS_URL")
    if redis_url:
        # The queue and the rate-limit counters live in Redis, as in
        # production; the run's own names keep runs apart.
        run = uuid.uuid4().hex[:12]
        config["QUEUE_URL"] = redis_url
        config["QUEUE_NAME"] = f"lianban-test-{run}"
        config["RATE_LIMIT_STORAGE_URL"] = redis_url
        config["RATELIMIT_KEY_PREFIX"] = f"lianban-test-{run}"
    running = start_stack(
        tmp_path_factory.mktemp("hub"), config=config, feedback_delay=0.2
    )
    yield running
    running.stop()


@pytest.fixture
def app(stack):
    with stack.app.app_context():
        database.connect(reuse_if_open=True)
        yield stack.app
        if not database.is_closed():
            database.close()


@pytest.fixture
def client(stack):
    return HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )


class Homes:
    """Makes a home for one test: people, accounts at the utilities, a business."""

    def __init__(self, stack, app):
        self.stack = stack
        self.app = app
        self.people = scenarios.PeopleFactory(random.randrange(1 << 30))

    def person(self):
        return self.people.person("370102")

    def make(
        self,
        accounts=(("water", {}),),
        linked=True,
        status="accepted",
        business_type="二手房买卖",
        sellers=None,
        buyer=None,
        co_owners=(),
    ):
        """Register a business whose unit has `accounts`; return a Scenario."""
        serial = next(_serial)
        buyer = buyer or self.person()
        sellers = sellers if sellers is not None else [self.person()]
        scenario = scenarios.Scenario(
            key=f"t{serial}",
            title="test home",
            business_no=f"T{random.randrange(10**8):08d}{serial:05d}",
            business_type=business_type,
            unit_code=f"370102001001GB{random.randrange(10**5):05d}F"
            f"{serial % 10000:04d}{random.randrange(10**4):04d}",
            location=f"历下区燕子山路2号{serial}号楼1单元101",
            community_address=f"燕子山小区{serial}-1-101",
            building_area="88.50",
            inner_area="70.10",
            certificate_no=f"鲁(2026)济南市不动产权第{serial:07d}号",
            buyer=buyer,
            sellers=sellers,
            co_owners=list(co_owners),
        )
        for utility, options in accounts:
            holder = options.pop("holder", None) or (sellers[0] if sellers else buyer)
            scenario.accounts.append(
                scenarios.Account(
                    utility,
                    self.people.account_no(utility),
                    holder,
                    linked=options.pop("linked", linked),
                    **options,
                )
            )
        self.install(scenario)
        client = HubClient(
            self.stack.hub_url,
            self.stack.peers.idp_url,
            self.stack.peers.wechatpay_url,
            self.stack.registry_secret,
        )
        client.put_business(
            scenario.business_no, scenarios.business_payload(scenario, status)
        )
        return scenario

    def install(self, scenario):
        response = requests.post(
            self.stack.peers.utility_sim_url + "/_sim/accounts",
            json=scenarios.simulator_accounts([scenario]),
            timeout=10,
        )
        response.raise_for_status()
        catalog.link_accounts(scenarios.account_links([scenario]))


@pytest.fixture
def homes(stack, app):
    return Homes(stack, app)


STAFF_PASSWORD = "Test-password-2026"


class Staffing:
    """Makes organisations and staff for one test, each logged in as a client."""

    def __init__(self, stack, app):
        self.stack = stack
        self.app = app
        self.people = scenarios.PeopleFactory(random.randrange(1 << 30))

    def organisation(self, kind, utility=None):
        serial = next(_serial)
        credit_code = None
        if kind == "agency":
            credit_code = self.people.developer("x").id_number
        return staff_service.create_organisation(
            kind, f"{kind}-{serial}-{random.randrange(10**6)}", credit_code, utility
        )

    def member(self, role, organisation=None, utility="water", login=True):
        """Create a staff member of `role`; return (staff, logged-in client)."""
        kinds = {
            "agent": "agency",
            "service": "service_desk",
            "window": "registry_window",
            "utility": "utility",
            "admin": "operator",
        }
        organisation = organisation or self.organisation(kinds[role], utility)
        username = f"{role}{next(_serial)}x{random.randrange(10**6)}"
        member, _ = staff_service.create_staff(
            username,
            role,
            organisation,
            self.people.person("370102").name,
            STAFF_PASSWORD,
        )
        client = HubClient(
            self.stack.hub_url,
            self.stack.peers.idp_url,
            self.stack.peers.wechatpay_url,
            self.stack.registry_secret,
        )
        if login:
            client.staff_login(username, STAFF_PASSWORD)
        return member, client


@pytest.fixture
def staffing(stack, app):
    return Staffing(stack, app)


@pytest.fixture
def sim(stack):
    """The utility simulator's sandbox endpoints."""
    base = stack.peers.utility_sim_url

    class Simulator:
        def collect(self, code):
            requests.post(f"{base}/_sim/collect/{code}", timeout=10).raise_for_status()

        def transfers(self):
            return requests.get(f"{base}/_sim/transfers", timeout=10).json()

    return Simulator()

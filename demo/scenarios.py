"""Demo cases on real Jinan places; people, numbers and accounts are made up."""

import csv
import random
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

from domain.identifiers import credit_code_check_char, resident_id_check_char

COMMUNITIES = Path(__file__).parent / "data" / "communities.csv"

DISTRICT_CODES = {
    "历下区": "370102",
    "市中区": "370103",
    "槐荫区": "370104",
    "天桥区": "370105",
    "历城区": "370112",
    "长清区": "370113",
    "章丘区": "370114",
    "济阳区": "370115",
    "莱芜区": "370116",
    "钢城区": "370117",
    "平阴县": "370124",
    "商河县": "370126",
}

SURNAMES = (
    "王李张刘陈杨赵黄周吴徐孙胡朱高林何郭马罗梁宋郑谢韩唐冯于董萧程曹袁邓许傅沈曾彭吕"
)
GIVEN = "伟芳娜敏静丽强磊军洋勇艳杰娟涛明超秀霞平刚桂英华玉兰红建国志文"

ACCOUNT_PREFIX = {
    "water": "SW",
    "power": "DL",
    "laiwu-power": "LW",
    "gas": "RQ",
    "heat": "RL",
    "tv": "GD",
}


def read_communities():
    with COMMUNITIES.open(encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass
class Person:
    name: str
    id_type: str
    id_number: str
    phone: str | None = None

    def as_party(self):
        return {"name": self.name, "id_type": self.id_type, "id_number": self.id_number}


@dataclass
class Account:
    utility: str
    account_no: str
    holder: Person
    arrears_fen: int = 0
    direct_debit: bool = False
    status: str = "active"
    linked: bool = True
    prepaid_fen: int = 0
    block_reason: str | None = None
    # Paid at the utility's counter while the order in the app is open.
    counter_paid_fen: int = 0


@dataclass
class Scenario:
    key: str
    title: str
    business_no: str
    business_type: str
    unit_code: str
    location: str
    community_address: str
    building_area: str
    inner_area: str
    certificate_no: str
    buyer: Person
    sellers: list
    co_owners: list = field(default_factory=list)
    accounts: list = field(default_factory=list)
    expect: dict = field(default_factory=dict)
    # Handled by an agency that the buyer authorised, not by the buyer.
    by_agent: bool = False


class PeopleFactory:
    def __init__(self, seed):
        self.random = random.Random(seed)

    def person(self, district_code, birth_year=None):
        name = self.random.choice(SURNAMES) + "".join(
            self.random.choice(GIVEN) for _ in range(self.random.choice((1, 2)))
        )
        year = birth_year or self.random.randint(1955, 1998)
        born = date(year, self.random.randint(1, 12), self.random.randint(1, 28))
        first17 = f"{district_code}{born:%Y%m%d}{self.random.randint(10, 999):03d}"
        phone = "13" + "".join(str(self.random.randint(0, 9)) for _ in range(9))
        return Person(
            name, "居民身份证", first17 + resident_id_check_char(first17), phone
        )

    def developer(self, name):
        body = "91370100" + "".join(
            self.random.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(9)
        )
        return Person(name, "统一社会信用代码", body + credit_code_check_char(body))

    def account_no(self, utility):
        return ACCOUNT_PREFIX[utility] + f"{self.random.randint(0, 99_999_999):08d}"


def unit_code(district_code, parcel, building, room_serial):
    return f"{district_code}001001GB{parcel:05d}F{building:04d}{room_serial:04d}"


def build_scenarios(seed=2026):
    """Return the four demo cases, the same for the same seed."""
    people = PeopleFactory(seed)
    communities = {row["community"]: row for row in read_communities()}

    def place(community, building, stair, room):
        row = communities[community]
        code = DISTRICT_CODES[row["district"]]
        location = (
            f"{row['district']}{row['road_address']}{building}号楼{stair}单元{room}"
        )
        typed = f"{community}{building}-{stair}-{room}"
        return row, code, location, typed

    scenarios = []

    row, code, location, typed = place("汉峪金谷", 5, 1, 1201)
    developer = people.developer("济南汉峪置业有限公司")
    buyer = people.person(code)
    new_home = Scenario(
        key="new-home",
        title="新建商品房：户号仍在开发商名下，欠水费 42.30 元、暖气费 186.00 元，"
        "一次扫码缴清；开发商已在窗口缴过暖气费，多缴的自动退回",
        business_no="JN2026120400101",
        business_type="商品房买卖",
        unit_code=unit_code(code, 101, 5, 1201),
        location=location,
        community_address=typed,
        building_area="142.36",
        inner_area="118.02",
        certificate_no="鲁(2026)济南市不动产权第0101201号",
        buyer=buyer,
        sellers=[developer],
    )
    new_home.accounts = [
        Account("water", people.account_no("water"), developer, arrears_fen=4230),
        Account("power", people.account_no("power"), developer),
        Account("gas", people.account_no("gas"), developer),
        Account(
            "heat",
            people.account_no("heat"),
            developer,
            arrears_fen=18600,
            counter_paid_fen=18600,
        ),
    ]
    new_home.expect = {"completed": 4, "returned": 0}
    scenarios.append(new_home)

    row, code, location, typed = place("燕子山小区", 3, 2, 501)
    first_owner = people.person(code, birth_year=1948)
    seller = people.person(code)
    buyer = people.person(code)
    multi_step = Scenario(
        key="multi-step",
        title="二手房多次转手，中介代办：燃气户号仍在两任之前的业主名下，直接过户给现业主",
        business_no="JN2026120400102",
        business_type="二手房买卖",
        unit_code=unit_code(code, 2, 3, 2501),
        location=location,
        community_address=typed,
        building_area="86.40",
        inner_area="71.15",
        certificate_no="鲁(2026)济南市不动产权第0102501号",
        buyer=buyer,
        sellers=[seller],
    )
    multi_step.accounts = [
        Account("water", people.account_no("water"), seller),
        Account("gas", people.account_no("gas"), first_owner),
        Account("heat", people.account_no("heat"), seller, linked=False),
    ]
    multi_step.expect = {"completed": 3, "returned": 0}
    multi_step.by_agent = True
    scenarios.append(multi_step)

    row, code, location, typed = place("甸柳新村", 12, 1, 302)
    seller = people.person(code)
    buyer = people.person(code)
    returned = Scenario(
        key="returned",
        title="二手房：原户主电费银行代扣未解除，供电公司退件并说明原因",
        business_no="JN2026120400103",
        business_type="二手房买卖",
        unit_code=unit_code(code, 11, 12, 1302),
        location=location,
        community_address=typed,
        building_area="65.80",
        inner_area="54.30",
        certificate_no="鲁(2026)济南市不动产权第0111302号",
        buyer=buyer,
        sellers=[seller],
    )
    returned.accounts = [
        Account("water", people.account_no("water"), seller),
        Account("power", people.account_no("power"), seller, direct_debit=True),
    ]
    returned.expect = {"completed": 1, "returned": 1}
    scenarios.append(returned)

    row, code, location, typed = place("大明湖小区", 2, 3, 601)
    seller = people.person(code)
    buyer = people.person(code)
    spouse = people.person(code)
    cable = Scenario(
        key="cable-tv",
        title="赠与：有线电视未接入系统，转为线下渠道领取，其余户号照常办结",
        business_no="JN2026120400104",
        business_type="赠与",
        unit_code=unit_code(code, 16, 2, 3601),
        location=location,
        community_address=typed,
        building_area="98.12",
        inner_area="80.44",
        certificate_no="鲁(2026)济南市不动产权第0163601号",
        buyer=buyer,
        sellers=[seller],
    )
    cable.co_owners = [spouse]
    cable.accounts = [
        Account("water", people.account_no("water"), seller),
        Account("tv", people.account_no("tv"), seller),
    ]
    cable.expect = {"completed": 2, "returned": 0}
    scenarios.append(cable)
    return scenarios


def business_payload(scenario, registration_status):
    """Return the registry's PUT body for the scenario's business."""
    owners = [scenario.buyer, *scenario.co_owners]
    return {
        "business_type": scenario.business_type,
        "registration_status": registration_status,
        "certificate_no": scenario.certificate_no,
        "unit_code": scenario.unit_code,
        "location": scenario.location,
        "usage": "住宅",
        "building_area": scenario.building_area,
        "inner_area": scenario.inner_area,
        "owners": [person.as_party() for person in owners],
        "previous_owners": [person.as_party() for person in scenario.sellers],
    }


def account_links(scenarios):
    """Return the links bulk linkage found earlier, for the accounts it knew."""
    return [
        {
            "unit_code": scenario.unit_code,
            "location": scenario.location,
            "utility": account.utility,
            "account_no": account.account_no,
            "holder_name": account.holder.name,
            "holder_id_numbers": [account.holder.id_number],
            "account_address": scenario.community_address,
        }
        for scenario in scenarios
        for account in scenario.accounts
        if account.linked
    ]


def simulator_accounts(scenarios):
    """Return the accounts as each utility's own system stores them."""
    return [
        {
            "utility": account.utility,
            "account_no": account.account_no,
            "holder_name": account.holder.name,
            "holder_id_numbers": [account.holder.id_number],
            "account_address": scenario.community_address,
            "arrears_fen": account.arrears_fen,
            "status": account.status,
            "direct_debit": account.direct_debit,
            "prepaid_fen": account.prepaid_fen,
            "block_reason": account.block_reason,
        }
        for scenario in scenarios
        for account in scenario.accounts
    ]

import pytest

from domain.identifiers import resident_id_check_char
from linkage import engine
from linkage.compare import is_organisation
from linkage.engine import LINKED, REVIEW, UNMATCHED, link, summarise
from linkage.records import Account, Person, Unit

WATER = "济南水务集团有限公司"
GAS = "济南能源集团有限公司燃气"


def resident_id(sequence):
    first17 = f"37010219800101{sequence:03d}"
    return first17 + resident_id_check_char(first17)


OWNER_501 = Person("张伟", resident_id(1))
EARLIER_501 = Person("王芳", resident_id(2))
OWNER_502 = Person("李娜", resident_id(3))
OWNER_STAIR1_501 = Person("赵磊", resident_id(4))
OWNER_HEPING_SHIZHONG = Person("刘洋", resident_id(5))
OWNER_HEPING_HUAIYIN = Person("陈静", resident_id(6))
STRANGER = Person("周杰", resident_id(7))


def unit(code, location, owners, previous=(), certificate="", area=None):
    return Unit(
        line=0,
        unit_code=code,
        certificate_no=certificate,
        location=location,
        usage="住宅",
        building_area=area,
        inner_area=None,
        owners=tuple(owners),
        previous_owners=tuple(previous),
    )


CODE_501 = "370102005006GB00001F00030001"
CODE_502 = "370102005006GB00001F00030002"
CODE_STAIR1_501 = "370102005006GB00001F00030003"
CODE_HEPING_SHIZHONG = "370103005006GB00002F00010001"
CODE_HEPING_HUAIYIN = "370104005006GB00003F00010001"
CODE_TOWER = "370102005007GB00004F00010001"
OWNER_TOWER = Person("孙丽", resident_id(8))
CERTIFICATE_502 = "鲁(2023)济南市不动产权第0001234号"

UNITS = [
    unit(
        CODE_501,
        "历下区燕子山路2号燕子山小区3号楼2单元501",
        [OWNER_501],
        [EARLIER_501],
        area=98.5,
    ),
    unit(
        CODE_502,
        "历下区燕子山路2号3号楼2单元502",
        [OWNER_502],
        certificate=CERTIFICATE_502,
    ),
    unit(CODE_STAIR1_501, "历下区燕子山路2号3号楼1单元501", [OWNER_STAIR1_501]),
    unit(CODE_TOWER, "历下区泉城大厦2单元1201", [OWNER_TOWER]),
    unit(
        CODE_HEPING_SHIZHONG,
        "市中区和平路9号和平小区1号楼1单元101",
        [OWNER_HEPING_SHIZHONG],
    ),
    unit(
        CODE_HEPING_HUAIYIN,
        "槐荫区振兴街3号和平小区1号楼1单元101",
        [OWNER_HEPING_HUAIYIN],
    ),
]


def account(
    address,
    holder=STRANGER,
    account_no="SW001",
    org=WATER,
    ids=None,
    certificate="",
    owner_name="",
    area=None,
):
    return Account(
        line=2,
        service_org=org,
        account_no=account_no,
        holder_name=holder.name,
        holder_ids=(holder.id_number,) if ids is None else tuple(ids),
        address=address,
        certificate_no=certificate,
        owner_name=owner_name,
        area=area,
    )


def link_one(item):
    [result] = link(UNITS, [item])
    return result


def test_link_owner_exact_address():
    result = link_one(account("燕子山小区3号楼2单元501", OWNER_501))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_501
    assert result.location == "历下区燕子山路2号燕子山小区3号楼2单元501"
    assert "holder ID is an owner's" in result.reasons


def test_link_earlier_owner_id():
    result = link_one(account("济南市历下区燕子山小区3栋2单元501室", EARLIER_501))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_501
    assert "holder ID is a previous owner's" in result.reasons


def test_link_community_learned_from_other_unit():
    # 502's location names only the road; 501's location ties the community to it.
    result = link_one(account("燕子山小区3-2-502", OWNER_502))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_502


def test_link_fifteen_digit_id():
    old_id = OWNER_502.id_number[:6] + OWNER_502.id_number[8:17]

    result = link_one(account("燕子山小区3-2-502", OWNER_502, ids=[old_id]))

    assert result.match_result == LINKED


def test_link_different_room_never_automatic():
    result = link_one(account("燕子山小区3号楼2单元503", OWNER_501))

    assert result.match_result == REVIEW
    assert result.unit_code is None
    assert result.candidates[0].unit_code == CODE_501
    assert "room differs (503 / 501)" in result.candidates[0].reasons


def test_link_room_typo_goes_to_review():
    # The address names 502, but the holder owns 501 next door.
    result = link_one(account("燕子山小区3号楼2单元502", OWNER_501))

    assert result.match_result == REVIEW
    assert {c.unit_code for c in result.candidates} == {CODE_501, CODE_502}


def test_link_family_member_goes_to_review():
    result = link_one(account("燕子山小区3号楼2单元501", STRANGER))

    assert result.match_result == REVIEW
    assert result.candidates[0].unit_code == CODE_501
    assert "neither an owner nor a previous owner" in result.reasons[0]


def test_link_family_member_with_owner_name():
    result = link_one(account("燕子山小区3号楼2单元501", STRANGER, owner_name="张伟"))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_501


def test_link_family_member_with_area():
    result = link_one(account("燕子山小区3号楼2单元501", STRANGER, area=98.0))

    assert result.match_result == LINKED


def test_link_family_member_with_wrong_area():
    result = link_one(account("燕子山小区3号楼2单元501", STRANGER, area=60.0))

    assert result.match_result == REVIEW


def test_link_developer_account():
    developer = Person("济南鑫源置业有限公司", "91370100MA3C00000X")

    result = link_one(account("燕子山小区3号楼2单元501", developer))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_501


def test_link_home_not_in_export_unmatched():
    result = link_one(account("燕子山小区43号楼2单元1503", STRANGER))

    assert result.match_result == UNMATCHED
    assert result.unit_code is None
    assert result.candidates == ()


def test_link_missing_stair_decided_by_id():
    result = link_one(account("燕子山小区3号楼501", OWNER_STAIR1_501))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_STAIR1_501


def test_link_missing_stair_without_id_goes_to_review():
    result = link_one(account("燕子山小区3号楼501", STRANGER, owner_name="某某"))

    assert result.match_result == REVIEW
    assert {c.unit_code for c in result.candidates} == {CODE_501, CODE_STAIR1_501}


def test_link_missing_stair_decided_by_owner_name():
    result = link_one(account("燕子山小区3号楼501", STRANGER, owner_name="赵磊"))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_STAIR1_501


def test_link_single_building_without_number():
    result = link_one(account("泉城大厦2单元1201", OWNER_TOWER))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_TOWER


def test_link_building_missing_on_one_side():
    result = link_one(account("燕子山小区2单元501", OWNER_501))

    assert result.match_result == REVIEW


def test_link_certificate_number():
    result = link_one(
        account(
            "3号楼2单元502",
            STRANGER,
            certificate="鲁（2023）济南市不动产权第0001234号",
        )
    )

    assert result.match_result == LINKED
    assert result.unit_code == CODE_502
    assert result.certificate_no == CERTIFICATE_502


def test_link_owner_id_but_other_community():
    result = link_one(account("和平小区3号楼2单元501", OWNER_501))

    assert result.match_result == REVIEW
    assert "road or community differs" in result.candidates[0].reasons


def test_link_community_in_two_districts_needs_district():
    developer = Person("济南鑫源置业有限公司", "91370100MA3C00000X")

    without_district = link_one(account("和平小区1号楼1单元101", developer))
    with_district = link_one(account("槐荫区和平小区1号楼1单元101", developer))

    assert without_district.match_result == REVIEW
    assert with_district.match_result == LINKED
    assert with_district.unit_code == CODE_HEPING_HUAIYIN


def test_link_other_district_needs_id():
    developer = Person("济南鑫源置业有限公司", "91370100MA3C00000X")

    by_address = link_one(account("历城区燕子山小区3-2-502", developer))
    by_owner = link_one(account("历城区燕子山小区3-2-502", OWNER_502))

    assert by_address.match_result == REVIEW
    assert "district differs" in by_address.reasons[0]
    assert by_owner.match_result == LINKED
    assert by_owner.unit_code == CODE_502


def test_link_community_in_two_districts_with_owner_id():
    result = link_one(account("和平小区1-1-101", OWNER_HEPING_SHIZHONG))

    assert result.match_result == LINKED
    assert result.unit_code == CODE_HEPING_SHIZHONG


def test_link_two_accounts_compete_for_one_unit():
    first = account("燕子山小区3-2-501", STRANGER, "SW001", area=98.5)
    second = account("燕子山路2号3号楼2单元501", STRANGER, "SW002", area=98.5)

    results = link(UNITS, [first, second])

    assert [r.match_result for r in results] == [REVIEW, REVIEW]
    assert "SW002" in results[0].reasons[0]
    assert "SW001" in results[1].reasons[0]


def test_link_competing_account_with_id_wins():
    stale = account("燕子山小区3-2-501", STRANGER, "SW001", area=98.5)
    current = account("燕子山小区3-2-501", OWNER_501, "SW002")

    results = link(UNITS, [stale, current])

    assert [r.match_result for r in results] == [REVIEW, LINKED]
    assert results[1].unit_code == CODE_501


def test_link_one_unit_per_utility_only():
    water = account("燕子山小区3-2-501", OWNER_501, "SW001", org=WATER)
    gas = account("燕子山小区3-2-501", OWNER_501, "RQ001", org=GAS)

    results = link(UNITS, [water, gas])

    assert [r.match_result for r in results] == [LINKED, LINKED]


def test_link_results_in_roster_order_and_summary():
    accounts = [
        account("燕子山小区3-2-501", OWNER_501, "SW001"),
        account("燕子山小区3号楼2单元503", OWNER_501, "SW002"),
        account("燕子山小区43号楼2单元1503", STRANGER, "SW003"),
    ]
    calls = []

    results = link(UNITS, accounts, progress=lambda done, total: calls.append(done))
    summary = summarise(results, rows_read=5, bad_rows=2)

    assert [r.account_no for r in results] == ["SW001", "SW002", "SW003"]
    assert calls[-1] == 3
    assert summary.linked == 1
    assert summary.for_review == 1
    assert summary.unmatched == 1
    assert summary.rows_read == 5
    assert summary.bad_rows == 2
    assert summary.pairs_compared == results.pairs_compared
    assert results.pairs_compared >= 2


@pytest.mark.parametrize(
    "address",
    ["", "不详", "燕子山小区", "燕子山小区3号楼"],
)
def test_link_address_without_room_never_automatic(address):
    result = link_one(account(address, OWNER_501))

    assert result.match_result == REVIEW
    assert result.candidates[0].unit_code == CODE_501


def test_is_organisation_by_credit_code():
    # A short name without organisation words, but a valid credit code.
    developer = Person("鑫源", "91370100MA3C00000E")

    assert is_organisation(account("燕子山小区3号楼2单元501", developer)) is True


def test_is_organisation_by_name():
    developer = Person("济南鑫源置业有限公司", "")

    assert is_organisation(account("燕子山小区3号楼2单元501", developer)) is True


def test_is_organisation_person():
    assert is_organisation(account("燕子山小区3号楼2单元501", OWNER_501)) is False
    # A credit code with a wrong check character does not count.
    developer = Person("鑫源", "91370100MA3C00000F")
    assert is_organisation(account("燕子山小区3号楼2单元501", developer)) is False


def test_link_split_same_results(monkeypatch):
    # SW001 and SW004 compete for 501 and fall in different chunks.
    accounts = [
        account("燕子山小区3-2-501", STRANGER, "SW001", area=98.5),
        account("燕子山小区3号楼2单元502", OWNER_502, "SW002"),
        account("燕子山小区43号楼2单元1503", STRANGER, "SW003"),
        account("燕子山路2号3号楼2单元501", STRANGER, "SW004", area=98.5),
        account("燕子山小区3号楼2单元503", OWNER_501, "SW005"),
    ]
    expected = link(UNITS, accounts)
    splits = []
    run_split = engine.run_in_two_processes

    def run_in_two_processes(work, chunks, progress, finish):
        splits.append(chunks)
        return run_split(work, chunks, progress, finish)

    monkeypatch.setattr(engine, "PROGRESS_STEP", 2)
    monkeypatch.setattr(engine, "MIN_ACCOUNTS_TO_SPLIT", 2)
    monkeypatch.setattr(engine, "can_fork", lambda: True)
    monkeypatch.setattr(engine, "run_in_two_processes", run_in_two_processes)
    calls = []
    results = link(UNITS, accounts, progress=lambda done, total: calls.append(done))

    assert splits == [[(0, 2), (2, 4), (4, 5)]]
    assert results == expected
    assert results.pairs_compared == expected.pairs_compared
    assert "SW004" in results[0].reasons[0]
    assert "SW001" in results[3].reasons[0]
    assert calls[-1] == 5

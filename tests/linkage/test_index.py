import hashlib

from domain.identifiers import resident_id_check_char
from linkage.addresses import parse_address
from linkage.index import UnitIndex
from linkage.records import Person, Unit


def resident_id(first17):
    return first17 + resident_id_check_char(first17)


OWNER = Person("阿依古丽·买买提", resident_id("37010219840108001"))
CERTIFICATE = "鲁(2023)济南市不动产权第0001234号"


def unit(code, location, owners=(), certificate=""):
    return Unit(
        line=0,
        unit_code=code,
        certificate_no=certificate,
        location=location,
        owners=tuple(owners),
    )


UNITS = [
    unit(
        "370103005006GB00002F00010001",
        "市中区和平路9号和平小区1号楼1单元101",
        [OWNER],
        CERTIFICATE,
    ),
    unit("370104005006GB00003F00010001", "槐荫区振兴街3号和平小区1号楼1单元101"),
]


def test_index_blind_key_is_keyed_blake2b():
    index = UnitIndex(UNITS)
    expected = hashlib.blake2b(
        OWNER.id_number.encode(), digest_size=12, key=index._blind_secret
    ).digest()

    assert index.blind_key(OWNER.id_number) == expected
    assert index.blind_key(OWNER.id_number) == expected
    assert index.blind_key(resident_id("37010219840108002")) != expected


def test_index_id_keys_one_key_per_person():
    index = UnitIndex(UNITS)
    fifteen_digits = OWNER.id_number[:6] + OWNER.id_number[8:17]
    lower_case = resident_id("37010219840108008").lower()

    assert index.id_keys([OWNER.id_number, fifteen_digits]) == {
        index.blind_key(OWNER.id_number)
    }
    assert index.id_keys([lower_case]) == {index.blind_key(lower_case.upper())}
    assert index.id_keys(["", " "]) == frozenset()


def test_index_unit_view_keys_match_account_keys():
    index = UnitIndex(UNITS)

    assert index.views[0].owner_keys == (index.blind_key(OWNER.id_number),)
    assert index.views[0].owner_names == ("阿依古丽买买提",)
    assert index.views[1].owner_keys == ()


def test_index_name_key_cached_per_spelling():
    index = UnitIndex(UNITS)

    assert index.name_key("阿依古丽.买买提") == "阿依古丽买买提"
    assert index.name_key("阿依古丽 . 买买提") == "阿依古丽买买提"
    assert index.name_key("阿依古丽") == "阿依古丽"
    assert index.name_key("") == ""
    assert index.name_key("") == ""


def test_index_certificate_key_cached_per_spelling():
    index = UnitIndex(UNITS)

    assert index.certificate_key("鲁（2023）济南市不动产权第0001234号") == CERTIFICATE
    assert index.certificate_key("鲁[2023]济南市不动产权第0001234号") == CERTIFICATE
    assert index.certificate_key("不详") is None
    assert index.certificate_key("不详") is None


def test_index_resolve_places_cache_keeps_districts_apart():
    index = UnitIndex(UNITS)

    shizhong = index.resolve_places(parse_address("市中区和平小区1号楼1单元101"))
    huaiyin = index.resolve_places(parse_address("槐荫区和平小区1号楼1单元101"))
    anywhere = index.resolve_places(parse_address("和平小区1号楼1单元101"))
    other_flat = index.resolve_places(parse_address("市中区和平小区2号楼3单元502"))

    assert shizhong == (frozenset({("community", "市中区", "和平")}), True, False)
    assert huaiyin == (frozenset({("community", "槐荫区", "和平")}), True, False)
    assert anywhere[0] == shizhong[0] | huaiyin[0]
    assert anywhere[2] is True
    assert other_flat == shizhong

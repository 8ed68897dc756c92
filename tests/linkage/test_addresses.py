import time

import pytest

from linkage.addresses import clean_address, community_key, parse_address

# Each case is (text, expected) with expected as the parts
# district|road|road_no|community|building|stair|room, empty for None.
SHAPES = [
    # registry locations: road and house number, with or without the community
    (
        "历下区燕子山路2号燕子山小区3号楼2单元501",
        "历下区|燕子山路|2|燕子山小区|3|2|501",
    ),
    ("历下区燕子山路2号3号楼2单元501", "历下区|燕子山路|2||3|2|501"),
    ("长清区清河街17号1号楼1单元102", "长清区|清河街|17||1|1|102"),
    ("历下区燕子山路2-1号3-2-501", "历下区|燕子山路|2-1||3|2|501"),
    (
        "市中区经十路17703号华润中央公园6号楼1单元2301",
        "市中区|经十路|17703|华润中央公园|6|1|2301",
    ),
    ("历下区解放路112号院3号楼2单元501", "历下区|解放路|112||3|2|501"),
    ("天桥区北园大街50号3#2-301", "天桥区|北园大街|50||3|2|301"),
    # city and province in front, or neither
    ("济南市历下区燕子山小区3栋2单元501室", "历下区|||燕子山小区|3|2|501"),
    ("山东省济南市历下区燕子山小区3号楼2单元501", "历下区|||燕子山小区|3|2|501"),
    ("山东济南历城区洪家楼小区5号楼1单元302", "历城区|||洪家楼小区|5|1|302"),
    ("燕子山小区3-2-501", "|||燕子山小区|3|2|501"),
    # 济南市中区 leaves out one 市
    ("济南市中区舜玉小区12号楼1单元501", "市中区|||舜玉小区|12|1|501"),
    # district names from before 2019 map to the current ones
    ("章丘市明水街道汇泉路1号3号楼2单元301", "章丘区|汇泉路|1||3|2|301"),
    ("济阳县济北小区2号楼1单元201", "济阳区|||济北小区|2|1|201"),
    ("莱芜市莱城区鲁中东大街106号2号楼1单元1101", "莱芜区|鲁中东大街|106||2|1|1101"),
    ("济南市莱芜市莱城区汶源东大街8号8号楼1单元302", "莱芜区|汶源东大街|8||8|1|302"),
    ("长清县清河小区1号楼1单元101", "长清区|||清河小区|1|1|101"),
    # a development zone where the district belongs
    ("济南市高新区汉峪金谷5号楼1单元1201", "|||汉峪金谷|5|1|1201"),
    # building markers
    ("燕子山小区3幢2单元501", "|||燕子山小区|3|2|501"),
    ("燕子山小区3号2单元501户", "|||燕子山小区|3|2|501"),
    ("燕子山小区3#2单元501", "|||燕子山小区|3|2|501"),
    ("舜玉小区A座1201", "|||舜玉小区|A||1201"),
    ("舜玉小区B栋2单元301室", "|||舜玉小区|B|2|301"),
    ("舜玉小区3楼2单元301", "|||舜玉小区|3|2|301"),
    ("燕子山小区7区2单元301", "|||燕子山小区|7|2|301"),
    # dashes of every kind, full-width digits and stray spaces
    ("燕子山小区３－２－５０１", "|||燕子山小区|3|2|501"),
    ("燕子山小区3—2—501", "|||燕子山小区|3|2|501"),
    ("燕子山小区3–2–501室", "|||燕子山小区|3|2|501"),
    ("燕子山小区3一2一501", "|||燕子山小区|3|2|501"),
    ("燕子山小区3栋2-501", "|||燕子山小区|3|2|501"),
    ("燕子山小区3号楼2-501", "|||燕子山小区|3|2|501"),
    ("燕子山小区3号楼-2单元-501", "|||燕子山小区|3|2|501"),
    ("燕子山小区 3 2 501", "|||燕子山小区|3|2|501"),
    ("历下区 燕子山小区 3号楼 2单元 501", "历下区|||燕子山小区|3|2|501"),
    ("\u3000燕子山小区３号楼\u3000２单元\u3000５０１室\u3000", "|||燕子山小区|3|2|501"),
    # Chinese numerals before markers
    ("燕子山小区三号楼二单元501", "|||燕子山小区|3|2|501"),
    ("燕子山小区十二号楼十单元501", "|||燕子山小区|12|10|501"),
    ("燕子山小区二十三号楼一单元五〇一", "|||燕子山小区|23|1|501"),
    # no stair, no building, leading zeros
    ("燕子山小区3号楼501", "|||燕子山小区|3||501"),
    ("燕子山小区3-501", "|||燕子山小区|3||501"),
    ("燕子山小区2单元501", "|||燕子山小区||2|501"),
    ("燕子山小区03号楼02单元0501", "|||燕子山小区|3|2|501"),
    # stairs named 门 or by direction, trailing 号 and notes
    ("燕子山小区3号楼2门501", "|||燕子山小区|3|2|501"),
    ("燕子山小区3号楼东单元301", "|||燕子山小区|3|东|301"),
    ("燕子山小区3号楼2单元501号", "|||燕子山小区|3|2|501"),
    ("燕子山小区3号楼2单元501(东户)", "|||燕子山小区|3|2|501"),
    ("燕子山小区（东区）3号楼2单元501", "|||燕子山小区东区|3|2|501"),
    # communities with phases and names that contain numbers
    ("燕子山小区二期3-2-501", "|||燕子山小区2期|3|2|501"),
    ("阳光100国际新城3号楼1单元101", "|||阳光100国际新城|3|1|101"),
    ("七里山小区3号楼2单元501", "|||七里山小区|3|2|501"),
    ("历下区经十一路小区3号楼2单元501", "历下区|||经十一路小区|3|2|501"),
    # subdistricts, courtyards, zones and notes in brackets
    ("历下区千佛山街道燕子山小区3号楼2单元501", "历下区|||燕子山小区|3|2|501"),
    ("历城区花园路街道花园小区5号楼1单元301", "历城区|||花园小区|5|1|301"),
    (
        "市中区七里山路33号七里山小区14号楼2单元401室",
        "市中区|七里山路|33|七里山小区|14|2|401",
    ),
    (
        "历下区文化东路59号山大南院宿舍12号楼3单元202",
        "历下区|文化东路|59|山大南院宿舍|12|3|202",
    ),
    ("莱芜区鲁中东大街106号院2号楼1单元1101", "莱芜区|鲁中东大街|106||2|1|1101"),
    (
        "市中区英雄山路129号(英雄山小区)3-2-501",
        "市中区|英雄山路|129|英雄山小区|3|2|501",
    ),
    ("玉函小区北区6号楼3单元601", "|||玉函小区北区|6|3|601"),
    ("甸柳新村一区3号楼2单元501", "|||甸柳新村|3|2|501"),
    ("历城区洪家楼南路5号1-2-301", "历城区|洪家楼南路|5||1|2|301"),
    ("3号楼2单元501", "||||3|2|501"),
    # a road without a house number is part of the community text
    ("燕子山路燕子山小区3号楼2单元501", "|||燕子山路燕子山小区|3|2|501"),
]


@pytest.mark.parametrize(("text", "expected"), SHAPES)
def test_parse_address_shapes(text, expected):
    parts = [part or None for part in expected.split("|")]
    address = parse_address(text)

    assert address.district == parts[0]
    assert address.road == parts[1]
    assert address.road_no == parts[2]
    assert address.community == parts[3]
    assert address.building == parts[4]
    assert address.stair == parts[5]
    assert address.room == parts[6]


def test_parse_address_floor_and_household():
    address = parse_address("舜玉小区12号楼1单元5层1户")

    assert address.floor == 5
    assert address.room == "501"


def test_parse_address_floor_before_room():
    address = parse_address("舜玉小区12号楼1单元12楼1203")

    assert address.floor == 12
    assert address.room == "1203"


def test_parse_address_dashed_floor():
    address = parse_address("燕子山小区3-2-5-501")

    assert (address.building, address.stair, address.floor, address.room) == (
        "3",
        "2",
        5,
        "501",
    )


@pytest.mark.parametrize(
    "text",
    [
        "燕子山小区1号楼1单元1-3-0-1",
        "燕子山小区3-2-6-501",
        "燕子山小区3-2-1-5-501",
    ],
)
def test_parse_address_ambiguous_numbers_no_room(text):
    assert parse_address(text).room is None


@pytest.mark.parametrize("repeated", ["1", "1-", "1A", "1号", "A1"])
def test_parse_address_long_junk_fast(repeated):
    started = time.perf_counter()

    address = parse_address("燕子山小区" + repeated * 90 + "商铺")

    assert address.room is None
    assert time.perf_counter() - started < 1.0


def test_parse_address_too_long():
    address = parse_address("燕子山小区3号楼2单元501" * 20)

    assert address.community is None
    assert address.room is None


def test_parse_address_zone_before_building():
    address = parse_address("燕山新居2区3号楼1单元301")

    assert address.community == "燕山新居"
    assert address.zone == "2"
    assert address.building == "3"


def test_parse_address_lettered_zone():
    address = parse_address("舜耕路28号舜玉花园D区5号楼1单元301")

    assert address.community == "舜玉花园"
    assert address.zone == "D"
    assert address.building == "5"


def test_parse_address_province_and_city():
    address = parse_address("山东省济南市历下区燕子山小区3号楼2单元501")

    assert address.province == "山东省"
    assert address.city == "济南市"


def test_parse_address_subdistrict():
    address = parse_address("历城区王舍人街道幸福小区3号楼2单元501")

    assert address.subdistrict == "王舍人街道"
    assert address.community == "幸福小区"


def test_parse_address_street_named_community():
    address = parse_address("龙奥天街5号1单元402户", roads=False)

    assert address.road is None
    assert address.community == "龙奥天街"
    assert (address.building, address.stair, address.room) == ("5", "1", "402")


def test_parse_address_without_flat():
    address = parse_address("市中区经七路346号")

    assert address.road == "经七路"
    assert address.road_no == "346"
    assert address.building is None
    assert address.room is None


@pytest.mark.parametrize("text", ["", "   ", "地下室", "不详"])
def test_parse_address_no_room(text):
    assert parse_address(text).room is None


@pytest.mark.parametrize(
    ("text", "cleaned"),
    [
        # each step of clean_address alone, then none of them
        ("燕子山小区3—2—501", "燕子山小区3-2-501"),
        ("燕子山小区3~2_501", "燕子山小区3-2-501"),
        ("燕子山小区【东区】3号楼", "燕子山小区东区3号楼"),
        ("燕子山小区[2]号楼", "燕子山小区2号楼"),
        ("燕子山小区 3 2 501", "燕子山小区3-2-501"),
        ("\u3000燕子山小区 3号楼\u3000", "燕子山小区3号楼"),
        ("燕子山小区3一2一501", "燕子山小区3-2-501"),
        ("燕子山小区3号楼2单元501(东户)", "燕子山小区3号楼2单元501"),
        ("燕子山小区3号楼2单元501", "燕子山小区3号楼2单元501"),
    ],
)
def test_clean_address_steps(text, cleaned):
    assert clean_address(text) == cleaned


def test_clean_address_keeps_numerals_in_names():
    assert clean_address("经十路七里山小区三号楼") == "经十路七里山小区3号楼"


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("清河小区", "清河"),
        ("清河社区", "清河"),
        ("清河", "清河"),
        ("甸柳新村", "甸柳新村"),
        ("小区", "小区"),
        (None, None),
    ],
)
def test_community_key(name, key):
    assert community_key(name) == key


def test_parse_address_same_start_other_next_character():
    # Both addresses start with the run 大王镇. A digit after it makes 大王镇
    # a community (大王镇1号楼), anything else a subdistrict, so the cached
    # reading of a start must depend on the character after the run.
    digit_after = parse_address("大王镇1号楼2单元301")
    dash_after = parse_address("大王镇-1号楼2单元301")
    digit_again = parse_address("大王镇1号楼2单元302")

    assert digit_after.subdistrict is None
    assert digit_after.community == "大王镇"
    assert dash_after.subdistrict == "大王镇"
    assert dash_after.community is None
    assert digit_again.community == "大王镇"
    assert digit_again.room == "302"


def test_parse_address_shared_tail_keeps_own_parts():
    # Both addresses end in the same tail, whose parts are cached once.
    first = parse_address("燕子山小区3号楼2单元501")
    second = parse_address("历下区舜玉小区3号楼2单元501")

    assert (first.district, first.community) == (None, "燕子山小区")
    assert (second.district, second.community) == ("历下区", "舜玉小区")
    assert (first.building, first.stair, first.room) == ("3", "2", "501")
    assert (second.building, second.stair, second.room) == ("3", "2", "501")


def test_parse_address_shorter_city_start_cached():
    # 济南市中区 is read as 市中区 whether or not more text follows.
    assert parse_address("济南市中区").district == "市中区"
    assert parse_address("济南市中区舜玉小区12号楼1单元501").district == "市中区"
    assert parse_address("济南市中区舜玉小区12号楼1单元501").community == "舜玉小区"

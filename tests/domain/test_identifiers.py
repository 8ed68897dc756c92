import csv
from datetime import date
from itertools import islice
from pathlib import Path

import pytest

from domain.identifiers import (
    ID_TYPES,
    InvalidIdentifier,
    NormalisedId,
    county_of_unit_code,
    credit_code_check_char,
    fold_width,
    normalise_certificate_no,
    normalise_credit_code,
    normalise_id_number,
    normalise_mobile,
    normalise_name,
    normalise_resident_id,
    normalise_unit_code,
    resident_id_check_char,
)

# The first 200 units of the generated linkage development set (made-up people).
UNITS_CSV = Path(__file__).resolve().parents[1] / "data" / "units-sample.csv"

TODAY = date(2026, 6, 1)


def expected_resident_check(first17: str) -> str:
    """Compute the GB 11643 check character from its definition.

    The weight of position i is 2**(18 - i) mod 11, and the check value is
    (12 - sum mod 11) mod 11 with 10 written as X. Deriving both here keeps the
    test independent of the tables in the module under test.
    """
    total = sum(
        int(digit) * pow(2, 17 - index, 11) for index, digit in enumerate(first17)
    )
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"


def expected_credit_check(first17: str) -> str:
    """Compute the GB 32100 check character with weights 3**(i - 1) mod 31."""
    total = sum(
        CREDIT_ALPHABET.index(char) * pow(3, index, 31)
        for index, char in enumerate(first17)
    )
    return CREDIT_ALPHABET[(31 - total % 31) % 31]


def rejection(call, *args, **kwargs) -> InvalidIdentifier:
    with pytest.raises(InvalidIdentifier) as info:
        call(*args, **kwargs)
    return info.value


# --- fold_width ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "folded"),
    [
        ("ＡＢＣ１２３", "ABC123"),
        ("（２０２３）", "(2023)"),
        ("a\u3000b", "a b"),
        ("济南市", "济南市"),
        ("plain ascii", "plain ascii"),
        ("～！", "~!"),
    ],
)
def test_fold_width(text, folded):
    assert fold_width(text) == folded


# --- unit codes ------------------------------------------------------------

VALID_UNIT_CODE = "370102001001GB00001F00010001"


@pytest.mark.parametrize(
    ("text", "code"),
    [
        (VALID_UNIT_CODE, VALID_UNIT_CODE),
        ("  370102001001gb00001f00010001\n", VALID_UNIT_CODE),
        ("３７０１０２００１００１ＧＢ００００１Ｆ０００１０００１", VALID_UNIT_CODE),
        ("370102 001 001 GB00001 F00010001", VALID_UNIT_CODE),
        ("370113008002JC00002L00000000", "370113008002JC00002L00000000"),
        ("110105003004ZN12345W00000001", "110105003004ZN12345W00000001"),
        ("370126001001GL00001Q00010002", "370126001001GL00001Q00010002"),
    ],
)
def test_unit_code_valid(text, code):
    assert normalise_unit_code(text) == code


@pytest.mark.parametrize(
    "text", ["", None, "370102001001GB00001F0001000", VALID_UNIT_CODE + "1"]
)
def test_unit_code_wrong_length(text):
    error = rejection(normalise_unit_code, text)
    assert error.rule == "unit_code.length"
    assert error.field == "unit_code"
    assert "28 characters" in str(error)


def _unit_code_with(position: int, char: str) -> str:
    return VALID_UNIT_CODE[: position - 1] + char + VALID_UNIT_CODE[position:]


# Position, the character put there, and the rule the rejection must carry.
UNIT_CODE_BREAKS = [
    *[(position, "A", "unit_code.county_code") for position in range(1, 7)],
    *[(position, "B", "unit_code.cadastral_district") for position in range(7, 10)],
    *[(position, "C", "unit_code.cadastral_subdistrict") for position in range(10, 13)],
    (13, "X", "unit_code.land_ownership"),
    (13, "1", "unit_code.land_ownership"),
    (14, "Z", "unit_code.land_right"),
    (14, "1", "unit_code.land_right"),
    *[(position, "D", "unit_code.parcel_serial") for position in range(15, 20)],
    (20, "A", "unit_code.fixture_type"),
    (20, "0", "unit_code.fixture_type"),
    *[(position, "E", "unit_code.unit_serial") for position in range(21, 29)],
    (5, "-", "unit_code.county_code"),
]


@pytest.mark.parametrize(("position", "char", "rule"), UNIT_CODE_BREAKS)
def test_unit_code_wrong_position(position, char, rule):
    error = rejection(normalise_unit_code, _unit_code_with(position, char))
    assert error.rule == rule
    assert error.position == position
    assert f"position {position} " in str(error)
    assert repr(char) in str(error)


def test_unit_code_land_ownership_message():
    error = rejection(normalise_unit_code, _unit_code_with(13, "X"))
    assert str(error) == (
        "Unit code position 13 must be G, J or Z (land ownership); got 'X'."
    )


def test_unit_code_field_from_caller():
    error = rejection(normalise_unit_code, "bad", field="units[3].unit_code")
    assert error.field == "units[3].unit_code"


def test_unit_code_development_set():
    with UNITS_CSV.open(encoding="utf-8", newline="") as file:
        rows = list(islice(csv.DictReader(file), 200))

    assert len(rows) == 200
    for row in rows:
        code = row["不动产单元代码"]
        assert normalise_unit_code(code) == code
        assert county_of_unit_code(code) is not None


def test_resident_id_development_set():
    with UNITS_CSV.open(encoding="utf-8", newline="") as file:
        rows = list(islice(csv.DictReader(file), 200))

    numbers = [
        number
        for row in rows
        for column in ("权利人证件号码", "原权利人证件号码")
        for number in row[column].split(";")
        if number
    ]
    assert len(numbers) >= 200
    for number in numbers:
        assert normalise_resident_id(number) == number.upper()


@pytest.mark.parametrize(
    ("code", "county"),
    [
        ("370102001001GB00001F00010001", "历下区"),
        ("370113008002GB00001F00010001", "长清区"),
        ("370116001001GB00001F00010001", "莱芜区"),
        ("370117001001GB00001F00010001", "钢城区"),
        ("370124001001GB00001F00010001", "平阴县"),
        ("370126001001GB00001F00010001", "商河县"),
        ("110105001001GB00001F00010001", None),
        ("370181001001GB00001F00010001", None),
    ],
)
def test_county_of_unit_code(code, county):
    assert county_of_unit_code(code) == county


def test_unit_code_other_county_accepted():
    assert normalise_unit_code("440305001001GB00001F00010001").startswith("440305")


# --- resident ID numbers ---------------------------------------------------

# Region, birth date and sequence for IDs whose check character is computed here.
RESIDENT_FIRST17 = [
    "11010519491231002",  # a widely published sample, check character X
    "11010119900307803",
    "44030519850521491",
    "37010219771103202",
    "65010219600229001",  # 29 February of a leap year
    "37011220001231301",
    "37010419991231000",
    "81000019800101001",  # Hong Kong residence permit region
]


@pytest.mark.parametrize("first17", RESIDENT_FIRST17)
def test_resident_id_valid(first17):
    number = first17 + expected_resident_check(first17)
    assert normalise_resident_id(number, today=TODAY) == number


@pytest.mark.parametrize("first17", RESIDENT_FIRST17)
def test_resident_id_check_char(first17):
    assert resident_id_check_char(first17) == expected_resident_check(first17)


def test_resident_id_check_char_x():
    assert resident_id_check_char("11010519491231002") == "X"
    assert resident_id_check_char("37010219771103202") == "X"


def test_resident_id_lower_case_x():
    assert (
        normalise_resident_id("11010519491231002x", today=TODAY) == "11010519491231002X"
    )


def test_resident_id_full_width_and_spaces():
    text = " １１０１０５ １９４９１２３１ ００２ｘ\u3000"
    assert normalise_resident_id(text, today=TODAY) == "11010519491231002X"


def test_resident_id_fifteen_digits_converted():
    assert normalise_resident_id("370102850716123", today=TODAY) == "370102198507161232"


@pytest.mark.parametrize(
    ("text", "rule", "position"),
    [
        ("", "resident_id.length", None),
        (None, "resident_id.length", None),
        ("1101051949123100", "resident_id.length", None),
        ("11010519491231002X1", "resident_id.length", None),
        ("1101051949123100XX", "resident_id.characters", 17),
        ("X1010519491231002X", "resident_id.characters", 1),
        ("11010519491231002Y", "resident_id.characters", 18),
        ("11010519491231-02X", "resident_id.characters", 15),
        ("37010285071612X", "resident_id.characters", 15),
        ("00010519491231002X", "resident_id.region", 1),
        ("99010519491231002X", "resident_id.region", 1),
        ("11010519491301002X", "resident_id.birth_date", 7),
        ("11010519610229002X", "resident_id.birth_date", 7),
        ("11010519491200002X", "resident_id.birth_date", 7),
        ("440524188001010014", "resident_id.birth_date", 7),
        ("110105202701010012", "resident_id.birth_date", 7),
        ("370102851316123", "resident_id.birth_date", 7),
        ("110105194912310021", "resident_id.checksum", 18),
        ("11010519491231003X", "resident_id.checksum", 18),
    ],
)
def test_resident_id_rejected(text, rule, position):
    error = rejection(normalise_resident_id, text, today=TODAY)
    assert error.rule == rule
    assert error.position == position


def test_resident_id_future_birth_date_message():
    error = rejection(normalise_resident_id, "110105202701010012", today=TODAY)
    assert "2027-01-01 is in the future" in str(error)


def test_resident_id_birth_before_1900_message():
    error = rejection(normalise_resident_id, "440524188001010014", today=TODAY)
    assert "before 1900" in str(error)


def test_resident_id_message_hides_number():
    error = rejection(normalise_resident_id, "110105194912310021", today=TODAY)
    assert "110105194912310021" not in str(error)
    assert "position 18" in str(error)


def test_resident_id_check_char_rejects_letters():
    error = rejection(resident_id_check_char, "1101051949123100A")
    assert error.rule == "resident_id.characters"


# --- unified social credit codes -------------------------------------------

CREDIT_FIRST17 = ["91370102MA3C4X5Y1", "91350100M000100Y4", "12370000004608012"]


@pytest.mark.parametrize("first17", CREDIT_FIRST17)
def test_credit_code_check_char(first17):
    assert credit_code_check_char(first17) == expected_credit_check(first17)


def test_credit_code_computed_example():
    assert credit_code_check_char("91370102MA3C4X5Y1") == "A"


@pytest.mark.parametrize("first17", CREDIT_FIRST17)
def test_credit_code_valid(first17):
    code = first17 + expected_credit_check(first17)
    result = normalise_credit_code(code.lower())
    assert result.value == code
    assert result.warnings == ()


def test_credit_code_full_width():
    result = normalise_credit_code("９１３７０１０２ＭＡ３Ｃ４Ｘ５Ｙ１Ａ")
    assert result == NormalisedId("91370102MA3C4X5Y1A")


def test_credit_code_wrong_check_warns():
    value, warnings = normalise_credit_code("91370102MA3C4X5Y1B")
    assert value == "91370102MA3C4X5Y1B"
    assert len(warnings) == 1
    assert warnings[0].rule == "credit_code.checksum"
    assert warnings[0].field == "credit_code"
    assert "position 18" in warnings[0].message


@pytest.mark.parametrize(
    ("text", "rule", "position"),
    [
        ("", "credit_code.length", None),
        ("91370102MA3C4X5Y1", "credit_code.length", None),
        ("91370102MA3C4X5Y1AA", "credit_code.length", None),
        ("91370102MI3C4X5Y1A", "credit_code.characters", 10),
        ("91370102MA3C4X5YOA", "credit_code.characters", 17),
        ("Z1370102MA3C4X5Y1A", "credit_code.characters", 1),
        ("91370102MA3C4X5Y1S", "credit_code.characters", 18),
        ("9137010-MA3C4X5Y1A", "credit_code.characters", 8),
    ],
)
def test_credit_code_rejected(text, rule, position):
    error = rejection(normalise_credit_code, text)
    assert error.rule == rule
    assert error.position == position


# --- ID numbers by type ----------------------------------------------------


def test_id_types_listed():
    assert ID_TYPES == (
        "居民身份证",
        "护照",
        "港澳居民来往内地通行证",
        "台湾居民来往大陆通行证",
        "港澳台居民居住证",
        "外国人永久居留身份证",
        "军官证",
        "统一社会信用代码",
        "其他",
    )


def test_id_number_resident_card():
    result = normalise_id_number("居民身份证", "11010519491231002x", today=TODAY)
    assert result == NormalisedId("11010519491231002X")


def test_id_number_resident_card_fifteen_digits():
    result = normalise_id_number("居民身份证", "370102850716123", today=TODAY)
    assert result.value == "370102198507161232"


def test_id_number_resident_card_checked():
    error = rejection(
        normalise_id_number, "居民身份证", "110105194912310021", today=TODAY
    )
    assert error.rule == "resident_id.checksum"
    assert error.field == "id_number"


def test_id_number_credit_code_warns():
    result = normalise_id_number("统一社会信用代码", "91370102MA3C4X5Y1B")
    assert result.value == "91370102MA3C4X5Y1B"
    assert [warning.rule for warning in result.warnings] == ["credit_code.checksum"]
    assert result.warnings[0].field == "id_number"


def test_id_number_residence_permit():
    number = "81000019800101001" + expected_resident_check("81000019800101001")
    assert normalise_id_number("港澳台居民居住证", number, today=TODAY).value == number


def test_id_number_residence_permit_mainland_region():
    number = "11010519491231002X"
    error = rejection(normalise_id_number, "港澳台居民居住证", number, today=TODAY)
    assert error.rule == "resident_id.region"


@pytest.mark.parametrize(
    ("id_type", "text", "value"),
    [
        ("护照", "e12345678", "E12345678"),
        ("护照", "Ｇ１２３４５６７８", "G12345678"),
        ("港澳居民来往内地通行证", "H 1234 5678", "H12345678"),
        ("台湾居民来往大陆通行证", "01234567", "01234567"),
        ("外国人永久居留身份证", "USA110082010101", "USA110082010101"),
        ("军官证", "南字第0123456号", "南字第0123456号"),
        ("其他", "AB-12(3)", "AB-12(3)"),
        ("其他", "ＡＢ－１２（３）", "AB-12(3)"),
        # A passport number takes no checksum, even when it looks like a resident ID.
        ("护照", "110105194912310021", "110105194912310021"),
    ],
)
def test_id_number_other_types(id_type, text, value):
    result = normalise_id_number(id_type, text)
    assert result.value == value
    assert result.warnings == ()


@pytest.mark.parametrize(
    ("text", "rule", "position"),
    [
        ("E12", "id_number.length", None),
        ("", "id_number.length", None),
        ("E" * 33, "id_number.length", None),
        ("E1234/5678", "id_number.characters", 6),
        ("E1234.5678", "id_number.characters", 6),
    ],
)
def test_id_number_other_rejected(text, rule, position):
    error = rejection(normalise_id_number, "护照", text)
    assert error.rule == rule
    assert error.position == position


def test_id_number_unknown_type():
    error = rejection(normalise_id_number, "身份证", "11010519491231002X")
    assert error.rule == "id_type.unknown"
    assert error.field == "id_type"
    for id_type in ID_TYPES:
        assert id_type in str(error)


# --- mobile numbers --------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("13800138000", "13800138000"),
        ("138 0013 8000", "13800138000"),
        ("138-0013-8000", "13800138000"),
        ("+86 138 0013 8000", "13800138000"),
        ("+8613800138000", "13800138000"),
        ("008613800138000", "13800138000"),
        ("8613800138000", "13800138000"),
        ("１９９０００００００１", "19900000001"),
        (" 15012345678 ", "15012345678"),
    ],
)
def test_mobile_valid(text, number):
    assert normalise_mobile(text) == number


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "mobile.length"),
        ("1380013800", "mobile.length"),
        ("138001380001", "mobile.length"),
        ("+86 138 0013 800", "mobile.length"),
        ("12800138000", "mobile.prefix"),
        ("23800138000", "mobile.prefix"),
        ("0531-8888123", "mobile.prefix"),
        ("138001380OO", "mobile.characters"),
        ("(138)00138000", "mobile.characters"),
    ],
)
def test_mobile_rejected(text, rule):
    assert rejection(normalise_mobile, text).rule == rule


# --- certificate numbers ---------------------------------------------------


def test_certificate_no_folding_equal():
    full_width = normalise_certificate_no("鲁（2023）济南市不动产权第０００１２３４号")
    half_width = normalise_certificate_no("鲁(2023)济南市不动产权第0001234号")
    assert full_width == half_width
    assert half_width == "鲁(2023)济南市不动产权第0001234号"


@pytest.mark.parametrize(
    "text",
    [
        "鲁（２０２３）济南市不动产权第０００１２３４号",
        " 鲁 (2023) 济南市 不动产权第 0001234 号 ",
        "鲁〔2023〕济南市不动产权第0001234号",
        "鲁【2023】济南市不动产权第0001234号",
        "鲁[2023]济南市不动产权第0001234号",
        "鲁［2023］济南市不动产权第0001234号",
        "鲁\u3000(2023)济南市不动产权第0001234号",
    ],
)
def test_certificate_no_variants(text):
    assert normalise_certificate_no(text) == "鲁(2023)济南市不动产权第0001234号"


def test_certificate_no_proof_form_accepted():
    text = "鲁(2021)济南市不动产证明第0012345号"
    assert normalise_certificate_no(text) == text


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "certificate_no.empty"),
        ("   ", "certificate_no.empty"),
        ("鲁2023济南市不动产权第0001234号", "certificate_no.year"),
        ("鲁(23)济南市不动产权第0001234号", "certificate_no.year"),
        ("鲁(2023)济南市不动产权第号", "certificate_no.serial"),
        ("鲁(2023)济南市不动产权第0001234", "certificate_no.serial"),
        ("鲁(2023)济南市不动产权0001234号", "certificate_no.serial"),
        ("370102001001GB00001F00010001", "certificate_no.year"),
    ],
)
def test_certificate_no_rejected(text, rule):
    assert rejection(normalise_certificate_no, text).rule == rule


# --- names -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("张三", "张三"),
        ("  张 三  ", "张三"),
        ("欧阳\u3000娜娜", "欧阳娜娜"),
        ("买买提·吐尔逊", "买买提·吐尔逊"),
        ("买买提•吐尔逊", "买买提·吐尔逊"),
        ("买买提・吐尔逊", "买买提·吐尔逊"),
        ("买买提‧吐尔逊", "买买提·吐尔逊"),
        ("买买提･吐尔逊", "买买提·吐尔逊"),
        ("买买提 · 吐尔逊", "买买提·吐尔逊"),
        ("John   Smith", "John Smith"),
        ("Ｊｏｈｎ　Ｓｍｉｔｈ", "John Smith"),
        ("济南水务集团有限公司", "济南水务集团有限公司"),
        ("济南某某置业有限公司（历下分公司）", "济南某某置业有限公司(历下分公司)"),
        ("张\t三", "张三"),
    ],
)
def test_name_normalised(text, name):
    assert normalise_name(text) == name


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("", "name.empty"),
        (None, "name.empty"),
        ("  \u3000 ", "name.empty"),
        ("张\x00三", "name.characters"),
    ],
)
def test_name_rejected(text, rule):
    assert rejection(normalise_name, text).rule == rule

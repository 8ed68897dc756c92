import pytest

from domain.identifiers import resident_id_check_char
from linkage.normalise import (
    HolderId,
    name_key,
    normalise_id,
    normalise_ids,
    normalise_person_name,
    normalised_id_value,
    split_id_field,
)


def _resident_id(first17):
    return first17 + resident_id_check_char(first17)


ID_X = "37010219840108008X"
ID_PLAIN = _resident_id("37011219650504024")


def test_check_character_fixture():
    assert resident_id_check_char(ID_X[:17]) == "X"


@pytest.mark.parametrize(
    "text",
    [
        ID_X,
        ID_X.lower(),
        f"  {ID_X}  ",
        "３７０１０２１９８４０１０８００８Ｘ",
        "370102 19840108 008X",
    ],
)
def test_normalise_id_resident_forms(text):
    assert normalise_id(text) == HolderId(ID_X, "resident")


def test_normalise_id_fifteen_digits():
    # 15-digit IDs issued before 1999 gain the century 19 and a check character.
    converted = normalise_id("370102840108001")

    assert converted.value == _resident_id("37010219840108001")
    assert converted.kind == "resident"
    assert converted.checked


def test_normalise_id_wrong_check_character():
    wrong = ID_PLAIN[:17] + ("0" if ID_PLAIN[17] != "0" else "1")

    holder_id = normalise_id(wrong)

    assert holder_id.value == wrong
    assert holder_id.kind == "resident"
    assert holder_id.checked is False


def test_normalise_id_credit_code():
    holder_id = normalise_id("91370100ma3c0000x0")

    assert holder_id.value == "91370100MA3C0000X0"
    assert holder_id.kind == "other"


def test_normalise_id_blank():
    assert normalise_id("  ") is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"{ID_X};{ID_PLAIN}", (ID_X, ID_PLAIN)),
        (f"{ID_X}；{ID_PLAIN}", (ID_X, ID_PLAIN)),
        (f"{ID_X}，{ID_PLAIN}", (ID_X, ID_PLAIN)),
        (f"{ID_X}、{ID_PLAIN}", (ID_X, ID_PLAIN)),
        (f"{ID_X} {ID_PLAIN}", (ID_X, ID_PLAIN)),
        (f"{ID_X}\n{ID_PLAIN}", (ID_X, ID_PLAIN)),
        ("370102 19840108 008X", ("370102 19840108 008X",)),
        ("", ()),
        (" ; ", ()),
    ],
)
def test_split_id_field(text, expected):
    assert split_id_field(text) == expected


def test_normalise_ids_keeps_every_id_once():
    ids = normalise_ids([ID_X.lower(), ID_PLAIN, ID_X, "370102840108001"])

    assert [holder_id.value for holder_id in ids] == [
        ID_X,
        ID_PLAIN,
        _resident_id("37010219840108001"),
    ]


@pytest.mark.parametrize(
    "text",
    [
        "阿依古丽·买买提",
        "阿依古丽•买买提",
        "阿依古丽・买买提",
        "阿依古丽‧买买提",
        "阿依古丽.买买提",
        "阿依古丽 . 买买提",
        "阿依古丽･买买提",
    ],
)
def test_normalise_person_name_middle_dots(text):
    assert normalise_person_name(text) == "阿依古丽·买买提"


@pytest.mark.parametrize("text", ["王 伟", " 王伟 ", "王　伟", "王伟"])
def test_normalise_person_name_spaces(text):
    assert normalise_person_name(text) == "王伟"


def test_normalise_person_name_blank():
    assert normalise_person_name("  ") == ""


def test_name_key_drops_dot():
    assert name_key("阿依古丽·买买提") == name_key("阿依古丽买买提")


def test_name_key_latin_case():
    assert name_key("John SMITH") == name_key("john smith")


@pytest.mark.parametrize(
    "text",
    [
        ID_X,
        ID_PLAIN,
        ID_X.lower(),
        f" {ID_X}",
        "３７０１０２１９８４０１０８００８Ｘ",
        "370102840108001",
        # canonical in form but with a wrong check character, region or
        # birth date, which normalise_id keeps as typed
        ID_PLAIN[:17] + ("0" if ID_PLAIN[17] != "0" else "1"),
        _resident_id("99010219840108008"),
        _resident_id("37010219841308008"),
        "91370100MA3C0000X0",
        "91370100ma3c0000x0",
        "",
        "  ",
    ],
)
def test_normalised_id_value_matches_normalise_id(text):
    holder_id = normalise_id(text)

    expected = None if holder_id is None else holder_id.value
    assert normalised_id_value(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "王伟",
        "欧阳娜娜",
        "阿依古丽买买提",
        "阿依古丽·买买提",
        "王 伟",
        "王伟 ",
        "ＷＡＮＧ",
        "Wang",
    ],
)
def test_name_key_han_only_fast_path(text):
    slow = normalise_person_name(text).replace("·", "").replace(" ", "").casefold()

    assert name_key(text) == slow

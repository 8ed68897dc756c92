"""Normalise and validate the identifiers that registry and utility records carry.

Every function is pure and cheap, because bulk linkage runs them over whole
account rosters. A valid value is matched by one compiled pattern, and the
slower per-position checks run only to explain a rejection.

Messages name positions and characters but never echo a whole ID number,
because error text may reach logs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from operator import mul
from typing import NamedTuple

__all__ = [
    "ID_TYPES",
    "IdentifierWarning",
    "InvalidIdentifier",
    "NormalisedId",
    "county_of_unit_code",
    "credit_code_check_char",
    "fold_width",
    "normalise_certificate_no",
    "normalise_credit_code",
    "normalise_id_number",
    "normalise_mobile",
    "normalise_name",
    "normalise_resident_id",
    "normalise_unit_code",
    "resident_id_check_char",
]


class InvalidIdentifier(ValueError):
    """An identifier that breaks its published layout.

    `field` is the input field the value came from, `rule` a stable machine code
    such as "unit_code.length", and `position` the 1-based character position at
    fault, when one position is.
    """

    def __init__(
        self,
        message: str,
        *,
        rule: str,
        field: str,
        position: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.rule = rule
        self.field = field
        self.position = position


@dataclass(frozen=True, slots=True)
class IdentifierWarning:
    """A doubt about an accepted identifier, such as a failed check character."""

    field: str
    rule: str
    message: str


class NormalisedId(NamedTuple):
    """An accepted identifier in canonical form, with any warnings about it."""

    value: str
    warnings: tuple[IdentifierWarning, ...] = ()


# Full-width forms U+FF01..U+FF5E map to printable ASCII by subtracting 0xFEE0.
_WIDTH_TABLE = {code: code - 0xFEE0 for code in range(0xFF01, 0xFF5F)}
_WIDTH_TABLE[0x3000] = 0x20  # ideographic space

_WHITESPACE = re.compile(r"\s+")
_DIGITS = frozenset("0123456789")


def fold_width(text: str) -> str:
    """Fold full-width ASCII forms and the ideographic space to half-width."""
    if text.isascii():
        return text
    return text.translate(_WIDTH_TABLE)


def _compact(text: str | None) -> str:
    """Fold width and remove all whitespace, including inner spaces."""
    if not text:
        return ""
    return _WHITESPACE.sub("", fold_width(text))


def _describe(char: str) -> str:
    """Quote a character for a message, spelling out invisible ones."""
    if char.isprintable():
        return repr(char)
    return f"U+{ord(char):04X}"


# --- unit code (GB/T 37346) -------------------------------------------------

UNIT_CODE_LENGTH = 28

_UNIT_CODE = re.compile(r"[0-9]{12}[GJZ][ABSXCDEFHGWYLN][0-9]{5}[FLQW][0-9]{8}")

# (first position, last position, rule suffix, meaning, allowed letters).
# An empty letter string means the segment takes digits only.
_UNIT_CODE_SEGMENTS = (
    (1, 6, "county_code", "county-level division code", ""),
    (7, 9, "cadastral_district", "cadastral district", ""),
    (10, 12, "cadastral_subdistrict", "cadastral sub-district", ""),
    (13, 13, "land_ownership", "land ownership", "GJZ"),
    (14, 14, "land_right", "kind of land right", "ABSXCDEFHGWYLN"),
    (15, 19, "parcel_serial", "parcel serial number", ""),
    (20, 20, "fixture_type", "what stands on the parcel", "FLQW"),
    (21, 28, "unit_serial", "unit serial number", ""),
)

# Jinan's county-level divisions after Laiwu was merged in (2019).
JINAN_COUNTIES = {
    "370102": "历下区",
    "370103": "市中区",
    "370104": "槐荫区",
    "370105": "天桥区",
    "370112": "历城区",
    "370113": "长清区",
    "370114": "章丘区",
    "370115": "济阳区",
    "370116": "莱芜区",
    "370117": "钢城区",
    "370124": "平阴县",
    "370126": "商河县",
}


def normalise_unit_code(text: str | None, *, field: str = "unit_code") -> str:
    """Return the unit code upper-cased and half-width, or raise InvalidIdentifier.

    Whitespace anywhere in the text is dropped. The layout check is national, so
    codes from counties outside Jinan are accepted.
    """
    code = _compact(text).upper()
    if _UNIT_CODE.fullmatch(code):
        return code

    if len(code) != UNIT_CODE_LENGTH:
        raise InvalidIdentifier(
            f"Unit code must be {UNIT_CODE_LENGTH} characters; got {len(code)}. "
            "Copy the whole code from the property certificate or registry record.",
            rule="unit_code.length",
            field=field,
        )
    _raise_unit_code_position(code, field)
    raise AssertionError("unit code pattern and segment table disagree")


def _raise_unit_code_position(code: str, field: str) -> None:
    """Raise InvalidIdentifier naming the first position that breaks the layout."""
    for first, last, suffix, meaning, letters in _UNIT_CODE_SEGMENTS:
        for position in range(first, last + 1):
            char = code[position - 1]
            if letters and char not in letters:
                allowed = _list_choices(letters)
                expected = f"{allowed} ({meaning})"
            elif not letters and char not in _DIGITS:
                span = (
                    f"position {first}"
                    if first == last
                    else f"positions {first}-{last}"
                )
                expected = f"a digit ({meaning}, {span})"
            else:
                continue
            raise InvalidIdentifier(
                f"Unit code position {position} must be {expected}; "
                f"got {_describe(char)}.",
                rule=f"unit_code.{suffix}",
                field=field,
                position=position,
            )


def _list_choices(letters: str) -> str:
    """Spell out allowed letters as 'G, J or Z'."""
    return ", ".join(letters[:-1]) + " or " + letters[-1]


def county_of_unit_code(code: str) -> str | None:
    """Return the Jinan district or county name for a unit code, or None.

    None means the county code is not one of Jinan's current twelve.
    """
    # NOTE: codes issued under the pre-merger county codes (370181 章丘市,
    # 370125 济阳县, 3712xx 莱芜市) also return None.
    return JINAN_COUNTIES.get(code[:6])


# --- resident ID number (GB 11643) ------------------------------------------

_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]")
_RESIDENT_ID_OLD = re.compile(r"[0-9]{15}")
_RESIDENT_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_CHECK_CHARS = "10X98765432"

# First two digits of the region code: mainland provinces, then Taiwan (71)
# and the Hong Kong, Macao and Taiwan residence-permit prefixes (81, 82, 83).
_PROVINCE_CODES = frozenset(
    "11 12 13 14 15 21 22 23 31 32 33 34 35 36 37 41 42 43 44 45 46 "
    "50 51 52 53 54 61 62 63 64 65 71 81 82 83".split()
)
_PERMIT_PROVINCES = frozenset({"81", "82", "83"})
_EARLIEST_BIRTH_YEAR = 1900


def resident_id_check_char(first17: str, *, field: str = "resident_id") -> str:
    """Compute the GB 11643 check character for the first 17 digits of an ID."""
    if len(first17) != 17 or not _DIGITS.issuperset(first17):
        raise InvalidIdentifier(
            "A resident ID check character needs exactly 17 digits; "
            f"got {len(first17)} characters.",
            rule="resident_id.characters",
            field=field,
        )
    total = sum(map(mul, map(int, first17), _RESIDENT_WEIGHTS))
    return _RESIDENT_CHECK_CHARS[total % 11]


def normalise_resident_id(
    text: str | None,
    *,
    field: str = "resident_id",
    today: date | None = None,
) -> str:
    """Return an 18-character resident ID, or raise InvalidIdentifier.

    Whitespace is dropped, full-width forms are folded and a lower-case check
    character x becomes X. A 15-digit ID issued before 1999 is converted by
    inserting the century 19 and appending the check character. `today` bounds
    the birth date and defaults to the current date.
    """
    number = _compact(text).upper()

    if len(number) == 18:
        _check_resident_characters(number, field)
        _check_resident_region(number, field)
        _check_birth_date(number[6:14], field, today)
        expected = resident_id_check_char(number[:17], field=field)
        if number[17] != expected:
            raise InvalidIdentifier(
                "Resident ID check character (position 18) does not match the "
                "first 17 digits. One of the 18 characters is probably mistyped.",
                rule="resident_id.checksum",
                field=field,
                position=18,
            )
        return number

    if len(number) == 15:
        _check_resident_characters(number, field)
        _check_resident_region(number, field)
        _check_birth_date("19" + number[6:12], field, today)
        first17 = number[:6] + "19" + number[6:]
        return first17 + resident_id_check_char(first17, field=field)

    raise InvalidIdentifier(
        "Resident ID must be 18 characters, or 15 digits for IDs issued before "
        f"1999; got {len(number)}.",
        rule="resident_id.length",
        field=field,
    )


def _check_resident_characters(number: str, field: str) -> None:
    pattern = _RESIDENT_ID if len(number) == 18 else _RESIDENT_ID_OLD
    if pattern.fullmatch(number):
        return

    last = len(number) - 1
    for index, char in enumerate(number):
        if char in _DIGITS or (index == last == 17 and char == "X"):
            continue
        if len(number) == 18:
            expected = "a digit, or X at position 18"
        else:
            expected = "a digit (15-character IDs have no check character)"
        raise InvalidIdentifier(
            f"Resident ID position {index + 1} must be {expected}; "
            f"got {_describe(char)}.",
            rule="resident_id.characters",
            field=field,
            position=index + 1,
        )


def _check_resident_region(number: str, field: str) -> None:
    if number[:2] not in _PROVINCE_CODES:
        raise InvalidIdentifier(
            "Resident ID positions 1-2 must be a province code such as 37 "
            f"(Shandong); got {number[:2]!r}.",
            rule="resident_id.region",
            field=field,
            position=1,
        )


def _check_birth_date(digits: str, field: str, today: date | None) -> None:
    """Raise unless the YYYYMMDD digits are a real date from 1900 up to today."""
    year, month, day = int(digits[:4]), int(digits[4:6]), int(digits[6:8])
    problem = None
    try:
        birth = date(year, month, day)
    except ValueError:
        problem = "is not a real date"
    else:
        if year < _EARLIEST_BIRTH_YEAR:
            problem = f"is before {_EARLIEST_BIRTH_YEAR}"
        elif birth > (today or date.today()):
            problem = "is in the future"

    if problem:
        raise InvalidIdentifier(
            f"Resident ID birth date {digits[:4]}-{digits[4:6]}-{digits[6:8]} "
            f"{problem}. Positions 7-14 hold the birth date as YYYYMMDD.",
            rule="resident_id.birth_date",
            field=field,
            position=7,
        )


# --- unified social credit code (GB 32100) -----------------------------------

# The code alphabet leaves out I, O, Z, S and V, which read like 1, 0, 2, 5 and U.
_CREDIT_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_CREDIT_VALUES = {char: value for value, char in enumerate(_CREDIT_ALPHABET)}
_CREDIT_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
_CREDIT_CODE = re.compile(f"[{_CREDIT_ALPHABET}]{{18}}")


def credit_code_check_char(first17: str, *, field: str = "credit_code") -> str:
    """Compute the GB 32100 check character for the first 17 characters."""
    first17 = first17.upper()
    if len(first17) != 17:
        raise InvalidIdentifier(
            "A credit code check character needs exactly 17 characters; "
            f"got {len(first17)}.",
            rule="credit_code.length",
            field=field,
        )
    _check_credit_characters(first17, field)
    total = sum(map(mul, map(_CREDIT_VALUES.__getitem__, first17), _CREDIT_WEIGHTS))
    return _CREDIT_ALPHABET[(31 - total % 31) % 31]


def normalise_credit_code(
    text: str | None, *, field: str = "credit_code"
) -> NormalisedId:
    """Return an upper-case 18-character credit code, or raise InvalidIdentifier.

    A wrong check character is only a warning, because some legally issued codes
    fail the check.
    """
    code = _compact(text).upper()
    if len(code) != 18:
        raise InvalidIdentifier(
            f"Unified social credit code must be 18 characters; got {len(code)}.",
            rule="credit_code.length",
            field=field,
        )
    if not _CREDIT_CODE.fullmatch(code):
        _check_credit_characters(code, field)

    if credit_code_check_char(code[:17], field=field) == code[17]:
        return NormalisedId(code)
    warning = IdentifierWarning(
        field=field,
        rule="credit_code.checksum",
        message=(
            "Unified social credit code check character (position 18) does not "
            "match the first 17 characters. Confirm the code against the "
            "business licence."
        ),
    )
    return NormalisedId(code, (warning,))


def _check_credit_characters(code: str, field: str) -> None:
    for index, char in enumerate(code):
        if char not in _CREDIT_VALUES:
            raise InvalidIdentifier(
                f"Unified social credit code position {index + 1} must be a digit "
                f"or a letter other than I, O, Z, S and V; got {_describe(char)}.",
                rule="credit_code.characters",
                field=field,
                position=index + 1,
            )


# --- ID numbers by ID type ---------------------------------------------------

RESIDENT_ID_CARD = "居民身份证"
RESIDENCE_PERMIT = "港澳台居民居住证"
CREDIT_CODE = "统一社会信用代码"

ID_TYPES = (
    RESIDENT_ID_CARD,
    "护照",
    "港澳居民来往内地通行证",
    "台湾居民来往大陆通行证",
    RESIDENCE_PERMIT,
    "外国人永久居留身份证",
    "军官证",
    CREDIT_CODE,
    "其他",
)

# Officer IDs are printed like 南字第0123456号, so Chinese characters are allowed.
_OTHER_ID = re.compile(r"[0-9A-Z()\-\u3400-\u4dbf\u4e00-\u9fff]{4,32}")
_OTHER_ID_CHAR = re.compile(r"[0-9A-Z()\-\u3400-\u4dbf\u4e00-\u9fff]")


def normalise_id_number(
    id_type: str,
    text: str | None,
    *,
    field: str = "id_number",
    today: date | None = None,
) -> NormalisedId:
    """Normalise an ID number by its ID type, or raise InvalidIdentifier.

    Resident ID cards take the GB 11643 check and credit codes the GB 32100
    check. Hong Kong, Macao and Taiwan residence permits carry GB 11643 numbers
    with region 810000, 820000 or 830000, so they take the resident check too.
    Other types get only a length and character check.
    """
    if id_type == RESIDENT_ID_CARD:
        return NormalisedId(normalise_resident_id(text, field=field, today=today))
    if id_type == CREDIT_CODE:
        return normalise_credit_code(text, field=field)
    if id_type == RESIDENCE_PERMIT:
        return NormalisedId(_normalise_residence_permit(text, field, today))
    if id_type in ID_TYPES:
        return NormalisedId(_normalise_other_id(text, field))

    raise InvalidIdentifier(
        f"Unknown ID type {id_type!r}. Use one of: {', '.join(ID_TYPES)}.",
        rule="id_type.unknown",
        field="id_type",
    )


def _normalise_residence_permit(
    text: str | None, field: str, today: date | None
) -> str:
    number = normalise_resident_id(text, field=field, today=today)
    if number[:2] not in _PERMIT_PROVINCES:
        raise InvalidIdentifier(
            "A Hong Kong, Macao or Taiwan residence permit number must start with "
            f"81, 82 or 83; got {number[:2]!r}. Use ID type {RESIDENT_ID_CARD} "
            "for a mainland ID card.",
            rule="resident_id.region",
            field=field,
            position=1,
        )
    return number


def _normalise_other_id(text: str | None, field: str) -> str:
    number = _compact(text).upper()
    if _OTHER_ID.fullmatch(number):
        return number

    if not 4 <= len(number) <= 32:
        raise InvalidIdentifier(
            f"ID number must be 4 to 32 characters; got {len(number)}.",
            rule="id_number.length",
            field=field,
        )
    for index, char in enumerate(number):
        if not _OTHER_ID_CHAR.fullmatch(char):
            raise InvalidIdentifier(
                f"ID number position {index + 1} must be a letter, a digit, a "
                f"bracket or a hyphen; got {_describe(char)}.",
                rule="id_number.characters",
                field=field,
                position=index + 1,
            )
    raise AssertionError("ID number pattern and character check disagree")


# --- mobile numbers ----------------------------------------------------------

_MOBILE = re.compile(r"1[3-9][0-9]{9}")
_MOBILE_SEPARATORS = re.compile(r"[\s\-]+")


def normalise_mobile(text: str | None, *, field: str = "mobile") -> str:
    """Return an 11-digit mainland mobile number, or raise InvalidIdentifier.

    Spaces and hyphens are dropped, and a +86, 0086 or 86 country prefix is
    removed.
    """
    number = _MOBILE_SEPARATORS.sub("", fold_width(text or ""))
    if _MOBILE.fullmatch(number):
        return number

    if number.startswith("+86"):
        number = number[3:]
    elif number.startswith("0086"):
        number = number[4:]
    elif number.startswith("86") and len(number) == 13:
        number = number[2:]
    if _MOBILE.fullmatch(number):
        return number

    if not _DIGITS.issuperset(number):
        raise InvalidIdentifier(
            "Mobile number may contain only digits, spaces, hyphens and a +86 prefix.",
            rule="mobile.characters",
            field=field,
        )
    if len(number) != 11:
        raise InvalidIdentifier(
            f"Mobile number must be 11 digits; got {len(number)}.",
            rule="mobile.length",
            field=field,
        )
    raise InvalidIdentifier(
        f"Mobile number must start with 13 to 19; got {number[:2]!r}.",
        rule="mobile.prefix",
        field=field,
        position=1,
    )


# --- property certificate numbers --------------------------------------------

# Brackets people type around the year: full-width （） fold to () in
# fold_width, and the others are folded here.
_BRACKETS = str.maketrans({"〔": "(", "〕": ")", "【": "(", "】": ")"})
_BRACKETS.update(str.maketrans("[]", "()"))
_CERTIFICATE_YEAR = re.compile(r"\([0-9]{4}\)")
_CERTIFICATE_SERIAL = re.compile(r"第[0-9]+号$")


def normalise_certificate_no(text: str | None, *, field: str = "certificate_no") -> str:
    """Return a certificate number in one canonical form, or raise InvalidIdentifier.

    Full-width forms fold to half-width, every bracket becomes ( or ), and all
    whitespace is dropped, so numbers typed either way compare equal. The check
    is loose: a bracketed 4-digit year and a closing 第<digits>号, as in
    鲁(2023)济南市不动产权第0001234号.
    """
    number = _compact(text).translate(_BRACKETS)
    if not number:
        raise InvalidIdentifier(
            "Certificate number is empty.",
            rule="certificate_no.empty",
            field=field,
        )
    if not _CERTIFICATE_YEAR.search(number):
        raise InvalidIdentifier(
            "Certificate number must contain the year in brackets, as in "
            "鲁(2023)济南市不动产权第0001234号.",
            rule="certificate_no.year",
            field=field,
        )
    if not _CERTIFICATE_SERIAL.search(number):
        raise InvalidIdentifier(
            "Certificate number must end with 第, the serial digits and 号, as in "
            "鲁(2023)济南市不动产权第0001234号.",
            rule="certificate_no.serial",
            field=field,
        )
    return number


# --- names -------------------------------------------------------------------

_HAN = r"\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"
_SPACE_BETWEEN_HAN = re.compile(f"(?<=[{_HAN}])\\s+(?=[{_HAN}])")
_SPACE_AROUND_DOT = re.compile(r"\s*·\s*")
# Middle dots typed between the parts of a transliterated name: · (U+00B7),
# the Greek ano teleia, bullets, the hyphenation point, operator dots, the
# word-separator dot and the full-width and half-width katakana middle dots.
_MIDDLE_DOT_VARIANTS = "\u00b7\u0387\u2022\u2027\u2219\u22c5\u2e31\u30fb\uff65"
_MIDDLE_DOTS = str.maketrans(dict.fromkeys(_MIDDLE_DOT_VARIANTS, "·"))
# Control characters other than \t, \n, \v, \f and \r, which count as whitespace.
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")


def normalise_name(text: str | None, *, field: str = "name") -> str:
    """Return a person's or organisation's name in canonical form.

    Full-width forms fold to half-width, middle-dot variants become ·, spaces
    between Chinese characters and around · are dropped, and other runs of
    whitespace shrink to one space. Raise InvalidIdentifier when nothing is left
    or when the name contains control characters.
    """
    name = fold_width(text or "").translate(_MIDDLE_DOTS).strip()
    if _CONTROL.search(name):
        raise InvalidIdentifier(
            "Name contains a control character; remove it and send the name again.",
            rule="name.characters",
            field=field,
        )
    name = _SPACE_BETWEEN_HAN.sub("", name)
    name = _SPACE_AROUND_DOT.sub("·", name)
    name = _WHITESPACE.sub(" ", name)
    if not name:
        raise InvalidIdentifier("Name is empty.", rule="name.empty", field=field)
    return name

"""Put ID numbers and names from rosters and registry exports into comparable form.

normalise_id("37010219840108008x")  -> HolderId("37010219840108008X", "resident")
normalise_ids(["370102840108001", "37010219840108008X"])  -> tuple of HolderId
name_key("阿依古丽 . 买买提")  -> "阿依古丽买买提"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from domain.identifiers import (
    InvalidIdentifier,
    fold_width,
    normalise_credit_code,
    normalise_name,
    normalise_resident_id,
    resident_id_check_char,
)

__all__ = [
    "HolderId",
    "is_credit_code",
    "name_key",
    "normalise_id",
    "normalise_ids",
    "normalised_id_value",
    "normalise_person_name",
    "split_id_field",
]

# Separators between several ID numbers in one cell. Whitespace is handled
# apart, because people also type spaces inside one ID (370102 19840108 0012).
_ID_SEPARATORS = re.compile(r"[;；,，、/|\n\r]+")
_WHITESPACE = re.compile(r"\s+")
_RESIDENT_SHAPE = re.compile(r"[0-9]{17}[0-9X]|[0-9]{15}")
# A resident ID in the form that normalise_id returns.
_CANONICAL_RESIDENT = re.compile(r"[0-9]{17}[0-9X]")
# Most names: Chinese characters only, which name_key returns unchanged.
_HAN_ONLY = re.compile(r"[\u4e00-\u9fff]+")
# A full stop typed as the middle dot of a transliterated name: 阿依古丽.买买提.
_DOT_BETWEEN_HAN = re.compile(r"(?<=[\u3400-\u9fff])\s*\.\s*(?=[\u3400-\u9fff])")


@dataclass(frozen=True, slots=True)
class HolderId:
    """An ID number in canonical form.

    `kind` is "resident" for an 18-character resident ID (15-digit ones are
    converted), or "other" for credit codes, passports and other types.
    `checked` is False for a resident ID whose check character does not match
    its first 17 digits. Such a value is probably mistyped. It is kept because
    the registry may contain the same typing.
    """

    value: str
    kind: str
    checked: bool = True


def split_id_field(text: str) -> tuple[str, ...]:
    """Split a cell that may hold several ID numbers into the numbers as typed."""
    numbers = []
    for piece in _ID_SEPARATORS.split(text or ""):
        piece = piece.strip()
        if not piece:
            continue
        compact = _WHITESPACE.sub("", piece)
        if len(compact) in (15, 18) or " " not in piece:
            numbers.append(piece)
        else:
            numbers.extend(_WHITESPACE.split(piece))
    return tuple(numbers)


def normalise_id(text: str) -> HolderId | None:
    """Return one ID number in canonical form, or None when nothing is left.

    Whitespace goes, full-width forms fold, a lower-case x becomes X and a
    15-digit resident ID becomes its 18-character form. A resident ID with a
    wrong check character is kept with `checked=False`.
    """
    compact = _WHITESPACE.sub("", fold_width(text or "")).upper()
    if not compact:
        return None
    if not _RESIDENT_SHAPE.fullmatch(compact):
        return HolderId(compact, "other")
    try:
        return HolderId(normalise_resident_id(compact), "resident")
    except InvalidIdentifier as error:
        if error.rule != "resident_id.checksum":
            return HolderId(compact, "other", checked=False)
    expected = resident_id_check_char(compact[:17])
    return HolderId(compact, "resident", checked=compact[17] == expected)


def normalised_id_value(text: str) -> str | None:
    """Return normalise_id(text).value, or None when nothing is left.

    A number already typed as 18 digits, or 17 digits and X, is returned as
    it is without the checks, because normalise_id returns such a number
    unchanged whether or not its region, birth date and check character are
    valid. Only the kind it gives depends on them.
    """
    if text and _CANONICAL_RESIDENT.fullmatch(text):
        return text
    holder_id = normalise_id(text)
    return None if holder_id is None else holder_id.value


def normalise_ids(numbers: tuple[str, ...] | list[str]) -> tuple[HolderId, ...]:
    """Normalise every ID number of an account or owner, dropping repeats."""
    seen: dict[str, HolderId] = {}
    for text in numbers:
        holder_id = normalise_id(text)
        if holder_id is not None and holder_id.value not in seen:
            seen[holder_id.value] = holder_id
    return tuple(seen.values())


def is_credit_code(holder_id: HolderId) -> bool:
    """Say whether an ID number is a unified social credit code with a valid
    check character, which only an organisation has."""
    if holder_id.kind != "other" or len(holder_id.value) != 18:
        return False
    try:
        return not normalise_credit_code(holder_id.value).warnings
    except InvalidIdentifier:
        return False


def normalise_person_name(text: str) -> str:
    """Return a name with one kind of middle dot and no stray spaces.

    Returns "" for a blank name or one with control characters, which cannot
    be compared.
    """
    folded = _DOT_BETWEEN_HAN.sub("·", fold_width(text or ""))
    try:
        return normalise_name(folded)
    except InvalidIdentifier:
        return ""


def name_key(text: str) -> str:
    """Return the form of a name used for comparison: no dots, spaces or case.

    People often leave the middle dot out of a transliterated name, so
    阿依古丽·买买提 and 阿依古丽买买提 get the same key.
    """
    if text and _HAN_ONLY.fullmatch(text):
        # Nothing here for normalising to fold, drop or change case.
        return text
    name = normalise_person_name(text)
    return name.replace("·", "").replace(" ", "").casefold()

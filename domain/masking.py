"""Mask personal data for display to staff, agents and logs.

Each mask keeps the value's length, so a masked value still lines up with the
original in tables. None and the empty string are returned unchanged.
"""

from __future__ import annotations

import re

__all__ = [
    "is_organisation_name",
    "mask_address",
    "mask_id_number",
    "mask_name",
    "mask_phone",
]

MASK = "*"

_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f]")

# Words that mark an account holder as an organisation, whose name is public.
_ORGANISATION_WORDS = (
    "公司",
    "集团",
    "有限",
    "中心",
    "局",
    "委员会",
    "银行",
    "分行",
    "支行",
    "合作社",
    "医院",
    "学校",
    "大学",
    "学院",
    "研究所",
    "研究院",
    "事务所",
    "协会",
    "基金会",
    "商会",
    "政府",
    "办事处",
    "居委会",
    "村委会",
    "街道",
    "社区",
    "物业",
    "厂",
)
_ORGANISATION_LATIN = re.compile(
    r"\b(co|company|corp|corporation|inc|llc|ltd|limited|group|bank)\b",
    re.IGNORECASE,
)
# Every word character that follows another one, so the first letter of each
# word stays visible.
_LATIN_INNER_LETTER = re.compile(r"(?<=\w)\w")

# The room number: the last digits of the address, optionally followed by
# 室, 号, 户 or 房. Digits right after a road name are a door number instead.
_ROOM = re.compile(r"(?P<room>[0-9０-９]+)(?P<after>[室号户房]?\s*)$")
_ROAD_ENDINGS = ("路", "街", "道", "巷", "弄", "胡同")


def mask_id_number(value: str | None) -> str | None:
    """Mask an ID number, keeping at most a third of it visible.

    An 18-character number keeps its first 6 (the region) and last 4
    characters, as in 370102********123X. Other lengths keep up to 2 characters
    at each end.
    """
    if not value:
        return value

    length = len(value)
    if length == 18:
        return value[:6] + MASK * 8 + value[-4:]

    visible = min(2, length // 6)
    if visible == 0:
        return MASK * length
    return value[:visible] + MASK * (length - 2 * visible) + value[-visible:]


def mask_name(value: str | None) -> str | None:
    """Mask a person's name, leaving organisation names as they are.

    A Chinese name keeps its first character (欧阳娜娜 becomes 欧***), and so
    does a name joined with ·. A Latin name keeps the first letter
    of each word, so John Smith becomes J*** S****.
    """
    if not value or is_organisation_name(value):
        return value

    if _HAN.search(value):
        if len(value) == 1:
            return MASK
        return value[0] + MASK * (len(value) - 1)
    return _LATIN_INNER_LETTER.sub(MASK, value)


def is_organisation_name(value: str) -> bool:
    """Return whether the name contains a word that marks an organisation."""
    if any(word in value for word in _ORGANISATION_WORDS):
        return True
    return bool(_ORGANISATION_LATIN.search(value))


def mask_phone(value: str | None) -> str | None:
    """Mask the digits of a phone number, keeping separators in place.

    With 11 digits or more, the first 3 of the last 11 digits (the mobile
    prefix or the area code) and the last 4 stay visible, so 13800000000
    becomes 138****0000 and +86 138 0000 0000 keeps its country code. Shorter
    numbers keep at most their last third.
    """
    if not value:
        return value

    digit_positions = [index for index, char in enumerate(value) if char.isdigit()]
    count = len(digit_positions)
    if count >= 11:
        start = count - 11
        masked = digit_positions[start + 3 : count - 4]
    else:
        masked = digit_positions[: count - min(4, count // 3)]

    chars = list(value)
    for index in masked:
        chars[index] = MASK
    return "".join(chars)


def mask_address(value: str | None) -> str | None:
    """Mask the room number at the end of an address.

    Only the digits change: 燕子山小区3号楼2单元501 becomes
    燕子山小区3号楼2单元***, and 3-2-501室 becomes 3-2-***室. An address that
    ends in a road's door number, such as 燕子山路2号, or in no number at all
    is returned unchanged.
    """
    if not value:
        return value

    match = _ROOM.search(value)
    if match is None:
        return value
    head = value[: match.start("room")]
    if head.endswith(_ROAD_ENDINGS):
        return value
    return head + MASK * len(match["room"]) + match["after"]

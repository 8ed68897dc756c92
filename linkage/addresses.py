"""Parse Chinese address text into the parts that identify a flat.

The same flat is written many ways:

    历下区燕子山路2号燕子山小区3号楼2单元501
    济南市历下区燕子山小区3栋2单元501室
    燕子山小区３－２－５０１
    山东省济南市历下区燕子山小区三号楼二单元501

`parse_address(text)` returns a ParsedAddress with the province, city,
district (under its current name), subdistrict, road and house number,
community (小区), zone, building, stair (单元), floor and room. Parts that
the text does not give are None. The parser never guesses a part from
another source: a missing district stays missing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

__all__ = [
    "DISTRICTS",
    "ParsedAddress",
    "clean_address",
    "community_key",
    "parse_address",
]


@dataclass(frozen=True, slots=True)
class ParsedAddress:
    """The parts of one address. Numbers are strings without leading zeros."""

    text: str
    province: str | None = None
    city: str | None = None
    district: str | None = None
    subdistrict: str | None = None
    road: str | None = None
    road_no: str | None = None
    community: str | None = None
    zone: str | None = None
    building: str | None = None
    stair: str | None = None
    floor: int | None = None
    room: str | None = None


# Jinan's districts and counties by current name, with the names they had
# before the 2016-2019 changes (章丘市, 济阳县, 长清县; 莱城区 of the former
# 莱芜市). Old records and residents still use the old names.
DISTRICTS = {
    "历下区": "历下区",
    "市中区": "市中区",
    "槐荫区": "槐荫区",
    "天桥区": "天桥区",
    "历城区": "历城区",
    "长清区": "长清区",
    "长清县": "长清区",
    "章丘区": "章丘区",
    "章丘市": "章丘区",
    "济阳区": "济阳区",
    "济阳县": "济阳区",
    "莱芜区": "莱芜区",
    "莱城区": "莱芜区",
    "钢城区": "钢城区",
    "平阴县": "平阴县",
    "商河县": "商河县",
}
# Development zones that people write where the district belongs. They are
# not districts in the registry, so they are dropped and the district stays
# unknown.
_DEVELOPMENT_ZONES = (
    "济南高新技术产业开发区",
    "高新技术产业开发区",
    "新旧动能转换起步区",
    "济南高新区",
    "莱芜高新区",
    "经济开发区",
    "高新区",
    "起步区",
    "南部山区",
)

_PROVINCE = re.compile(r"^(?:中国)?(山东省|山东(?=济南|莱芜))")
_CITY = re.compile(r"^(济南市|济南(?=[\u4e00-\u9fff]{2}[区县市])|莱芜市)")
_DISTRICT = re.compile("^(" + "|".join(sorted(DISTRICTS, key=len, reverse=True)) + ")")
_ZONE_NAME = re.compile("^(" + "|".join(_DEVELOPMENT_ZONES) + ")")
_SUBDISTRICT = re.compile(
    r"^([\u4e00-\u9fff]{2,5}?(?:街道办事处|街道办|街道|镇|乡))"
    r"(?!路|街|大街|大道|小区|社区|\d)"
)
_LEADING_HAN = re.compile(r"[\u4e00-\u9fff]*")
_ROAD = re.compile(
    r"^([\u4e00-\u9fff]{1,12}?(?:大街|大道|路|街|道|巷|胡同|里|弄))"
    r"(\d+(?:-\d+)?)(?:号院|号)(?!楼)"
)

# One number of the building, stair, floor and room part, with its marker.
# A stair may also be named by direction, as in 东单元. The group is atomic,
# so a long run of numbers before text that is not a marker fails at once
# instead of being split into parts every possible way.
_PART = (
    r"(?>(\d+[A-Z]?|[A-Z]\d*)(号楼|号院|单元|栋|幢|座|#|号|楼|门|层|室|户|房|区)?"
    r"|([东西南北中])(单元))"
)
# Longer text is not one address, and parsing it could take quadratic time.
MAX_ADDRESS_LENGTH = 200
# A building, stair or room number longer than this is a misread or a typo.
MAX_NUMBER_LENGTH = 6
_PARTS = re.compile(_PART)
_TAIL = re.compile(rf"(?:{_PART}-?)+$")

_BUILDING_MARKERS = frozenset({"号楼", "栋", "幢", "座", "#"})
_ROOM_MARKERS = frozenset({"室", "户", "房"})

_DASHES = "—–‐‑‒―−~～_"
_OTHER_BRACKETS = {"【": "(", "】": ")", "〔": "(", "〕": ")", "[": "(", "]": ")"}
_DASHES_AND_BRACKETS = str.maketrans({**dict.fromkeys(_DASHES, "-"), **_OTHER_BRACKETS})
# str.translate looks up every character of a Chinese text in the table, so
# a text is translated only when this finds a character to replace.
_TO_TRANSLATE = re.compile("[" + re.escape(_DASHES + "".join(_OTHER_BRACKETS)) + "]")
_WHITESPACE = re.compile(r"\s+")
_TRAILING_NOTE = re.compile(r"\([^()\d]*\)$")
_SPACE_BETWEEN_NUMBERS = re.compile(r"(?<=[0-9A-Za-z])\s+(?=[0-9A-Za-z])")
_ONE_AS_DASH = re.compile(r"(?<=\d)一(?=\d)")
_CHINESE_NUMBER = re.compile(
    r"([零〇一二两三四五六七八九十百]+)"
    r"(?=号|栋|幢|座|单元|门|层|楼|室|户|区|期|$)"
)
_CHINESE_DIGITS = {
    "零": 0,
    "〇": 0,
    "一": 1,
    "二": 2,
    "两": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
}
_COMMUNITY_SUFFIXES = ("住宅小区", "生活小区", "小区", "社区", "生活区")


def clean_address(text: str) -> str:
    """Fold an address to one spelling: half-width, no spaces, Arabic numbers.

    Full-width and other compatibility forms fold (NFKC), every dash becomes
    -, a space between two numbers becomes -, other spaces go, a trailing
    note in brackets without numbers goes, and Chinese numerals before a
    building, stair, floor, room, zone or phase marker become digits.
    """
    text = unicodedata.normalize("NFKC", text or "").strip()
    # Each step below runs only when the text has a character it changes.
    if _TO_TRANSLATE.search(text):
        text = text.translate(_DASHES_AND_BRACKETS)
    if _WHITESPACE.search(text):
        text = _SPACE_BETWEEN_NUMBERS.sub("-", text)
        text = _WHITESPACE.sub("", text)
    if "一" in text:
        text = _ONE_AS_DASH.sub("-", text)
    if "(" in text or ")" in text:
        text = _TRAILING_NOTE.sub("", text).replace("(", "").replace(")", "")
    text = _CHINESE_NUMBER.sub(_arabic, text)
    return text.upper().rstrip("。.,，;；")


def _arabic(match: re.Match) -> str:
    """Write a run of Chinese numerals in Arabic digits.

    A run with 十 or 百 is read by place value, so 二十三 is 23. Other runs are
    read digit by digit, the way room numbers are spoken, so 五〇一 is 501.
    """
    run = match.group(1)
    if "十" not in run and "百" not in run:
        return "".join(str(_CHINESE_DIGITS[char]) for char in run)

    total, digit = 0, 0
    for char in run:
        if char == "百":
            total += (digit or 1) * 100
            digit = 0
        elif char == "十":
            total += (digit or 1) * 10
            digit = 0
        else:
            digit = _CHINESE_DIGITS[char]
    return str(total + digit)


def parse_address(text: str, roads: bool = True) -> ParsedAddress:
    """Parse Chinese address text into a ParsedAddress.

    Accepts full-width digits, Chinese numerals before markers (三号楼,
    十二单元), dashed forms (3-2-501, 3—2—501, 3栋2-501), 号楼/栋/幢/号/座/#
    for a building, 单元/门 for a stair, 层/楼 for a floor, 室/户/房/号 or
    nothing after the room, and a missing province, city or district.

    A name ending in 路, 街 and the like followed by N号 is read as a road and
    house number. With `roads=False` it is read as a community and building
    instead, for communities named like streets (龙奥天街5号1单元402).
    """
    if text and len(text) > MAX_ADDRESS_LENGTH:
        return ParsedAddress(clean_address(text[:MAX_ADDRESS_LENGTH]))
    cleaned = clean_address(text)
    # The start is the leading run of Chinese characters and the character
    # after it, which is all that _read_start looks at.
    start_length = _LEADING_HAN.match(cleaned).end() + 1
    start_parts, rest = _start_parts(cleaned[:start_length])
    parts: dict[str, str | int | None] = dict(start_parts)
    rest += cleaned[start_length:]

    road = _ROAD.match(rest) if roads else None
    if road:
        parts["road"], parts["road_no"] = road.group(1), road.group(2)
        rest = rest[road.end() :]

    tail = _TAIL.search(rest)
    if tail:
        parts.update(_tail_parts(tail.group(0)))
        rest = rest[: tail.start()]
    community = rest.strip("-")
    if community:
        parts["community"] = community
    return ParsedAddress(cleaned, **parts)


# Many addresses start the same way, so the parts read from each start are
# kept for reuse, as the tails are.
START_CACHE_SIZE = 4096


@functools.lru_cache(maxsize=START_CACHE_SIZE)
def _start_parts(start: str) -> tuple[tuple[tuple[str, str], ...], str]:
    """Return the parts _read_start finds, as (name, value) pairs, and the
    rest of `start`."""
    parts: dict[str, str] = {}
    rest = _read_start(start, parts)
    return tuple(parts.items()), rest


def _read_start(rest: str, parts: dict) -> str:
    """Take the province, city, district, development zone and subdistrict
    from the start of an address into `parts`, and return the rest.

    Every pattern here matches Chinese characters only and looks at most one
    character past them, so the result for an address depends only on its
    leading run of Chinese characters and the character after that run.
    """
    for name, pattern in (("province", _PROVINCE), ("city", _CITY)):
        rest = _take(pattern, rest, parts, name)
    # Addresses from before 2019 may name both cities: 济南市莱芜市莱城区.
    rest = _take(_CITY, rest, {}, "city")
    if rest.startswith("中区") and parts.get("city") == "济南市":
        # 济南市中区 is 济南市 followed by 市中区 with one 市 left out.
        rest = "市" + rest
    rest = _take(_DISTRICT, rest, parts, "district")
    if parts.get("district"):
        parts["district"] = DISTRICTS[parts["district"]]
    rest = _take(_ZONE_NAME, rest, parts, None)
    return _take(_SUBDISTRICT, rest, parts, "subdistrict")


def _take(pattern: re.Pattern, rest: str, parts: dict, name: str | None) -> str:
    match = pattern.match(rest)
    if not match:
        return rest
    if name:
        parts[name] = match.group(1)
    return rest[match.end() :]


# Different addresses often end in the same building, stair and room
# numbers, so the parts read from each tail are kept for reuse. An entry
# takes about 450 bytes, so a full cache takes about 7 MB.
TAIL_CACHE_SIZE = 16384


@functools.lru_cache(maxsize=TAIL_CACHE_SIZE)
def _tail_parts(tail: str) -> tuple[tuple[str, str | int], ...]:
    """Return the parts of a tail as (name, value) pairs, which a caller
    cannot change in the cache."""
    return tuple(_read_tail(tail).items())


def _read_tail(tail: str) -> dict:
    """Assign the numbers after the community to building, stair, floor and room.

    Numbers with a marker take its role. Unmarked numbers, as in 3-2-501,
    fill the room from the end, then building and stair from the front, and a
    number left between stair and room is the floor.
    """
    tokens = []
    for match in _PARTS.finditer(tail):
        value = match.group(1) or match.group(3)
        marker = match.group(2) or match.group(4)
        if len(value) > MAX_NUMBER_LENGTH:
            return {}
        tokens.append((value, marker))

    roles: dict[str, str] = {}
    unmarked: list[str] = []
    for index, (value, marker) in enumerate(tokens):
        later = tokens[index + 1 :]
        role = _role_of(marker, later, roles)
        if role is None:
            unmarked.append(value)
        elif role == "building" and "building" in roles:
            roles["zone"] = roles["building"]
            roles["building"] = value
        elif role not in roles:
            roles[role] = value
        else:
            unmarked.append(value)

    if unmarked and "room" not in roles:
        roles["room"] = unmarked.pop()
    floor_marked = "floor" in roles
    for role in ("building", "stair", "floor"):
        if unmarked and role not in roles:
            roles[role] = unmarked.pop(0)
    positional_floor = "floor" in roles and not floor_marked

    parts = _normalise_roles(roles, positional_floor)
    if unmarked or _floor_contradicts_room(parts, positional_floor):
        # More numbers than roles, as in 1-3-0-1: any reading may name the
        # wrong room, so the room is left out.
        parts.pop("room", None)
    return parts


def _role_of(marker: str | None, later: list, roles: dict) -> str | None:
    """Return the role a marker gives its number, or None when it depends on
    the number's place."""
    if marker in _BUILDING_MARKERS:
        return "building"
    if marker in ("单元", "门"):
        return "stair"
    if marker == "层":
        return "floor"
    if marker in _ROOM_MARKERS:
        return "room"
    if marker == "号院":
        return "zone"
    if marker == "区":
        building_follows = any(m in _BUILDING_MARKERS or m == "号" for _, m in later)
        return "zone" if building_follows else "building"
    if marker == "号":
        return "building" if later and "building" not in roles else "room"
    if marker == "楼":
        if "building" not in roles and later:
            return "building"
        return "floor"
    return None


def _normalise_roles(roles: dict[str, str], positional_floor: bool) -> dict:
    parts: dict[str, str | int | None] = {}
    for role in ("zone", "building", "stair"):
        if role in roles:
            parts[role] = _strip_zeros(roles[role])
    floor = roles.get("floor")
    if floor is not None and floor.isdigit():
        parts["floor"] = int(floor)
    room = roles.get("room")
    if room is None:
        return parts

    room = _strip_zeros(room)
    short_room = room.isdigit() and len(room) <= 2
    if "floor" in parts and short_room and not positional_floor:
        # 5层1户 and 5楼01 are room 501, as the registry writes it.
        room = f"{parts['floor']}{int(room):02d}"
    parts["room"] = room
    return parts


def _floor_contradicts_room(parts: dict, positional_floor: bool) -> bool:
    """Say whether a floor read from its place disagrees with the room number."""
    floor, room = parts.get("floor"), parts.get("room")
    if not positional_floor or floor is None or room is None:
        return False
    return not (room.isdigit() and len(room) >= 3 and room[:-2] == str(floor))


def _strip_zeros(value: str) -> str:
    return value.lstrip("0") or "0"


def community_key(name: str | None) -> str | None:
    """Return the form of a community name used for matching, or None.

    Generic endings such as 小区 and 社区 are dropped, so 清河小区, 清河社区
    and 清河 get the same key.
    """
    if not name:
        return None
    key = name.replace("·", "")
    for suffix in _COMMUNITY_SUFFIXES:
        if key.endswith(suffix) and len(key) > len(suffix):
            key = key[: -len(suffix)]
            break
    return key or None

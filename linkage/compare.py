"""Compare one account with one candidate unit and explain the score.

The score is a sum of points for each field that agrees or disagrees. The
points are set by hand: an ID number or certificate match outweighs every
address part, and a different room outweighs any single agreement. They were
checked on generated rosters, not fitted to data. The engine decides links on
the field outcomes (`fits`, `identity`) rather than on the score, which only
orders the candidates shown for review.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from linkage.addresses import ParsedAddress, parse_address
from linkage.index import UnitIndex, UnitView, building_key
from linkage.normalise import is_credit_code, normalise_ids
from linkage.records import Account

__all__ = ["AccountView", "Comparison", "compare", "is_organisation", "view_account"]

PLACE_SAME = 4.0
PLACE_SIMILAR = 2.0
PLACE_DIFFERS = -4.0
DISTRICT_DIFFERS = -2.0
BUILDING_SAME, BUILDING_DIFFERS = 3.0, -6.0
STAIR_SAME, STAIR_DIFFERS = 2.0, -5.0
ROOM_SAME, ROOM_DIFFERS, ROOM_MISSING = 4.0, -8.0, -2.0
ID_OWNER, ID_PREVIOUS = 8.0, 7.0
NAME_OWNER, NAME_PREVIOUS = 2.0, 1.5
CERTIFICATE_SAME = 8.0
AREA_AGREES, AREA_DIFFERS = 1.0, -2.0

# Words that mark a holder as an organisation. An organisation holding a
# home's account is usually the developer or employer that had the home
# before it was sold to a person. Names shorter than 5 characters are taken
# as people's names, which may contain 中心 and the like.
ORGANISATION_WORDS = re.compile(
    r"公司|集团|有限|委员会|学校|学院|大学|医院|银行|合作社|物业|办事处|中心|研究所"
)

# An area within 1.5 m² or 2 % of the building or inner area counts as
# agreeing, to allow for rounding and for areas measured before the final
# survey. The tolerance is chosen by hand, not measured on real rosters.
AREA_TOLERANCE_M2 = 1.5
AREA_TOLERANCE_SHARE = 0.02


@dataclass(slots=True)
class AccountView:
    """An account with its address parsed and identifiers normalised."""

    account: Account
    address: ParsedAddress
    building: str | None
    places: frozenset
    places_exact: bool
    places_ambiguous: bool
    id_keys: frozenset
    name: str
    owner_name: str
    certificate: str | None


@dataclass(slots=True)
class Comparison:
    """The outcome of comparing one account with one unit.

    `fits` means the address agrees on building and room, does not disagree
    on stair or place, and so may be this unit. `identity` means a holder ID
    number or the certificate number matches the unit.
    """

    position: int
    score: float = 0.0
    reasons: list[str] = field(default_factory=list)
    place: str = "unknown"
    stair_missing: bool = False
    district_differs: bool = False
    fits: bool = False
    identity: bool = False
    name_match: bool = False
    area_agrees: bool = False
    area_differs: bool = False


def view_account(account: Account, index: UnitIndex) -> AccountView:
    """Parse and normalise what an account gives, against the index's places."""
    address = parse_address(account.address)
    places, exact, ambiguous = index.resolve_places(address)
    if address.road and not index.knows_road(address):
        # 龙奥天街5号 may be a community named like a street and its building.
        street_like = parse_address(account.address, roads=False)
        found = index.resolve_places(street_like)
        if found[0]:
            address = street_like
            places, exact, ambiguous = found
    return AccountView(
        account=account,
        address=address,
        building=building_key(address),
        places=places,
        places_exact=exact,
        places_ambiguous=ambiguous,
        id_keys=index.id_keys(account.holder_ids),
        name=index.name_key(account.holder_name),
        owner_name=index.name_key(account.owner_name),
        certificate=index.certificate_key(account.certificate_no),
    )


def is_organisation(account: Account) -> bool:
    """Say whether the holder is an organisation, by name or by credit code."""
    name = account.holder_name.strip()
    if len(name) >= 5 and ORGANISATION_WORDS.search(name):
        return True
    holder_ids = normalise_ids(account.holder_ids)
    return any(is_credit_code(holder_id) for holder_id in holder_ids)


def compare(view: AccountView, unit: UnitView, position: int) -> Comparison:
    """Score `unit` as the home of the account in `view`."""
    result = Comparison(position)
    _compare_place(view, unit, result)

    building = _compare_part(
        view.building,
        unit.building,
        "building",
        BUILDING_SAME,
        BUILDING_DIFFERS,
        result,
    )
    stair = _compare_part(
        view.address.stair,
        unit.stair,
        "stair",
        STAIR_SAME,
        STAIR_DIFFERS,
        result,
    )
    room = _compare_part(
        view.address.room, unit.room, "room", ROOM_SAME, ROOM_DIFFERS, result
    )
    if room == "missing":
        result.score += ROOM_MISSING

    result.stair_missing = stair == "missing"
    # A single-building estate may be written without a building on both sides.
    no_buildings = view.building is None and unit.building is None
    result.fits = (
        (building == "same" or no_buildings)
        and room == "same"
        and stair != "differs"
        and result.place != "differs"
    )

    _compare_identity(view, unit, result)
    _compare_area(view, unit, result)
    return result


def _compare_place(view: AccountView, unit: UnitView, result: Comparison) -> None:
    district, unit_district = view.address.district, unit.district
    if district and unit_district and district != unit_district:
        result.district_differs = True
        result.score += DISTRICT_DIFFERS
        result.reasons.append(f"district differs ({district} / {unit_district})")

    if not view.places:
        result.reasons.append("address names no known road or community")
        return
    shared = view.places.intersection(unit.places)
    if not shared:
        result.place = "differs"
        result.score += PLACE_DIFFERS
        result.reasons.append("road or community differs")
        return
    result.place = "same"
    if view.places_exact:
        result.score += PLACE_SAME
        result.reasons.append(_same_place_reason(shared))
    else:
        result.score += PLACE_SIMILAR
        result.reasons.append("community name similar, not equal")


def _same_place_reason(shared: frozenset) -> str:
    """Return "same road", "same community" or "same road and community"."""
    road = community = False
    for kind, _, _ in shared:
        if kind == "road":
            road = True
        else:
            community = True
    if road and community:
        return "same road and community"
    return "same road" if road else "same community"


# The reasons for each part are made once, so that all comparisons share one
# string object, which a child's pickled outcomes then contain only once.
_PART_NOT_GIVEN = {part: f"{part} not given" for part in ("building", "stair", "room")}
_SAME_PART = {part: f"same {part}" for part in ("building", "stair", "room")}


def _compare_part(mine, theirs, label, same, differs, result) -> str:
    if mine is None or theirs is None:
        result.reasons.append(_PART_NOT_GIVEN[label])
        return "missing"
    if mine == theirs:
        result.score += same
        result.reasons.append(_SAME_PART[label])
        return "same"
    result.score += differs
    result.reasons.append(f"{label} differs ({mine} / {theirs})")
    return "differs"


def _compare_identity(view: AccountView, unit: UnitView, result: Comparison) -> None:
    if not view.id_keys.isdisjoint(unit.owner_keys):
        result.identity = True
        result.score += ID_OWNER
        result.reasons.append("holder ID is an owner's")
    elif not view.id_keys.isdisjoint(unit.previous_keys):
        result.identity = True
        result.score += ID_PREVIOUS
        result.reasons.append("holder ID is a previous owner's")

    if view.certificate and unit.certificate:
        if view.certificate == unit.certificate:
            result.identity = True
            result.score += CERTIFICATE_SAME
            result.reasons.append("same certificate number")
        else:
            result.reasons.append("certificate number differs (perhaps an earlier one)")

    if view.name and view.name in unit.owner_names:
        result.name_match = True
        result.score += NAME_OWNER
        result.reasons.append("holder name is an owner's")
    elif view.name and view.name in unit.previous_names:
        result.name_match = True
        result.score += NAME_PREVIOUS
        result.reasons.append("holder name is a previous owner's")
    if view.owner_name and view.owner_name in unit.owner_names:
        result.name_match = True
        result.score += NAME_OWNER
        result.reasons.append("owner name on the account is an owner's")


def _compare_area(view: AccountView, unit: UnitView, result: Comparison) -> None:
    area = view.account.area
    registered = unit.areas
    if area is None or not registered:
        return
    if any(_area_agrees(area, known) for known in registered):
        result.area_agrees = True
        result.score += AREA_AGREES
        result.reasons.append("area agrees")
        return
    result.area_differs = True
    result.score += AREA_DIFFERS
    result.reasons.append(f"area differs ({area:g} / {registered[0]:g} m²)")


def _area_agrees(area: float, known: float) -> bool:
    tolerance = max(AREA_TOLERANCE_M2, known * AREA_TOLERANCE_SHARE)
    return abs(area - known) <= tolerance

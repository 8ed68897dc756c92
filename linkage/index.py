"""Indexes over the registry export that find candidate units for an account.

Three kinds of block keep the comparison to a few units per account:

- place, building and room: a place is a road and house number
  (燕子山路2号) or a community (燕子山小区), each within a district;
- a blind key of each owner's and previous owner's ID number;
- the certificate number.

A registry location usually gives the road and house number, and only some
locations also name the community. Locations that carry both teach the index
which community sits at which house number, so an account that names only
the community still finds units whose location names only the road.
"""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

from domain.identifiers import InvalidIdentifier, normalise_certificate_no
from linkage.addresses import ParsedAddress, community_key, parse_address
from linkage.normalise import name_key, normalised_id_value
from linkage.records import Person, Unit

__all__ = ["Place", "UnitIndex", "UnitView", "building_key", "certificate_key"]

# A place: ("road", district, "燕子山路2") or ("community", district, "燕子山").
Place = tuple[str, str | None, str]


@dataclass(slots=True)
class UnitView:
    """A unit with the parts of its location that comparisons use and its
    identifiers normalised.

    The view keeps those parts rather than the ParsedAddress, and tuples of
    distinct values rather than frozensets, so that an index adds few
    objects for CPython's garbage collector to scan at each full collection.
    The collector stops tracking a tuple of strings after one collection.
    """

    unit: Unit
    district: str | None
    places: tuple[Place, ...]
    building: str | None
    stair: str | None
    room: str | None
    owner_keys: tuple[bytes, ...]
    previous_keys: tuple[bytes, ...]
    owner_names: tuple[str, ...]
    previous_names: tuple[str, ...]
    certificate: str | None
    # The building area and then the inner area, leaving out those not given.
    areas: tuple[float, ...]


def building_key(address: ParsedAddress) -> str | None:
    """Return the building with its zone, as in 2区3, or None."""
    if address.building is None:
        return None
    if address.zone:
        return f"{address.zone}区{address.building}"
    return address.building


def certificate_key(text: str) -> str | None:
    """Return a certificate number in comparable form, or None when invalid."""
    if not text:
        return None
    try:
        return normalise_certificate_no(text)
    except InvalidIdentifier:
        return None


def own_places(address: ParsedAddress) -> list[Place]:
    """Return the places an address names itself, in its own district."""
    places = []
    if address.road and address.road_no:
        places.append(("road", address.district, address.road + address.road_no))
    key = community_key(address.community)
    if key:
        places.append(("community", address.district, key))
    return places


class UnitIndex:
    """Blocks over a registry export; build once per run, then query."""

    def __init__(self, units: list[Unit]) -> None:
        # A key made per run, so the index contains no ID number in the clear.
        self._blind_secret = os.urandom(16)
        self._blind_hash = hashlib.blake2b(digest_size=12, key=self._blind_secret)

        # Rosters and exports repeat names and certificate numbers many times,
        # and accounts name the same places, so each distinct text is
        # normalised once per run.
        self._name_keys: dict[str, str] = {}
        self._certificates: dict[str, str | None] = {}
        self._resolved: dict[tuple, tuple[frozenset, bool, bool]] = {}

        self.views = [self._view(unit) for unit in units]
        self._learn_communities()
        self._build_blocks()
        self._community_names = sorted(
            {name for kind, name in self.districts_of if kind == "community"},
            key=len,
            reverse=True,
        )
        self._similar_cache: dict[str, str | None] = {}

    def _build_blocks(self) -> None:
        by_place_room, by_id, by_certificate = _Blocks(), _Blocks(), _Blocks()
        self.districts_of: dict[tuple[str, str], set] = defaultdict(set)
        self.stairs_of: dict[tuple, set] = defaultdict(set)
        for position, view in enumerate(self.views):
            room = view.room
            for place in view.places:
                self.districts_of[(place[0], place[2])].add(place[1])
                self.stairs_of[(place, view.building)].add(view.stair)
                if room is not None:
                    by_place_room.add((place, view.building, room), position)
                    if view.building is not None:
                        by_place_room.add((place, None, room), position)
            for key in {*view.owner_keys, *view.previous_keys}:
                by_id.add(key, position)
            if view.certificate:
                by_certificate.add(view.certificate, position)

        # The positions of the units in each block, in the export's order.
        self.by_place_room: dict[tuple, tuple[int, ...]] = by_place_room.as_tuples()
        self.by_id: dict[bytes, tuple[int, ...]] = by_id.as_tuples()
        self.by_certificate: dict[str, tuple[int, ...]] = by_certificate.as_tuples()

    def blind_key(self, id_number: str) -> bytes:
        """Return the keyed hash of a normalised ID number used as a block key."""
        # Copying a hash object that has taken the key is faster than keying
        # a new one, and gives the same digest.
        blind_hash = self._blind_hash.copy()
        blind_hash.update(id_number.encode())
        return blind_hash.digest()

    def id_keys(self, numbers: Iterable[str]) -> frozenset[bytes]:
        """Return the blind keys of ID numbers as typed, after normalising them.

        Numbers that normalise to the same value, such as a 15-digit ID and
        its 18-character form, give one key.
        """
        keys = set()
        for number in numbers:
            value = normalised_id_value(number)
            if value is not None:
                keys.add(self.blind_key(value))
        return frozenset(keys)

    def name_key(self, name: str) -> str:
        """Return name_key(name), normalising each distinct name once."""
        key = self._name_keys.get(name)
        if key is None:
            key = self._name_keys[name] = name_key(name)
        return key

    def certificate_key(self, text: str) -> str | None:
        """Return certificate_key(text), normalising each distinct number once."""
        if text not in self._certificates:
            self._certificates[text] = certificate_key(text)
        return self._certificates[text]

    def _view(self, unit: Unit) -> UnitView:
        address = parse_address(unit.location)
        return UnitView(
            unit=unit,
            district=address.district,
            places=tuple(own_places(address)),
            building=building_key(address),
            stair=address.stair,
            room=address.room,
            owner_keys=tuple(self.id_keys(person.id_number for person in unit.owners)),
            previous_keys=tuple(
                self.id_keys(person.id_number for person in unit.previous_owners)
            ),
            owner_names=self._name_keys_of(unit.owners),
            previous_names=self._name_keys_of(unit.previous_owners),
            certificate=self.certificate_key(unit.certificate_no),
            areas=tuple(area for area in (unit.building_area, unit.inner_area) if area),
        )

    def _name_keys_of(self, people: tuple[Person, ...]) -> tuple[str, ...]:
        keys = (self.name_key(person.name) for person in people)
        return tuple(dict.fromkeys(key for key in keys if key))

    def _learn_communities(self) -> None:
        """Give every unit the communities named by other units at its address."""
        communities_at: dict[Place, set] = defaultdict(set)
        for view in self.views:
            roads = [place for place in view.places if place[0] == "road"]
            named = [place for place in view.places if place[0] == "community"]
            for road in roads:
                communities_at[road].update(named)
        for view in self.views:
            learned = set(view.places)
            for place in view.places:
                if place[0] == "road":
                    learned |= communities_at.get(place, set())
            view.places = tuple(learned)

    def resolve_places(self, address: ParsedAddress) -> tuple[frozenset, bool, bool]:
        """Return the known places an account's address names.

        Returns (places, exact, ambiguous). `exact` is False when a community
        was found only as part of a longer or shorter name. `ambiguous` is True
        when a name without a district, or with a district where the name is
        not known, fits places in more than one district.
        """
        # The parts that own_places reads.
        key = (address.district, address.road, address.road_no, address.community)
        resolved = self._resolved.get(key)
        if resolved is None:
            resolved = self._resolved[key] = self._resolve(address)
        return resolved

    def _resolve(self, address: ParsedAddress) -> tuple[frozenset, bool, bool]:
        places: set = set()
        exact, ambiguous = True, False
        for kind, district, name in own_places(address):
            found, spread = self._in_districts(kind, name, district)
            if not found and kind == "community":
                near = self._similar_community(name)
                if near:
                    found, spread = self._in_districts(kind, near, district)
                    exact = False
            places |= found
            ambiguous = ambiguous or spread
        return frozenset(places), exact, ambiguous

    def knows_road(self, address: ParsedAddress) -> bool:
        """Say whether the road and house number of `address` is in the export."""
        if not (address.road and address.road_no):
            return False
        return ("road", address.road + address.road_no) in self.districts_of

    def _in_districts(self, kind: str, name: str, district: str | None):
        districts = self.districts_of.get((kind, name), set())
        if district is not None and district in districts:
            return {(kind, district, name)}, False
        found = {(kind, known, name) for known in districts}
        return found, len(found) > 1

    def _similar_community(self, name: str) -> str | None:
        """Return the longest known community name within `name` or around it."""
        if name in self._similar_cache:
            return self._similar_cache[name]
        similar = None
        if len(name) >= 2:
            for known in self._community_names:
                if len(known) >= 2 and (known in name or name in known):
                    similar = known
                    break
        self._similar_cache[name] = similar
        return similar


class _Blocks:
    """Unit positions by block key, gathered in the order added.

    Most keys have one unit, so a key's first position is kept as a number
    and a list is made only for its second. This keeps the lists made while
    the index is built few, because CPython's garbage collector scans every
    list at each full collection, while it stops tracking a tuple of numbers
    after one collection.
    """

    def __init__(self) -> None:
        self._first: dict[Hashable, int] = {}
        self._several: dict[Hashable, list[int]] = {}

    def add(self, key: Hashable, position: int) -> None:
        several = self._several.get(key)
        if several is not None:
            several.append(position)
        elif key in self._first:
            self._several[key] = [self._first.pop(key), position]
        else:
            self._first[key] = position

    def as_tuples(self) -> dict[Hashable, tuple[int, ...]]:
        blocks = {key: (position,) for key, position in self._first.items()}
        for key, positions in self._several.items():
            blocks[key] = tuple(positions)
        return blocks

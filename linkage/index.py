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
from dataclasses import dataclass

from domain.identifiers import InvalidIdentifier, normalise_certificate_no
from linkage.addresses import ParsedAddress, community_key, parse_address
from linkage.normalise import name_key, normalise_ids
from linkage.records import Person, Unit

__all__ = ["Place", "UnitIndex", "UnitView", "building_key", "certificate_key"]

# A place: ("road", district, "燕子山路2") or ("community", district, "燕子山").
Place = tuple[str, str | None, str]


@dataclass(slots=True)
class UnitView:
    """A unit with its location parsed and its identifiers normalised."""

    unit: Unit
    address: ParsedAddress
    places: frozenset
    building: str | None
    owner_keys: frozenset
    previous_keys: frozenset
    owner_names: frozenset
    previous_names: frozenset
    certificate: str | None


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
        self.views = [self._view(unit) for unit in units]
        self._learn_communities()
        self.by_place_room: dict[tuple, list[int]] = defaultdict(list)
        self.by_id: dict[bytes, list[int]] = defaultdict(list)
        self.by_certificate: dict[str, list[int]] = defaultdict(list)
        self.districts_of: dict[tuple[str, str], set] = defaultdict(set)
        self.stairs_of: dict[tuple, set] = defaultdict(set)
        for position, view in enumerate(self.views):
            self._add(position, view)
        self._community_names = sorted(
            {name for kind, name in self.districts_of if kind == "community"},
            key=len,
            reverse=True,
        )
        self._similar_cache: dict[str, str | None] = {}

    def blind_key(self, id_number: str) -> bytes:
        """Return the keyed hash of a normalised ID number used as a block key."""
        return hashlib.blake2b(
            id_number.encode(), digest_size=12, key=self._blind_secret
        ).digest()

    def _view(self, unit: Unit) -> UnitView:
        address = parse_address(unit.location)
        return UnitView(
            unit=unit,
            address=address,
            places=frozenset(own_places(address)),
            building=building_key(address),
            owner_keys=self._id_keys(unit.owners),
            previous_keys=self._id_keys(unit.previous_owners),
            owner_names=_name_keys(unit.owners),
            previous_names=_name_keys(unit.previous_owners),
            certificate=certificate_key(unit.certificate_no),
        )

    def _id_keys(self, people: tuple[Person, ...]) -> frozenset:
        ids = normalise_ids([person.id_number for person in people])
        return frozenset(self.blind_key(holder_id.value) for holder_id in ids)

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
            view.places = frozenset(learned)

    def _add(self, position: int, view: UnitView) -> None:
        room = view.address.room
        for place in view.places:
            self.districts_of[(place[0], place[2])].add(place[1])
            self.stairs_of[(place, view.building)].add(view.address.stair)
            if room is not None:
                self.by_place_room[(place, view.building, room)].append(position)
                if view.building is not None:
                    self.by_place_room[(place, None, room)].append(position)
        for key in view.owner_keys | view.previous_keys:
            self.by_id[key].append(position)
        if view.certificate:
            self.by_certificate[view.certificate].append(position)

    def resolve_places(self, address: ParsedAddress) -> tuple[set, bool, bool]:
        """Return the known places an account's address names.

        Returns (places, exact, ambiguous). `exact` is False when a community
        was found only as part of a longer or shorter name. `ambiguous` is True
        when a name without a district, or with a district where the name is
        not known, fits places in more than one district.
        """
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
        return places, exact, ambiguous

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


def _name_keys(people: tuple[Person, ...]) -> frozenset:
    return frozenset(key for key in (name_key(p.name) for p in people) if key)

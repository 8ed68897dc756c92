"""Decide which registered unit each utility account belongs to.

    results = link(units, accounts, progress=None)   # LinkResults, a list
    summary = summarise(results, rows_read=..., bad_rows=...)

Each account gets one LinkResult in roster order, with 比对结果:

- 一致 (LINKED): linked automatically. The address must agree on place,
  building and room without disagreeing on stair. Among the units that fit,
  exactly one must match a holder ID number or the certificate number. When
  none does, the address alone may link its one fitting unit, if the holder
  is an organisation or the account's owner name or area confirms the unit.
- 待核对 (REVIEW): candidates exist but the evidence leaves a doubt; the
  result lists the best candidates with the reasons for each.
- 未匹配 (UNMATCHED): no unit shares the place, building and room, an ID
  number or the certificate number with the account.

A unit takes at most one automatic link per utility. Two different rooms
are never linked automatically.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from linkage.compare import AccountView, Comparison, compare, view_account
from linkage.index import UnitIndex
from linkage.records import Account, Unit

__all__ = [
    "LINKED",
    "REVIEW",
    "UNMATCHED",
    "Candidate",
    "LinkResult",
    "LinkResults",
    "Summary",
    "link",
    "summarise",
]

LINKED = "一致"
REVIEW = "待核对"
UNMATCHED = "未匹配"

REVIEW_CANDIDATES = 3
# An ID number shared by more units than this (a developer's credit code on a
# whole estate) still counts as evidence for units found by address, but
# does not add its units as candidates.
MAX_ID_BLOCK = 50
PROGRESS_STEP = 1000

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class Candidate:
    """A unit offered for review, with its score and the reasons behind it."""

    unit_code: str
    score: float
    reasons: tuple[str, ...]
    location: str


@dataclass(frozen=True, slots=True)
class LinkResult:
    """The outcome for one account.

    `unit_code`, `certificate_no` and `location` are the registry's values of
    the linked unit, or None and "" when the account is not linked.
    `candidates` lists the best units for a REVIEW result and is empty
    otherwise. `reasons` explains the link or why the account was not linked.
    """

    service_org: str
    account_no: str
    unit_code: str | None
    certificate_no: str
    location: str
    match_result: str
    score: float
    candidates: tuple[Candidate, ...] = ()
    reasons: tuple[str, ...] = ()


class LinkResults(list):
    """LinkResult items in roster order, with the number of pairs compared."""

    pairs_compared: int = 0


@dataclass(frozen=True, slots=True)
class Summary:
    """Counts for one run."""

    rows_read: int
    bad_rows: int
    linked: int
    for_review: int
    unmatched: int
    pairs_compared: int


@dataclass(slots=True)
class _Decision:
    """The engine's choice for one account.

    `ranked` keeps only the best comparisons, so memory grows with the number
    of accounts rather than with every pair compared.
    """

    account: Account
    chosen: Comparison | None
    reason: str
    ranked: list[Comparison] = field(default_factory=list)


def link(
    units: Iterable[Unit],
    accounts: Iterable[Account],
    progress: Progress | None = None,
) -> LinkResults:
    """Link each account to a unit of the registry export, or explain why not.

    `units` and `accounts` are the records of `linkage.records.read_units`
    and `read_roster`. `progress`, if given, is called as
    progress(accounts_done, accounts_total) every PROGRESS_STEP accounts and
    at the end. Returns one LinkResult per account, in the accounts' order.
    """
    index = UnitIndex(list(units))
    accounts = list(accounts)
    decisions = []
    pairs = 0
    for done, account in enumerate(accounts, start=1):
        view = view_account(account, index)
        comparisons = [
            compare(view, index.views[position], position)
            for position in _candidates(view, index)
        ]
        pairs += len(comparisons)
        decision = _decide(view, comparisons, index)
        decision.ranked = _best(comparisons, decision.chosen)
        decisions.append(decision)
        if progress and (done % PROGRESS_STEP == 0 or done == len(accounts)):
            progress(done, len(accounts))

    _keep_one_link_per_unit(decisions)
    results = LinkResults(_result(decision, index) for decision in decisions)
    results.pairs_compared = pairs
    return results


def summarise(
    results: LinkResults, rows_read: int | None = None, bad_rows: int = 0
) -> Summary:
    """Count the results of a run; `rows_read` defaults to the results plus
    `bad_rows`."""
    counts = defaultdict(int)
    for result in results:
        counts[result.match_result] += 1
    return Summary(
        rows_read=len(results) + bad_rows if rows_read is None else rows_read,
        bad_rows=bad_rows,
        linked=counts[LINKED],
        for_review=counts[REVIEW],
        unmatched=counts[UNMATCHED],
        pairs_compared=getattr(results, "pairs_compared", 0),
    )


def _candidates(view: AccountView, index: UnitIndex) -> set[int]:
    """Return the positions of the units in any block the account falls in."""
    positions: set[int] = set()
    room = view.address.room
    if room is not None:
        for place in view.places:
            positions.update(index.by_place_room.get((place, view.building, room), ()))
    for key in view.id_keys:
        block = index.by_id.get(key, ())
        if len(block) <= MAX_ID_BLOCK:
            positions.update(block)
    if view.certificate:
        positions.update(index.by_certificate.get(view.certificate, ()))
    return positions


def _decide(
    view: AccountView, comparisons: list[Comparison], index: UnitIndex
) -> _Decision:
    fitting = [c for c in comparisons if c.fits]
    confirmed = [c for c in fitting if c.identity]
    if len(confirmed) == 1:
        return _Decision(view.account, confirmed[0], "")
    if len(confirmed) > 1:
        reason = f"{len(confirmed)} units fit the address and the holder's ID"
        return _Decision(view.account, None, reason)

    if len(fitting) == 1:
        doubt = _doubt_about_address(view, fitting[0], comparisons, index)
        chosen = None if doubt else fitting[0]
        return _Decision(view.account, chosen, doubt)

    named = [c for c in fitting if c.name_match]
    if len(fitting) > 1 and len(named) == 1:
        # The units differ only in a stair that the address leaves out, and
        # the holder's or owner's full name picks one of them.
        doubt = _doubt_about_address(view, named[0], comparisons, index, True)
        chosen = None if doubt else named[0]
        return _Decision(view.account, chosen, doubt)
    if fitting:
        reason = f"{len(fitting)} units fit the address and nothing tells them apart"
    elif comparisons:
        reason = "no candidate agrees on place, building and room"
    else:
        reason = "no unit shares the address, an ID number or the certificate"
    return _Decision(view.account, None, reason)


def _doubt_about_address(
    view: AccountView,
    candidate: Comparison,
    comparisons: list[Comparison],
    index: UnitIndex,
    stair_chosen_by_name: bool = False,
) -> str:
    """Return why the address cannot link `candidate` without an ID match, or ""."""
    if candidate.place != "same":
        return "address names no known road or community"
    if not view.places_exact:
        return "community name is similar to the registry's, not equal"
    if view.places_ambiguous:
        return "road or community name exists in more than one district"
    if candidate.district_differs:
        return "district differs from the registry's"
    if any(other.identity for other in comparisons):
        return "holder's ID or the certificate belongs to another unit"
    if candidate.area_differs:
        return "area differs from the registry's"
    # NOTE: this assumes the export lists every unit of the building. In a
    # partial export a building with two stairs can look like it has one.
    if stair_chosen_by_name:
        return ""
    if candidate.stair_missing and _building_has_stairs(view, candidate, index):
        return "address gives no stair and the building has several"
    if not (view.is_organisation or candidate.name_match or candidate.area_agrees):
        return (
            "holder is neither an owner nor a previous owner, and no name or "
            "area on the account confirms the unit"
        )
    return ""


def _building_has_stairs(view, candidate: Comparison, index: UnitIndex) -> bool:
    unit = index.views[candidate.position]
    places = view.places & unit.places
    stairs = set()
    for place in places:
        stairs |= index.stairs_of.get((place, unit.building), set())
    return len(stairs - {None}) > 1


def _best(comparisons: list[Comparison], chosen: Comparison | None) -> list:
    """Return the highest-scoring comparisons, best first, always with `chosen`."""
    ranked = heapq.nlargest(REVIEW_CANDIDATES, comparisons, key=lambda c: c.score)
    if chosen is not None and chosen not in ranked:
        ranked[-1] = chosen
        ranked.sort(key=lambda c: -c.score)
    return ranked


def _strength(comparison: Comparison) -> tuple[bool, bool]:
    return comparison.identity, comparison.name_match or comparison.area_agrees


def _keep_one_link_per_unit(decisions: list[_Decision]) -> None:
    """Keep one account per utility linked to each unit and send the rest to review.

    An account matched by ID or certificate keeps the link over accounts linked
    by address alone. When no account is stronger, all of them go to review.
    """
    claims = defaultdict(list)
    for decision in decisions:
        if decision.chosen is not None:
            key = (decision.account.service_org, decision.chosen.position)
            claims[key].append(decision)

    for claimants in claims.values():
        if len(claimants) == 1:
            continue
        best = max(_strength(d.chosen) for d in claimants)
        winners = [d for d in claimants if _strength(d.chosen) == best]
        for decision in claimants:
            if len(winners) == 1 and decision is winners[0]:
                continue
            others = [d.account.account_no for d in claimants if d is not decision]
            decision.chosen = None
            decision.reason = (
                f"account {', '.join(others)} of the same utility also fits this unit"
            )


def _result(decision: _Decision, index: UnitIndex) -> LinkResult:
    account = decision.account
    chosen = decision.chosen
    if chosen is not None:
        unit = index.views[chosen.position].unit
        return LinkResult(
            service_org=account.service_org,
            account_no=account.account_no,
            unit_code=unit.unit_code,
            certificate_no=unit.certificate_no,
            location=unit.location,
            match_result=LINKED,
            score=round(chosen.score, 1),
            reasons=tuple(chosen.reasons),
        )

    ranked = decision.ranked
    candidates = tuple(
        Candidate(
            unit_code=index.views[c.position].unit.unit_code,
            score=round(c.score, 1),
            reasons=tuple(c.reasons),
            location=index.views[c.position].unit.location,
        )
        for c in ranked
    )
    return LinkResult(
        service_org=account.service_org,
        account_no=account.account_no,
        unit_code=None,
        certificate_no="",
        location="",
        match_result=REVIEW if candidates else UNMATCHED,
        score=candidates[0].score if candidates else 0.0,
        candidates=candidates,
        reasons=(decision.reason,),
    )

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

from linkage.compare import (
    AccountView,
    Comparison,
    compare,
    is_organisation,
    view_account,
)
from linkage.index import UnitIndex
from linkage.parallel import can_fork, run_in_two_processes
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
# From this many accounts on, link() shares the roster's chunks with a
# forked child process when the machine allows it (see
# linkage.parallel.can_fork). With 20,000 units on 2 cores of an AMD EPYC,
# the split took 0.09 s longer than one process on 2,000 accounts and saved
# 0.11 s on 5,000 and on 10,000, so the limit leaves a margin.
MIN_ACCOUNTS_TO_SPLIT = 10_000

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

    `ranked` contains the best comparisons, best first, and is filled only
    when the account is not linked.
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

    A roster of MIN_ACCOUNTS_TO_SPLIT accounts or more is linked in chunks of
    PROGRESS_STEP accounts by this process and a forked child process at
    once, when linkage.parallel.can_fork() allows it. The results are the
    same either way, and `progress` gets the accounts done in both.
    """
    index = UnitIndex(list(units))
    accounts = list(accounts)
    total = len(accounts)
    chunks = [
        (start, min(start + PROGRESS_STEP, total))
        for start in range(0, total, PROGRESS_STEP)
    ]

    def link_chunk(start: int, stop: int) -> _Part:
        return _link_accounts(index, accounts, start, stop)

    def add_results(part: _Part) -> _Part:
        part_accounts = accounts[part.start : part.start + len(part.outcomes)]
        part.results = [
            _result(account, outcome, index)
            for account, outcome in zip(part_accounts, part.outcomes, strict=True)
        ]
        return part

    def report(done: int) -> None:
        if progress:
            progress(done, total)

    if total >= MIN_ACCOUNTS_TO_SPLIT and can_fork():
        parts = run_in_two_processes(link_chunk, chunks, report, add_results)
    else:
        parts = []
        for start, stop in chunks:
            parts.append(add_results(link_chunk(start, stop)))
            report(stop)

    outcomes: list[_Outcome] = []
    results = LinkResults()
    for part in parts:
        outcomes.extend(part.outcomes)
        results.extend(part.results)
        results.pairs_compared += part.pairs
    for position in _keep_one_link_per_unit(accounts, index, outcomes):
        results[position] = _result(accounts[position], outcomes[position], index)
    return results


# The decision for one account, naming units by position:
# (unit, score, reasons, strength, candidates). `unit`, `score` and `reasons`
# are the linked unit's, or None, 0 and the reason the account is not
# linked. `strength` is the link's, as _strength gives it. `candidates` lists
# (unit position, score, reasons) of the best units, best first, when the
# account is not linked.
#
# A child process sends outcomes rather than LinkResults back, because they
# leave out the strings of the account and the unit, which the parent has.
# Half the development set's accounts pickled to 1.6 MB as outcomes and to
# over 5 MB as LinkResults, which took about five times as long to dump and
# load. Outcomes are plain tuples, which pickle faster than named ones and
# which CPython's garbage collector stops tracking after one collection.
_Outcome = tuple[
    int | None,
    float,
    tuple[str, ...],
    tuple[bool, bool],
    tuple[tuple[int, float, tuple[str, ...]], ...],
]


@dataclass(slots=True)
class _Part:
    """The outcomes of the accounts from `start` on and the number of pairs
    compared. `results` is filled in the process that called link()."""

    start: int
    outcomes: list[_Outcome]
    pairs: int
    results: list[LinkResult] = field(default_factory=list)


def _link_accounts(
    index: UnitIndex, accounts: list[Account], start: int, stop: int
) -> _Part:
    """Decide accounts[start:stop], leaving out the check of one link per unit."""
    outcomes = []
    pairs = 0
    for account in accounts[start:stop]:
        view, comparisons = _compare_candidates(account, index)
        pairs += len(comparisons)
        decision = _decide(view, comparisons, index)
        if decision.chosen is None:
            decision.ranked = _best(comparisons, None)
        outcomes.append(_outcome(decision))
    return _Part(start, outcomes, pairs)


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


def _compare_candidates(
    account: Account, index: UnitIndex
) -> tuple[AccountView, list[Comparison]]:
    """Compare an account with every unit in the blocks it falls in."""
    view = view_account(account, index)
    comparisons = [
        compare(view, index.views[position], position)
        for position in _candidates(view, index)
    ]
    return view, comparisons


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
    # is_organisation normalises the holder's ID numbers, so it comes last.
    confirmed = candidate.name_match or candidate.area_agrees
    if not (confirmed or is_organisation(view.account)):
        return (
            "holder is neither an owner nor a previous owner, and no name or "
            "area on the account confirms the unit"
        )
    return ""


def _building_has_stairs(view, candidate: Comparison, index: UnitIndex) -> bool:
    unit = index.views[candidate.position]
    places = view.places.intersection(unit.places)
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


def _keep_one_link_per_unit(
    accounts: list[Account], index: UnitIndex, outcomes: list[_Outcome]
) -> list[int]:
    """Keep one account per utility linked to each unit and send the rest to review.

    Returns the positions of the accounts sent to review, whose outcomes are
    replaced.

    An account matched by ID or certificate keeps the link over accounts linked
    by address alone. When no account is stronger, all of them go to review.
    The link loop keeps no candidates for linked accounts, so an account sent
    to review is compared with its candidates again here. This is rare, and
    the comparison gives the same outcome as the first time.
    """
    # service_org -> unit position -> the first account linked to the unit.
    # Nested dictionaries, so that the loop makes no object per account.
    first_links: dict[str, dict[int, int]] = defaultdict(dict)
    # (service_org, unit position) -> every account linked to the unit, in
    # roster order, for the units that more than one account is linked to.
    shared: dict[tuple[str, int], list[int]] = {}
    for position, outcome in enumerate(outcomes):
        unit = outcome[0]
        if unit is None:
            continue
        links = first_links[accounts[position].service_org]
        first = links.setdefault(unit, position)
        if first != position:
            key = (accounts[position].service_org, unit)
            shared.setdefault(key, [first]).append(position)

    sent_to_review = []
    for claimants in shared.values():
        strengths = {position: outcomes[position][3] for position in claimants}
        best = max(strengths.values())
        winners = [position for position in claimants if strengths[position] == best]
        for position in claimants:
            if len(winners) == 1 and position == winners[0]:
                continue
            others = [
                accounts[other].account_no for other in claimants if other != position
            ]
            view, comparisons = _compare_candidates(accounts[position], index)
            decision = _decide(view, comparisons, index)
            decision.ranked = _best(comparisons, decision.chosen)
            decision.chosen = None
            decision.reason = (
                f"account {', '.join(others)} of the same utility also fits this unit"
            )
            outcomes[position] = _outcome(decision)
            sent_to_review.append(position)
    return sent_to_review


def _outcome(decision: _Decision) -> _Outcome:
    chosen = decision.chosen
    if chosen is not None:
        reasons = tuple(chosen.reasons)
        return (chosen.position, chosen.score, reasons, _strength(chosen), ())
    candidates = tuple(
        (comparison.position, comparison.score, tuple(comparison.reasons))
        for comparison in decision.ranked
    )
    return (None, 0.0, (decision.reason,), (False, False), candidates)


def _result(account: Account, outcome: _Outcome, index: UnitIndex) -> LinkResult:
    position, score, reasons, _, ranked = outcome
    if position is not None:
        unit = index.views[position].unit
        return LinkResult(
            service_org=account.service_org,
            account_no=account.account_no,
            unit_code=unit.unit_code,
            certificate_no=unit.certificate_no,
            location=unit.location,
            match_result=LINKED,
            score=round(score, 1),
            reasons=reasons,
        )

    candidates = tuple(
        Candidate(
            unit_code=index.views[candidate].unit.unit_code,
            score=round(candidate_score, 1),
            reasons=candidate_reasons,
            location=index.views[candidate].unit.location,
        )
        for candidate, candidate_score, candidate_reasons in ranked
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
        reasons=reasons,
    )

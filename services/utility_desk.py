"""The utility's side of the hub: its transfers, reports by hand, and decisions.

Utility staff see their own utility's transfers from registration on. Before
that the applicant may still change or drop the case, so the utility is not
shown it. Each function takes the acting utility and the staff caller, or
None when the utility's system signed the request.
"""

import logging

from flask import g

from models import AccountLink, Business, Case, Party, Transfer, TransferEvent, Unit
from models.base import is_storable_id, utcnow
from models.db import locked, retry_on_race, transaction
from services import access, cases, feedback, reconciliation_queue, timeline
from services.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

# Transfer states from registration on, which the utility may see. A case is
# withdrawn only before registration, so its transfers never reached one.
VISIBLE_STATUSES = tuple(
    status
    for status in timeline.STATUSES
    if status not in ("draft", "submitted", "withdrawn")
)

TRANSFER_NOT_FOUND = ("transfer_not_found", "没有该过户记录，或它不属于贵单位。")

# The item status each decision sets.
DECISIONS = {"link": "linked", "reject": "rejected"}

CHECKED_BY_HAND = "服务机构人工核对，确认该户号属于本房屋，已加入联办事项"


def act_for_utility(caller):
    """Record what follows in this request as done by the utility.

    `caller` is the staff member, or None for the utility's system.
    """
    g.authority = access.Authority(caller=caller, actor_role="utility")


def _staff_id(caller):
    return caller.staff.id if caller is not None else None


def transfers_of(utility, status=None):
    """Return a query of the utility's visible transfers, newest first."""
    query = (
        Transfer.select(Transfer, Case, Business, Unit)
        .join(Case)
        .join(Business)
        .join(Unit)
        .where((Transfer.utility == utility) & Transfer.status.in_(VISIBLE_STATUSES))
    )
    if status is not None:
        query = query.where(Transfer.status == status)
    return query.order_by(Transfer.created_at.desc(), Transfer.id.desc())


def transfer_of(utility, transfer_id, lock=False):
    """Return one visible transfer of the utility, or raise NotFound.

    A transfer of another utility raises the same NotFound as one that does
    not exist.
    """
    transfer = None
    if is_storable_id(transfer_id):
        query = Transfer.select().where(
            (Transfer.id == transfer_id)
            & (Transfer.utility == utility)
            & Transfer.status.in_(VISIBLE_STATUSES)
        )
        transfer = (locked(query) if lock else query).get_or_none()
    if transfer is None:
        raise NotFound(*TRANSFER_NOT_FOUND)
    return transfer


def parties_of(business_ids):
    """Return the owners and previous owners of each business, by business id."""
    parties = {business_id: [] for business_id in business_ids}
    query = (
        Party.select()
        .where(Party.business.in_(list(parties)))
        .order_by(Party.business, Party.position)
    )
    for party in query:
        parties[party.business_id].append(party)
    return parties


def events_of(transfer):
    return list(
        TransferEvent.select()
        .where(TransferEvent.transfer == transfer)
        .order_by(TransferEvent.occurred_at, TransferEvent.id)
    )


def report_by_hand(utility, caller, transfer_id, report):
    """Apply a report that staff enter, by the rules of a signed report.

    `report` contains status, return_reason and note. Returns (transfer, applied),
    and a repeated report changes nothing.
    """
    act_for_utility(caller)
    with transaction():
        transfer = transfer_of(utility, transfer_id, lock=True)
        report = {
            **report,
            "transfer_id": str(transfer.id),
            "account_no": transfer.account_no,
        }
        transfer, applied = feedback.apply_feedback(utility, report)
        if applied:
            access.record_action(
                transfer.case, "feedback", transfer, status=transfer.status
            )
    log.info(
        "feedback entered by hand transfer=%s staff=%s applied=%s",
        transfer.id,
        _staff_id(caller),
        applied,
    )
    return transfer, applied


def reopen(utility, caller, transfer_id, note):
    """Accept a returned transfer again, once the cause of the return is fixed.

    The return reason is cleared, and a case that closed with the return is
    in progress again. Raises Conflict for a transfer that is not returned.
    """
    act_for_utility(caller)
    with transaction():
        transfer = transfer_of(utility, transfer_id, lock=True)
        if transfer.status != "returned":
            label = timeline.status_label(transfer.status)
            raise Conflict(
                "transfer_not_returned",
                f"该过户当前为“{label}”，只有退件的过户才能重新受理。",
            )
        case = locked(Case.select().where(Case.id == transfer.case_id)).get()
        timeline.record(transfer, "accepted", "utility", note=note)
        if case.status == "closed":
            case.status = "in_progress"
            case.closed_at = None
            case.save()
        access.record_action(case, "reopen", transfer)
    log.info(
        "returned transfer reopened transfer=%s case=%s staff=%s",
        transfer.id,
        case.id,
        _staff_id(caller),
    )
    return transfer


def decide(utility, caller, item_id, decision, note=None, unit_code=None):
    """Link or reject a queued account; return (item, applied).

    Linking stores the account's unit and, while the case is open, adds the
    account to it. Repeating a decision changes nothing, and a different
    decision on a decided item raises Conflict.
    """
    act_for_utility(caller)
    note = (note or "").strip() or None
    if decision == "reject" and note is None:
        raise Invalid(
            "decision_note_missing",
            "不予关联时必须填写说明，申请人会看到这段说明。",
            errors={"json": {"note": ["required when decision is reject"]}},
        )
    # A concurrent request may create the account's link first; the retry
    # then finds it.
    item, applied = retry_on_race(
        lambda: _decide(utility, caller, item_id, DECISIONS[decision], note, unit_code)
    )
    if applied:
        log.info(
            "reconciliation decided item=%s status=%s staff=%s",
            item.id,
            item.status,
            _staff_id(caller),
        )
    return item, applied


def _decide(utility, caller, item_id, status, note, unit_code=None):
    with transaction():
        item = reconciliation_queue.item_for(utility, item_id, lock=True)
        if item.status == status:
            if (
                status == "linked"
                and unit_code is not None
                and (item.unit is None or item.unit.unit_code != unit_code)
            ):
                linked_to = item.unit.unit_code if item.unit else "另一房屋"
                raise Conflict(
                    "reconciliation_decided",
                    f"该户号已关联到 {linked_to}，不能改为其他房屋；"
                    "如需更正请联系平台运维。",
                )
            return item, False
        if item.status != "open":
            label = reconciliation_queue.STATUSES[item.status]
            raise Conflict(
                "reconciliation_decided",
                f"该核对项已有结论（{label}），不能改为其他结论。",
            )
        if status == "linked":
            if item.source == "roster":
                item.unit = _roster_unit(item, unit_code)
            item.transfer = _link(item)
        item.status = status
        item.decision_note = note
        item.decided_by = caller.staff if caller is not None else None
        item.decided_via = "staff" if caller is not None else "system"
        item.decided_at = utcnow()
        item.save()
        if item.case_id is not None:
            access.record_action(item.case, f"review_{status}", item.transfer)
    return item, True


def _roster_unit(item, unit_code):
    """Return the unit a roster account is linked to by hand."""
    from services import rosters

    if unit_code is None:
        raise Invalid(
            "unit_code_missing",
            "名册中的户号须指明关联到哪一个不动产单元，请填写 unit_code"
            "（通常取自候选房屋）。",
            errors={
                "json": {"unit_code": ["required to link an account from a roster"]}
            },
        )
    unit = rosters.unit_by_code(unit_code)
    if unit is None:
        raise Invalid(
            "unit_not_found",
            f"不动产单元代码 {unit_code} 不在登记数据中，请核对。",
            errors={"json": {"unit_code": ["not a registered unit"]}},
        )
    return unit


def _link(item):
    """Link the item's account to its unit; return the case's transfer, if any."""
    if item.unit_id is None:
        raise Conflict(
            "reconciliation_unit_missing", "该核对项没有对应的房屋，无法关联。"
        )
    link = AccountLink.get_or_none(
        (AccountLink.utility == item.utility_id)
        & (AccountLink.account_no == item.account_no)
    )
    if link is not None and link.unit_id not in (None, item.unit_id):
        raise Conflict(
            "account_linked_elsewhere",
            "该户号已关联到其他房屋，请先核对那处关联，再处理本核对项。",
        )
    if link is None:
        link = AccountLink(utility=item.utility_id, account_no=item.account_no)
    link.unit = item.unit_id
    link.source = "reconciliation"
    link.match_result = "一致"
    if item.holder_name:
        link.holder_name = item.holder_name
        link.holder_id_numbers = item.holder_id_numbers
        link.account_address = item.account_address
    link.updated_at = utcnow()
    link.save()
    if item.case_id is None:
        return None
    return _add_to_case(item, link)


def _add_to_case(item, link):
    case = locked(Case.select().where(Case.id == item.case_id)).get()
    if case.status != "open":
        log.info(
            "linked account not added case=%s status=%s item=%s",
            case.id,
            case.status,
            item.id,
        )
        return None
    # The applicant may have added the account since, once it could be placed.
    transfer = Transfer.get_or_none(
        (Transfer.case == case)
        & (Transfer.utility == item.utility_id)
        & (Transfer.account_no == item.account_no)
    )
    if transfer is not None:
        return transfer
    return cases._new_transfer(
        case, item.utility, item.account_no, link, added=True, note=CHECKED_BY_HAND
    )

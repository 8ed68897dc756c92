"""Progress reports from utilities (办理状态 and 退件原因)."""

import logging

from models import Case, Transfer
from models.base import parse_id, utcnow
from models.db import locked, transaction
from services import timeline
from services.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

# 办理状态 as utilities report it, and the transfer status each one sets.
FEEDBACK_STATUSES = {
    "已受理": "accepted",
    "办理中": "in_progress",
    "办结": "completed",
    "退件": "returned",
}

# How far a transfer has come; a report may not move it back.
PROGRESS_ORDER = {
    "pushed": 0,
    "collected": 0,
    "accepted": 1,
    "in_progress": 2,
    "completed": 3,
    "returned": 3,
}

# Transfer states in which the utility has the transfer and may report on it.
REPORTABLE = ("pushed", "collected", "accepted", "in_progress")


def apply_feedback(utility, report):
    """Apply one utility report to its transfer; a repeated report changes nothing."""
    status = FEEDBACK_STATUSES[report["status"]]
    reason = (report.get("return_reason") or "").strip() or None
    report = {**report, "return_reason": reason}
    if status == "returned" and not reason:
        raise Invalid(
            "return_reason_missing",
            "退件必须填写退件原因。",
            errors={"json": {"return_reason": ["required when status is 退件"]}},
        )
    with transaction():
        transfer = _load(utility, report)
        if transfer.status == status and (
            status != "returned" or transfer.return_reason == report["return_reason"]
        ):
            return transfer, False
        if timeline.is_final(transfer.status):
            raise Conflict(
                "transfer_final",
                f"该过户已为“{timeline.status_label(transfer.status)}”，不能再变更。",
            )
        if transfer.status not in REPORTABLE:
            raise Conflict(
                "transfer_not_pushed",
                "该过户尚未推送给贵单位，不能反馈办理状态。",
            )
        if PROGRESS_ORDER.get(status, 0) < PROGRESS_ORDER.get(transfer.status, 0):
            raise Conflict(
                "feedback_out_of_order",
                f"该过户已为“{timeline.status_label(transfer.status)}”，"
                f"不能退回“{report['status']}”；迟到的状态无需再报。",
            )
        timeline.record(
            transfer,
            status,
            "utility",
            note=report.get("note"),
            return_reason=report.get("return_reason") if status == "returned" else None,
        )
        _close_case_when_done(transfer.case)
    log.info(
        "feedback applied transfer=%s case=%s status=%s",
        transfer.id,
        transfer.case_id,
        status,
    )
    return transfer, True


def _load(utility, report):
    transfer_id = parse_id(report["transfer_id"])
    transfer = None
    if transfer_id is not None:
        transfer = locked(
            Transfer.select().where(
                (Transfer.id == transfer_id) & (Transfer.utility == utility)
            )
        ).get_or_none()
    if transfer is None or transfer.account_no != report["account_no"]:
        raise NotFound(
            "transfer_not_found",
            "没有与该 transfer_id 和户号对应的过户推送，请核对后重发。",
        )
    return transfer


def _close_case_when_done(case):
    # Two final reports for one case may commit at the same moment, and each
    # would see the other transfer unfinished. Locking the case first makes
    # the second wait and then read the first one's status.
    locked(Case.select().where(Case.id == case.id)).get()
    statuses = [t.status for t in Transfer.select().where(Transfer.case == case.id)]
    if all(timeline.is_final(status) for status in statuses):
        Case.update(status="closed", closed_at=utcnow()).where(
            Case.id == case.id
        ).execute()
        log.info("case closed case=%s", case.id)

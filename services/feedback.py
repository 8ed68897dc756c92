"""Progress reports from utilities (办理状态 and 退件原因)."""

import logging

from models import Case, Transfer
from models.base import parse_id, utcnow
from models.db import locked, transaction
from services import delivery, evidence, timeline
from services.errors import Conflict, Invalid, NotFound, ServiceError

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

# Maximum number of reports in one batch. A utility with more sends several.
MAX_BATCH_ITEMS = 500


def apply_feedback(utility, report):
    """Apply one utility report to its transfer; a repeated report changes nothing."""
    report = _checked(report)
    with transaction():
        transfer = _load(utility, report)
        _lock_cases([transfer.case_id])
        transfer, applied = _apply(utility, report)
        if applied:
            _close_case_when_done(transfer.case_id)
            evidence.record_feedback(transfer, report)
    if applied:
        _log_applied(transfer)
    return transfer, applied


def apply_batch(utility, reports):
    """Apply several reports in one transaction, all of them or none.

    `reports` is a list of report dicts, each already loaded by the single
    form's schema, or a ServiceError for an item that failed that schema.
    Items apply in their order, so a batch may carry 办理中 and then 办结 for
    one transfer. If any item fails, nothing is recorded and Invalid is
    raised, naming every failing item by its index. Returns a list of
    (transfer, applied) in item order.
    """
    failures = {}
    checked = {}
    for index, report in enumerate(reports):
        try:
            if isinstance(report, ServiceError):
                raise report
            checked[index] = _checked(report)
        except ServiceError as error:
            failures[index] = error
    results = {}
    with transaction():
        _lock_batch(utility, checked.values())
        order = sorted(checked, key=lambda i: (_sort_key(checked[i]), i))
        for index in order:
            try:
                results[index] = _apply(utility, checked[index])
            except ServiceError as error:
                failures[index] = error
        if failures:
            # Raising inside the transaction rolls back the items applied so far.
            raise _batch_rejected(failures, len(reports))
        touched = sorted({t.case_id for t, applied in results.values() if applied})
        for case_id in touched:
            _close_case_when_done(case_id)
        evidence.record_feedback_batch(results, checked)
    applied = [transfer for transfer, done in results.values() if done]
    for transfer in applied:
        _log_applied(transfer)
    log.info(
        "feedback batch applied utility=%s items=%d changed=%d",
        utility.code,
        len(reports),
        len(applied),
    )
    return [results[index] for index in range(len(reports))]


def _lock_cases(case_ids):
    """Lock the cases that reports will change, before anything is written.

    Every report takes its transfer's lock and then its case's, as a single
    report does, and takes both before any write. A transfer updated twice in
    one transaction makes PostgreSQL check its foreign key again (ri_triggers.c,
    PostgreSQL 15), which takes a key-share lock on the case. Two reports on one
    case that each held that lock would deadlock when both asked for the case.
    """
    query = Case.select(Case.id).where(Case.id.in_(sorted(set(case_ids))))
    list(locked(query.order_by(Case.id)))


def _lock_batch(utility, reports):
    """Lock a batch's transfers in id order, then their cases in id order.

    Concurrent batches, and single reports, then wait for each other instead
    of deadlocking. Reports naming no transfer of this utility lock nothing
    here and fail when applied.
    """
    ids = {parse_id(report["transfer_id"]) for report in reports} - {None}
    transfers = list(
        locked(
            Transfer.select(Transfer.id, Transfer.case)
            .where(Transfer.id.in_(sorted(ids)) & (Transfer.utility == utility))
            .order_by(Transfer.id)
        )
    )
    _lock_cases([t.case_id for t in transfers])


def _sort_key(report):
    transfer_id = parse_id(report["transfer_id"])
    return transfer_id if transfer_id is not None else -1


def _batch_rejected(failures, total):
    items = [
        {
            "index": index,
            "status": error.status,
            "code": error.code,
            "message": error.message,
            **({"errors": _field_errors(error)} if error.errors else {}),
        }
        for index, error in sorted(failures.items())
    ]
    log.info(
        "feedback batch rejected items=%d failing=%d first_index=%d first_code=%s",
        total,
        len(items),
        items[0]["index"],
        items[0]["code"],
    )
    return Invalid(
        "batch_rejected",
        f"批量反馈共 {total} 项，其中 {len(items)} 项无效，整批均未记录；"
        "请按 errors.items 修改后重发整批。",
        errors={"items": items},
    )


def _field_errors(error):
    # A single report's errors sit under "json"; an item's need no location.
    return error.errors.get("json", error.errors)


def _checked(report):
    """Return the report with its return reason trimmed, or raise Invalid."""
    reason = (report.get("return_reason") or "").strip() or None
    report = {**report, "return_reason": reason}
    if FEEDBACK_STATUSES[report["status"]] == "returned" and not reason:
        raise Invalid(
            "return_reason_missing",
            "退件必须填写退件原因。",
            errors={"json": {"return_reason": ["required when status is 退件"]}},
        )
    return report


def _apply(utility, report):
    """Apply one checked report inside the caller's transaction.

    Raises NotFound or Conflict before writing anything. The caller closes
    the case when the report was applied.
    """
    status = FEEDBACK_STATUSES[report["status"]]
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
    # A utility that reports on a transfer has its push, even if the hub has
    # not recorded the push's response yet.
    if transfer.status not in REPORTABLE and not delivery.mark_delivered_by_feedback(
        transfer, utility
    ):
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
    return transfer, True


def _log_applied(transfer):
    log.info(
        "feedback applied transfer=%s case=%s status=%s",
        transfer.id,
        transfer.case_id,
        transfer.status,
    )


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


def _close_case_when_done(case_id):
    # Two final reports for one case may commit at the same moment, and each
    # would see the other transfer unfinished. Locking the case first makes
    # the second wait and then read the first one's status.
    locked(Case.select().where(Case.id == case_id)).get()
    statuses = [t.status for t in Transfer.select().where(Transfer.case == case_id)]
    if all(timeline.is_final(status) for status in statuses):
        Case.update(status="closed", closed_at=utcnow()).where(
            Case.id == case_id
        ).execute()
        log.info("case closed case=%s", case_id)

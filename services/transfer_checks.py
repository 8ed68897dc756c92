"""Asking each utility, before submission, whether an account can transfer.

A utility reports item by item: arrears, a direct debit from the seller's
bank account, a prepaid balance, a block, a closed account. The hub keeps
the latest result on the transfer, shows each item with what to do, refuses
a submission while an account is blocked or closed, and sends the result
with the push so the utility gets what the applicant saw.
"""

import logging
from datetime import timedelta

from models import Transfer
from models.base import utcnow
from models.db import transaction
from partners.http import PartnerError
from services import cases, delivery
from services.errors import Conflict

log = logging.getLogger(__name__)

# A result older than this is checked again before the case is submitted.
MAX_AGE = timedelta(hours=24)

# Items that no step in this service can clear: the applicant must go to the
# utility, so submission waits.
STOPPING = {"block", "account_closed"}


def _yuan(fen):
    return f"¥{(fen or 0) / 100:.2f}"


def advice(item):
    """Return what the applicant should do about one item, in Chinese."""
    name = item["item"]
    if name == "arrears":
        if not item["blocking"]:
            return "无欠费。"
        return f"欠费 {_yuan(item['amount_fen'])}，请在本页扫码缴清后再过户。"
    if name == "direct_debit":
        if not item["blocking"]:
            return "未办理银行代扣。"
        return (
            "原户主已办理银行代扣，请原户主到开户银行或服务机构解除代扣，"
            "否则服务机构将退件。"
        )
    if name == "prepaid_balance":
        if not item["amount_fen"]:
            return "无预存余额。"
        return (
            f"账户预存余额 {_yuan(item['amount_fen'])}，"
            "由服务机构按过户协议退还原户主或转入新户主。"
        )
    if name == "block":
        if not item["blocking"]:
            return "未被暂停过户。"
        reason = item.get("reason") or "服务机构未说明原因"
        return f"服务机构暂停该户过户（{reason}），请联系服务机构处理后再提交。"
    if name == "account_closed":
        if not item["blocking"]:
            return "户号正常。"
        return "该户号已销户，无法过户，请核对户号或联系服务机构。"
    if item["blocking"]:
        return "服务机构提示此项需处理，请联系服务机构。"
    return "服务机构提示此项无需处理。"


def check_transfer(transfer):
    """Ask the transfer's utility now and store the result; return the view."""
    utility = transfer.utility
    if utility.connection != "system":
        return view(transfer, "not_connected")
    try:
        answer = delivery.utility_client(utility).check_transfer(transfer.account_no)
    except PartnerError as error:
        log.warning(
            "transfer check failed transfer=%s utility=%s error=%s",
            transfer.id,
            utility.code,
            error,
        )
        return view(transfer, "unavailable")
    now = utcnow()
    with transaction():
        Transfer.update(check_result=answer, checked_at=now).where(
            Transfer.id == transfer.id
        ).execute()
    transfer.check_result, transfer.checked_at = answer, now
    log.info(
        "transfer checked transfer=%s utility=%s transferable=%s",
        transfer.id,
        utility.code,
        answer["transferable"],
    )
    return view(transfer)


def require_before_registration(case):
    """Raise 409 unless the case is still open or waiting for registration."""
    if case.status not in ("open", "submitted"):
        label = cases.CASE_LABELS.get(case.status, case.status)
        raise Conflict(
            "case_not_open",
            f"联办事项当前状态为“{label}”，过户前核验只在提交前后、登簿之前进行。",
        )


def check_case(case, only_stale=False):
    """Check every transfer of the case.

    With `only_stale`, a recent result is reused unless it stops the
    submission: the applicant may have had the block lifted since.
    """
    views = []
    # The rows are read in full first: a SQLite cursor still open would pin
    # its snapshot, and the write below would then fail at once as locked.
    for transfer in list(case.transfers.order_by(Transfer.id)):
        fresh = transfer.checked_at and utcnow() - transfer.checked_at < MAX_AGE
        stopping = any(item["stops_submission"] for item in view(transfer)["items"])
        if only_stale and fresh and not stopping:
            views.append(view(transfer))
        else:
            views.append(check_transfer(transfer))
    return views


def state_of(transfer):
    """Return ok, action_needed or None when the utility was never asked."""
    result = transfer.check_result
    if result is None:
        return None
    return "ok" if result["transferable"] else "action_needed"


def view(transfer, state=None):
    """Return the transfer's check as the applicant reads it.

    When the utility does not respond now (`unavailable`), the last result
    it gave is shown for what it was, but stops nothing: the submission goes
    ahead with a warning, and the utility checks again when it takes the
    transfer.
    """
    result = transfer.check_result or {}
    state = state or state_of(transfer)
    current = state != "unavailable"
    return {
        "transfer_id": transfer.id,
        "service_org": transfer.utility.service_org,
        "account_no": transfer.account_no,
        "state": state,
        "transferable": result.get("transferable"),
        "items": [_item_view(item, current) for item in result.get("items", [])],
        "checked_at": transfer.checked_at,
    }


def _item_view(item, current=True):
    stops = current and item["blocking"] and item["item"] in STOPPING
    return {**item, "stops_submission": stops, "advice": advice(item)}


def require_transferable(views):
    """Raise 409 when a result has an item that only the utility can clear."""
    stopped = {}
    for entry in views:
        reasons = [
            item["advice"] for item in entry["items"] if item["stops_submission"]
        ]
        if reasons:
            stopped[str(entry["transfer_id"])] = reasons
    if stopped:
        raise Conflict(
            "transfer_blocked",
            "有户号被服务机构暂停过户或已销户，请按提示处理后再提交。",
            errors={"transfers": stopped},
        )


def warnings(views):
    """Return the applicant's warnings for items that do not stop submission."""
    found = []
    for entry in views:
        if entry["state"] == "unavailable":
            found.append(
                f"{entry['service_org']}暂时无法核验户号 {entry['account_no']} "
                "能否过户，已照常提交，服务机构受理时再核验。"
            )
        for item in entry["items"]:
            if item["blocking"] and item["item"] == "direct_debit":
                found.append(f"{entry['service_org']}：{item['advice']}")
    return found


def push_fields(transfer):
    """Return the check the applicant saw, for the push to the utility."""
    if transfer.check_result is None:
        return None
    return {
        "transferable": transfer.check_result["transferable"],
        "items": transfer.check_result["items"],
        "checked_at": transfer.checked_at.isoformat() + "Z",
    }

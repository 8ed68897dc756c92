"""Accounts waiting for their utility to check them by hand.

An applicant who adds an account that the online checks cannot place may ask
the utility to check it. The utility then links the account to the home or
rejects it with a note (services.utility_desk applies the decision), and the
case view shows the applicant the outcome.
"""

import logging

from peewee import JOIN

from models import Business, ReconciliationItem, Unit, Utility
from models.base import is_storable_id
from models.db import locked, retry_on_race, transaction
from services import access
from services.errors import NotFound

log = logging.getLogger(__name__)

# Codes of the checks that can fail to place an account, with their messages.
REASONS = {
    "account_holder_mismatch": "该户号登记的用户不是本房屋的权利人或原权利人",
    "account_address_mismatch": "该户号的用户地址与本房屋的楼号、单元或房号不一致",
    "utility_not_connected": "该服务机构未接入系统核验",
}

STATUSES = {
    "open": "待服务机构核对",
    "linked": "服务机构已核对，户号已关联本房屋",
    "rejected": "服务机构核对后未予关联",
}

ITEM_NOT_FOUND = ("reconciliation_item_not_found", "没有该核对项，或它不属于贵单位。")


def request_review(case, utility, account_no, reasons, account=None):
    """Queue an account of `case` for its utility to check; return (item, created).

    An open item for the same account and case is returned as it is. `account`
    is the holder and address the utility's system returned, where it could
    be asked.
    """
    return retry_on_race(
        lambda: _open_item(case, utility, account_no, reasons, account)
    )


def _open_item(case, utility, account_no, reasons, account):
    with transaction():
        item = ReconciliationItem.get_or_none(
            (ReconciliationItem.utility == utility)
            & (ReconciliationItem.account_no == account_no)
            & (ReconciliationItem.case == case)
            & (ReconciliationItem.status == "open")
        )
        if item is not None:
            return item, False
        business = case.business
        item = ReconciliationItem.create(
            utility=utility,
            account_no=account_no,
            source="applicant",
            case=case,
            business=business,
            unit=business.unit,
            reasons=list(reasons),
            holder_name=account.holder_name if account else None,
            holder_id_numbers=account.holder_id_numbers if account else None,
            account_address=account.account_address if account else None,
        )
        access.record_action(
            case,
            "request_review",
            utility=utility.code,
            account_no=account_no,
            item=item.id,
        )
    log.info(
        "account queued for review item=%s case=%s utility=%s reasons=%s",
        item.id,
        case.id,
        utility.code,
        ",".join(reasons),
    )
    return item, True


def items_of(utility, status=None):
    """Return a query of a utility's items, newest first."""
    query = (
        ReconciliationItem.select(ReconciliationItem, Utility, Business, Unit)
        .join(Utility)
        .switch(ReconciliationItem)
        .join(Business, JOIN.LEFT_OUTER)
        .switch(ReconciliationItem)
        .join(Unit, JOIN.LEFT_OUTER)
        .where(ReconciliationItem.utility == utility)
    )
    if status is not None:
        query = query.where(ReconciliationItem.status == status)
    return query.order_by(
        ReconciliationItem.created_at.desc(), ReconciliationItem.id.desc()
    )


def item_for(utility, item_id, lock=False):
    """Return the utility's item `item_id`, or raise NotFound.

    An item of another utility raises the same NotFound as one that does not
    exist.
    """
    item = None
    if is_storable_id(item_id):
        query = ReconciliationItem.select().where(
            (ReconciliationItem.id == item_id) & (ReconciliationItem.utility == utility)
        )
        item = (locked(query) if lock else query).get_or_none()
    if item is None:
        raise NotFound(*ITEM_NOT_FOUND)
    return item


def items_of_case(case):
    return list(
        ReconciliationItem.select()
        .where(ReconciliationItem.case == case)
        .order_by(ReconciliationItem.id)
    )


def outcome(item):
    """Return what linking did: transfer_added, linked_only, or None if not linked."""
    if item.status != "linked":
        return None
    return "transfer_added" if item.transfer_id is not None else "linked_only"

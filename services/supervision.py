"""Each utility's record on transfers, month by month, for supervision.

A transfer counts in the month (China time) in which its utility took it.
Every other figure of that row is about those same transfers: how many were
completed, completed by their due time, returned, and are still open past
it. The share of linked accounts is the utility's current one.
"""

import logging
import statistics
from collections import Counter
from datetime import date

from peewee import fn

from models import AccountLink, Transfer, TransferEvent, Utility
from models.base import utcnow
from services import deadlines
from services.errors import Invalid, NotFound

log = logging.getLogger(__name__)

MAX_MONTHS = 36
DEFAULT_MONTHS = 12


FIRST_YEAR = 2000
LAST_YEAR = 2100


def parse_month(text, field):
    """Return (year, month) for a `YYYY-MM` text, or raise Invalid naming `field`.

    Years outside FIRST_YEAR to LAST_YEAR are refused, because the scheme has
    no transfers there and the edges of the calendar do not convert to UTC.
    """
    try:
        year, month = (int(part) for part in text.split("-"))
        date(year, month, 1)
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise ValueError(year)
    except ValueError:
        raise Invalid(
            "month_invalid",
            f"月份应为 {FIRST_YEAR} 至 {LAST_YEAR} 年间的 YYYY-MM，收到“{text}”。",
            errors={
                "query": {
                    field: [f"must be a month as YYYY-MM in {FIRST_YEAR}-{LAST_YEAR}"]
                }
            },
        ) from None
    return year, month


def _shift(year, month, months):
    index = year * 12 + month - 1 + months
    return index // 12, index % 12 + 1


def month_range(from_month, to_month):
    """Return the months from `from_month` to `to_month` inclusive, newest first.

    Either may be None: the range then ends at the current month and spans
    DEFAULT_MONTHS. Raises Invalid for a reversed or too long range.
    """
    today = deadlines.local_date(utcnow())
    end = parse_month(to_month, "to_month") if to_month else (today.year, today.month)
    start = (
        parse_month(from_month, "from_month")
        if from_month
        else _shift(*end, -(DEFAULT_MONTHS - 1))
    )
    span = (end[0] * 12 + end[1]) - (start[0] * 12 + start[1]) + 1
    if span < 1 or span > MAX_MONTHS:
        raise Invalid(
            "month_range_invalid",
            f"月份范围应为 1 至 {MAX_MONTHS} 个月，且起始月不晚于结束月。",
            errors={
                "query": {"from_month": [f"range must be 1 to {MAX_MONTHS} months"]}
            },
        )
    return [_shift(*end, -offset) for offset in range(span)]


def utilities_for(code):
    query = Utility.select().order_by(Utility.code)
    if code is None:
        return list(query)
    utility = query.where(Utility.code == code).first()
    if utility is None:
        raise NotFound("utility_not_found", f"没有代码为“{code}”的服务机构。")
    return [utility]


def report(from_month=None, to_month=None, utility_code=None, page=None, size=None):
    """Return the report rows for one page (or all rows) and the total row count.

    Rows run newest month first, then by utility code; a month without
    transfers still has its row, with zeros.
    """
    months = month_range(from_month, to_month)
    utilities = utilities_for(utility_code)
    keys = [(month, utility) for month in months for utility in utilities]
    total = len(keys)
    if page is not None:
        keys = keys[(page - 1) * size : page * size]
    if not keys:
        return [], total
    rows = _figures(keys)
    log.info(
        "supervision report months=%d utilities=%d rows=%d",
        len(months),
        len(utilities),
        len(rows),
    )
    return rows, total


def _figures(keys):
    months = sorted({month for month, _ in keys})
    utilities = {utility.id: utility for _, utility in keys}
    start = deadlines.month_start_utc(*months[0])
    end = deadlines.month_start_utc(*_shift(*months[-1], 1))
    transfers = list(
        Transfer.select(
            Transfer.id,
            Transfer.utility,
            Transfer.status,
            Transfer.return_reason,
            Transfer.delivered_at,
            Transfer.due_at,
        ).where(
            Transfer.utility.in_(list(utilities))
            & (Transfer.delivered_at >= start)
            & (Transfer.delivered_at < end)
        )
    )
    registered, completed = _event_times([t.id for t in transfers])
    groups = {(month, utility.id): [] for month, utility in keys}
    for transfer in transfers:
        local = deadlines.local_date(transfer.delivered_at)
        group = groups.get(((local.year, local.month), transfer.utility_id))
        if group is not None:
            group.append(transfer)
    shares = linked_account_shares(list(utilities))
    now = utcnow()
    return [
        _row(month, utility, groups[(month, utility.id)], registered, completed, now)
        | {"linked_account_share": shares.get(utility.id)}
        for month, utility in keys
    ]


def _event_times(transfer_ids):
    """Return the registration and completion times of the transfers, by id."""
    registered, completed = {}, {}
    for start in range(0, len(transfer_ids), 500):
        chunk = transfer_ids[start : start + 500]
        query = TransferEvent.select(
            TransferEvent.transfer, TransferEvent.status, TransferEvent.occurred_at
        ).where(
            TransferEvent.transfer.in_(chunk)
            & TransferEvent.status.in_(("registered", "completed"))
        )
        for event in query:
            into = registered if event.status == "registered" else completed
            into[event.transfer_id] = event.occurred_at
    return registered, completed


def _row(month, utility, transfers, registered, completed, now):
    done = [t for t in transfers if t.status == "completed"]
    on_time = [
        t
        for t in done
        if t.id in completed and t.due_at and completed[t.id] <= t.due_at
    ]
    # NOTE: return reasons are the utilities' free text and are shown as
    # written; a reason that names a person reaches the report's readers.
    returned = Counter(
        t.return_reason or "" for t in transfers if t.status == "returned"
    )
    overdue = [
        t
        for t in transfers
        if t.status in deadlines.OPEN_STATUSES and t.due_at and t.due_at < now
    ]
    hours = [
        (completed[t.id] - registered[t.id]).total_seconds() / 3600
        for t in done
        if t.id in completed and t.id in registered
    ]
    return {
        "month": f"{month[0]:04d}-{month[1]:02d}",
        "utility": utility.code,
        "service_org": utility.service_org,
        "service_days": deadlines.service_days_of(utility),
        "received": len(transfers),
        "completed": len(done),
        "completed_on_time": len(on_time),
        "returned": sum(returned.values()),
        "returned_by_reason": [
            {"reason": reason, "count": count}
            for reason, count in sorted(returned.items(), key=lambda i: (-i[1], i[0]))
        ],
        "overdue_open": len(overdue),
        "median_hours_to_completion": round(statistics.median(hours), 2)
        if hours
        else None,
    }


def linked_account_shares(utility_ids):
    """Return each utility's share of accounts linked to a unit code, 0 to 1."""
    query = (
        AccountLink.select(
            AccountLink.utility,
            fn.COUNT(AccountLink.id).alias("accounts"),
            fn.COUNT(AccountLink.unit).alias("linked"),
        )
        .where(AccountLink.utility.in_(utility_ids))
        .group_by(AccountLink.utility)
    )
    return {
        row.utility_id: round(row.linked / row.accounts, 4)
        for row in query
        if row.accounts
    }

"""Service times of utilities, counted in Chinese working days, and overdue alerts.

The rule: a utility with N service days must finish a transfer by the end
(24:00 China Standard Time) of the Nth working day after the calendar day on
which it took the push or collected the export. The delivery day itself never
counts, so a push delivered on a holiday or a weekend starts counting on the
next working day. Working days follow the State Council's public-holiday
calendar with its make-up working days, as the `chinesecalendar` package
publishes it.

The due time is stored on the transfer when the utility takes it, so views
need no query to show it. A transfer that is reopened after a return keeps
its first due time.
"""

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

import chinese_calendar
from flask import current_app, has_app_context

from models import OverdueAlert, Transfer, Utility
from models.base import utcnow
from models.db import transaction

log = logging.getLogger(__name__)

CHINA = ZoneInfo("Asia/Shanghai")
DEFAULT_SERVICE_DAYS = 5
MAX_SERVICE_DAYS = 60

# Statuses in which the utility holds the transfer and the clock runs.
OPEN_STATUSES = ("pushed", "collected", "accepted", "in_progress")
# Statuses that mean the utility has taken the transfer.
DELIVERED_STATUSES = ("pushed", "collected")

_uncovered_years_logged = set()


def is_working_day(day):
    """Return whether `day` is a working day in mainland China.

    NOTE: years the installed `chinesecalendar` has no data for (1.11.0 covers
    2004 to 2026) fall back to Monday to Friday, so their public holidays
    count as working days until the package is upgraded.
    """
    try:
        return chinese_calendar.is_workday(day)
    except NotImplementedError:
        if day.year not in _uncovered_years_logged:
            _uncovered_years_logged.add(day.year)
            log.warning(
                "holiday calendar has no data for year=%d; counting Monday to "
                "Friday as working days (upgrade chinesecalendar)",
                day.year,
            )
        return day.weekday() < 5


def add_working_days(start, days):
    """Return the `days`-th working day after the calendar day `start`."""
    day = start
    counted = 0
    while counted < days:
        day += timedelta(days=1)
        if is_working_day(day):
            counted += 1
    return day


def due_time(delivered_at, days):
    """Return the due time, as naive UTC, of a transfer delivered at `delivered_at`.

    `delivered_at` is naive UTC, as the columns store it.
    """
    local_day = delivered_at.replace(tzinfo=UTC).astimezone(CHINA).date()
    last_day = add_working_days(local_day, days)
    end = datetime.combine(last_day + timedelta(days=1), time(0), tzinfo=CHINA)
    return end.astimezone(UTC).replace(tzinfo=None)


def default_service_days():
    if has_app_context():
        return current_app.config["TRANSFER_SERVICE_DAYS"]
    return DEFAULT_SERVICE_DAYS


def service_days_of(utility):
    return utility.service_days or default_service_days()


def start_clock(transfer, status):
    """Set the delivery and due times when a transfer moves to a delivered status.

    Called by the timeline before it saves the new status, so the times are
    saved with it. A transfer delivered before keeps its times.
    """
    if status not in DELIVERED_STATUSES or transfer.delivered_at is not None:
        return
    now = utcnow()
    transfer.delivered_at = now
    transfer.due_at = due_time(now, service_days_of(transfer.utility))


def is_overdue(transfer, now=None):
    """Return whether the transfer is still open past its due time."""
    if transfer.due_at is None or transfer.status not in OPEN_STATUSES:
        return False
    return (now or utcnow()) > transfer.due_at


def due_fields(transfer):
    """Return the due time and overdue flag for a transfer's view, without queries."""
    return {"due_at": transfer.due_at, "overdue": is_overdue(transfer)}


def set_service_days(code, days):
    """Set a utility's service time in working days; None returns it to the default."""
    if days is not None and not 1 <= days <= MAX_SERVICE_DAYS:
        raise ValueError(
            f"service days must be from 1 to {MAX_SERVICE_DAYS}; got {days}."
        )
    changed = Utility.update(service_days=days).where(Utility.code == code).execute()
    if not changed:
        raise ValueError(f"No utility has the code {code!r}.")
    log.info("utility service days set code=%s days=%s", code, days)


def newly_overdue_ids(now, limit):
    query = (
        Transfer.select(Transfer.id)
        .where(
            (Transfer.due_at < now)
            & Transfer.overdue_at.is_null()
            & Transfer.status.in_(OPEN_STATUSES)
        )
        .order_by(Transfer.due_at)
        .limit(limit)
    )
    return [row.id for row in query]


def mark_overdue(now=None, limit=500):
    """Raise one alert for each open transfer newly past its due time; return them.

    The conditional update lets one sweep win each transfer, so two sweeps
    running at once still raise a single alert.
    """
    from services import notifications

    now = now or utcnow()
    raised = []
    for transfer_id in newly_overdue_ids(now, limit):
        with transaction():
            won = (
                Transfer.update(overdue_at=now)
                .where(
                    (Transfer.id == transfer_id)
                    & Transfer.overdue_at.is_null()
                    & Transfer.status.in_(OPEN_STATUSES)
                )
                .execute()
            )
            if not won:
                continue
            transfer = Transfer.get_by_id(transfer_id)
            alert = OverdueAlert.create(
                transfer=transfer,
                utility=transfer.utility_id,
                due_at=transfer.due_at,
                raised_at=now,
            )
            notifications.on_deadline_passed(transfer)
        log.warning(
            "transfer overdue transfer=%s case=%s utility=%s due_at=%s",
            transfer.id,
            transfer.case_id,
            transfer.utility_id,
            transfer.due_at.isoformat(),
        )
        raised.append(alert)
    return raised


def alerts_of(utility):
    """Return a query of the utility's overdue alerts, newest first."""
    return (
        OverdueAlert.select(OverdueAlert, Transfer)
        .join(Transfer)
        .where(OverdueAlert.utility == utility)
        .order_by(OverdueAlert.raised_at.desc(), OverdueAlert.id.desc())
    )


def local_date(value):
    """Return the China calendar date of a naive UTC datetime."""
    return value.replace(tzinfo=UTC).astimezone(CHINA).date()


def month_start_utc(year, month):
    """Return 00:00 China time on the first of a month, as naive UTC."""
    start = datetime.combine(date(year, month, 1), time(0), tzinfo=CHINA)
    return start.astimezone(UTC).replace(tzinfo=None)

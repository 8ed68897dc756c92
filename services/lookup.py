"""Customer-service lookup of cases, the audit record of each lookup, and its report.

Service staff find a case by one criterion and see it masked. Customer service
of a utility finds only the cases with a transfer of that utility. Every
lookup is recorded with the staff member, the value searched for and the
reason given, whether or not anything was found. That value is sealed in the
database, because it may be an ID number, and no log line carries it.
"""

import logging
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from peewee import fn

from domain.masking import mask_id_number
from models import (
    Business,
    Case,
    LookupRecord,
    Organisation,
    Party,
    Staff,
    Transfer,
    Unit,
    UnitCode,
    Utility,
)
from models.base import is_storable_id
from models.fields import data_keys
from services.access import CASE_NOT_FOUND
from services.errors import NotFound

log = logging.getLogger(__name__)

SHANGHAI = ZoneInfo("Asia/Shanghai")

# The criteria a search takes, one per lookup.
CRITERIA = ("business_no", "unit_code", "account_no", "id_number")
# A lookup of one case by its id is recorded under this criterion.
CASE_CRITERION = "case"
RECORDED_CRITERIA = (*CRITERIA, CASE_CRITERION)

PARTY_ROLES = ("owner", "previous_owner")

# The earliest day a report may cover. The latest is last_report_day(). The
# bounds keep a report's date arithmetic (the day after the range and the
# conversion to UTC) within the range of Python's dates.
FIRST_REPORT_DAY = date(2000, 1, 1)


def _by_business_no(value, service_org):
    # `value` is upper-case. The registry's check also accepts lower-case
    # letters and stores the number as sent, so the lower-case spelling is
    # matched too, and the unique index on business_no still serves the search.
    # NOTE: a number stored in mixed case, such as Jn2026120400103, is not found.
    spellings = sorted({value, value.lower()})
    return Case.business.in_(
        Business.select(Business.id).where(Business.business_no.in_(spellings))
    )


def _by_unit_code(value, service_org):
    # A unit keeps its earlier codes in UnitCode, so merged or split units
    # are found by any code they have had.
    units = UnitCode.select(UnitCode.unit).where(UnitCode.code == value)
    current = Unit.select(Unit.id).where(Unit.unit_code == value)
    return Case.business.in_(
        Business.select(Business.id).where(
            Business.unit.in_(units) | Business.unit.in_(current)
        )
    )


def _by_account_no(value, service_org):
    # `value` is upper-case, and account numbers are stored as the utility or
    # the applicant sent them, so case is ignored. The only index that contains
    # account_no starts with the case, so a search by account_no scans the
    # transfers with or without UPPER.
    transfers = Transfer.select(Transfer.case).where(
        fn.UPPER(Transfer.account_no) == value
    )
    if service_org is not None:
        utilities = Utility.select(Utility.id).where(Utility.service_org == service_org)
        transfers = transfers.where(Transfer.utility.in_(utilities))
    return Case.id.in_(transfers)


def _by_id_number(value, service_org):
    # Party rows are found by the keyed digest of the number, so no sealed
    # column is opened to search.
    parties = Party.select(Party.business).where(
        (Party.id_index == data_keys.blind_index(value)) & Party.role.in_(PARTY_ROLES)
    )
    return Case.business.in_(parties)


_CONDITIONS = {
    "business_no": _by_business_no,
    "unit_code": _by_unit_code,
    "account_no": _by_account_no,
    "id_number": _by_id_number,
}


def find_cases(criterion, value, service_org=None):
    """Return a query of the cases that `value` finds under `criterion`, newest first.

    Normalise `value` first as the lookup API does: ID numbers and unit codes
    as the registry stores them, business and account numbers half-width and
    upper-case. `service_org` narrows an account_no search to one utility,
    because account numbers are unique only within a utility.
    """
    condition = _CONDITIONS[criterion](value, service_org)
    return (
        Case.select().where(condition).order_by(Case.opened_at.desc(), Case.id.desc())
    )


def within_scope(query, staff):
    """Limit a query of cases to those that `staff` may look up.

    Customer service of a utility, whose organisation is of kind `utility`,
    may look up only the cases with a transfer of that utility. Service desks,
    registry windows and operators may look up every case.
    """
    organisation = staff.organisation
    if organisation.kind != "utility":
        return query
    # A utility organisation without its utility, which create_organisation
    # does not allow, compares against NULL and so finds no case.
    own_transfers = Transfer.select(Transfer.case).where(
        Transfer.utility == organisation.utility_id
    )
    return query.where(Case.id.in_(own_transfers))


def search(staff, criterion, value, reason, request_id, service_org=None):
    """Find the cases in a staff member's scope and record the lookup.

    The lookup is recorded even when no case matches, with the number of
    cases found in the staff member's scope.
    """
    query = within_scope(find_cases(criterion, value, service_org), staff)
    record_lookup(staff, criterion, value, reason, query.count(), request_id)
    return query


def case_for_lookup(staff, case_id, reason, request_id):
    """Return a case by id for a staff member, recording the lookup.

    Raise NotFound when no case has the id or the case is outside the staff
    member's scope (see within_scope), after recording the lookup anyway.
    """
    case = None
    if is_storable_id(case_id):
        query = within_scope(Case.select().where(Case.id == case_id), staff)
        case = query.get_or_none()
    results = 0 if case is None else 1
    record_lookup(staff, CASE_CRITERION, str(case_id), reason, results, request_id)
    if case is None:
        raise NotFound(*CASE_NOT_FOUND)
    return case


def record_lookup(staff, criterion, asked, reason, results, request_id):
    """Store one lookup, with the value searched for sealed and left out of the log."""
    record = LookupRecord.create(
        staff=staff,
        organisation=staff.organisation_id,
        criterion=criterion,
        asked=asked,
        reason=reason,
        results=results,
        request_id=request_id,
    )
    log.info(
        "lookup recorded record=%s staff=%s criterion=%s results=%s",
        record.id,
        staff.id,
        criterion,
        results,
    )
    return record


def shown_value(record):
    """Return the value a lookup searched for, with an ID number masked."""
    if record.criterion == "id_number":
        return mask_id_number(record.asked)
    return record.asked


def records(staff_id=None):
    """Return a query of lookup records, newest first, of one staff member or all."""
    query = (
        LookupRecord.select(LookupRecord, Staff, Organisation)
        .join(Staff)
        .switch(LookupRecord)
        .join(Organisation)
        .order_by(LookupRecord.occurred_at.desc(), LookupRecord.id.desc())
    )
    if staff_id is not None:
        query = query.where(LookupRecord.staff == staff_id)
    return query


def utc_bounds(first_day, last_day):
    """Return the naive UTC start and end of Shanghai days `first_day` to `last_day`.

    The end is exclusive: midnight after `last_day` in Shanghai.
    """
    start = datetime.combine(first_day, time(0), SHANGHAI)
    end = datetime.combine(last_day + timedelta(days=1), time(0), SHANGHAI)
    return (
        start.astimezone(UTC).replace(tzinfo=None),
        end.astimezone(UTC).replace(tzinfo=None),
    )


def today():
    """Return today's date in Shanghai, where the service's users are."""
    return datetime.now(SHANGHAI).date()


def last_report_day():
    """Return the latest day a report may cover: tomorrow in Shanghai.

    A client whose clock runs ahead of Shanghai's may already be on that day.
    """
    return today() + timedelta(days=1)


def report(first_day: date, last_day: date):
    """Count the lookups of each staff member from `first_day` to `last_day`.

    The days are Shanghai dates, both included. They must lie from
    FIRST_REPORT_DAY to last_report_day(), because the conversion to UTC
    overflows near the ends of Python's date range. Each row is one staff
    member in one organisation, with counts by criterion and the times of the
    first and last lookup. Rows with the most lookups come first.
    """
    start, end = utc_bounds(first_day, last_day)
    groups = (
        LookupRecord.select(
            LookupRecord.staff,
            LookupRecord.organisation,
            LookupRecord.criterion,
            fn.COUNT(LookupRecord.id).alias("lookups"),
            fn.MIN(LookupRecord.occurred_at).alias("first_at"),
            fn.MAX(LookupRecord.occurred_at).alias("last_at"),
        )
        .where((LookupRecord.occurred_at >= start) & (LookupRecord.occurred_at < end))
        .group_by(LookupRecord.staff, LookupRecord.organisation, LookupRecord.criterion)
        .dicts()
    )
    rows = {}
    for group in groups:
        key = (group["staff"], group["organisation"])
        row = rows.get(key) or _report_row(*key)
        rows[key] = row
        row["lookups"] += group["lookups"]
        row["by_criterion"][group["criterion"]] = group["lookups"]
        row["first_at"] = min(row["first_at"] or group["first_at"], group["first_at"])
        row["last_at"] = max(row["last_at"] or group["last_at"], group["last_at"])
    _name_staff(rows.values())
    return sorted(rows.values(), key=lambda row: (-row["lookups"], row["staff_id"]))


def _report_row(staff_id, organisation_id):
    return {
        "staff_id": staff_id,
        "organisation_id": organisation_id,
        "lookups": 0,
        "by_criterion": dict.fromkeys(RECORDED_CRITERIA, 0),
        "first_at": None,
        "last_at": None,
    }


def _name_staff(rows):
    rows = list(rows)
    staff_ids = {row["staff_id"] for row in rows}
    organisation_ids = {row["organisation_id"] for row in rows}
    usernames = dict(
        Staff.select(Staff.id, Staff.username).where(Staff.id.in_(staff_ids)).tuples()
    )
    organisations = {
        organisation.id: organisation
        for organisation in Organisation.select().where(
            Organisation.id.in_(organisation_ids)
        )
    }
    for row in rows:
        organisation = organisations[row["organisation_id"]]
        row["username"] = usernames[row["staff_id"]]
        row["organisation"] = organisation.name
        row["organisation_kind"] = organisation.kind

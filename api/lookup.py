"""Customer-service lookup of cases, masked and audited, and the audit report."""

import unicodedata
from datetime import timedelta

from flask import g
from flask_smorest import Blueprint
from marshmallow import (
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from api import fields as api_fields
from api import limits, paging, views
from api.openapi import JSON_BODY_ERRORS, bearer_operation
from api.security import caller_required
from domain.identifiers import (
    ID_TYPES,
    RESIDENT_ID_CARD,
    InvalidIdentifier,
    fold_width,
    normalise_id_number,
)
from models import Party
from models.base import MAX_ID
from services import lookup
from services.registry import BUSINESS_NO_PATTERN

blp = Blueprint(
    "lookup",
    __name__,
    description="Customer service: find a case and see it masked, every lookup audited",
)

LOOKUP_ROLES = ("service", "admin")
REPORT_ROLES = ("admin",)

MAX_REPORT_DAYS = 366
DEFAULT_REPORT_DAYS = 30


# Characters a one-line text may not contain, by Unicode category. PostgreSQL
# rejects NUL in text, and neither PostgreSQL nor SQLite can store an unpaired
# surrogate, which a JSON body can carry as an escape such as \ud800.
REJECTED_CATEGORIES = {
    "Cc": "control character",
    "Cs": "unpaired surrogate",
    "Zl": "line separator",
    "Zp": "paragraph separator",
}


class OneLine(fields.String):
    """A line of text, trimmed, with invisible format characters removed.

    Format characters (Unicode category Cf, such as U+200B ZERO WIDTH SPACE
    and U+FEFF) are removed before surrounding whitespace is trimmed, so they
    count toward no length limit. Any character of REJECTED_CATEGORIES left
    inside the text, tabs and line breaks included, is rejected.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        visible = "".join(
            char for char in text if unicodedata.category(char) != "Cf"
        ).strip()
        for char in visible:
            kind = REJECTED_CATEGORIES.get(unicodedata.category(char))
            if kind is not None:
                raise ValidationError(
                    f"{self.data_key or attr} contains the {kind} "
                    f"U+{ord(char):04X}. Send one line of text without it."
                )
        return visible


class StoredNumber(OneLine):
    """A business or account number, half-width and upper-case.

    Full-width forms are folded, because a Chinese input method may type
    them, and letters are upper-cased, because the search ignores case.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        text = super()._deserialize(value, attr, data, **kwargs)
        return fold_width(text).upper()


class ReasonArgs(Schema):
    reason = OneLine(
        required=True,
        validate=validate.Length(
            min=4,
            max=200,
            error=(
                "reason must be 4 to 200 characters, not counting surrounding "
                "whitespace or invisible format characters such as U+200B."
            ),
        ),
        metadata={
            "description": (
                "Why the lookup is made, such as the hotline ticket and the "
                "caller's question. It is stored with the lookup record."
            )
        },
    )


class LookupArgs(ReasonArgs, paging.PageArgs):
    business_no = StoredNumber(
        validate=validate.Regexp(
            BUSINESS_NO_PATTERN,
            error="business_no must be 4 to 64 letters, digits or hyphens.",
        ),
        metadata={
            "description": (
                "The registration business number. Full-width characters and "
                "lower-case letters are accepted."
            )
        },
    )
    unit_code = api_fields.UnitCode(
        metadata={"description": "The unit's current code or any earlier one"}
    )
    account_no = StoredNumber(
        validate=validate.Length(min=1, max=64),
        metadata={
            "description": (
                "A utility account number, matched without regard to case. "
                "Full-width characters are accepted."
            )
        },
    )
    # NOTE: a value in the query string reaches the access log of any proxy or
    # server in front of the hub. The hub's own request log writes the path only.
    id_number = fields.String(
        validate=validate.Length(min=1, max=40),
        metadata={
            "description": (
                "An owner's or previous owner's ID number. Full-width characters "
                "and a lower-case x are accepted."
            )
        },
    )
    id_type = fields.String(
        validate=validate.OneOf(ID_TYPES),
        metadata={
            "description": f"The type of id_number, {RESIDENT_ID_CARD} if left out"
        },
    )
    service_org = OneLine(
        validate=validate.Length(min=1, max=100),
        metadata={"description": "Narrows an account_no lookup to one utility"},
    )

    @validates_schema
    def check_one_criterion(self, data, **kwargs):
        given = [name for name in lookup.CRITERIA if name in data]
        if len(given) != 1:
            named = f": {', '.join(given)}" if given else ""
            raise ValidationError(
                f"Give exactly one of {', '.join(lookup.CRITERIA)}. "
                f"Got {len(given)}{named}."
            )
        if "service_org" in data and given != ["account_no"]:
            raise ValidationError(
                "service_org is accepted only with account_no.", "service_org"
            )
        if "id_type" in data and given != ["id_number"]:
            raise ValidationError("id_type is accepted only with id_number.", "id_type")

    @post_load
    def normalise_id(self, data, **kwargs):
        if "id_number" not in data:
            return data
        id_type = data.pop("id_type", RESIDENT_ID_CARD)
        try:
            data["id_number"] = normalise_id_number(id_type, data["id_number"]).value
        except InvalidIdentifier as error:
            raise ValidationError(f"{error} [{error.rule}]", "id_number") from None
        return data


class LookupSummarySchema(views.CaseSummarySchema):
    unit_code = fields.String()
    registration_status = fields.String()
    owners = fields.List(fields.Nested(views.PersonView))
    previous_owners = fields.List(fields.Nested(views.PersonView))


class LookupTransferSchema(views.TransferSchema):
    events = fields.List(fields.Nested(views.EventSchema))


class LookupCaseSchema(views.CaseSchema):
    transfers = fields.List(fields.Nested(LookupTransferSchema))


class ReportArgs(Schema):
    first_day = fields.Date(
        data_key="from",
        metadata={
            "description": "First day, in Asia/Shanghai, from "
            f"{lookup.FIRST_REPORT_DAY}. If left out, the report covers the "
            f"{DEFAULT_REPORT_DAYS} days up to `to`, from "
            f"{lookup.FIRST_REPORT_DAY} at the earliest."
        },
    )
    last_day = fields.Date(
        data_key="to",
        metadata={
            "description": "Last day, included, in Asia/Shanghai, up to tomorrow. "
            "Today if left out."
        },
    )

    @validates_schema
    def check_days_in_range(self, data, **kwargs):
        earliest = lookup.FIRST_REPORT_DAY
        latest = lookup.last_report_day()
        errors = {}
        for key, name in (("first_day", "from"), ("last_day", "to")):
            day = data.get(key)
            if day is not None and not earliest <= day <= latest:
                errors[name] = [
                    f"{name} must be a day from {earliest} to {latest} "
                    f"(tomorrow in Asia/Shanghai), not {day}."
                ]
        if errors:
            raise ValidationError(errors)

    @post_load
    def fill_defaults(self, data, **kwargs):
        last_day = data.get("last_day") or lookup.today()
        first_day = data.get("first_day") or max(
            last_day - timedelta(days=DEFAULT_REPORT_DAYS - 1),
            lookup.FIRST_REPORT_DAY,
        )
        if last_day < first_day:
            raise ValidationError("to must be on or after from.", "to")
        days = (last_day - first_day).days + 1
        if days > MAX_REPORT_DAYS:
            raise ValidationError(
                f"The report covers at most {MAX_REPORT_DAYS} days, not {days}.", "to"
            )
        return {"first_day": first_day, "last_day": last_day}


class CriterionCountsSchema(Schema):
    business_no = fields.Integer()
    unit_code = fields.Integer()
    account_no = fields.Integer()
    id_number = fields.Integer()
    case = fields.Integer(metadata={"description": "Cases opened by their id"})


class StaffLookupsSchema(Schema):
    staff_id = fields.Integer()
    username = fields.String()
    organisation = fields.String()
    organisation_kind = fields.String()
    lookups = fields.Integer()
    by_criterion = fields.Nested(CriterionCountsSchema)
    first_at = api_fields.LocalDateTime()
    last_at = api_fields.LocalDateTime()


class LookupReportSchema(Schema):
    first_day = fields.Date(data_key="from")
    last_day = fields.Date(data_key="to")
    lookups = fields.Integer(metadata={"description": "Lookups by all staff"})
    staff = fields.List(fields.Nested(StaffLookupsSchema))


class RecordArgs(paging.PageArgs):
    staff_id = fields.Integer(
        validate=validate.Range(
            min=1, max=MAX_ID, error=f"staff_id must be from 1 to {MAX_ID}."
        )
    )


class LookupRecordView(Schema):
    record_id = fields.Integer(attribute="id")
    staff_id = fields.Integer(attribute="staff_id")
    username = fields.String(attribute="staff.username")
    organisation = fields.String(attribute="organisation.name")
    criterion = fields.String()
    asked = fields.Function(
        lookup.shown_value,
        metadata={"description": "The value searched for, an ID number masked"},
    )
    reason = fields.String()
    results = fields.Integer()
    request_id = fields.String(allow_none=True)
    occurred_at = api_fields.LocalDateTime()


def _parties(business):
    return list(
        Party.select().where(Party.business == business).order_by(Party.position)
    )


def case_summary(case, viewer):
    """Build a found case's summary with its owners and previous owners masked."""
    parties = _parties(case.business)
    view = views.case_summary(case)
    view.update(
        unit_code=case.business.unit.unit_code,
        registration_status=case.business.registration_status,
        owners=[views.person_view(p, viewer) for p in parties if p.role == "owner"],
        previous_owners=[
            views.person_view(p, viewer) for p in parties if p.role == "previous_owner"
        ],
    )
    return view


def case_detail(case, viewer):
    """Build the case view with each transfer's timeline beside it."""
    view = views.case_view(case, viewer)
    progress = views.progress_view(case)
    events = {t["transfer_id"]: t["events"] for t in progress["transfers"]}
    for transfer in view["transfers"]:
        transfer["events"] = events.get(transfer["transfer_id"], [])
    return view


# The limit sits below caller_required, so that it counts per staff member,
# and the lookup endpoints share one budget.
@blp.route("/lookup/cases", methods=["GET"])
@caller_required(*LOOKUP_ROLES)
@limits.lookup_per_caller
@bearer_operation(blp, 422, 429)
@blp.arguments(LookupArgs, location="query")
@blp.response(200, paging.envelope(LookupSummarySchema))
def find_cases(args):
    """Find cases by one criterion, with people masked, and record the lookup"""
    return _find(args)


@blp.route("/lookup/cases/search", methods=["POST"])
@caller_required(*LOOKUP_ROLES)
@limits.lookup_per_caller
@bearer_operation(blp, 422, 429, *JSON_BODY_ERRORS)
@blp.arguments(LookupArgs)
@blp.response(200, paging.envelope(LookupSummarySchema))
def search_cases(args):
    """Find cases as GET /lookup/cases does, with the criterion in the body

    An ID number in a URL reaches the access logs of every proxy on the way,
    so clients looking up by `id_number` should prefer this form.
    """
    return _find(args)


def _find(args):
    criterion = next(name for name in lookup.CRITERIA if name in args)
    query = lookup.search(
        g.caller.staff,
        criterion,
        args[criterion],
        args["reason"],
        g.request_id,
        args.get("service_org"),
    )
    return paging.page(query, args, lambda case: case_summary(case, g.caller))


@blp.route("/lookup/cases/<int:case_id>", methods=["GET"])
@caller_required(*LOOKUP_ROLES)
@limits.lookup_per_caller
@bearer_operation(blp, 404, 422, 429)
@blp.arguments(ReasonArgs, location="query")
@blp.response(200, LookupCaseSchema)
def show_case(args, case_id):
    """Show one case with its timeline, masked, and record the lookup"""
    case = lookup.case_for_lookup(g.caller.staff, case_id, args["reason"], g.request_id)
    g.case_id = case.id
    return case_detail(case, g.caller)


@blp.route("/lookup/report", methods=["GET"])
@caller_required(*REPORT_ROLES)
@bearer_operation(blp, 422)
@blp.arguments(ReportArgs, location="query")
@blp.response(200, LookupReportSchema)
def lookup_report(args):
    """Count the lookups of each staff member over a range of days"""
    rows = lookup.report(args["first_day"], args["last_day"])
    return {
        **args,
        "lookups": sum(row["lookups"] for row in rows),
        "staff": rows,
    }


@blp.route("/lookup/records", methods=["GET"])
@caller_required(*REPORT_ROLES)
@bearer_operation(blp, 422)
@blp.arguments(RecordArgs, location="query")
@blp.response(200, paging.envelope(LookupRecordView))
def list_records(args):
    """List lookup records, newest first, with ID numbers masked"""
    return paging.page(lookup.records(args.get("staff_id")), args)

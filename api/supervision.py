"""Utilities' on-time record for operators and supervisors, as JSON or CSV."""

import csv
import io

from flask import Response, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import paging, spreadsheets
from api.openapi import bearer_operation
from api.security import caller_required
from services import supervision

blp = Blueprint(
    "supervision",
    __name__,
    description="Aggregates of each utility's transfers, for supervision",
)

CSV_TYPE = "text/csv"
CSV_COLUMNS = (
    "month",
    "utility",
    "service_org",
    "service_days",
    "received",
    "completed",
    "completed_on_time",
    "returned",
    "returned_by_reason",
    "overdue_open",
    "median_hours_to_completion",
    "linked_account_share",
)


class ReportArgs(paging.PageArgs):
    from_month = fields.String(
        load_default=None,
        metadata={
            "description": "First month, YYYY-MM (China time); default 11 "
            "months before to_month"
        },
    )
    to_month = fields.String(
        load_default=None,
        metadata={"description": "Last month, YYYY-MM; default the current month"},
    )
    utility = fields.String(
        load_default=None, metadata={"description": "Only this utility code"}
    )
    format = fields.String(
        load_default="json",
        validate=validate.OneOf(("json", "csv")),
        metadata={
            "description": "csv answers every row of the range as text/csv, "
            "unpaged; so does the header Accept: text/csv"
        },
    )


class ReturnCountView(Schema):
    reason = fields.String()
    count = fields.Integer()


class UtilityMonthView(Schema):
    month = fields.String(metadata={"description": "YYYY-MM, China time"})
    utility = fields.String()
    service_org = fields.String()
    service_days = fields.Integer(metadata={"description": "Working days allowed"})
    received = fields.Integer(
        metadata={"description": "Transfers the utility took in the month"}
    )
    completed = fields.Integer()
    completed_on_time = fields.Integer()
    returned = fields.Integer()
    returned_by_reason = fields.List(fields.Nested(ReturnCountView))
    overdue_open = fields.Integer(
        metadata={"description": "Still open and past their due time now"}
    )
    median_hours_to_completion = fields.Float(
        allow_none=True,
        metadata={"description": "Median hours from registration to 办结"},
    )
    linked_account_share = fields.Float(
        allow_none=True,
        metadata={
            "description": "Share of the utility's known accounts linked to a "
            "unit code, now; empty without accounts"
        },
    )


def wants_csv(args):
    if args["format"] == "csv":
        return True
    best = request.accept_mimetypes.best_match(["application/json", CSV_TYPE])
    return best == CSV_TYPE


def csv_response(rows):
    buffer = io.StringIO()
    buffer.write(spreadsheets.BYTE_ORDER_MARK)
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for row in rows:
        reasons = "; ".join(
            f"{item['reason']}: {item['count']}" for item in row["returned_by_reason"]
        )
        row = {**row, "returned_by_reason": reasons}
        writer.writerow({name: spreadsheets.as_text(row[name]) for name in CSV_COLUMNS})
    return Response(
        buffer.getvalue(),
        mimetype=CSV_TYPE,
        headers={"Content-Disposition": "attachment; filename=transfers-report.csv"},
    )


@blp.route("/supervision/transfers", methods=["GET"])
@caller_required("admin", "supervisor")
@bearer_operation(blp, 404, 422)
@blp.arguments(ReportArgs, location="query")
@blp.response(200, paging.envelope(UtilityMonthView))
def transfer_report(args):
    """Report each utility's transfers by month: received, on time, returned, overdue

    One row per utility and month, newest month first. The range is at most
    36 months. Rows are paged as JSON; CSV has every row of the range.
    """
    bounds = (args["from_month"], args["to_month"], args["utility"])
    if wants_csv(args):
        rows, _ = supervision.report(*bounds)
        return csv_response(rows)
    rows, total = supervision.report(*bounds, page=args["page"], size=args["page_size"])
    return {
        "items": rows,
        "total": total,
        "page": args["page"],
        "page_size": args["page_size"],
    }

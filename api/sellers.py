"""The cases of homes a citizen sold, in the view of their previous owner (原权利人).

The paths put the role before the shared resource, as `/lookup/cases` and
`/utility/transfers` do: `/previous-owner/cases/{case_id}` is the same case
as `/cases/{case_id}`, seen from the seller's side. The role is named
previous owner, not seller, because gifts and inheritances have one too.
"""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import disputes, paging
from api.errors import takes_raw_body
from api.fields import LocalDateTime
from api.notifications import NoticePersonView
from api.openapi import bearer_operation
from api.security import caller_required
from api.views import ReadingSchema
from services import meter_readings, sellers

blp = Blueprint(
    "previous_owner",
    __name__,
    description="The cases of homes I sold: each account's completion and "
    "final meter reading",
)


class SoldTransferView(Schema):
    transfer_id = fields.Integer()
    service_org = fields.String()
    utility_kind = fields.String()
    account_no = fields.String()
    status = fields.String()
    status_label = fields.String()
    completed_at = LocalDateTime(
        allow_none=True,
        metadata={"description": "When the utility reported 办结; null before"},
    )
    return_reason = fields.String(
        allow_none=True,
        metadata={"description": "The utility's reason when it returned the transfer"},
    )
    final_reading = fields.Nested(
        ReadingSchema,
        allow_none=True,
        metadata={
            "description": "The meter reading on the transfer day, where the "
            "seller's last bill ends; null until the utility sends it, and for "
            "a returned or withdrawn transfer, whose account stayed in the "
            "seller's name"
        },
    )


class SoldCaseView(Schema):
    case_id = fields.Integer()
    business_no = fields.String()
    business_type = fields.String()
    location = fields.String()
    registration_status = fields.String()
    status = fields.String()
    status_label = fields.String()
    owners = fields.List(
        fields.Nested(NoticePersonView),
        metadata={"description": "The buyers, their names masked"},
    )
    previous_owners = fields.List(fields.Nested(NoticePersonView))
    release_notice_id = fields.Integer(
        allow_none=True,
        metadata={"description": "Once every account moved: GET /release-notices/{id}"},
    )
    transfers = fields.List(fields.Nested(SoldTransferView))


@blp.route("/previous-owner/cases", methods=["GET"])
@caller_required("citizen")
@bearer_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(SoldCaseView))
def list_sold_cases(args):
    """List the cases of homes I sold, with each account's final reading"""
    citizen = g.caller.citizen
    return paging.page(
        sellers.cases_of(citizen),
        args,
        lambda case: sellers.case_view(case, citizen),
    )


@blp.route("/previous-owner/cases/<int:case_id>", methods=["GET"])
@caller_required("citizen")
@bearer_operation(blp, 404)
@blp.response(200, SoldCaseView)
def get_sold_case(case_id):
    """Show one case of a home I sold

    Anyone not named as a previous owner on the case gets 404
    `previous_owner_case_not_found`, as for a case that does not exist.
    """
    case = sellers.case_for(g.caller, case_id)
    return sellers.case_view(case, g.caller.citizen)


@takes_raw_body(None)
@blp.route(
    "/previous-owner/cases/<int:case_id>/transfers/<int:transfer_id>"
    "/meter-reading/dispute",
    methods=["POST"],
)
@disputes.photo_sized
@caller_required("citizen")
@bearer_operation(blp, 404, 409, 413, 422)
@blp.doc(requestBody=disputes.DISPUTE_BODY)
@blp.response(200, SoldTransferView)
def dispute_sold_reading(case_id, transfer_id):
    """Dispute the transfer day's meter reading of a home I sold

    The same form and rules as the buyer's dispute: `multipart/form-data`
    with `note` and a JPEG or PNG `photo` of the meter. A reading takes one
    dispute, from the buyer's side or the seller's, and a second gets 409
    `reading_disputed`.
    """
    transfer = sellers.transfer_for(g.caller, case_id, transfer_id)
    note, photo = disputes.read_form()
    reading = meter_readings.dispute(transfer, note, photo)
    return sellers.transfer_view(transfer, reading)

"""Utilities at the hub: staff follow their transfers, and accounts get checked.

Staff of a utility log in with a password and see only their own utility's
transfers, with the people on them masked. They report progress by hand for
a utility without a system link, and accept again a returned transfer whose
cause is fixed. The reconciliation queue takes the utility's system signature
or its staff's token alike.
"""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api import paging, views
from api.fields import LocalDateTime, UnitCode, to_local
from api.openapi import JSON_BODY_ERRORS, bearer_operation, utility_operation
from api.security import caller_required, utility_caller_required
from domain.masking import mask_address, mask_id_number, mask_name
from linkage.labels import in_chinese
from services import (
    deadlines,
    feedback,
    reconciliation_queue,
    timeline,
    utility_desk,
)

blp = Blueprint(
    "utility",
    __name__,
    description="Utility staff and systems: transfers and accounts to check",
)


def not_blank(text):
    if not text.strip():
        raise ValidationError("must not be blank.")


class TransferListArgs(paging.PageArgs):
    status = fields.String(
        load_default=None,
        validate=validate.OneOf(utility_desk.VISIBLE_STATUSES),
        metadata={
            "description": "Only transfers in this status. Transfers not yet "
            "registered (draft, submitted) are never listed."
        },
    )


class ByHandFeedbackSchema(Schema):
    status = fields.String(
        required=True, validate=validate.OneOf(tuple(feedback.FEEDBACK_STATUSES))
    )
    return_reason = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "Required when status is 退件"},
    )
    note = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=500)
    )


class ReopenSchema(Schema):
    note = fields.String(
        required=True,
        validate=[validate.Length(min=2, max=200), not_blank],
        metadata={"description": "What fixed the cause of the return"},
    )


class MaskedPersonView(Schema):
    name = fields.String()
    id_type = fields.String()
    id_number = fields.String()


class UtilityTransferView(Schema):
    transfer_id = fields.Integer()
    business_no = fields.String()
    business_type = fields.String()
    unit_code = fields.String()
    location = fields.String()
    account_no = fields.String()
    status = fields.String()
    status_label = fields.String()
    return_reason = fields.String(allow_none=True)
    updated_at = LocalDateTime()
    due_at = LocalDateTime(allow_none=True)
    overdue = fields.Boolean()
    owners = fields.List(fields.Nested(MaskedPersonView))
    previous_owners = fields.List(fields.Nested(MaskedPersonView))


class UtilityTransferDetailView(UtilityTransferView):
    certificate_no = fields.String(allow_none=True)
    account_confirmed = fields.Boolean()
    agreement_version = fields.Integer(allow_none=True)
    arrears_fen = fields.Integer(allow_none=True)
    events = fields.List(fields.Nested(views.EventSchema))


class FeedbackAnswerView(UtilityTransferDetailView):
    applied = fields.Boolean(
        metadata={"description": "False when the report repeated the status"}
    )


def masked_people(parties, role):
    return [
        {
            "name": mask_name(party.name),
            "id_type": party.id_type,
            "id_number": mask_id_number(party.id_number),
        }
        for party in parties
        if party.role == role
    ]


def transfer_view(transfer, parties):
    business = transfer.case.business
    return {
        "transfer_id": transfer.id,
        "business_no": business.business_no,
        "business_type": business.business_type,
        "unit_code": business.unit.unit_code,
        "location": business.location,
        "account_no": transfer.account_no,
        "status": transfer.status,
        "status_label": timeline.status_label(transfer.status),
        "return_reason": transfer.return_reason,
        "updated_at": transfer.updated_at,
        **deadlines.due_fields(transfer),
        "owners": masked_people(parties, "owner"),
        "previous_owners": masked_people(parties, "previous_owner"),
    }


def event_view(event):
    return {
        "status": event.status,
        "label": timeline.NOTES.get(event.status)
        or timeline.status_label(event.status),
        "actor": event.actor,
        "note": event.note,
        "return_reason": event.return_reason,
        "occurred_at": to_local(event.occurred_at),
    }


def transfer_detail(transfer):
    business = transfer.case.business
    parties = utility_desk.parties_of([business.id])[business.id]
    view = transfer_view(transfer, parties)
    view.update(
        certificate_no=business.certificate_no,
        account_confirmed=transfer.account_confirmed,
        agreement_version=transfer.agreement.version if transfer.agreement else None,
        arrears_fen=transfer.arrears_fen,
        events=[event_view(event) for event in utility_desk.events_of(transfer)],
    )
    return view


@blp.route("/utility/transfers", methods=["GET"])
@caller_required("utility")
@bearer_operation(blp, 422)
@blp.arguments(TransferListArgs, location="query")
@blp.response(200, paging.envelope(UtilityTransferView))
def list_transfers(args):
    """List my utility's transfers from registration on, newest first"""
    utility = g.caller.organisation.utility
    page = paging.page(utility_desk.transfers_of(utility, args["status"]), args)
    parties = utility_desk.parties_of({t.case.business_id for t in page["items"]})
    page["items"] = [
        transfer_view(transfer, parties[transfer.case.business_id])
        for transfer in page["items"]
    ]
    return page


@blp.route("/utility/transfers/<int:transfer_id>", methods=["GET"])
@caller_required("utility")
@bearer_operation(blp, 404)
@blp.response(200, UtilityTransferDetailView)
def get_transfer(transfer_id):
    """Show one of my utility's transfers with its timeline"""
    utility = g.caller.organisation.utility
    return transfer_detail(utility_desk.transfer_of(utility, transfer_id))


@blp.route("/utility/transfers/<int:transfer_id>/feedback", methods=["POST"])
@caller_required("utility")
@bearer_operation(blp, 404, 409, 422, *JSON_BODY_ERRORS)
@blp.arguments(ByHandFeedbackSchema)
@blp.response(200, FeedbackAnswerView)
def post_feedback(report, transfer_id):
    """Report 办理状态 and 退件原因 by hand

    For a utility without a system link, and for any utility while its
    system cannot report. The rules are those of POST /partner/feedback: a
    status may not go back,
    a final status does not change, and 退件 needs a return reason. Repeating
    the current status changes nothing and returns `applied: false`.
    """
    utility = g.caller.organisation.utility
    transfer, applied = utility_desk.report_by_hand(
        utility, g.caller, transfer_id, report
    )
    return {**transfer_detail(transfer), "applied": applied}


@blp.route("/utility/transfers/<int:transfer_id>/reopen", methods=["POST"])
@caller_required("utility")
@bearer_operation(blp, 404, 409, 422, *JSON_BODY_ERRORS)
@blp.arguments(ReopenSchema)
@blp.response(200, UtilityTransferDetailView)
def reopen_transfer(data, transfer_id):
    """Accept a returned transfer again, once the cause of the return is fixed

    The transfer goes back to 已受理 without its return reason, and a case
    that was closed is in progress again. A transfer that is not 退件 gets
    409.
    """
    utility = g.caller.organisation.utility
    transfer = utility_desk.reopen(utility, g.caller, transfer_id, data["note"].strip())
    return transfer_detail(transfer)


class ReconciliationListArgs(paging.PageArgs):
    status = fields.String(
        load_default=None,
        validate=validate.OneOf(tuple(reconciliation_queue.STATUSES)),
        metadata={"description": "open, linked or rejected"},
    )


class DecisionSchema(Schema):
    decision = fields.String(
        required=True,
        validate=validate.OneOf(tuple(utility_desk.DECISIONS)),
        metadata={"description": "link the account to the home, or reject it"},
    )
    note = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(max=500),
        metadata={"description": "Required to reject; the applicant sees it"},
    )
    unit_code = UnitCode(
        load_default=None,
        allow_none=True,
        metadata={
            "description": "For an account from a roster: the unit to link it to, "
            "usually one of the item's candidates"
        },
    )


class ReconciliationView(Schema):
    item_id = fields.Integer()
    source = fields.String(
        metadata={"description": "applicant: asked for while adding the account"}
    )
    service_org = fields.String()
    account_no = fields.String()
    status = fields.String(metadata={"description": "open, linked or rejected"})
    status_label = fields.String()
    reasons = fields.List(
        fields.String(),
        metadata={
            "description": "The checks the account failed: "
            + ", ".join(reconciliation_queue.REASONS)
        },
    )
    reason_labels = fields.List(fields.String())
    candidates = fields.Raw(allow_none=True)
    business_no = fields.String(allow_none=True)
    unit_code = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    owners = fields.List(fields.Nested(MaskedPersonView))
    previous_owners = fields.List(fields.Nested(MaskedPersonView))
    holder_name = fields.String(
        allow_none=True,
        metadata={"description": "The holder as the utility's system returned it"},
    )
    holder_id_numbers = fields.List(fields.String())
    account_address = fields.String(allow_none=True)
    decision_note = fields.String(allow_none=True)
    decided_via = fields.String(
        allow_none=True, metadata={"description": "staff or system"}
    )
    decided_by = fields.Integer(
        allow_none=True, metadata={"description": "The deciding staff member's id"}
    )
    outcome = fields.String(
        allow_none=True,
        metadata={
            "description": "For a linked account: transfer_added, or linked_only "
            "when the case was no longer open"
        },
    )
    transfer_id = fields.Integer(allow_none=True)
    created_at = LocalDateTime()
    decided_at = LocalDateTime(allow_none=True)


def reconciliation_view(item, parties):
    business = item.business
    return {
        "item_id": item.id,
        "source": item.source,
        "service_org": item.utility.service_org,
        "account_no": item.account_no,
        "status": item.status,
        "status_label": reconciliation_queue.STATUSES[item.status],
        "reasons": item.reasons,
        # Roster items carry the engine's reasons as phrases, not codes.
        "reason_labels": [
            reconciliation_queue.REASONS.get(code) or in_chinese(code)
            for code in item.reasons
        ],
        "candidates": [
            {
                **candidate,
                "reason_labels": [in_chinese(r) for r in candidate["reasons"]],
            }
            for candidate in item.candidates
        ]
        if item.candidates
        else item.candidates,
        "business_no": business.business_no if business else None,
        "unit_code": item.unit.unit_code if item.unit else None,
        "location": business.location if business else None,
        "owners": masked_people(parties, "owner"),
        "previous_owners": masked_people(parties, "previous_owner"),
        "holder_name": mask_name(item.holder_name),
        "holder_id_numbers": [
            mask_id_number(number) for number in item.holder_id_numbers or []
        ],
        "account_address": mask_address(item.account_address),
        "decision_note": item.decision_note,
        "decided_via": item.decided_via,
        "decided_by": item.decided_by_id,
        "outcome": reconciliation_queue.outcome(item),
        "transfer_id": item.transfer_id,
        "created_at": item.created_at,
        "decided_at": item.decided_at,
    }


def reconciliation_views(items):
    parties = utility_desk.parties_of(
        {item.business_id for item in items if item.business_id is not None}
    )
    return [
        reconciliation_view(item, parties.get(item.business_id, [])) for item in items
    ]


@blp.route("/partner/reconciliations", methods=["GET"])
@utility_caller_required
@utility_operation(blp, 422)
@blp.arguments(ReconciliationListArgs, location="query")
@blp.response(200, paging.envelope(ReconciliationView))
def list_reconciliations(args):
    """List the accounts my utility is asked to check by hand, newest first"""
    query = reconciliation_queue.items_of(g.utility, args["status"])
    page = paging.page(query, args)
    page["items"] = reconciliation_views(page["items"])
    return page


@blp.route("/partner/reconciliations/<int:item_id>", methods=["GET"])
@utility_caller_required
@utility_operation(blp, 404)
@blp.response(200, ReconciliationView)
def get_reconciliation(item_id):
    """Show one account my utility is asked to check"""
    item = reconciliation_queue.item_for(g.utility, item_id)
    return reconciliation_views([item])[0]


@blp.route("/partner/reconciliations/<int:item_id>", methods=["POST"])
@utility_caller_required
@utility_operation(blp, 404, 409, 422, *JSON_BODY_ERRORS)
@blp.arguments(DecisionSchema)
@blp.response(200, ReconciliationView)
def decide_reconciliation(data, item_id):
    """Link the account to the home, or reject it with a note for the applicant

    Linking stores the account's unit code and, while the case is open, adds
    the account to it with a timeline entry. Repeating a decision returns the
    item unchanged, and a different decision on a decided item gets 409.
    """
    item, _ = utility_desk.decide(
        g.utility,
        g.caller,
        item_id,
        data["decision"],
        data["note"],
        unit_code=data["unit_code"],
    )
    return reconciliation_views([item])[0]

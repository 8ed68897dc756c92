"""The operators' desk: failed deliveries to partners and flagged payments."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import fields as api_fields
from api import paging
from api.openapi import JSON_BODY_ERRORS, bearer_operation
from api.security import caller_required
from services import access, operations

blp = Blueprint(
    "admin",
    __name__,
    description="Platform operators: failed deliveries and flagged payments",
)


class DeliveryArgs(paging.PageArgs):
    state = fields.String(
        validate=validate.OneOf(operations.DELIVERY_STATES),
        metadata={"description": "Leave out for every message not yet done"},
    )
    utility = fields.String(
        validate=validate.Length(min=1, max=32),
        metadata={"description": "A utility code, such as water"},
    )


class DeliveryView(Schema):
    delivery_id = fields.Integer(attribute="id")
    kind = fields.String(
        metadata={"description": "push_transfer, report_payment or refund"}
    )
    ref_id = fields.Integer(
        metadata={"description": "The transfer, payment or refund it is about"}
    )
    utility = fields.String(attribute="utility_code")
    state = fields.String()
    attempts = fields.Integer()
    last_error = fields.String(allow_none=True)
    next_attempt_at = api_fields.LocalDateTime()
    created_at = api_fields.LocalDateTime()
    done_at = api_fields.LocalDateTime(allow_none=True)


class FlaggedPaymentView(Schema):
    payment_id = fields.Integer(attribute="id")
    transfer_id = fields.Integer(attribute="transfer_id")
    case_id = fields.Integer(attribute="transfer.case_id")
    provider = fields.String()
    out_trade_no = fields.String()
    amount_fen = fields.Integer()
    status = fields.String()
    flag = fields.String()
    paid_at = api_fields.LocalDateTime(allow_none=True)
    created_at = api_fields.LocalDateTime()


@blp.route("/admin/deliveries", methods=["GET"])
@caller_required("admin")
@bearer_operation(blp, 422)
@blp.arguments(DeliveryArgs, location="query")
@blp.response(200, paging.envelope(DeliveryView))
def list_deliveries(args):
    """List messages to partners that are not yet delivered, or by state"""
    query = operations.deliveries(args.get("state"), args.get("utility"))
    return paging.page(query, args)


@blp.route("/admin/deliveries/<int:delivery_id>/retry", methods=["POST"])
@caller_required("admin")
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.response(200, DeliveryView)
def retry_delivery(delivery_id):
    """Send a failed or waiting message to its partner again now"""
    g.authority = access.Authority(g.caller, "operator")
    return operations.retry_delivery(delivery_id)


@blp.route("/admin/payments/flagged", methods=["GET"])
@caller_required("admin")
@bearer_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(FlaggedPaymentView))
def list_flagged_payments(args):
    """List payments whose provider's answer disagreed with the order"""
    return paging.page(operations.flagged_payments(), args)

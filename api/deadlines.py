"""Overdue alerts for a utility's staff."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api import paging
from api.fields import LocalDateTime
from api.openapi import bearer_operation
from api.security import caller_required
from services import deadlines, timeline

blp = Blueprint(
    "deadlines", __name__, description="Transfers past their utility's service time"
)


class OverdueAlertView(Schema):
    alert_id = fields.Integer()
    transfer_id = fields.Integer()
    account_no = fields.String()
    status = fields.String(metadata={"description": "The transfer's status now"})
    status_label = fields.String()
    still_open = fields.Boolean(
        metadata={"description": "False once the transfer is completed or returned"}
    )
    delivered_at = LocalDateTime(allow_none=True)
    due_at = LocalDateTime()
    raised_at = LocalDateTime()


def alert_view(alert):
    transfer = alert.transfer
    return {
        "alert_id": alert.id,
        "transfer_id": transfer.id,
        "account_no": transfer.account_no,
        "status": transfer.status,
        "status_label": timeline.status_label(transfer.status),
        "still_open": transfer.status in deadlines.OPEN_STATUSES,
        "delivered_at": transfer.delivered_at,
        "due_at": alert.due_at,
        "raised_at": alert.raised_at,
    }


@blp.route("/utility/alerts", methods=["GET"])
@caller_required("utility")
@bearer_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(OverdueAlertView))
def list_alerts(args):
    """List my utility's transfers that passed their due time, newest alert first"""
    utility = g.caller.organisation.utility
    return paging.page(deadlines.alerts_of(utility), args, alert_view)

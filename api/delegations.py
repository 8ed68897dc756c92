"""Owners authorising agencies to act for them, and the record of who acted."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import fields as api_fields
from api import paging
from api.idempotency import idempotent_operation
from api.openapi import JSON_BODY_ERRORS, bearer_operation
from api.security import CASE_ROLES, caller_required
from models import Case, CaseAction
from services import access, delegations

blp = Blueprint(
    "delegations", __name__, description="Owners authorising agencies to act for them"
)


class DelegationSchema(Schema):
    agency_name = fields.String(required=True, validate=validate.Length(min=2, max=100))
    agency_credit_code = fields.String(
        required=True, validate=validate.Length(equal=18)
    )
    scope = fields.List(
        fields.String(validate=validate.OneOf(delegations.SCOPES)),
        required=True,
        validate=validate.Length(min=1),
        metadata={
            "description": (
                "What the agency may do: view, accounts (add accounts), confirm, "
                "agreement, pay, submit. Every scope includes viewing the case, "
                "and any live delegation lets the agency open it."
            )
        },
    )
    expires_at = fields.AwareDateTime(required=True)


class BusinessDelegationSchema(DelegationSchema):
    business_no = fields.String(required=True, validate=validate.Length(min=4, max=64))


class DelegationView(Schema):
    delegation_id = fields.Integer(attribute="id")
    business_no = fields.String(attribute="business.business_no")
    case_id = fields.Integer(attribute="case_id", allow_none=True)
    agency_name = fields.String()
    agency_credit_code = fields.String()
    scope = fields.Function(lambda d: d.scope.split(","))
    state = fields.Function(
        delegations.state, metadata={"description": "active, expired or revoked"}
    )
    expires_at = api_fields.LocalDateTime()
    revoked_at = api_fields.LocalDateTime(allow_none=True)
    created_at = api_fields.LocalDateTime()
    warnings = fields.List(
        fields.String(),
        metadata={"description": "Accepted values that deserve a second look"},
    )


def _grant(business, case, data):
    return delegations.grant(
        business,
        case,
        g.caller.citizen,
        data["agency_name"],
        data["agency_credit_code"],
        data["scope"],
        data["expires_at"],
    )


@blp.route("/cases/<int:case_id>/delegations", methods=["POST"])
@caller_required("citizen")
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, 422, *JSON_BODY_ERRORS)
@blp.arguments(DelegationSchema)
@blp.response(201, DelegationView)
def grant_on_case(data, case_id):
    """Authorise an agency to act on this case"""
    case = access.case_for(g.caller, case_id)
    return _grant(case.business, case, data)


@blp.route("/cases/<int:case_id>/delegations", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(DelegationView))
def list_on_case(args, case_id):
    """List the delegations on this case: all for an owner, its own for an agency"""
    case = access.case_for(g.caller, case_id)
    return paging.page(delegations.of_case(case, g.caller), args)


@blp.route(
    "/cases/<int:case_id>/delegations/<int:delegation_id>/revocation",
    methods=["POST"],
)
@caller_required("citizen")
@bearer_operation(blp, 404, *JSON_BODY_ERRORS)
@blp.response(200, DelegationView)
def revoke(case_id, delegation_id):
    """Revoke a delegation; the agency loses access at once"""
    case = access.case_for(g.caller, case_id)
    return delegations.revoke(case, g.caller.citizen, delegation_id)


@blp.route("/delegations", methods=["POST"])
@caller_required("citizen")
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(BusinessDelegationSchema)
@blp.response(201, DelegationView)
def grant_on_business(data):
    """Authorise an agency by business number, so that it can open the case"""
    business = delegations.business_for_grant(g.caller.citizen, data["business_no"])
    case = Case.get_or_none(Case.business == business)
    return _grant(business, case, data)


@blp.route("/delegations", methods=["GET"])
@caller_required("citizen")
@bearer_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(DelegationView))
def list_granted(args):
    """List the delegations I granted"""
    return paging.page(delegations.granted_by(g.caller.citizen), args)


ACTION_LABELS = {
    "open": "创建联办事项",
    "add_account": "添加户号",
    "request_review": "申请服务机构人工核对户号",
    "confirm": "确认户号信息",
    "agreement": "同意过户协议",
    "pay": "发起缴费",
    "submit": "提交联办",
    "delegate": "授权中介机构",
    "revoke": "撤销授权",
    "counter_consent": "窗口登记申请人授权",
    "retry_push": "平台重新推送",
    "dispute_reading": "对过户日读数提出异议",
    "withdraw": "撤回联办",
}


class ActionView(Schema):
    action = fields.String()
    label = fields.String()
    actor_role = fields.String(
        metadata={
            "description": "applicant, agent, window, previous_owner, operator "
            "or system"
        }
    )
    actor_name = fields.String(
        allow_none=True,
        metadata={"description": "The agency or office that acted, for staff"},
    )
    by_me = fields.Boolean(metadata={"description": "The caller took this step"})
    transfer_id = fields.Integer(allow_none=True)
    occurred_at = api_fields.LocalDateTime()


def _action_view(action):
    caller = g.caller
    by_me = (caller.citizen is not None and action.citizen_id == caller.citizen.id) or (
        caller.staff is not None and action.staff_id == caller.staff.id
    )
    return {
        "action": action.action,
        "label": ACTION_LABELS.get(action.action, action.action),
        "actor_role": action.actor_role,
        "actor_name": action.staff.organisation.name if action.staff_id else None,
        "by_me": by_me,
        "transfer_id": action.transfer_id,
        "occurred_at": action.occurred_at,
    }


@blp.route("/cases/<int:case_id>/actions", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(ActionView))
def list_actions(args, case_id):
    """List who took each step on this case, and for which agency or office"""
    case = access.case_for(g.caller, case_id)
    query = (
        CaseAction.select()
        .where(CaseAction.case == case)
        .order_by(CaseAction.occurred_at, CaseAction.id)
    )
    return paging.page(query, args, _action_view)

"""The applicant's joint-handling case: accounts, agreement, arrears, submission."""

from flask import g, jsonify
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import disputes, paging, views
from api import fields as api_fields
from api.case_cache import keeps_case_view
from api.errors import takes_raw_body
from api.idempotency import idempotent_operation
from api.openapi import JSON_BODY_ERRORS, bearer_operation
from api.security import CASE_ROLES, caller_required
from models import ReconciliationItem, Transfer
from services import (
    access,
    cases,
    meter_readings,
    payments,
    transfer_checks,
    wallets,
    withdrawal,
)

blp = Blueprint("cases", __name__, description="A citizen's joint-handling cases")


class OpenCaseSchema(Schema):
    business_no = fields.String(required=True, validate=validate.Length(min=4, max=64))


class AddAccountSchema(Schema):
    service_org = fields.String(required=True, validate=validate.Length(min=1, max=100))
    account_no = fields.String(
        required=True,
        validate=validate.Regexp(
            r"^[A-Za-z0-9-]{4,32}$",
            error="account_no must be 4 to 32 letters, digits or hyphens.",
        ),
    )
    request_review = fields.Boolean(
        load_default=False,
        metadata={
            "description": "Ask the utility to check by hand an account that the "
            "online checks cannot place, instead of answering 409"
        },
    )


class AcceptAgreementSchema(Schema):
    version = api_fields.StrictInteger(required=True, validate=validate.Range(min=1))


class EmptySchema(Schema):
    """No fields: a body may be left out, and any field sent is rejected."""


class PaymentStartSchema(Schema):
    provider = fields.String(
        load_default="wechatpay",
        validate=validate.OneOf(wallets.PROVIDERS),
        metadata={"description": "The wallet the payer scans with"},
    )


@blp.route("/cases", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(views.CaseSummarySchema))
def list_cases(args):
    """List my cases; for an agency, the cases its delegations cover"""
    return paging.page(access.cases_for(g.caller), args, views.case_summary)


@blp.route("/cases", methods=["POST"])
@caller_required(*CASE_ROLES)
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(OpenCaseSchema)
@blp.response(201, views.CaseSchema)
@blp.alt_response(200, schema=views.CaseSchema, description="The case already exists")
def open_case(data):
    """Open the case of a registration business I own"""
    case, created = cases.open_case(g.caller, data["business_no"])
    return views.case_view(case, g.caller), 201 if created else 200


@blp.route("/cases/<int:case_id>", methods=["GET"])
@keeps_case_view
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, views.CaseSchema)
def get_case(case_id):
    """Show a case with one transfer per utility account"""
    return views.case_view(access.case_for(g.caller, case_id), g.caller)


@blp.route("/cases/<int:case_id>/accounts", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, views.TransferSchema(many=True))
def list_accounts(case_id):
    """List the utility accounts of the home, personal data masked"""
    case = access.case_for(g.caller, case_id)
    if case.status == "open":
        for transfer in list(case.transfers):
            cases.refresh_holder(transfer)
    return views.transfer_views(case, g.caller)


@blp.route("/cases/<int:case_id>/accounts", methods=["POST"])
@caller_required(*CASE_ROLES)
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, 422, 502, *JSON_BODY_ERRORS)
@blp.arguments(AddAccountSchema)
@blp.response(201, views.TransferSchema)
@blp.alt_response(
    202,
    schema=views.AccountReviewSchema,
    description="The account is queued for its utility to check by hand",
)
def add_account(data, case_id):
    """Add an account that is not linked to the home, checked with its utility

    An account whose holder or address does not match the home, or whose
    utility has no system link, gets 409. With `request_review` it is queued
    for the utility to check by hand instead, and the response is 202 with
    the queue's item. Requesting again returns the same open item.
    """
    case = access.case_for(g.caller, case_id, "add_account")
    added = cases.add_account(
        case, data["service_org"], data["account_no"], data["request_review"]
    )
    if isinstance(added, ReconciliationItem):
        review = views.AccountReviewSchema().dump(views.account_review_view(added))
        return jsonify(review), 202
    return views.transfer_view(added, g.caller)


@blp.route(
    "/cases/<int:case_id>/transfers/<int:transfer_id>/confirmation", methods=["POST"]
)
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(EmptySchema, required=False)
@blp.response(200, views.TransferSchema)
def confirm_account(data, case_id, transfer_id):
    """Confirm the account's information (是否确认用户信息)"""
    transfer = access.transfer_for(g.caller, case_id, transfer_id, "confirm")
    return views.transfer_view(cases.confirm_account(transfer), g.caller)


@blp.route(
    "/cases/<int:case_id>/transfers/<int:transfer_id>/agreement", methods=["POST"]
)
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(AcceptAgreementSchema)
@blp.response(200, views.TransferSchema)
def accept_agreement(data, case_id, transfer_id):
    """Accept the current version of the utility's transfer agreement"""
    transfer = access.transfer_for(g.caller, case_id, transfer_id, "agreement")
    transfer = cases.accept_agreement(transfer, data["version"])
    return views.transfer_view(transfer, g.caller)


@takes_raw_body(None)
@blp.route(
    "/cases/<int:case_id>/transfers/<int:transfer_id>/meter-reading/dispute",
    methods=["POST"],
)
@disputes.photo_sized
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 409, 413, 422)
@blp.doc(requestBody=disputes.DISPUTE_BODY)
@blp.response(200, views.TransferSchema)
def dispute_reading(case_id, transfer_id):
    """Dispute the transfer day's meter reading, with a photo of the meter

    Send `multipart/form-data` with `note` and `photo` (JPEG or PNG, at most
    METER_PHOTO_MAX_BYTES, 5 MiB by default), as the mini-program's
    wx.uploadFile does. The photo goes to the utility, which reads the meter
    again. A reading can be disputed once; an agency needs the `confirm`
    scope.
    """
    transfer = access.transfer_for(g.caller, case_id, transfer_id, "dispute_reading")
    note, photo = disputes.read_form()
    meter_readings.dispute(transfer, note, photo)
    return views.transfer_view(Transfer.get_by_id(transfer.id), g.caller)


@blp.route("/cases/<int:case_id>/arrears", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, views.ArrearsSchema(many=True))
def get_arrears(case_id):
    """Show the arrears of each account, fresh from each utility"""
    case = access.case_for(g.caller, case_id)
    return cases.fetch_arrears(case)


@blp.route(
    "/cases/<int:case_id>/transfers/<int:transfer_id>/payments", methods=["POST"]
)
@caller_required(*CASE_ROLES)
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, 502, *JSON_BODY_ERRORS)
@blp.arguments(PaymentStartSchema, required=False)
@blp.response(201, views.PaymentSchema)
@blp.alt_response(200, schema=views.PaymentSchema, description="A payable order exists")
def start_payment(data, case_id, transfer_id):
    """Start paying the account's arrears; returns the QR content"""
    transfer = access.transfer_for(g.caller, case_id, transfer_id, "pay")
    provider = (data or {}).get("provider", "wechatpay")
    payment, created = payments.start_payment(transfer, provider)
    return payment, 201 if created else 200


class CasePaymentStartSchema(PaymentStartSchema):
    transfer_ids = fields.List(
        api_fields.StrictInteger(validate=validate.Range(min=1)),
        validate=validate.Length(min=1, max=20),
        metadata={
            "description": "The accounts to pay, by transfer_id; left out, every "
            "account with arrears whose utility takes payments online"
        },
    )


@blp.route("/cases/<int:case_id>/payments", methods=["POST"])
@caller_required(*CASE_ROLES)
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, 502, *JSON_BODY_ERRORS)
@blp.arguments(CasePaymentStartSchema, required=False)
@blp.response(201, views.PaymentSchema)
@blp.alt_response(200, schema=views.PaymentSchema, description="A payable order exists")
def start_case_payment(data, case_id):
    """Pay the arrears of several accounts with one QR code

    The order's amount is the sum of each account's arrears as its utility
    states them now; `shares` lists each account's part. Each part is
    reported to its own utility. A part whose debt was paid meanwhile, in
    the app or at the utility's counter, is refunded by itself.
    """
    case = access.case_for(g.caller, case_id, "pay")
    data = data or {}
    payment, created = payments.start_case_payment(
        case, data.get("provider", "wechatpay"), data.get("transfer_ids")
    )
    return payment, 201 if created else 200


@blp.route("/cases/<int:case_id>/payments", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(views.PaymentSchema))
def list_case_payments(args, case_id):
    """List the case's payment orders with their shares and refunds, newest first"""
    case = access.case_for(g.caller, case_id)
    return paging.page(payments.of_case(case), args)


@blp.route("/cases/<int:case_id>/submission", methods=["POST"])
@caller_required(*CASE_ROLES)
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(EmptySchema, required=False)
@blp.response(200, views.CaseSchema)
def submit_case(data, case_id):
    """Submit the case for joint handling

    Each utility with a system link is asked first whether its account can
    transfer, unless it reported within the last 24 hours. An account the
    utility blocked or closed gets 409 `transfer_blocked`, with what to do per
    transfer in `errors.transfers`. Arrears, a direct debit and a utility
    that did not respond are warnings.
    """
    case = access.case_for(g.caller, case_id, "submit")
    cases.require_open(case)
    checks = transfer_checks.check_case(case, only_stale=True)
    transfer_checks.require_transferable(checks)
    case = cases.submit_case(case)
    view = views.case_view(case, g.caller)
    view["warnings"] = cases.arrears_warnings(case) + transfer_checks.warnings(checks)
    return view


@blp.route("/cases/<int:case_id>/transfer-checks", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, views.TransferCheckSchema(many=True))
def get_transfer_checks(case_id):
    """Ask each utility now whether its account can transfer, with what to do

    Items: arrears, a direct debit from the seller's bank account, a prepaid
    balance owed back to the seller, a block by the utility, a closed
    account. A utility without a system link is `not_connected`. One that
    does not respond is `unavailable`, with its last result if it has one.
    Once the registration completed, or the case was withdrawn, the answer is
    409 `case_not_open`.
    """
    case = access.case_for(g.caller, case_id)
    transfer_checks.require_before_registration(case)
    return transfer_checks.check_case(case)


class WithdrawalSchema(Schema):
    reason = fields.String(
        load_default=None,
        validate=validate.Length(min=1, max=200),
        metadata={"description": "Why the applicant withdraws, shown on the timeline"},
    )


@blp.route("/cases/<int:case_id>/withdrawal", methods=["POST"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(WithdrawalSchema, required=False)
@blp.response(200, views.CaseSchema)
def withdraw_case(data, case_id):
    """Withdraw the joint handling before the registration completes

    Open transfers become 已撤回, open payment orders are closed at their
    provider, and arrears already paid through the case are refunded to the
    payer and reversed at the utility. The case cannot be opened again. After
    the registration completes, the response is 409 `registration_completed`.
    An agency needs the `submit` scope.
    """
    case = access.case_for(g.caller, case_id, "withdraw")
    reason = (data or {}).get("reason")
    return views.case_view(withdrawal.withdraw_by_owner(case, reason), g.caller)


@blp.route("/cases/<int:case_id>/progress", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, views.ProgressSchema)
def get_progress(case_id):
    """Show the timeline of each transfer, with return reasons"""
    case = access.case_for(g.caller, case_id)
    return views.progress_view(case)

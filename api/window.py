"""Registry window staff opening a case for an applicant at the counter."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import fields as api_fields
from api import views
from api.idempotency import idempotent_operation
from api.openapi import JSON_BODY_ERRORS, bearer_operation
from api.security import caller_required
from services import window

blp = Blueprint(
    "window", __name__, description="Registry window staff serving applicants"
)


class ApplicantSchema(Schema):
    id_type = fields.String(
        load_default="居民身份证", validate=validate.Length(min=2, max=32)
    )
    id_number = fields.String(required=True, validate=validate.Length(min=4, max=64))


class CounterCaseSchema(Schema):
    business_no = fields.String(required=True, validate=validate.Length(min=4, max=64))
    applicant = fields.Nested(
        ApplicantSchema,
        required=True,
        metadata={"description": "The owner at the counter, by the ID they show"},
    )
    consent_method = fields.String(
        required=True,
        validate=validate.OneOf(list(window.CONSENT_METHODS)),
        metadata={"description": "signed_form (书面授权书) or e_signature (电子签名)"},
    )
    consent_reference = fields.String(
        required=True,
        validate=validate.Length(min=4, max=64),
        metadata={"description": "The form's number or the e-signature's id"},
    )


class ConsentView(Schema):
    consent_id = fields.Integer(attribute="id")
    method = fields.String()
    reference = fields.String()
    recorded_at = api_fields.LocalDateTime()
    expires_at = api_fields.LocalDateTime(
        metadata={"description": "Until then the window's staff may act on the case"}
    )


class CounterCaseView(views.CaseSchema):
    consent = fields.Nested(ConsentView)


@blp.route("/window/cases", methods=["POST"])
@caller_required("window")
@idempotent_operation(blp)
@bearer_operation(blp, 404, 409, *JSON_BODY_ERRORS)
@blp.arguments(CounterCaseSchema)
@blp.response(201, CounterCaseView)
@blp.alt_response(200, schema=CounterCaseView, description="The case already existed")
def open_at_counter(data):
    """Record an owner's consent at the counter and open the case for them"""
    case, created, consent = window.open_at_counter(
        g.caller,
        data["business_no"],
        data["applicant"]["id_type"],
        data["applicant"]["id_number"],
        data["consent_method"],
        data["consent_reference"],
    )
    view = views.case_view(case, g.caller)
    view["consent"] = consent
    return view, 201 if created else 200

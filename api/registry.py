"""The registry's side: creating and updating registration businesses."""

import logging
from decimal import Decimal

from flask import request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from api import fields as api_fields
from api.notifications import Mobile
from api.openapi import JSON_BODY_ERRORS, partner_operation
from api.security import signed_by
from domain.identifiers import ID_TYPES, InvalidIdentifier, normalise_id_number
from services import registry

log = logging.getLogger(__name__)

# Areas are stored as NUMERIC(12, 2), which allows ten digits before the point.
MAX_AREA = Decimal("9999999999.99")

blp = Blueprint("registry", __name__, description="Registry system calls (signed)")


class PersonSchema(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    id_type = fields.String(required=True, validate=validate.OneOf(ID_TYPES))
    id_number = fields.String(required=True, validate=validate.Length(min=1, max=40))
    phone = Mobile(load_default=None, allow_none=True)

    @validates_schema
    def check_id_number(self, data, **kwargs):
        try:
            data["id_number"] = normalise_id_number(
                data["id_type"], data["id_number"]
            ).value
        except InvalidIdentifier as error:
            raise ValidationError(f"{error} [{error.rule}]", "id_number") from None


class NamedAccountSchema(Schema):
    service_org = fields.String(required=True, validate=validate.Length(min=1, max=100))
    account_no = fields.String(required=True, validate=validate.Length(min=1, max=64))


class BusinessSchema(Schema):
    business_type = fields.String(
        required=True, validate=validate.OneOf(registry.BUSINESS_TYPES)
    )
    registration_status = fields.String(
        required=True, validate=validate.OneOf(registry.REGISTRATION_STATUSES)
    )
    certificate_no = api_fields.CertificateNo(
        load_default=None, allow_none=True, validate=validate.Length(max=64)
    )
    unit_code = api_fields.UnitCode(required=True)
    former_unit_codes = fields.List(api_fields.UnitCode(), load_default=list)
    location = fields.String(required=True, validate=validate.Length(min=2, max=200))
    usage = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=32)
    )
    building_area = fields.Decimal(
        places=2,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_AREA),
    )
    inner_area = fields.Decimal(
        places=2,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, max=MAX_AREA),
    )
    owners = fields.List(
        fields.Nested(PersonSchema),
        required=True,
        validate=validate.Length(min=1, max=20),
    )
    previous_owners = fields.List(
        fields.Nested(PersonSchema), load_default=list, validate=validate.Length(max=20)
    )
    accounts = fields.List(
        fields.Nested(NamedAccountSchema),
        load_default=list,
        validate=validate.Length(max=50),
    )


class BusinessStateSchema(Schema):
    business_no = fields.String()
    registration_status = fields.String()
    unit_code = fields.String(attribute="unit.unit_code")
    created = fields.Boolean()
    updated_at = api_fields.LocalDateTime()
    warnings = fields.List(
        fields.String(),
        metadata={"description": "Accepted values that deserve a second look"},
    )


@blp.route("/registry/businesses/<string:business_no>", methods=["PUT"])
@signed_by("registry")
@partner_operation(blp, 409, 422, *JSON_BODY_ERRORS)
@blp.arguments(BusinessSchema)
@blp.response(200, BusinessStateSchema)
@blp.alt_response(201, schema=BusinessStateSchema, description="Created")
def put_business(data, business_no):
    """Create or update a registration business; a repeat changes nothing"""
    registry.check_business_no(business_no)
    business, created = registry.upsert_business(business_no, data, request.get_json())
    business.created = created
    business.warnings = registry.identifier_warnings(data)
    return business, 201 if created else 200

"""The utilities taking part, and their transfer agreements."""

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.fields import LocalDateTime
from api.openapi import public_operation
from models import Utility
from services import cases, deadlines

blp = Blueprint(
    "agreements", __name__, description="Utilities and their transfer agreements"
)


class UtilitySchema(Schema):
    code = fields.String()
    service_org = fields.String()
    kind = fields.String(metadata={"description": "water, power, gas, heat or tv"})
    connection = fields.String(
        metadata={
            "description": "system: transfers are pushed and arrears can be paid "
            "online; channel: the utility collects transfers from an export"
        }
    )
    pays_online = fields.Function(
        lambda utility: utility.connection == "system",
        metadata={"type": "boolean"},
    )
    service_days = fields.Function(
        deadlines.service_days_of,
        metadata={
            "type": "integer",
            "description": "Working days the utility has to finish a transfer",
        },
    )


@blp.route("/utilities", methods=["GET"])
@public_operation(blp)
@blp.response(200, UtilitySchema(many=True))
def list_utilities():
    """List the utilities taking part, for choosing one by its service_org"""
    return list(Utility.select().order_by(Utility.code))


class AgreementSchema(Schema):
    service_org = fields.String(attribute="utility.service_org")
    version = fields.Integer()
    title = fields.String()
    body = fields.String()
    published_at = LocalDateTime()


@blp.route("/agreements/<string:service_org>", methods=["GET"])
@public_operation(blp, 404, 422)
@blp.response(200, AgreementSchema)
def get_agreement(service_org):
    """Show the utility's current transfer agreement, text and version"""
    utility = cases.find_utility(service_org, location="path")
    return cases.current_agreement(utility)

"""Utilities' transfer agreements."""

from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.fields import LocalDateTime
from api.openapi import public_operation
from services import cases

blp = Blueprint("agreements", __name__, description="Utilities' transfer agreements")


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

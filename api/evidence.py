"""A case's evidence entries, for its owner and those acting for them."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields

from api.openapi import bearer_operation
from api.security import CASE_ROLES, caller_required
from services import access, evidence

blp = Blueprint(
    "evidence", __name__, description="Signed evidence of each step of a case"
)


class EvidenceEntryView(Schema):
    seq = fields.Integer()
    prev_hash = fields.String()
    case_prev_hash = fields.String()
    kind = fields.String(
        metadata={
            "description": "push_accepted, feedback, account_confirmed, "
            "agreement_accepted, payment_settled or payment_refunded"
        }
    )
    case_id = fields.Integer()
    transfer_id = fields.Integer(allow_none=True)
    occurred_at = fields.String(metadata={"description": "UTC, ISO 8601"})
    payload_digest = fields.String(
        metadata={"description": "SHA-256 of the canonical JSON of what was sent"}
    )
    detail = fields.String(
        metadata={"description": "Canonical JSON of the masked details, as signed"}
    )
    key_id = fields.String()
    entry_hash = fields.String()
    signature = fields.String(metadata={"description": "Ed25519, base64"})


class EvidenceHeadView(Schema):
    case_id = fields.Integer()
    entries = fields.Integer()
    last_hash = fields.String()
    exported_at = fields.String()
    key_id = fields.String()
    signature = fields.String()


class CaseEvidenceView(Schema):
    format = fields.String()
    case_id = fields.Integer()
    entries = fields.List(fields.Nested(EvidenceEntryView))
    public_keys = fields.Dict(
        keys=fields.String(),
        values=fields.String(),
        metadata={"description": "Ed25519 public keys by key id, base64"},
    )
    head = fields.Nested(EvidenceHeadView)


@blp.route("/cases/<int:case_id>/evidence", methods=["GET"])
@caller_required(*CASE_ROLES)
@bearer_operation(blp, 404)
@blp.response(200, CaseEvidenceView)
def get_case_evidence(case_id):
    """Download the case's signed evidence entries, to check offline

    The response is the case file that `lianban evidence check` and
    services/evidence_check.py verify without the hub's database.
    """
    case = access.case_for(g.caller, case_id)
    return evidence.case_file(case.id)

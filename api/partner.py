"""Utilities' side: progress reports and the export for offline channels."""

import csv
import io
import logging

from flask import Response, g, jsonify, request
from flask_smorest import Blueprint
from marshmallow import Schema, ValidationError, fields, validate

from api.openapi import JSON_BODY_ERRORS, partner_operation
from api.security import signed_by
from models import Utility
from services import delivery, feedback
from services.errors import Invalid, Unauthorized

log = logging.getLogger(__name__)

blp = Blueprint("partner", __name__, description="Utility system calls (signed)")


class FeedbackSchema(Schema):
    transfer_id = fields.String(required=True, validate=validate.Length(min=1, max=32))
    account_no = fields.String(required=True, validate=validate.Length(min=1, max=64))
    service_org = fields.String(load_default=None, allow_none=True)
    status = fields.String(
        required=True, validate=validate.OneOf(tuple(feedback.FEEDBACK_STATUSES))
    )
    return_reason = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=500)
    )
    note = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=500)
    )
    reported_at = fields.AwareDateTime(load_default=None, allow_none=True)


class FeedbackAnswerSchema(Schema):
    transfer_id = fields.String()
    status = fields.String()
    applied = fields.Boolean()


class FeedbackItems(fields.List):
    """The reports of a batch, each loaded by FeedbackSchema on its own.

    An item that fails the schema becomes an Invalid error in its place,
    instead of failing the whole load, so that `feedback.apply_batch` can
    name every failing item together with the items that fail its own checks.
    """

    def _deserialize(self, value, attr, data, **kwargs):
        if not isinstance(value, list):
            raise ValidationError("Must be a list of feedback reports.")
        if not 1 <= len(value) <= feedback.MAX_BATCH_ITEMS:
            raise ValidationError(
                f"A batch must contain 1 to {feedback.MAX_BATCH_ITEMS} reports; "
                f"this one has {len(value)}. Split it into smaller batches."
            )
        loaded = []
        for item in value:
            try:
                loaded.append(self.inner.deserialize(item, **kwargs))
            except ValidationError as error:
                loaded.append(
                    Invalid(
                        "validation_failed",
                        "该项内容未通过校验，请按 errors 修改。",
                        errors=error.messages,
                    )
                )
        return loaded


class FeedbackBatchSchema(Schema):
    items = FeedbackItems(
        fields.Nested(FeedbackSchema),
        required=True,
        validate=validate.Length(min=1, max=feedback.MAX_BATCH_ITEMS),
        metadata={"description": "The reports, each in the single form's shape"},
    )


class FeedbackBatchAnswerSchema(Schema):
    items = fields.List(
        fields.Nested(FeedbackAnswerSchema),
        metadata={"description": "One result per report, in the batch's order"},
    )
    changed = fields.Integer(
        metadata={"description": "How many reports changed a transfer"}
    )


class PartyExportSchema(Schema):
    name = fields.String()
    id_type = fields.String()
    id_number = fields.String()


class PushSchema(Schema):
    """The Annex 2 fields of one transfer, as `delivery.build_push` writes them."""

    transfer_id = fields.String()
    business_no = fields.String()
    business_type = fields.String()
    certificate_no = fields.String(allow_none=True)
    unit_code = fields.String()
    location = fields.String()
    usage = fields.String(allow_none=True)
    building_area = fields.String(
        allow_none=True, metadata={"description": "Square metres, two decimals"}
    )
    inner_area = fields.String(
        allow_none=True, metadata={"description": "Square metres, two decimals"}
    )
    owners = fields.List(fields.Nested(PartyExportSchema))
    previous_owners = fields.List(fields.Nested(PartyExportSchema))
    service_org = fields.String()
    account_no = fields.String()
    account_address = fields.String(allow_none=True)
    arrears_fen = fields.Integer()
    account_confirmed = fields.Boolean()
    agreement_accepted = fields.Boolean()
    agreement_version = fields.Integer(allow_none=True)


class ExportSchema(Schema):
    transfers = fields.List(fields.Nested(PushSchema))


def calling_utility():
    """Return the utility whose signature the request carried.

    A partner with a shared secret but no utility row is misconfigured on the
    hub's side; it is rejected like an unknown partner and logged.
    """
    utility = Utility.get_or_none(Utility.code == g.partner)
    if utility is None:
        log.error("signed partner has no utility row partner=%s", g.partner)
        raise Unauthorized("partner_unknown", "合作方未登记为服务机构。")
    return utility


@blp.route("/partner/feedback", methods=["POST"])
@signed_by("utility")
@partner_operation(blp, 404, 409, 422, *JSON_BODY_ERRORS)
@blp.arguments(FeedbackSchema)
@blp.response(200, FeedbackAnswerSchema)
def post_feedback(report):
    """Report 办理状态 and 退件原因 for one transfer"""
    utility = calling_utility()
    transfer, applied = feedback.apply_feedback(utility, report)
    return {
        "transfer_id": str(transfer.id),
        "status": transfer.status,
        "applied": applied,
    }


@blp.route("/partner/feedback/batch", methods=["POST"])
@signed_by("utility")
@partner_operation(blp, *JSON_BODY_ERRORS)
@blp.arguments(FeedbackBatchSchema)
@blp.response(200, FeedbackBatchAnswerSchema)
def post_feedback_batch(batch):
    """Report 办理状态 and 退件原因 for several transfers, all or none

    `items` contains 1 to 500 reports, each in the shape of
    `POST /partner/feedback`, and the signature covers the whole body. The
    batch is checked and applied in one transaction. A report is invalid
    when it has a bad field, an unknown transfer or another utility's
    transfer, or a state change the single form rejects with 404, 409 or
    422. If any report is invalid, nothing is recorded and the response is
    422 `batch_rejected`. Its
    `errors.items` lists each failing report with its `index` (from 0), the
    `status` and `code` the single form would return, a `message`, and
    field `errors` where a field was invalid. Reports apply in their order,
    so one batch may carry 办理中 and then 办结 for one transfer. Sending an
    applied batch again changes nothing, and each item's `applied` is
    false, as the single form returns for a repeated report. More than 500
    reports, or none, is 422 `validation_failed` naming `items`.
    """
    utility = calling_utility()
    results = feedback.apply_batch(utility, batch["items"])
    return {
        "items": [
            {
                "transfer_id": str(transfer.id),
                "status": transfer.status,
                "applied": applied,
            }
            for transfer, applied in results
        ],
        "changed": sum(1 for _, applied in results if applied),
    }


EXPORT_COLUMNS = (
    ("transfer_id", "过户编号"),
    ("business_no", "不动产登记业务号"),
    ("business_type", "业务类别"),
    ("certificate_no", "不动产权证书号"),
    ("unit_code", "不动产单元代码"),
    ("location", "坐落"),
    ("usage", "用途"),
    ("building_area", "建筑面积"),
    ("inner_area", "套内面积"),
    ("service_org", "服务机构名称"),
    ("account_no", "用户号"),
    ("account_address", "用户地址"),
    ("arrears_fen", "欠费金额"),
    ("account_confirmed", "是否确认用户信息"),
    ("agreement_accepted", "是否确认过户协议"),
)


def _people(people, key):
    return ";".join(person[key] or "" for person in people)


def export_csv(transfers):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(
        [label for _, label in EXPORT_COLUMNS]
        + [
            "权利人名称",
            "权利人证件类型",
            "权利人证件号码",
            "原权利人名称",
            "原权利人证件类型",
            "原权利人证件号码",
        ]
    )
    for row in transfers:
        writer.writerow(
            [row.get(key) for key, _ in EXPORT_COLUMNS]
            + [
                _people(row["owners"], "name"),
                _people(row["owners"], "id_type"),
                _people(row["owners"], "id_number"),
                _people(row["previous_owners"], "name"),
                _people(row["previous_owners"], "id_type"),
                _people(row["previous_owners"], "id_number"),
            ]
        )
    return "\ufeff" + out.getvalue()


EXPORT_DESCRIPTION = "The waiting transfers, now marked collected"


@blp.route("/partner/exports", methods=["GET"])
@signed_by("utility")
@partner_operation(blp)
@blp.response(200, ExportSchema, description=EXPORT_DESCRIPTION)
@blp.alt_response(
    200,
    schema={"type": "string"},
    content_type="text/csv",
    description=EXPORT_DESCRIPTION,
    success=True,
)
def get_exports():
    """Collect the transfers waiting for a utility not connected by system

    The response is JSON unless the Accept header names `text/csv`. The CSV
    form is UTF-8 with a byte order mark and the Annex's Chinese column
    headers, one row per transfer. The people of a transfer are joined by `;`.
    Collecting marks the transfers handed over, so a second call returns only
    transfers that started waiting since.
    """
    utility = calling_utility()
    transfers = delivery.collect_exports(utility)
    if "text/csv" in request.headers.get("Accept", ""):
        return Response(export_csv(transfers), mimetype="text/csv; charset=utf-8")
    # A Response keeps the stored payloads as they are, and flask-smorest then
    # uses ExportSchema only for the OpenAPI document.
    return jsonify({"transfers": transfers})

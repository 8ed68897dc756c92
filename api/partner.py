"""Utilities' side: progress reports and the export for offline channels."""

import csv
import io

from flask import Response, g, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api.security import signed_by
from models import Utility
from services import delivery, feedback

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
    reported_at = fields.DateTime(load_default=None, allow_none=True)


class FeedbackAnswerSchema(Schema):
    transfer_id = fields.String()
    status = fields.String()
    applied = fields.Boolean()


@blp.route("/partner/feedback", methods=["POST"])
@signed_by("utility")
@blp.arguments(FeedbackSchema)
@blp.response(200, FeedbackAnswerSchema)
def post_feedback(report):
    """Report 办理状态 and 退件原因 for one transfer"""
    utility = Utility.get(Utility.code == g.partner)
    transfer, applied = feedback.apply_feedback(utility, report)
    return {
        "transfer_id": str(transfer.id),
        "status": transfer.status,
        "applied": applied,
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


@blp.route("/partner/exports", methods=["GET"])
@signed_by("utility")
@blp.response(200)
def get_exports():
    """Collect the transfers waiting for a utility not connected by system"""
    utility = Utility.get(Utility.code == g.partner)
    transfers = delivery.collect_exports(utility)
    if "text/csv" in request.headers.get("Accept", ""):
        return Response(export_csv(transfers), mimetype="text/csv; charset=utf-8")
    return {"transfers": transfers}

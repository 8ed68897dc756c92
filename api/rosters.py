"""Utilities' account rosters, linked to unit codes in the background."""

import csv
import io

from flask import Response, current_app, g, request
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import fields as api_fields
from api import paging, spreadsheets
from api.errors import error_response, takes_raw_body
from api.openapi import utility_operation
from api.security import utility_caller_required
from linkage import engine
from linkage.labels import in_chinese
from services import queue, rosters
from services.errors import ServiceError

blp = Blueprint(
    "rosters",
    __name__,
    description="Utilities' rosters linked to unit codes (Annex 1)",
)

CSV_TYPES = ("text/csv", "application/octet-stream")
ROSTER_BODY = {
    "required": True,
    "description": (
        "The roster as a CSV file with the Annex 1 headers (服务机构名称, "
        "用户号, 用户名称, 用户证件号码, 房屋地址, and optionally 不动产权证号, "
        "房屋权利人名称, 房屋面积), in UTF-8, UTF-8 with a byte order mark, or GBK."
    ),
    "content": {"text/csv": {"schema": {"type": "string", "format": "binary"}}},
}


class UploadArgs(Schema):
    filename = fields.String(
        load_default="roster.csv",
        validate=validate.Length(min=1, max=255),
        metadata={"description": "The file's name, shown in messages and the job"},
    )


class ProblemView(Schema):
    line = fields.Integer()
    reason = fields.String()
    dropped = fields.Boolean(metadata={"description": "The row was left out"})


class RosterJobView(Schema):
    job_id = fields.Integer(attribute="id")
    status = fields.String(metadata={"description": "queued, running, done or failed"})
    filename = fields.String()
    encoding = fields.String(metadata={"description": "UTF-8, UTF-8 with BOM or GBK"})
    rows_read = fields.Integer()
    rows_done = fields.Integer(metadata={"description": "Accounts linked so far"})
    percent_done = fields.Method("percent")
    rows_matched = fields.Integer(attribute="linked")
    for_review = fields.Integer()
    unmatched = fields.Integer()
    pairs_compared = fields.Integer()
    problems = fields.List(
        fields.Nested(ProblemView),
        metadata={"description": "Bad rows, at most ROSTER_MAX_PROBLEMS (1,000)"},
    )
    problems_left_out = fields.Integer(
        metadata={"description": "Bad rows found beyond those listed in problems"}
    )
    attempts = fields.Integer(
        metadata={"description": "Runs started; a run whose worker died is retried"}
    )
    changes = fields.Dict(
        allow_none=True,
        metadata={
            "description": "What the upload changed in the stored accounts: new, "
            "linked, moved, unchanged, kept_by_hand, now_in_doubt, not_in_upload"
        },
    )
    error = fields.String(allow_none=True)
    created_at = api_fields.LocalDateTime()
    finished_at = api_fields.LocalDateTime(allow_none=True)

    def percent(self, job):
        if job.status == "done":
            return 100
        if not job.rows_read:
            return 0
        return min(99, job.rows_done * 100 // job.rows_read)


class ResultArgs(paging.PageArgs):
    match_result = fields.String(
        validate=validate.OneOf([engine.LINKED, engine.REVIEW, engine.UNMATCHED]),
        metadata={"description": "一致, 待核对 or 未匹配"},
    )


class ResultView(Schema):
    service_org = fields.Function(lambda entry: entry.job.utility.service_org)
    account_no = fields.String()
    unit_code = fields.String(allow_none=True)
    certificate_no = fields.String(allow_none=True)
    location = fields.String(allow_none=True)
    match_result = fields.String()
    score = fields.Float()
    reasons = fields.List(fields.String())
    reason_labels = fields.Function(
        lambda entry: [in_chinese(reason) for reason in entry.reasons],
        metadata={"description": "The reasons in Chinese"},
    )


def _larger_body(view):
    """Allow a roster up to ROSTER_MAX_BYTES, before anything reads the body."""

    def wrapper(*args, **kwargs):
        request.max_content_length = current_app.config["ROSTER_MAX_BYTES"]
        return view(*args, **kwargs)

    wrapper.__name__ = view.__name__
    wrapper.__doc__ = view.__doc__
    wrapper.__dict__.update(view.__dict__)
    return wrapper


@takes_raw_body(None)
@blp.route("/partner/rosters", methods=["POST"])
@_larger_body
@utility_caller_required
@utility_operation(blp, 413, 415, 422)
@blp.arguments(UploadArgs, location="query")
@blp.doc(requestBody=ROSTER_BODY)
@blp.response(202, RosterJobView)
def upload_roster(args):
    """Upload the utility's roster; the accounts are linked in the background"""
    if request.mimetype not in CSV_TYPES:
        return error_response(
            415,
            "unsupported_media_type",
            "名册须以 CSV 上传，并带 Content-Type: text/csv。",
            {"headers": {"Content-Type": [f"got {request.mimetype or 'none'}"]}},
        )
    uploaded_by = str(g.caller) if g.caller else f"partner:{g.partner}"
    job = rosters.accept_upload(g.utility, args["filename"], _body(), uploaded_by)
    queue.run_roster_job(job.id)
    return job


def _body():
    """Yield the request body in pieces; raise a 413 once it is over the limit.

    A signed upload was already read whole to check its signature, so its
    pieces are slices of that copy.
    """
    # NOTE: the partner signature covers the whole body and is checked before
    # this view runs, so a signed upload is held in memory once, up to
    # ROSTER_MAX_BYTES. Uploads with a staff token are streamed.
    limit = current_app.config["ROSTER_MAX_BYTES"]
    if getattr(g, "partner", None):
        body = memoryview(request.get_data())
        chunks = (
            body[start : start + rosters.SEAL_CHUNK_BYTES]
            for start in range(0, len(body), rosters.SEAL_CHUNK_BYTES)
        )
    else:
        chunks = iter(lambda: request.stream.read(rosters.SEAL_CHUNK_BYTES), b"")
    size = 0
    for chunk in chunks:
        size += len(chunk)
        # werkzeug cuts a chunked body at the limit instead of refusing it,
        # so a body without Content-Length that reaches the limit is rejected.
        if size > limit or (size >= limit and request.content_length is None):
            raise ServiceError(
                "payload_too_large",
                f"名册文件超过 {limit} 字节的上限，请拆分后分别上传。",
                errors={"body": [f"larger than {limit} bytes"]},
                status=413,
            )
        yield chunk


@blp.route("/partner/rosters", methods=["GET"])
@utility_caller_required
@utility_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(RosterJobView))
def list_rosters(args):
    """List the utility's roster uploads, newest first"""
    return paging.page(rosters.jobs_of(g.utility), args)


@blp.route("/partner/rosters/<int:job_id>", methods=["GET"])
@utility_caller_required
@utility_operation(blp, 404)
@blp.response(200, RosterJobView)
def get_roster(job_id):
    """Show a roster job: rows read, rows matched, percent done, bad rows"""
    return rosters.job_for(g.utility, job_id)


@blp.route("/partner/rosters/<int:job_id>/results", methods=["GET"])
@utility_caller_required
@utility_operation(blp, 404, 409, 422)
@blp.arguments(ResultArgs, location="query")
@blp.response(200, paging.envelope(ResultView))
@blp.alt_response(
    200,
    schema={"type": "string"},
    content_type="text/csv",
    description="Every account with the Annex 1 return headers",
    success=True,
)
def get_results(args, job_id):
    """The Annex 1 return fields of each account, unlinked ones included

    The response is JSON, paged, unless the Accept header names `text/csv`:
    then it is one CSV of every account (UTF-8 with a byte order mark) with
    the headers 服务机构名称, 用户编号, 不动产单元代码, 不动产权证号, 坐落, 比对结果.
    """
    job = rosters.job_for(g.utility, job_id)
    if job.status != "done":
        return error_response(
            409,
            "roster_job_not_done",
            f"名册任务尚未完成（当前为 {job.status}），完成后再取结果。",
        )
    entries = rosters.entries_of(job, args.get("match_result"))
    if "text/csv" in request.headers.get("Accept", ""):
        return Response(_results_csv(job, entries), mimetype="text/csv; charset=utf-8")
    return paging.page(entries, args)


def _results_csv(job, entries):
    out = io.StringIO()
    out.write(spreadsheets.BYTE_ORDER_MARK)
    writer = csv.writer(out)
    writer.writerow(rosters.RETURN_HEADERS)
    org = job.utility.service_org
    for entry in entries:
        writer.writerow(
            [
                org,
                entry.account_no,
                entry.unit_code or "",
                entry.certificate_no or "",
                spreadsheets.as_text(entry.location or ""),
                entry.match_result,
            ]
        )
    return out.getvalue()

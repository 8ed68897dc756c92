"""One error shape for every failure the API returns.

{"status": 422, "code": "validation_failed", "message": "...",
 "errors": {...}, "request_id": "..."}
"""

import json
import logging

import peewee
from flask import current_app, g, jsonify, request
from marshmallow import Schema, fields
from werkzeug.exceptions import HTTPException, RequestEntityTooLarge

from services.errors import ServiceError

log = logging.getLogger(__name__)

HTTP_MESSAGES = {
    400: ("bad_request", "请求格式有误，请检查请求体是否为合法的 JSON。"),
    401: ("unauthorized", "请先登录。"),
    403: ("forbidden", "无权进行此操作。"),
    404: ("not_found", "请求的资源不存在。"),
    405: ("method_not_allowed", "该地址不支持此请求方法。"),
    409: ("conflict", "当前状态下不能进行此操作。"),
    413: ("payload_too_large", "请求内容过大。"),
    415: ("unsupported_media_type", "请使用 Content-Type: application/json。"),
    422: ("validation_failed", "请求内容未通过校验，请按 errors 中的说明修改。"),
    429: ("too_many_requests", "请求过于频繁，请稍后再试。"),
}


class ErrorSchema(Schema):
    """The error body that `error_response` builds, for the OpenAPI document."""

    status = fields.Integer(
        required=True, metadata={"description": "The HTTP status code, repeated"}
    )
    code = fields.String(
        required=True,
        metadata={"description": "Stable error code for programs, e.g. case_not_found"},
    )
    message = fields.String(
        required=True,
        metadata={"description": "What went wrong and what to do, in Chinese"},
    )
    request_id = fields.String(
        required=True,
        metadata={"description": "The request's X-Request-Id, for support and logs"},
    )
    errors = fields.Dict(
        metadata={
            "description": "Details keyed by request location or field name, "
            "such as json, path or headers. Present only when there are details."
        }
    )


def error_response(status, code, message, errors=None):
    body = {
        "status": status,
        "code": code,
        "message": message,
        "request_id": getattr(g, "request_id", None),
    }
    if errors:
        body["errors"] = errors
    return jsonify(body), status


def handle_service_error(error):
    log.info("request failed status=%s code=%s", error.status, error.code)
    return error_response(error.status, error.code, error.message, error.errors)


def handle_http_error(error):
    view = (
        current_app.view_functions.get(request.endpoint) if request.endpoint else None
    )
    partner_error = getattr(view, "partner_error", None)
    if partner_error is not None:
        # A provider's notification gets its response in the provider's format.
        return partner_error(error.code, error.description)
    code, message = HTTP_MESSAGES.get(error.code, ("http_error", error.description))
    errors = None
    data = getattr(error, "data", None)
    if data and "messages" in data:
        errors = data["messages"]
    elif error.code == 400 and error.description:
        errors = {"body": [error.description]}
    elif error.code == 413:
        limit = request.max_content_length or current_app.config["MAX_CONTENT_LENGTH"]
        message = f"请求内容过大，不能超过 {limit:,} 字节，请缩小后重试。"
        errors = {"body": [f"The body is larger than {limit} bytes."]}
    return error_response(error.code, code, message, errors)


def handle_too_deep(error):
    log.info("request body nested too deeply")
    return error_response(
        400,
        "bad_request",
        "请求体嵌套层数过多，请检查 JSON 结构。",
        {"body": ["JSON nesting is too deep."]},
    )


def takes_raw_body(partner_error):
    """Mark a view that reads its body itself, in a partner's own format.

    `partner_error(status, description)` builds the view's error responses,
    for failures that happen before the view runs, such as a body too large.
    """

    def mark(view):
        view.takes_raw_body = True
        view.partner_error = partner_error
        return view

    return mark


def reject_non_json_body():
    """Reject a request body that is not JSON before any view parses it."""
    if request.method not in ("POST", "PUT", "PATCH"):
        return None
    if request.endpoint is None:
        # No route matched, so a 404 is more useful than a 415.
        return None
    view = current_app.view_functions.get(request.endpoint)
    if getattr(view, "takes_raw_body", False):
        return None
    if not request.content_length and not request.headers.get("Transfer-Encoding"):
        return None
    if request.mimetype == "application/json":
        return _check_json()
    return error_response(
        415,
        "unsupported_media_type",
        "请求体须为 JSON，并带 Content-Type: application/json。",
        {"headers": {"Content-Type": [f"got {request.mimetype or 'none'}"]}},
    )


def _check_json():
    """Parse the body once here, so that no parser later meets what json rejects.

    Python's json raises ValueError, not JSONDecodeError, for an integer of
    more than 4,300 digits, and webargs lets that through as a 500.
    """
    data = request.get_data(cache=True)
    limit = request.max_content_length
    # werkzeug cuts a chunked body at the limit instead of refusing it, so a
    # body that reaches the limit exactly is taken as one that went past it.
    if limit and len(data) >= limit and request.content_length is None:
        raise RequestEntityTooLarge()
    if not data:
        return None
    try:
        body = json.loads(data)
    except ValueError as error:
        log.info("request body is not valid JSON error=%s", type(error).__name__)
        return error_response(
            400,
            "bad_request",
            HTTP_MESSAGES[400][1],
            {"json": [f"Invalid JSON: {str(error)[:120]}"]},
        )
    if _has_nul(body):
        return _nul_error("json")
    return None


def _has_nul(value):
    """Return whether a NUL character sits in any string or key of `value`.

    PostgreSQL cannot store NUL in text, and no field here has a use for it.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _nul_error(location):
    log.info("request carries a NUL character location=%s", location)
    return error_response(
        400,
        "bad_request",
        "请求中含有空字符（\\u0000），请删除后重试。",
        {location: ["NUL characters are not accepted"]},
    )


def reject_nul_in_query():
    """Reject a query string with a NUL character before any view reads it."""
    if b"%00" in request.query_string or b"\x00" in request.query_string:
        return _nul_error("query")
    return None


def handle_database_unavailable(error):
    log.error("database unavailable error=%s: %s", type(error).__name__, error)
    response, status = error_response(
        503,
        "database_unavailable",
        "数据库暂时不可用，请稍后重试。",
    )
    response.headers["Retry-After"] = "2"
    return response, status


def handle_unexpected(error):
    log.exception("unhandled error")
    return error_response(500, "internal_error", "服务内部错误，请稍后再试。")


def init_app(app):
    """Register the handlers; call after flask-smorest's, which they replace."""
    app.register_error_handler(ServiceError, handle_service_error)
    app.register_error_handler(HTTPException, handle_http_error)
    app.register_error_handler(RecursionError, handle_too_deep)
    # A lost or refused connection; a constraint or data error stays a 500.
    app.register_error_handler(peewee.OperationalError, handle_database_unavailable)
    app.register_error_handler(peewee.InterfaceError, handle_database_unavailable)
    app.register_error_handler(Exception, handle_unexpected)
    app.before_request(reject_nul_in_query)
    app.before_request(reject_non_json_body)

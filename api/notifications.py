"""People's notice choices, the SMS opt-out link, and the sellers' release notices."""

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from api import fields as api_fields
from api import paging
from api.openapi import JSON_BODY_ERRORS, bearer_operation, public_operation
from api.security import caller_required
from api.views import ReadingSchema
from domain.identifiers import normalise_mobile
from services import notice_choices, notifications, release_notices
from services.errors import Invalid, NotFound

blp = Blueprint(
    "notifications",
    __name__,
    description="Notice channels people choose, and the sellers' release notices",
)


@blp.record_once
def _send_notices_after_each_context(state):
    # Notices are queued for sending once the change that wrote them committed,
    # which is over when the request's or the worker task's app context ends.
    state.app.teardown_appcontext(notifications.send_written)


class Mobile(api_fields.Checked):
    """A mainland mobile number, stored as 11 digits."""

    normalise = staticmethod(normalise_mobile)


class SubscribeResultsSchema(Schema):
    results = fields.Dict(
        keys=fields.String(validate=validate.Length(min=1, max=64)),
        values=fields.String(
            validate=validate.OneOf(("accept", "reject", "ban", "filter"))
        ),
        required=True,
        validate=validate.Length(min=1, max=20),
        metadata={
            "description": "What wx.requestSubscribeMessage returned: template id "
            "to accept, reject, ban or filter. Unknown template ids are ignored."
        },
    )


class SmsChoiceSchema(Schema):
    opt_in = fields.Boolean(required=True)
    phone = Mobile(
        load_default=None,
        metadata={
            "description": "Agency staff only: the mobile number for notices, "
            "required with the first opt-in. Citizens get SMS at the number "
            "their real-name identity or the registry gave."
        },
    )


class OptOutSchema(Schema):
    token = fields.String(required=True, validate=validate.Length(min=8, max=32))


class SubscribeChoiceView(Schema):
    template = fields.String()
    template_id = fields.String(
        metadata={"description": "Pass it to wx.requestSubscribeMessage"}
    )
    long_term = fields.Boolean()
    decision = fields.String(allow_none=True)
    remaining = fields.Integer(
        metadata={"description": "One-time messages accepted and not yet used"}
    )


class SmsChoiceView(Schema):
    opted_in = fields.Boolean(
        allow_none=True,
        metadata={"description": "null until decided: citizens then get SMS"},
    )
    phone = fields.String(allow_none=True)


class ChoicesView(Schema):
    subscribe = fields.List(fields.Nested(SubscribeChoiceView))
    sms = fields.Nested(SmsChoiceView)


def _sms_view(caller):
    """Return the SMS choice that counts, which an opt-out by link may have changed."""
    setting = notice_choices.sms_choice_of(caller)
    phone = setting.phone if setting else None
    if caller.citizen is not None:
        phone = caller.citizen.phone
    return {"opted_in": notifications.sms_decision(setting, phone), "phone": phone}


def _choices(caller):
    subscribe = []
    if caller.citizen is not None:
        subscribe = notice_choices.choices_of(caller.citizen)
    return {"subscribe": subscribe, "sms": _sms_view(caller)}


@blp.route("/me/notifications", methods=["GET"])
@caller_required("citizen", "agent")
@bearer_operation(blp)
@blp.response(200, ChoicesView)
def get_choices():
    """Show my notice choices and the templates to request"""
    return _choices(g.caller)


@blp.route("/me/notifications", methods=["POST"])
@caller_required("citizen")
@bearer_operation(blp, *JSON_BODY_ERRORS)
@blp.arguments(SubscribeResultsSchema)
@blp.response(200, ChoicesView)
def record_subscribe_results(data):
    """Record the results of the mini-program's subscribe request"""
    notice_choices.record_subscribe_results(g.caller.citizen, data["results"])
    return _choices(g.caller)


@blp.route("/me/notifications/sms", methods=["PUT"])
@caller_required("citizen", "agent")
@bearer_operation(blp, *JSON_BODY_ERRORS)
@blp.arguments(SmsChoiceSchema)
@blp.response(200, ChoicesView)
def set_sms_choice(data):
    """Opt in to or out of SMS notices"""
    caller = g.caller
    if caller.citizen is None and data["opt_in"]:
        setting = notice_choices.sms_choice_of(caller)
        if data["phone"] is None and not (setting and setting.phone):
            raise Invalid(
                "phone_required",
                "中介机构人员开通短信通知时须填写手机号码。",
                errors={"json": {"phone": ["required when agency staff opt in"]}},
            )
    notice_choices.set_sms_choice(caller, data["opt_in"], data["phone"])
    return _choices(caller)


@blp.route("/notifications/sms-opt-out", methods=["POST"])
@public_operation(blp, 404, 422, *JSON_BODY_ERRORS)
@blp.arguments(OptOutSchema)
@blp.response(200, SmsChoiceView)
def opt_out_by_link(data):
    """Stop SMS notices to the number an SMS's opt-out link was sent to"""
    if not notice_choices.opt_out_by_token(data["token"]):
        raise NotFound("opt_out_token_not_found", "退订链接无效，请核对短信中的链接。")
    return {"opted_in": False, "phone": None}


class ReleaseItemView(Schema):
    utility = fields.String()
    service_org = fields.String()
    account_no = fields.String()
    completed_at = fields.String(metadata={"description": "Asia/Shanghai time"})
    final_reading = fields.Nested(
        ReadingSchema,
        allow_none=True,
        metadata={
            "description": "The meter reading on the transfer day, where the "
            "seller's last bill ends; null for an account without a meter or "
            "until the utility sends it"
        },
    )


class NoticePersonView(Schema):
    name = fields.String(metadata={"description": "Masked unless it is the caller"})
    is_me = fields.Boolean()


class ReleaseNoticeView(Schema):
    release_notice_id = fields.Integer()
    case_id = fields.Integer()
    business_no = fields.String()
    location = fields.String()
    issued_at = api_fields.LocalDateTime()
    items = fields.List(fields.Nested(ReleaseItemView))
    owners = fields.List(fields.Nested(NoticePersonView))
    previous_owners = fields.List(fields.Nested(NoticePersonView))


@blp.route("/release-notices", methods=["GET"])
@caller_required("citizen")
@bearer_operation(blp, 422)
@blp.arguments(paging.PageArgs, location="query")
@blp.response(200, paging.envelope(ReleaseNoticeView))
def list_release_notices(args):
    """List the release notices of homes I sold"""
    citizen = g.caller.citizen
    return paging.page(
        release_notices.of_seller(citizen),
        args,
        lambda notice: release_notices.view(notice, citizen),
    )


@blp.route("/release-notices/<int:release_notice_id>", methods=["GET"])
@caller_required("citizen")
@bearer_operation(blp, 404)
@blp.response(200, ReleaseNoticeView)
def get_release_notice(release_notice_id):
    """Show one release notice of a home I sold"""
    citizen = g.caller.citizen
    notice = release_notices.for_seller(citizen, release_notice_id)
    return release_notices.view(notice, citizen)

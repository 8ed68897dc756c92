"""Owners authorising an agency to act on their case."""

import logging
from datetime import UTC, timedelta

from domain.identifiers import InvalidIdentifier, normalise_credit_code
from models import Delegation
from models.base import utcnow
from services.errors import Conflict, Invalid

log = logging.getLogger(__name__)

# An agency acts on one transfer of one home; a year covers the slowest case.
MAX_DURATION = timedelta(days=366)

SCOPES = ("confirm", "agreement", "pay", "submit", "view")


def grant(case, citizen, agency_name, agency_credit_code, scope, expires_at):
    """Record an agency's authority on `case`, granted by one of its owners."""
    if case.status in ("closed", "withdrawn"):
        raise Conflict("case_closed", "联办事项已办结或已撤回，无需再授权中介机构。")
    try:
        checked = normalise_credit_code(agency_credit_code)
    except InvalidIdentifier as error:
        raise Invalid(
            "agency_credit_code_invalid",
            "中介机构统一社会信用代码格式有误，请核对营业执照。",
            errors={"json": {"agency_credit_code": [str(error)]}},
        ) from None
    try:
        expires = expires_at.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:
        raise Invalid(
            "delegation_expiry_invalid",
            "授权截止时间超出可记录的范围，请选择更近的日期。",
            errors={"json": {"expires_at": ["out of the supported date range"]}},
        ) from None
    if expires <= utcnow():
        raise Invalid(
            "delegation_expired",
            "授权截止时间必须晚于当前时间。",
            errors={"json": {"expires_at": ["must be in the future"]}},
        )
    if expires > utcnow() + MAX_DURATION:
        raise Invalid(
            "delegation_too_long",
            f"授权期限最长 {MAX_DURATION.days} 天，请缩短截止时间。",
            errors={
                "json": {"expires_at": [f"at most {MAX_DURATION.days} days ahead"]}
            },
        )
    delegation = Delegation.create(
        case=case,
        granted_by=citizen,
        agency_name=agency_name,
        agency_credit_code=checked.value,
        scope=",".join(sorted(set(scope))),
        expires_at=expires,
    )
    for warning in checked.warnings:
        log.warning(
            "delegation credit code warning case=%s rule=%s", case.id, warning.rule
        )
    delegation.warnings = [w.message for w in checked.warnings]
    log.info("delegation granted case=%s delegation=%s", case.id, delegation.id)
    return delegation

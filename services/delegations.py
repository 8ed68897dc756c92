"""Owners authorising an agency to act on their case, and taking it back."""

import logging
from datetime import UTC, timedelta

from domain.identifiers import InvalidIdentifier, normalise_credit_code
from models import Business, Delegation, Organisation
from models.base import is_storable_id, utcnow
from models.db import transaction
from services import access
from services.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

# An agency acts on one transfer of one home; a year covers the slowest case.
MAX_DURATION = timedelta(days=366)

# The steps an agency may be allowed besides viewing, which every scope allows.
SCOPES = ("view", "accounts", "confirm", "agreement", "pay", "submit")

DELEGATION_NOT_FOUND = ("delegation_not_found", "该授权记录不存在。")
CREDIT_CODE_WARNING = (
    "统一社会信用代码的校验位与其余各位不符，请对照营业执照核对；"
    "授权已按所填代码记录，只有该代码的机构可以代办。"
)


def business_for_grant(citizen, business_no):
    """Return the business if `citizen` owns it, for a grant before the case."""
    business = Business.get_or_none(Business.business_no == business_no)
    if business is None or citizen.id_index not in access.owner_indexes(business):
        raise NotFound(
            "business_not_found",
            "未找到该登记业务号，或您不是该业务的权利人；请核对业务号。",
        )
    return business


def grant(business, case, citizen, agency_name, agency_credit_code, scope, expires_at):
    """Record an agency's authority over a business's case, granted by an owner.

    A live delegation the same owner gave the same agency is replaced, so an
    owner changes scope or expiry by granting again.
    """
    if case is not None and case.status in ("closed", "withdrawn"):
        raise Conflict("case_closed", "联办事项已办结或已撤回，无需再授权中介机构。")
    if business.registration_status == "withdrawn":
        raise Conflict("business_withdrawn", "该登记业务已撤回，不能授权办理。")
    checked = _credit_code(agency_credit_code)
    expires = _expiry(expires_at)
    # The only warning a credit code gets is a check character that does not match.
    warnings = [CREDIT_CODE_WARNING] if checked.warnings else []
    agency = Organisation.get_or_none(Organisation.credit_code == checked.value)
    if agency is None:
        warnings.append("该信用代码的中介机构尚未开通联办账号，开通后即可代办。")
    elif agency.name != agency_name:
        warnings.append(f"该信用代码登记的机构名称为“{agency.name}”，请核对。")
    with transaction():
        replaced = (
            Delegation.update(revoked_at=utcnow(), revoked_by=citizen)
            .where(
                (Delegation.business == business)
                & (Delegation.granted_by == citizen)
                & (Delegation.agency_credit_code == checked.value)
                & Delegation.revoked_at.is_null()
            )
            .execute()
        )
        delegation = Delegation.create(
            business=business,
            case=case,
            granted_by=citizen,
            agency_name=agency_name,
            agency_credit_code=checked.value,
            scope=",".join(s for s in SCOPES if s in set(scope)),
            expires_at=expires,
        )
        if case is not None:
            access.record_action(
                case, "delegate", delegation_id=delegation.id, scope=delegation.scope
            )
    for warning in checked.warnings:
        log.warning(
            "delegation credit code warning business=%s rule=%s",
            business.id,
            warning.rule,
        )
    log.info(
        "delegation granted delegation=%s business=%s replaced=%d",
        delegation.id,
        business.id,
        replaced,
    )
    if replaced:
        warnings.append("已撤销您此前对该机构的授权，以本次授权为准。")
    delegation.warnings = warnings
    return delegation


def _credit_code(text):
    try:
        return normalise_credit_code(text)
    except InvalidIdentifier as error:
        raise Invalid(
            "agency_credit_code_invalid",
            "中介机构统一社会信用代码格式有误，请核对营业执照。",
            errors={"json": {"agency_credit_code": [str(error)]}},
        ) from None


def _expiry(expires_at):
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
    return expires


def of_case(case, caller):
    """Return the delegations on a case's business that `caller` may see.

    Owners see every one; an agency sees those naming it.
    """
    query = Delegation.select().where(Delegation.business == case.business)
    if caller.citizen is None:
        code = caller.organisation.credit_code if caller.organisation else None
        query = query.where(Delegation.agency_credit_code == code)
    return query.order_by(Delegation.created_at.desc(), Delegation.id.desc())


def granted_by(citizen):
    return (
        Delegation.select()
        .where(Delegation.granted_by == citizen)
        .order_by(Delegation.created_at.desc(), Delegation.id.desc())
    )


def revoke(case, citizen, delegation_id):
    """Revoke a delegation on the case's business; revoking twice changes nothing."""
    delegation = None
    if is_storable_id(delegation_id):
        delegation = Delegation.get_or_none(
            (Delegation.id == delegation_id) & (Delegation.business == case.business)
        )
    if delegation is None:
        raise NotFound(*DELEGATION_NOT_FOUND)
    if delegation.revoked_at is not None:
        return delegation
    with transaction():
        Delegation.update(revoked_at=utcnow(), revoked_by=citizen).where(
            (Delegation.id == delegation.id) & Delegation.revoked_at.is_null()
        ).execute()
        access.record_action(case, "revoke", delegation_id=delegation.id)
    log.info("delegation revoked delegation=%s case=%s", delegation.id, case.id)
    return Delegation.get_by_id(delegation.id)


def state(delegation):
    if delegation.revoked_at is not None:
        return "revoked"
    if delegation.expires_at <= utcnow():
        return "expired"
    return "active"

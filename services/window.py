"""Registry window staff serving an applicant at the counter (一窗办理)."""

import logging
from datetime import timedelta

from flask import current_app, g

from domain.identifiers import InvalidIdentifier, normalise_id_number
from models import Business, CounterConsent, Party
from models.base import utcnow
from models.db import retry_on_race, transaction
from models.fields import data_keys
from services import access, cases
from services.errors import Conflict, Invalid, NotFound

log = logging.getLogger(__name__)

CONSENT_METHODS = {
    "signed_form": "书面授权书",
    "e_signature": "电子签名",
}


def open_at_counter(caller, business_no, id_type, id_number, method, reference):
    """Record an owner's consent at the counter and open or join the case.

    The applicant shows their ID, which must be an owner's on the business.
    The consent lets the window's staff act on the case for
    COUNTER_CONSENT_SECONDS. Returns (case, created, consent).
    """
    business = Business.get_or_none(Business.business_no == business_no)
    if business is None:
        raise NotFound(
            "business_not_found", "未找到该登记业务号，请核对受理单上的业务号。"
        )
    cases.require_not_withdrawn(business)
    applicant_index = _applicant_index(business, id_type, id_number)
    _check_reference(caller, business, method, reference)
    expires_at = utcnow() + timedelta(
        seconds=current_app.config["COUNTER_CONSENT_SECONDS"]
    )

    def work():
        with transaction():
            consent = CounterConsent.create(
                business=business,
                staff=caller.staff,
                organisation=caller.organisation,
                applicant_index=applicant_index,
                method=method,
                reference=reference,
                expires_at=expires_at,
            )
            g.authority = access.Authority(caller, "window", consent=consent)
            case, created = cases.create_case(business, None, g.authority)
            CounterConsent.update(case=case).where(
                CounterConsent.id == consent.id
            ).execute()
            access.record_action(
                case, "counter_consent", method=method, reference=reference
            )
            return case, created, consent

    case, created, consent = retry_on_race(work)
    cases.after_open(case, created)
    log.info(
        "counter consent recorded case=%s consent=%s staff=%s",
        case.id,
        consent.id,
        caller.staff.id,
    )
    return case, created, CounterConsent.get_by_id(consent.id)


def _applicant_index(business, id_type, id_number):
    try:
        number = normalise_id_number(id_type, id_number).value
    except InvalidIdentifier as error:
        raise Invalid(
            "applicant_id_invalid",
            "申请人证件号码有误，请核对证件。",
            errors={"json": {"applicant": {"id_number": [str(error)]}}},
        ) from None
    index = data_keys.blind_index(number)
    owner = (
        Party.select()
        .where(
            (Party.business == business)
            & (Party.role == "owner")
            & (Party.id_index == index)
        )
        .first()
    )
    if owner is None:
        raise Invalid(
            "applicant_not_owner",
            "该证件不是本登记业务的权利人，不能在窗口代为办理；"
            "请由权利人本人到场或出具授权。",
            errors={"json": {"applicant": {"id_number": ["not an owner"]}}},
        )
    if owner.id_type != id_type.strip():
        raise Invalid(
            "applicant_id_type_mismatch",
            f"登记的权利人证件类型为“{owner.id_type}”，与出示的“{id_type}”不符，"
            "请核对证件。",
            errors={
                "json": {"applicant": {"id_type": [f"registered as {owner.id_type}"]}}
            },
        )
    return index


def _check_reference(caller, business, method, reference):
    """Refuse a consent form number this office already used for another business."""
    used = (
        CounterConsent.select()
        .where(
            (CounterConsent.organisation == caller.organisation)
            & (CounterConsent.method == method)
            & (CounterConsent.reference == reference)
            & (CounterConsent.business != business)
        )
        .exists()
    )
    if used:
        raise Conflict(
            "consent_reference_used",
            f"授权凭证编号 {reference} 已用于本窗口的另一笔登记业务，请核对授权书。",
            errors={"json": {"consent_reference": ["used for another business"]}},
        )

"""Registration businesses as the registry creates and updates them."""

import hashlib
import json
import logging
import re

from domain.identifiers import normalise_credit_code
from models import AccountLink, Business, Case, Party, Unit, UnitCode, Utility
from models.base import utcnow
from models.db import locked, retry_on_race, transaction
from models.fields import data_keys
from services import delivery, withdrawal
from services.errors import Conflict, Invalid

log = logging.getLogger(__name__)

BUSINESS_TYPES = (
    "商品房买卖",
    "二手房买卖",
    "赠与",
    "继承",
    "受遗赠",
    "离婚析产",
    "法院裁定",
    "其他",
)

# accepted: 已受理; completed: 已登簿, the transfer is registered;
# withdrawn: 已撤回 before completion.
REGISTRATION_STATUSES = ("accepted", "completed", "withdrawn")
ALLOWED_MOVES = {
    "accepted": {"accepted", "completed", "withdrawn"},
    "completed": {"completed"},
    "withdrawn": {"withdrawn"},
}


BUSINESS_NO_PATTERN = re.compile(r"^[A-Za-z0-9-]{4,64}$")


def check_business_no(business_no):
    if not BUSINESS_NO_PATTERN.match(business_no):
        raise Invalid(
            "business_no_invalid",
            "登记业务号应为 4 到 64 位字母、数字或连字符。",
            errors={"path": {"business_no": [business_no]}},
        )


def identifier_warnings(data):
    """Return a note for each credit code whose check character does not match.

    Some legally issued codes fail the check, so they are accepted, but the
    registry gets a warning in case the code was mistyped.
    """
    warnings = []
    for key in ("owners", "previous_owners"):
        for position, person in enumerate(data.get(key) or []):
            if person["id_type"] != "统一社会信用代码":
                continue
            for warning in normalise_credit_code(person["id_number"]).warnings:
                warnings.append(f"{key}[{position}].id_number: {warning.message}")
    return warnings


def digest(payload):
    canonical = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(canonical.encode()).hexdigest()


def upsert_business(business_no, data, raw_payload):
    """Create or update a business; a repeated identical call changes nothing.

    Returns the business and whether this call created it.
    """
    return retry_on_race(lambda: _upsert(business_no, data, raw_payload))


def _upsert(business_no, data, raw_payload):
    payload_digest = digest(raw_payload)
    with transaction():
        business = locked(
            Business.select().where(Business.business_no == business_no)
        ).get_or_none()
        if business is not None and business.payload_digest == payload_digest:
            return business, False
        if business is not None:
            _check_move(business, data)
            _check_case_facts(business, raw_payload)
        created = business is None
        unit = _upsert_unit(data)
        business = _write_business(business, business_no, unit, data)
        business.payload = raw_payload
        business.payload_digest = payload_digest
        business.save()
        _replace_parties(business, data)
        _link_named_accounts(unit, data.get("accounts") or [])
        _apply_status(business)
    delivery.wake()
    log.info(
        "business %s business_no=%s status=%s",
        "created" if created else "updated",
        business_no,
        business.registration_status,
    )
    return business, created


def _check_move(business, data):
    new_status = data["registration_status"]
    if new_status not in ALLOWED_MOVES[business.registration_status]:
        raise Conflict(
            "registration_status_conflict",
            f"登记业务已为 {business.registration_status}，不能改为 {new_status}。",
        )
    if business.registration_status != "accepted":
        raise Conflict(
            "business_closed",
            "登记业务已登簿或已撤回，不能再修改；如需更正请新建业务。",
        )


def _check_case_facts(business, raw_payload):
    """Refuse changes other than the status once an applicant opened a case.

    The applicant confirmed accounts and accepted agreements for the unit and
    owners as they were, so changing them under the case would transfer
    accounts on facts that no applicant confirmed.
    """
    if not Case.select().where(Case.business == business).exists():
        return
    before = {k: v for k, v in business.payload.items() if k != "registration_status"}
    after = {k: v for k, v in raw_payload.items() if k != "registration_status"}
    if before != after:
        raise Conflict(
            "business_has_case",
            "该登记业务已有联办事项，只能变更登记状态；"
            "如需更正权利人或房屋信息，请撤回本业务后新建业务。",
        )


def _upsert_unit(data):
    known = UnitCode.get_or_none(UnitCode.code == data["unit_code"])
    unit = (
        known.unit if known else Unit.get_or_none(Unit.unit_code == data["unit_code"])
    )
    if unit is None:
        for former in data.get("former_unit_codes") or []:
            found = UnitCode.get_or_none(UnitCode.code == former)
            if found:
                unit = found.unit
                break
    if unit is None:
        unit = Unit(unit_code=data["unit_code"])
    if unit.unit_code != data["unit_code"]:
        UnitCode.update(is_current=False).where(UnitCode.unit == unit).execute()
        unit.unit_code = data["unit_code"]
    for field in ("location", "usage", "building_area", "inner_area", "certificate_no"):
        setattr(unit, field, data.get(field))
    unit.updated_at = utcnow()
    unit.save()
    for code in [data["unit_code"], *(data.get("former_unit_codes") or [])]:
        if UnitCode.get_or_none(UnitCode.code == code) is None:
            UnitCode.create(unit=unit, code=code, is_current=code == data["unit_code"])
    return unit


def _write_business(business, business_no, unit, data):
    if business is None:
        business = Business(business_no=business_no)
    business.unit = unit
    for field in (
        "business_type",
        "certificate_no",
        "location",
        "usage",
        "building_area",
        "inner_area",
        "registration_status",
    ):
        setattr(business, field, data.get(field))
    if data["registration_status"] == "completed" and business.registered_at is None:
        business.registered_at = utcnow()
    business.updated_at = utcnow()
    return business


def _replace_parties(business, data):
    Party.delete().where(Party.business == business).execute()
    for role, key in (("owner", "owners"), ("previous_owner", "previous_owners")):
        for position, person in enumerate(data.get(key) or []):
            Party.create(
                business=business,
                role=role,
                position=position,
                name=person["name"],
                id_type=person["id_type"],
                id_number=person["id_number"],
                id_index=data_keys.blind_index(person["id_number"]),
                phone=person.get("phone"),
            )


def _link_named_accounts(unit, accounts):
    """Link the accounts the buyer named at the registry window to the unit."""
    for named in accounts:
        utility = Utility.get_or_none(Utility.service_org == named["service_org"])
        if utility is None:
            raise Invalid(
                "unknown_utility",
                f"服务机构“{named['service_org']}”不在接入名单中。",
                errors={"accounts": {"service_org": [named["service_org"]]}},
            )
        link, created = AccountLink.get_or_create(
            utility=utility,
            account_no=named["account_no"],
            defaults={"unit": unit, "source": "registry"},
        )
        if not created and link.unit_id is None:
            link.unit = unit
            link.updated_at = utcnow()
            link.save()


def _apply_status(business):
    if business.registration_status == "completed":
        case = Case.get_or_none(Case.business == business)
        if case is not None and case.status == "submitted":
            delivery.queue_case_pushes(case)
    elif business.registration_status == "withdrawn":
        case = Case.get_or_none(Case.business == business)
        if case is not None:
            withdrawal.withdraw_with_business(case)

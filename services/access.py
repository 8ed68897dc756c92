"""Who is calling, which cases they may see and act on, and the record of each step.

A citizen reaches the cases of homes they own. An agency's staff reach a case
through a live delegation that one of its owners granted to the agency, within
the delegation's scope. Registry window staff reach a case through the consent
an owner gave at their counter, for the hours it lasts. Everyone else reaches
cases only through the lookup, which is read-only and masked.

A case the caller may not reach is answered exactly as a case that does not
exist, so that ids reveal nothing.
"""

import json
import logging
from dataclasses import dataclass

from flask import g, has_request_context

from models import (
    Case,
    CaseAction,
    Citizen,
    CounterConsent,
    Delegation,
    Party,
    Staff,
    Transfer,
)
from models.base import is_storable_id, utcnow
from services.errors import Forbidden, NotFound

log = logging.getLogger(__name__)

CASE_NOT_FOUND = ("case_not_found", "联办事项不存在，或您无权查看该事项。")

# The delegation scope each step needs; every scope includes viewing the case.
ACTION_SCOPES = {
    "view": None,
    "add_account": "accounts",
    "confirm": "confirm",
    "agreement": "agreement",
    "pay": "pay",
    "submit": "submit",
    # A reading belongs to the account's information.
    "dispute_reading": "confirm",
    # Withdrawing undoes a submission, so it needs the same scope.
    "withdraw": "submit",
}
# Each scope as the owner granted it in the mini-program.
SCOPE_NAMES = {
    "view": "查看",
    "accounts": "添加户号",
    "confirm": "确认户号",
    "agreement": "同意过户协议",
    "pay": "缴纳欠费",
    "submit": "提交联办",
}


@dataclass(frozen=True)
class Caller:
    """A logged-in citizen or staff member."""

    citizen: Citizen | None = None
    staff: Staff | None = None

    @property
    def role(self):
        return "citizen" if self.citizen is not None else self.staff.role

    @property
    def organisation(self):
        return self.staff.organisation if self.staff is not None else None

    # Views compare these with the people on a case to decide what to unmask;
    # staff are nobody on a case, so everything personal is masked for them.
    @property
    def id_index(self):
        return self.citizen.id_index if self.citizen is not None else None

    @property
    def id_number(self):
        return self.citizen.id_number if self.citizen is not None else None

    def __str__(self):
        if self.citizen is not None:
            return f"citizen:{self.citizen.id}"
        return f"staff:{self.staff.id}"


def caller_for(holder):
    if isinstance(holder, Staff):
        return Caller(staff=holder)
    return Caller(citizen=holder)


@dataclass(frozen=True)
class Authority:
    """The ground on which a caller reaches a case: ownership, delegation or consent."""

    caller: Caller | None
    # applicant, agent, window or system
    actor_role: str
    delegation: Delegation | None = None
    consent: CounterConsent | None = None

    @property
    def actor_name(self):
        if self.delegation is not None:
            return self.delegation.agency_name
        if self.consent is not None:
            return self.consent.organisation.name
        return None

    def allows(self, action):
        if self.delegation is None:
            return True
        scope = ACTION_SCOPES[action]
        return scope is None or scope in self.delegation.scope.split(",")


SYSTEM = Authority(caller=None, actor_role="system")


def current():
    """Return the authority the current request acts under."""
    if has_request_context():
        return getattr(g, "authority", None) or SYSTEM
    return SYSTEM


def owner_indexes(business):
    query = Party.select(Party.id_index).where(
        (Party.business == business) & (Party.role == "owner")
    )
    return {party.id_index for party in query}


def live_delegation(business, organisation, now=None):
    if organisation is None or not organisation.credit_code:
        return None
    now = now or utcnow()
    return (
        Delegation.select()
        .where(
            (Delegation.business == business)
            & (Delegation.agency_credit_code == organisation.credit_code)
            & Delegation.revoked_at.is_null()
            & (Delegation.expires_at > now)
        )
        .order_by(Delegation.created_at.desc())
        .first()
    )


def live_consent(business, organisation, now=None):
    now = now or utcnow()
    return (
        CounterConsent.select()
        .where(
            (CounterConsent.business == business)
            & (CounterConsent.organisation == organisation)
            & (CounterConsent.expires_at > now)
        )
        .order_by(CounterConsent.recorded_at.desc())
        .first()
    )


def authority_over(caller, business):
    """Return the caller's authority over a business's case, or None."""
    if caller.citizen is not None:
        if caller.citizen.id_index in owner_indexes(business):
            return Authority(caller, "applicant")
        return None
    if caller.role == "agent":
        delegation = live_delegation(business, caller.organisation)
        return delegation and Authority(caller, "agent", delegation=delegation)
    if caller.role == "window":
        consent = live_consent(business, caller.organisation)
        return consent and Authority(caller, "window", consent=consent)
    return None


def case_for(caller, case_id, action="view"):
    """Return the case if the caller may take `action` on it, else raise NotFound.

    A caller who may see the case but whose delegation does not cover the
    action gets 403 with the scope it lacks.
    """
    case = Case.get_or_none(Case.id == case_id) if is_storable_id(case_id) else None
    authority = case and authority_over(caller, case.business)
    if authority is None:
        raise NotFound(*CASE_NOT_FOUND)
    if not authority.allows(action):
        log.info(
            "delegation scope rejected case=%s delegation=%s action=%s",
            case.id,
            authority.delegation.id,
            action,
        )
        raise Forbidden(
            "delegation_scope",
            f"业主的授权不含此项操作（需要“{SCOPE_NAMES[ACTION_SCOPES[action]]}”），"
            "请业主本人办理或补充授权。",
        )
    g.case_id = case.id
    g.authority = authority
    return case


def transfer_for(caller, case_id, transfer_id, action="view"):
    return transfer_of(case_for(caller, case_id, action), transfer_id)


def transfer_of(case, transfer_id):
    """Return the case's transfer with this id, or raise NotFound."""
    transfer = None
    if is_storable_id(transfer_id):
        transfer = Transfer.get_or_none(
            (Transfer.id == transfer_id) & (Transfer.case == case)
        )
    if transfer is None:
        raise NotFound("transfer_not_found", "该联办事项下没有此户号的过户记录。")
    return transfer


def cases_for(caller):
    """Return a query of the cases the caller may reach, newest first."""
    now = utcnow()
    if caller.citizen is not None:
        businesses = Party.select(Party.business).where(
            (Party.id_index == caller.citizen.id_index) & (Party.role == "owner")
        )
    elif caller.role == "agent" and caller.organisation.credit_code:
        businesses = Delegation.select(Delegation.business).where(
            (Delegation.agency_credit_code == caller.organisation.credit_code)
            & Delegation.revoked_at.is_null()
            & (Delegation.expires_at > now)
        )
    elif caller.role == "window":
        businesses = CounterConsent.select(CounterConsent.business).where(
            (CounterConsent.organisation == caller.organisation)
            & (CounterConsent.expires_at > now)
        )
    else:
        return Case.select().where(False)
    return (
        Case.select()
        .where(Case.business.in_(businesses))
        .order_by(Case.opened_at.desc(), Case.id.desc())
    )


def record_action(case, action, transfer=None, **detail):
    """Record who took `action` on `case` and under which authority.

    Call it inside the transaction that makes the change, so both land or
    neither does.
    """
    authority = current()
    caller = authority.caller
    return CaseAction.create(
        case=case,
        transfer=transfer,
        action=action,
        actor_role=authority.actor_role,
        citizen=caller.citizen if caller else None,
        staff=caller.staff if caller else None,
        delegation=authority.delegation,
        consent=authority.consent,
        request_id=getattr(g, "request_id", None) if has_request_context() else None,
        detail=json.dumps(detail, ensure_ascii=False) if detail else None,
    )

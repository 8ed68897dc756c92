"""The applicant's side of joint handling: open, confirm, accept, submit."""

import logging

import peewee
from flask import g

from domain.addresses import same_flat
from domain.identifiers import InvalidIdentifier, fold_width, normalise_resident_id
from models import (
    AccountLink,
    Agreement,
    Business,
    Case,
    CounterConsent,
    Delegation,
    Party,
    Transfer,
    Utility,
)
from models.base import utcnow
from models.db import locked, retry_on_race, transaction
from models.fields import data_keys
from partners.http import PartnerError
from partners.utilities import AccountNotFound
from services import access, delivery, evidence, reconciliation_queue, timeline
from services.errors import Conflict, Invalid, NotFound, PartnerUnavailable

log = logging.getLogger(__name__)

BUSINESS_NOT_FOUND = (
    "business_not_found",
    "未找到该登记业务号，或您不是该业务的权利人、也没有权利人的授权；请核对业务号。",
)


def open_case(caller, business_no):
    """Open the case of a business; return (case, created).

    Its owners may open it, an agency with a live delegation from one of them,
    and registry window staff with the consent of one of them.
    """
    business = Business.get_or_none(Business.business_no == business_no)
    authority = business and access.authority_over(caller, business)
    if authority is None:
        raise NotFound(*BUSINESS_NOT_FOUND)
    require_not_withdrawn(business)
    g.authority = authority
    on_behalf_of = caller.citizen
    if authority.delegation is not None:
        on_behalf_of = authority.delegation.granted_by
    case, created = retry_on_race(
        lambda: create_case(business, on_behalf_of, authority)
    )
    if case.status == "withdrawn":
        raise Conflict(
            "case_withdrawn",
            "该登记业务的联办事项已撤回，不能重新办理；如需过户，请到各服务机构办理。",
        )
    after_open(case, created)
    return case, created


def require_not_withdrawn(business):
    if business.registration_status == "withdrawn":
        raise Conflict("business_withdrawn", "该登记业务已撤回，不能办理过户。")


def after_open(case, created):
    """Fetch holders for the accounts of a case just opened."""
    g.case_id = case.id
    if not created:
        return
    log.info("case opened case=%s business_no=%s", case.id, case.business.business_no)
    # Accounts the registry named arrive without their holder and address.
    for transfer in list(case.transfers):
        if transfer.account and not transfer.account.holder_name:
            refresh_holder(transfer)


def create_case(business, citizen, authority):
    """Create the case of `business` with a transfer per linked account.

    Returns (case, created); an existing case is returned as it is. Runs in its
    own transaction, or as part of the caller's.
    """
    with transaction():
        case = Case.get_or_none(Case.business == business)
        if case is not None:
            return case, False
        case = Case.create(business=business, citizen=citizen)
        links = list(AccountLink.select().where(AccountLink.unit == business.unit))
        for link in links:
            _new_transfer(case, link.utility, link.account_no, link, added=False)
        # A delegation or consent given before the case existed now names it.
        if authority.delegation is not None:
            Delegation.update(case=case).where(
                (Delegation.business == business) & Delegation.case.is_null()
            ).execute()
        if authority.consent is not None:
            CounterConsent.update(case=case).where(
                (CounterConsent.business == business) & CounterConsent.case.is_null()
            ).execute()
        access.record_action(case, "open")
    return case, True


def _new_transfer(case, utility, account_no, link, added, note=None):
    transfer = Transfer.create(
        case=case,
        utility=utility,
        account_no=account_no,
        account=link,
        added_by_applicant=added,
    )
    timeline.record(transfer, "opened", note=note)
    return transfer


CASE_LABELS = {
    "open": "待提交",
    "submitted": "已提交，待登簿",
    "in_progress": "办理中",
    "closed": "已办结",
    "withdrawn": "已撤回",
}


def require_open(case):
    if case.status != "open":
        label = CASE_LABELS.get(case.status, case.status)
        raise Conflict(
            "case_not_open",
            f"联办事项当前状态为“{label}”，已提交或已关闭的事项不能再修改。",
        )


def find_utility(service_org, location="json"):
    """Return the utility named by `service_org` or its code, or raise Invalid.

    `location` is where the request carried the name ("json" or "path"), for
    the error's `errors` field.
    """
    utility = Utility.get_or_none(
        (Utility.service_org == service_org) | (Utility.code == service_org)
    )
    if utility is None:
        names = "、".join(u.service_org for u in Utility.select().order_by(Utility.id))
        short_name = service_org if len(service_org) <= 40 else service_org[:40] + "…"
        raise Invalid(
            "unknown_utility",
            f"服务机构“{short_name}”未接入，可选：{names}。",
            errors={location: {"service_org": ["unknown service organisation"]}},
        )
    return utility


def add_account(case, service_org, account_no, request_review=False):
    """Add an account the unit is not linked to, after the utility confirms it.

    Returns the new transfer. An account that the online checks cannot place
    raises Conflict, unless `request_review` is set: then it is queued for its
    utility to check by hand, and the queue's item is returned instead.
    """
    require_open(case)
    utility = find_utility(service_org)
    if Transfer.get_or_none(
        (Transfer.case == case)
        & (Transfer.utility == utility)
        & (Transfer.account_no == account_no)
    ):
        raise Conflict("account_already_added", "该户号已在本联办事项中。")

    unit = case.business.unit
    known = AccountLink.get_or_none(
        (AccountLink.utility == utility) & (AccountLink.account_no == account_no)
    )
    if known is not None and known.unit_id not in (None, unit.id):
        raise Conflict(
            "account_linked_elsewhere",
            "该户号已关联到其他房屋，不能加入本事项；如户号有误请联系服务机构核对。",
        )

    account, reasons = _check_account(case, utility, account_no, known)
    if reasons and request_review:
        item, _ = reconciliation_queue.request_review(
            case, utility, account_no, reasons, account
        )
        return item
    if reasons:
        raise _not_placed(reasons)

    try:
        transfer = _link_and_add(case, utility, account_no, account)
    except peewee.IntegrityError:
        # A concurrent request added the same account first.
        raise Conflict("account_already_added", "该户号已在本联办事项中。") from None
    log.info(
        "account added case=%s transfer=%s utility=%s",
        case.id,
        transfer.id,
        utility.code,
    )
    return transfer


def _check_account(case, utility, account_no, known):
    """Return the account and the codes of the checks that fail to place it.

    The account is None for a utility without a system link, which cannot be
    asked. An account linked to this unit already needs no further check.
    """
    if utility.connection != "system":
        log.info("account not placed case=%s utility=%s", case.id, utility.code)
        return None, ["utility_not_connected"]
    account = _fetch_account(utility, account_no)
    if account.status == "closed":
        raise Conflict(
            "account_closed", "该户号已销户，无需过户；如有疑问请联系服务机构。"
        )
    if known is not None and known.unit_id == case.business.unit_id:
        return account, []
    return account, _check_unlinked(case, utility, account)


def _check_unlinked(case, utility, account):
    """Return the codes of the checks that an account no roster linked fails.

    The holder must be an owner or previous owner, and the account's address
    must end with the flat's building, stair and room, because a seller or a
    developer often has accounts for several flats.
    """
    reasons = []
    if not _held_by_party(case.business, account):
        reasons.append("account_holder_mismatch")
    if same_flat(case.business.location, account.account_address) is not True:
        reasons.append("account_address_mismatch")
    if reasons:
        log.info(
            "account not placed case=%s utility=%s reasons=%s",
            case.id,
            utility.code,
            ",".join(reasons),
        )
    return reasons


def _not_placed(reasons):
    """Return the Conflict for an account that the online checks cannot place."""
    causes = "；".join(reconciliation_queue.REASONS[code] for code in reasons)
    return Conflict(
        reasons[0],
        f"{causes}，无法在线核验该户号的归属。可在请求中加上 "
        '"request_review": true，请服务机构人工核对；也可持缴费单到服务机构办理。',
    )


def _link_and_add(case, utility, account_no, account):
    with transaction():
        link, _ = AccountLink.get_or_create(
            utility=utility,
            account_no=account_no,
            defaults={"unit": case.business.unit, "source": "applicant"},
        )
        link.holder_name = account.holder_name
        link.holder_id_numbers = account.holder_id_numbers
        link.account_address = account.account_address
        if link.unit_id is None:
            link.unit = case.business.unit
        link.updated_at = utcnow()
        link.save()
        transfer = _new_transfer(case, utility, account_no, link, added=True)
        access.record_action(case, "add_account", transfer)
        return transfer


def _held_by_party(business, account):
    """Return whether an owner or previous owner of `business` is the holder."""
    parties = {
        party.id_index
        for party in Party.select(Party.id_index).where(Party.business == business)
    }
    for number in account.holder_id_numbers:
        try:
            normalised = normalise_resident_id(number)
        except InvalidIdentifier:
            normalised = fold_width(number).strip().upper()
        if data_keys.blind_index(normalised) in parties:
            return True
    return False


def _fetch_account(utility, account_no):
    try:
        return delivery.utility_client(utility).get_account(account_no)
    except AccountNotFound:
        raise Invalid(
            "account_not_found",
            f"{utility.service_org}没有户号 {account_no}，请核对缴费单上的户号。",
            errors={"json": {"account_no": ["not found at the utility"]}},
        ) from None
    except PartnerError:
        raise PartnerUnavailable(
            "utility_unavailable",
            f"{utility.service_org}系统暂时无法访问，请稍后再试。",
        ) from None


def refresh_holder(transfer):
    """Fetch the holder from the utility for a linked account, where it can."""
    utility = transfer.utility
    if utility.connection != "system" or transfer.account is None:
        return
    try:
        account = delivery.utility_client(utility).get_account(transfer.account_no)
    except PartnerError as error:
        log.warning(
            "holder refresh failed transfer=%s utility=%s error=%s",
            transfer.id,
            utility.code,
            error,
        )
        return
    link = transfer.account
    link.holder_name = account.holder_name
    link.holder_id_numbers = account.holder_id_numbers
    link.account_address = account.account_address
    link.updated_at = utcnow()
    with transaction():
        link.save()


def confirm_account(transfer):
    """Record that the applicant confirmed the account (是否确认用户信息)."""
    require_open(transfer.case)
    _require_holder(transfer)
    with transaction():
        won = (
            Transfer.update(account_confirmed=True, confirmed_at=utcnow())
            .where((Transfer.id == transfer.id) & (Transfer.account_confirmed == False))  # noqa: E712
            .execute()
        )
        if not won:
            raise Conflict("already_confirmed", "该户号已确认过，无需重复确认。")
        transfer = Transfer.get_by_id(transfer.id)
        timeline.record(transfer, "confirmed")
        access.record_action(transfer.case, "confirm", transfer)
        evidence.record_confirmation(transfer)
    return transfer


def _require_holder(transfer):
    """Refuse to confirm an account whose holder the applicant has not been shown.

    A utility without a system link cannot be asked, so its accounts are
    confirmed on the number alone and the utility checks the holder.
    """
    if transfer.utility.connection != "system":
        return
    link = transfer.account
    if link is not None and link.holder_name:
        return
    refresh_holder(transfer)
    link = AccountLink.get_or_none(AccountLink.id == transfer.account_id)
    if link is None or not link.holder_name:
        raise Conflict(
            "holder_unknown",
            f"暂时无法从{transfer.utility.service_org}获取该户号的用户信息，"
            "请稍后刷新户号列表后再确认。",
        )


def current_agreement(utility):
    agreement = (
        Agreement.select()
        .where(Agreement.utility == utility)
        .order_by(Agreement.version.desc())
        .first()
    )
    if agreement is None:
        raise NotFound(
            "agreement_not_found", f"{utility.service_org}尚未发布过户协议。"
        )
    return agreement


def accept_agreement(transfer, version):
    """Record acceptance of the utility's current agreement version."""
    require_open(transfer.case)
    if not transfer.account_confirmed:
        raise Conflict("confirm_first", "请先确认户号信息，再同意过户协议。")
    agreement = current_agreement(transfer.utility)
    if version != agreement.version:
        raise Conflict(
            "agreement_outdated",
            f"过户协议当前为第 {agreement.version} 版，"
            f"您提交的是第 {version} 版；请阅读当前版本后再同意。",
            errors={"json": {"version": [f"current version is {agreement.version}"]}},
        )
    with transaction():
        won = (
            Transfer.update(agreement=agreement, agreement_accepted_at=utcnow())
            .where(
                (Transfer.id == transfer.id) & Transfer.agreement_accepted_at.is_null()
            )
            .execute()
        )
        if not won:
            raise Conflict("already_accepted", "已同意过该过户协议，无需重复操作。")
        transfer = Transfer.get_by_id(transfer.id)
        timeline.record(
            transfer,
            "agreement_accepted",
            note=f"{timeline.NOTES['agreement_accepted']}（第 {version} 版）",
        )
        access.record_action(
            transfer.case, "agreement", transfer, version=agreement.version
        )
        evidence.record_agreement(transfer)
    return transfer


def fetch_arrears(case):
    """Ask each utility for the current arrears of each account of the case."""
    transfers = list(case.transfers.order_by(Transfer.id))
    return [_arrears_of(transfer) for transfer in transfers]


def _arrears_of(transfer):
    utility = transfer.utility
    answer = {"transfer": transfer, "arrears_fen": None, "state": "unavailable"}
    if utility.connection != "system":
        answer["state"] = "not_connected"
        return answer
    try:
        arrears = delivery.utility_client(utility).get_arrears(transfer.account_no)
    except PartnerError as error:
        log.warning(
            "arrears query failed transfer=%s utility=%s error=%s",
            transfer.id,
            utility.code,
            error,
        )
        if _paid_unreported(transfer):
            # The hub has the payment on record while the utility is unreachable.
            answer["arrears_fen"] = transfer.arrears_fen
            answer["state"] = "paid_pending"
        return answer
    with transaction():
        Transfer.update(arrears_fen=arrears, arrears_checked_at=utcnow()).where(
            Transfer.id == transfer.id
        ).execute()
    answer["arrears_fen"] = arrears
    answer["state"] = "owed" if arrears > 0 else "clear"
    if arrears > 0 and _paid_unreported(transfer):
        answer["state"] = "paid_pending"
    return answer


def _paid_unreported(transfer):
    from models import PaymentShare

    return (
        PaymentShare.select()
        .where(
            (PaymentShare.transfer == transfer)
            & (PaymentShare.status == "credited")
            & PaymentShare.reported_at.is_null()
        )
        .exists()
    )


def submit_case(case):
    """Submit a case whose every account is confirmed and agreement accepted."""
    with transaction():
        case = locked(Case.select().where(Case.id == case.id)).get()
        require_open(case)
        transfers = list(case.transfers.order_by(Transfer.id))
        if not transfers:
            raise Conflict("no_accounts", "该联办事项没有任何户号，请先添加户号。")
        pending = {str(t.id): _missing_steps(t) for t in transfers if _missing_steps(t)}
        if pending:
            raise Conflict(
                "steps_missing",
                "还有户号未确认信息或未同意过户协议，请完成后再提交。",
                errors={"transfers": pending},
            )
        case.status = "submitted"
        case.submitted_at = utcnow()
        case.save()
        for transfer in transfers:
            timeline.record(transfer, "submitted")
        access.record_action(case, "submit")
        if case.business.registration_status == "completed":
            delivery.queue_case_pushes(case)
    delivery.wake()
    log.info("case submitted case=%s transfers=%d", case.id, len(transfers))
    return case


def arrears_warnings(case):
    """Return a warning for each account last seen with unpaid arrears.

    The utility may return such a transfer, so the applicant is warned at
    submission. Arrears never looked up are not warned about.
    """
    warnings = []
    for transfer in case.transfers.order_by(Transfer.id):
        if transfer.arrears_fen and not _paid_unreported(transfer):
            warnings.append(
                f"{transfer.utility.service_org}户号{transfer.account_no}"
                f"尚欠 {transfer.arrears_fen / 100:.2f} 元，服务机构可能退件；"
                "可先扫码缴清。"
            )
    return warnings


def _missing_steps(transfer):
    missing = []
    if not transfer.account_confirmed:
        missing.append("account_confirmed")
    if transfer.agreement_accepted_at is None:
        missing.append("agreement_accepted")
    return missing

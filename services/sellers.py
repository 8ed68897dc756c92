"""The view a previous owner (原权利人) gets of the cases of homes they sold.

A previous owner is a citizen whose ID number matches a party with the
previous_owner role on the case's registration business. That covers gifts
and inheritance as well as sales. They see, per transfer, the utility, the
account number, its status and completion time, and the final meter reading,
which is where their last bill ends. They may dispute that reading under the
same rule as the buyer: one dispute per reading, the first from either side.
Nothing else of the buyer's is shown, and the buyer's names are masked.

A case that the caller did not sell gets the same response as a case that
does not exist, so ids reveal nothing.
"""

from flask import g

from domain.masking import mask_name
from models import Case, Party, ReleaseNotice, Transfer, Utility
from models.base import is_storable_id
from services import access, cases, meter_readings, timeline
from services.errors import NotFound

CASE_NOT_FOUND = (
    "previous_owner_case_not_found",
    "联办事项不存在，或您不是该房屋的原权利人。",
)


def sold_businesses(citizen):
    """Return a query of the businesses that name the citizen as previous owner."""
    return Party.select(Party.business).where(
        (Party.id_index == citizen.id_index) & (Party.role == "previous_owner")
    )


def cases_of(citizen):
    """Return a query of the cases of homes the citizen sold, newest first."""
    return (
        Case.select()
        .where(Case.business.in_(sold_businesses(citizen)))
        .order_by(Case.opened_at.desc(), Case.id.desc())
    )


def case_for(caller, case_id):
    """Return a case of a home the caller sold, or raise NotFound.

    The request then acts as the previous owner, so that the timeline and the
    record of actions name them.
    """
    case = None
    if is_storable_id(case_id):
        case = cases_of(caller.citizen).where(Case.id == case_id).first()
    if case is None:
        raise NotFound(*CASE_NOT_FOUND)
    g.case_id = case.id
    g.authority = access.Authority(caller, "previous_owner")
    return case


def transfer_for(caller, case_id, transfer_id):
    """Return a transfer of a case the caller sold, or raise NotFound."""
    return access.transfer_of(case_for(caller, case_id), transfer_id)


def people(business, role, citizen):
    """Return the names of one role on the business, masked unless it is the citizen."""
    parties = (
        Party.select()
        .where((Party.business == business) & (Party.role == role))
        .order_by(Party.position)
    )
    return [
        {
            "name": party.name
            if party.id_index == citizen.id_index
            else mask_name(party.name),
            "is_me": party.id_index == citizen.id_index,
        }
        for party in parties
    ]


def transfer_view(transfer, reading):
    completed = transfer.status == "completed"
    # A returned or withdrawn transfer left the account in the seller's name,
    # so its transfer-day reading ends no bill.
    moved_away = transfer.status not in ("returned", "withdrawn")
    return {
        "transfer_id": transfer.id,
        "service_org": transfer.utility.service_org,
        "utility_kind": transfer.utility.kind,
        "account_no": transfer.account_no,
        "status": transfer.status,
        "status_label": timeline.status_label(transfer.status),
        # The status changed last when the utility reported 办结, and the
        # release notice takes the same time.
        "completed_at": transfer.updated_at if completed else None,
        "return_reason": transfer.return_reason,
        "final_reading": meter_readings.reading_view(reading) if moved_away else None,
    }


def transfer_views(case):
    transfers = list(
        Transfer.select(Transfer, Utility)
        .join(Utility)
        .where(Transfer.case == case)
        .order_by(Transfer.id)
    )
    readings = meter_readings.readings_of(transfers)
    return [transfer_view(t, readings.get(t.id)) for t in transfers]


def case_view(case, citizen):
    """Return the case as its previous owner reads it."""
    business = case.business
    notice = ReleaseNotice.get_or_none(ReleaseNotice.case == case)
    return {
        "case_id": case.id,
        "business_no": business.business_no,
        "business_type": business.business_type,
        "location": business.location,
        "registration_status": business.registration_status,
        "status": case.status,
        "status_label": cases.CASE_LABELS.get(case.status, case.status),
        "owners": people(business, "owner", citizen),
        "previous_owners": people(business, "previous_owner", citizen),
        "release_notice_id": notice.id if notice else None,
        "transfers": transfer_views(case),
    }

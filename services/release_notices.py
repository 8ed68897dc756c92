"""Reading the release notices: only a previous owner of the business may read one.

A release notice that the caller may not read gets the same response as one
that does not exist, so ids reveal nothing.
"""

from domain.masking import mask_name
from models import Party, ReleaseNotice
from models.base import is_storable_id
from services.errors import NotFound

RELEASE_NOTICE_NOT_FOUND = (
    "release_notice_not_found",
    "过户完成证明不存在，或您不是该房屋的原权利人。",
)


def _sold_businesses(citizen):
    return Party.select(Party.business).where(
        (Party.id_index == citizen.id_index) & (Party.role == "previous_owner")
    )


def of_seller(citizen):
    """Return a query of the release notices of homes the citizen sold, newest first."""
    return (
        ReleaseNotice.select()
        .where(ReleaseNotice.business.in_(_sold_businesses(citizen)))
        .order_by(ReleaseNotice.issued_at.desc(), ReleaseNotice.id.desc())
    )


def for_seller(citizen, release_notice_id):
    """Return one release notice of a home the citizen sold, or raise NotFound."""
    notice = None
    if is_storable_id(release_notice_id):
        notice = of_seller(citizen).where(ReleaseNotice.id == release_notice_id).first()
    if notice is None:
        raise NotFound(*RELEASE_NOTICE_NOT_FOUND)
    return notice


def _people(business, role, citizen):
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


def view(notice, citizen):
    """Return the notice as the seller reads it, other people's names masked."""
    business = notice.business
    return {
        "release_notice_id": notice.id,
        "case_id": notice.case_id,
        "business_no": business.business_no,
        "location": business.location,
        "issued_at": notice.issued_at,
        "items": notice.items,
        "owners": _people(business, "owner", citizen),
        "previous_owners": _people(business, "previous_owner", citizen),
    }

"""Reading the release notices: only a previous owner of the business may read one.

A release notice that the caller may not read gets the same response as one
that does not exist, so ids reveal nothing.
"""

from models import ReleaseNotice, Transfer, Utility
from models.base import is_storable_id
from services import meter_readings, sellers
from services.errors import NotFound

RELEASE_NOTICE_NOT_FOUND = (
    "release_notice_not_found",
    "过户完成证明不存在，或您不是该房屋的原权利人。",
)


def of_seller(citizen):
    """Return a query of the release notices of homes the citizen sold, newest first."""
    return (
        ReleaseNotice.select()
        .where(ReleaseNotice.business.in_(sellers.sold_businesses(citizen)))
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


def items_with_readings(notice):
    """Return the notice's items, each with the final reading of its transfer.

    The items were written when the last transfer completed, and a reading
    may arrive or be disputed after that, so the reading is read now. A
    case has one transfer per utility and account number.
    """
    transfers = list(
        Transfer.select(Transfer, Utility)
        .join(Utility)
        .where(Transfer.case == notice.case_id)
    )
    readings = meter_readings.readings_of(transfers)
    by_account = {(t.utility.code, t.account_no): readings.get(t.id) for t in transfers}
    return [
        {
            **item,
            "final_reading": meter_readings.reading_view(
                by_account.get((item["utility"], item["account_no"]))
            ),
        }
        for item in notice.items
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
        "items": items_with_readings(notice),
        "owners": sellers.people(business, "owner", citizen),
        "previous_owners": sellers.people(business, "previous_owner", citizen),
    }

"""Utilities, their agreements and known account links, as configuration."""

import logging
import re

from domain.utilities import KIND_LABELS, UTILITIES
from models import AccountLink, Agreement, OutboxMessage, Unit, Utility
from models.base import utcnow
from models.db import transaction

log = logging.getLogger(__name__)

AGREEMENT_TEMPLATE = """{org}{kind}户过户协议（第 {version} 版）

一、不动产登记完成后，{org}依据不动产登记部门推送的权利人信息，将本户号的用户名称变更为新权利人，无需另行提交纸质材料。
二、过户前的欠费由原用户承担，可在本平台扫码缴清；欠费未结清的，{org}可退件并告知原因。
三、户号历经多次转手而未及时过户的，{org}按本次登记的权利人直接办理，不要求补办此前各次过户。
四、过户办结后，新权利人自办结之日起承担本户号的费用。
五、双方对个人信息负有保密义务，仅用于本次过户。
"""


def ensure_utilities(base_url_of):
    """Create or update the utilities; `base_url_of(code)` gives each base URL."""
    with transaction():
        for info in UTILITIES:
            utility = Utility.get_or_none(Utility.code == info.code) or Utility(
                code=info.code
            )
            utility.service_org = info.service_org
            utility.kind = info.kind
            utility.connection = info.connection
            utility.base_url = base_url_of(info.code)
            utility.save()
    log.info("utilities configured count=%d", len(UTILITIES))


def ensure_agreements():
    """Publish version 1 of each utility's agreement where none exists."""
    with transaction():
        for utility in Utility.select():
            if utility.agreements.count():
                continue
            Agreement.create(
                utility=utility,
                version=1,
                title=f"{utility.service_org}过户协议",
                body=AGREEMENT_TEMPLATE.format(
                    org=utility.service_org, kind=KIND_LABELS[utility.kind], version=1
                ),
            )


def link_accounts(rows):
    """Record account links (unit code, utility code, account and holder)."""
    with transaction():
        for row in rows:
            unit, _ = Unit.get_or_create(
                unit_code=row["unit_code"], defaults={"location": row["location"]}
            )
            utility = Utility.get(Utility.code == row["utility"])
            link = AccountLink.get_or_none(
                (AccountLink.utility == utility)
                & (AccountLink.account_no == row["account_no"])
            ) or AccountLink(utility=utility, account_no=row["account_no"])
            link.unit = unit
            link.holder_name = row["holder_name"]
            link.holder_id_numbers = row["holder_id_numbers"]
            link.account_address = row["account_address"]
            link.source = "roster"
            link.match_result = "一致"
            link.updated_at = utcnow()
            link.save()
    log.info("account links recorded count=%d", len(rows))


def publish_agreement(code, title, body):
    """Publish the next version of a utility's agreement and return it.

    Applicants who accepted an earlier version keep it; those who have not
    accepted yet must accept the new one.
    """
    with transaction():
        utility = Utility.get_or_none(Utility.code == code)
        if utility is None:
            raise ValueError(f"Unknown utility code {code!r}.")
        latest = (
            Agreement.select(Agreement.version)
            .where(Agreement.utility == utility)
            .order_by(Agreement.version.desc())
            .first()
        )
        agreement = Agreement.create(
            utility=utility,
            version=(latest.version if latest else 0) + 1,
            title=title,
            body=body,
        )
    log.info("agreement published utility=%s version=%d", code, agreement.version)
    return agreement


CONNECTIONS = ("system", "channel")
UTILITY_CODE = re.compile(r"^[a-z][a-z0-9-]{1,31}$")


def register_utility(code, service_org, kind, connection, base_url=None):
    """Register a utility by configuration; return (utility, created).

    A system link needs a base URL. A new utility also gets version 1 of
    its transfer agreement, and its signing key is added separately.
    """
    if not UTILITY_CODE.match(code or ""):
        raise ValueError(
            f"The utility code must be 2 to 32 lower-case letters, digits or "
            f"hyphens, starting with a letter; got {code!r}."
        )
    if kind not in KIND_LABELS:
        raise ValueError(f"kind must be one of {', '.join(KIND_LABELS)}; got {kind!r}.")
    _check_connection(connection, base_url)
    with transaction():
        utility = Utility.get_or_none(Utility.code == code)
        created = utility is None
        if created:
            utility = Utility(code=code)
        utility.service_org = service_org
        utility.kind = kind
        utility.connection = connection
        utility.base_url = base_url
        utility.save()
    if created:
        ensure_agreements()
    log.info(
        "utility registered code=%s connection=%s created=%s",
        code,
        connection,
        created,
    )
    return utility, created


def set_connection(code, connection, base_url=None):
    """Move a utility between a system link and another channel."""
    utility = Utility.get_or_none(Utility.code == code)
    if utility is None:
        raise ValueError(f"No utility has the code {code!r}.")
    base_url = base_url or utility.base_url
    _check_connection(connection, base_url)
    # Pushes not yet taken move with the utility: to the queue for a system
    # link, to the export for another channel.
    moves = {
        "system": ("awaiting_collection", "pending"),
        "channel": ("pending", "awaiting_collection"),
    }
    old_state, new_state = moves[connection]
    with transaction():
        Utility.update(connection=connection, base_url=base_url).where(
            Utility.id == utility.id
        ).execute()
        moved = (
            OutboxMessage.update(state=new_state, next_attempt_at=utcnow())
            .where(
                (OutboxMessage.utility_code == code)
                & (OutboxMessage.kind == "push_transfer")
                & (OutboxMessage.state == old_state)
            )
            .execute()
        )
    log.info(
        "utility connection set code=%s connection=%s pushes_moved=%d",
        code,
        connection,
        moved,
    )
    return Utility.get_by_id(utility.id), moved


def _check_connection(connection, base_url):
    if connection not in CONNECTIONS:
        raise ValueError(f"connection must be system or channel; got {connection!r}.")
    if connection == "system" and not (base_url or "").startswith(
        ("http://", "https://")
    ):
        raise ValueError("A system link needs --base-url, an http:// or https:// URL.")

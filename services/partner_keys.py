"""Partners' signing keys: from the secrets file and from rotation in the database.

The secrets file (PARTNER_SECRETS_FILE) gives each partner its first key.
Keys added with `lianban partner-key add` are stored sealed in the database
and take effect at once in every process. During a rotation both the old and
the new key verify what the partner sends. The hub keeps signing with the
oldest active key, the one the partner surely holds, until that key is
retired; then the next one signs.
"""

import logging
import secrets

from flask import current_app

from models import PartnerKey
from models.base import utcnow
from models.db import transaction
from services.errors import Invalid, NotFound

log = logging.getLogger(__name__)


def active_keys(partner):
    """Return the partner's active secrets, the oldest first."""
    stored = [
        key.secret
        for key in PartnerKey.select()
        .where((PartnerKey.partner == partner) & PartnerKey.retired_at.is_null())
        .order_by(PartnerKey.created_at, PartnerKey.id)
    ]
    retired = {
        key.secret
        for key in PartnerKey.select().where(
            (PartnerKey.partner == partner) & PartnerKey.retired_at.is_null(False)
        )
    }
    configured = [
        secret
        for secret in current_app.config["PARTNER_SECRETS"].get(partner, [])
        if secret not in retired
    ]
    # The file's key came first, so it is the oldest.
    return [s for s in configured if s not in stored] + stored


def signing_key(partner):
    """Return the secret the hub signs with for `partner`: the oldest active one."""
    keys = active_keys(partner)
    return keys[0] if keys else None


def add_key(partner, secret=None):
    """Store a new active key for `partner`; return (key row, secret)."""
    secret = secret or secrets.token_urlsafe(32)
    if len(secret) < 32:
        raise Invalid(
            "partner_key_short", "签名密钥至少 32 个字符，建议留空由系统生成。"
        )
    with transaction():
        key = PartnerKey.create(partner=partner, secret=secret)
    log.info("partner key added partner=%s key=%s", partner, key.id)
    return key, secret


def retire_key(partner, key_id=None, secret=None):
    """Retire one stored key by id, or a key from the secrets file by its value."""
    with transaction():
        if key_id is not None:
            updated = (
                PartnerKey.update(retired_at=utcnow())
                .where(
                    (PartnerKey.id == key_id)
                    & (PartnerKey.partner == partner)
                    & PartnerKey.retired_at.is_null()
                )
                .execute()
            )
            if not updated:
                raise NotFound("partner_key_not_found", "没有这把有效的签名密钥。")
        else:
            # A key from the secrets file is retired by recording it as such.
            PartnerKey.create(partner=partner, secret=secret, retired_at=utcnow())
    if len(active_keys(partner)) == 0:
        log.warning("partner has no active key left partner=%s", partner)
    log.info("partner key retired partner=%s key=%s", partner, key_id or "file")


def keys_of(partner=None):
    query = PartnerKey.select().order_by(PartnerKey.partner, PartnerKey.id)
    if partner is not None:
        query = query.where(PartnerKey.partner == partner)
    return list(query)

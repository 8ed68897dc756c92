"""The evidence log: signed, hash-chained entries of what happened on each case.

Every push with the utility's response, utility report, account confirmation,
agreement acceptance and settled payment appends one entry in the same
transaction as the change it records. Entries carry ids, masked values and
SHA-256 digests of the payloads, never personal data in clear.

Appending locks the one `evidence_head` row (FOR UPDATE on PostgreSQL; a
SQLite write transaction already holds the file's write lock), so concurrent
writers form one chain. The unique `seq` and the conditional update of the
head make a writer that somehow skipped the lock fail instead of forking it.

Keys come from EVIDENCE_KEYS, `key_id:base64-seed` items separated by commas.
The last key signs, and every listed key's public half is stored in
`evidence_key` when it first signs, so old entries verify after rotation.
Development installs get a key generated into VAR_DIR.
"""

import base64
import hashlib
import json
import logging
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import current_app

from models import EvidenceEntry, EvidenceHead, EvidenceKey
from models.db import database, locked
from services import access
from services.evidence_check import (
    FILE_FORMAT,
    GENESIS_HASH,
    HEAD_FIELDS,
    SIGNED_FIELDS,
    Broken,
    canonical,
    check_case_chain,
    check_chain,
    load_public_key,
)
from settings import DEVELOPMENT_ENVS

log = logging.getLogger(__name__)

PUSH = "push_accepted"
FEEDBACK = "feedback"
CONFIRMATION = "account_confirmed"
AGREEMENT = "agreement_accepted"
PAYMENT = "payment_settled"
REFUND = "payment_refunded"

EXTENSION = "lianban_evidence"
DEV_KEY_FILE = "development-evidence-key.json"
VERIFY_BATCH = 1000


class SigningKeys:
    """The configured Ed25519 keys by key id; the last one signs."""

    def __init__(self, private_keys):
        self.private_keys = private_keys
        self.current_id = list(private_keys)[-1]
        self.stored = set()

    def public_text(self, key_id):
        raw = (
            self.private_keys[key_id]
            .public_key()
            .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        )
        return base64.b64encode(raw).decode()

    def sign(self, data):
        signature = self.private_keys[self.current_id].sign(data)
        return base64.b64encode(signature).decode()


def parse_keys(text):
    """Parse `id:base64-seed,...` into private keys by id, in the order given."""
    keys = {}
    for item in text.split(","):
        key_id, _, encoded = item.strip().partition(":")
        if not key_id or not encoded:
            raise ValueError(
                "EVIDENCE_KEYS items must be key_id:base64-seed; "
                f"got an item starting {item.strip()[:8]!r}."
            )
        seed = base64.b64decode(encoded)
        if len(seed) != 32:
            raise ValueError(
                f"EVIDENCE_KEYS key {key_id!r} must be 32 bytes; got {len(seed)}."
            )
        keys[key_id] = Ed25519PrivateKey.from_private_bytes(seed)
    return keys


def _development_keys(var_dir):
    """Read or create the development signing key kept in the var dir."""
    path = Path(var_dir) / DEV_KEY_FILE
    if path.exists():
        return json.loads(path.read_text())["EVIDENCE_KEYS"]
    path.parent.mkdir(parents=True, exist_ok=True)
    seed = Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    key_id = "dev-" + hashlib.sha256(seed).hexdigest()[:12]
    text = f"{key_id}:{base64.b64encode(seed).decode()}"
    path.write_text(json.dumps({"EVIDENCE_KEYS": text}))
    path.chmod(0o600)
    log.info("development evidence key created path=%s key_id=%s", path, key_id)
    return text


def init_app(app):
    """Load the signing keys from EVIDENCE_KEYS, or a development key."""
    text = app.config["EVIDENCE_KEYS"]
    if not text:
        if app.config["ENV"] not in DEVELOPMENT_ENVS:
            raise RuntimeError("LIANBAN_EVIDENCE_KEYS must be set outside development.")
        text = _development_keys(app.config["VAR_DIR"])
    app.extensions[EXTENSION] = SigningKeys(parse_keys(text))


def signing_keys():
    return current_app.extensions[EXTENSION]


def _store_public_keys(keys):
    """Store each configured key's public half the first time this process signs."""
    for key_id in keys.private_keys:
        if key_id in keys.stored:
            continue
        public = keys.public_text(key_id)
        EvidenceKey.insert(
            key_id=key_id, public_key=public
        ).on_conflict_ignore().execute()
        known = EvidenceKey.get(EvidenceKey.key_id == key_id)
        if known.public_key != public:
            raise RuntimeError(
                f"Evidence key {key_id!r} does not match the stored public key; "
                "give a new key a new id."
            )
        keys.stored.add(key_id)


def now_text():
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def append(kind, case_id, transfer_id, payload, detail):
    """Append one signed entry; call it inside the transaction of the change.

    `payload` is what happened in full, and only its digest is stored.
    `detail` is stored as it is, so it must contain no personal data in clear.
    """
    if not database.in_transaction():
        raise RuntimeError("Evidence must be appended inside the change's transaction.")
    keys = signing_keys()
    head = locked(EvidenceHead.select().where(EvidenceHead.id == 1)).get()
    _store_public_keys(keys)
    entry = {
        "seq": head.seq + 1,
        "prev_hash": head.entry_hash,
        "case_prev_hash": _last_case_hash(case_id),
        "kind": kind,
        "case_id": case_id,
        "transfer_id": transfer_id,
        "occurred_at": now_text(),
        "payload_digest": payload_digest(payload),
        "detail": canonical(detail).decode("utf-8"),
        "key_id": keys.current_id,
    }
    data = canonical({**entry, "detail": detail})
    entry["entry_hash"] = hashlib.sha256(data).hexdigest()
    entry["signature"] = keys.sign(data)
    EvidenceEntry.create(**entry)
    moved = (
        EvidenceHead.update(seq=entry["seq"], entry_hash=entry["entry_hash"])
        .where((EvidenceHead.id == 1) & (EvidenceHead.seq == head.seq))
        .execute()
    )
    if moved != 1:
        raise RuntimeError("The evidence head moved while an entry was appended.")
    log.info(
        "evidence appended seq=%d kind=%s case=%s transfer=%s",
        entry["seq"],
        kind,
        case_id,
        transfer_id,
    )
    return entry


def _json_value(value):
    """Turn the datetimes and decimals found in payloads into JSON text."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    raise TypeError(f"cannot digest a value of type {type(value).__name__}")


def payload_digest(payload):
    """Return the SHA-256 hex digest of a payload's canonical JSON.

    Datetimes are written in ISO 8601 and decimals as text, so anyone with
    the payload can compute the same digest.
    """
    text = json.dumps(
        payload,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=_json_value,
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _last_case_hash(case_id):
    if case_id is None:
        return GENESIS_HASH
    last = (
        EvidenceEntry.select(EvidenceEntry.entry_hash)
        .where(EvidenceEntry.case_id == case_id)
        .order_by(EvidenceEntry.seq.desc())
        .first()
    )
    return last.entry_hash if last else GENESIS_HASH


def mask_account(account_no):
    """Keep the last four characters of an account number."""
    return "*" * max(len(account_no) - 4, 0) + account_no[-4:]


def optional_digest(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest() if text else None


def _transfer_detail(transfer, **extra):
    return {
        "utility": transfer.utility.code,
        "account_no": mask_account(transfer.account_no),
        **extra,
    }


def record_push(transfer, payload, answer):
    """Record a push the utility accepted: the request's and the answer's digests."""
    return append(
        PUSH,
        transfer.case_id,
        transfer.id,
        payload,
        _transfer_detail(
            transfer,
            answer_digest=payload_digest(answer),
            utility_ref=str(answer.get("utility_ref") or "") or None,
        ),
    )


def record_feedback(transfer, report):
    """Record a utility's report that changed a transfer's status."""
    return append(
        FEEDBACK,
        transfer.case_id,
        transfer.id,
        report,
        _transfer_detail(
            transfer,
            status=transfer.status,
            return_reason_digest=optional_digest(report.get("return_reason")),
        ),
    )


def record_feedback_batch(results, reports):
    """Record the reports of a batch that changed a transfer, in item order.

    `results` maps item index to (transfer, applied) and `reports` maps it to
    the report.
    """
    for index in sorted(results):
        transfer, applied = results[index]
        if applied:
            record_feedback(transfer, reports[index])


def record_confirmation(transfer):
    """Record that the applicant confirmed the account (是否确认用户信息)."""
    return append(
        CONFIRMATION,
        transfer.case_id,
        transfer.id,
        {
            "transfer_id": transfer.id,
            "account_no": transfer.account_no,
            "confirmed_at": transfer.confirmed_at.isoformat(),
        },
        _transfer_detail(transfer, actor=access.current().actor_role),
    )


def record_agreement(transfer):
    """Record acceptance of an agreement version, with a digest of its text."""
    agreement = transfer.agreement
    body_digest = optional_digest(agreement.body)
    return append(
        AGREEMENT,
        transfer.case_id,
        transfer.id,
        {
            "transfer_id": transfer.id,
            "agreement_id": agreement.id,
            "version": agreement.version,
            "accepted_at": transfer.agreement_accepted_at.isoformat(),
        },
        _transfer_detail(
            transfer,
            version=agreement.version,
            agreement_digest=body_digest,
            actor=access.current().actor_role,
        ),
    )


def record_payment(payment, share):
    """Record the share of a settled payment that went against a transfer's arrears."""
    transfer = share.transfer
    return append(
        PAYMENT,
        transfer.case_id,
        transfer.id,
        {
            "out_trade_no": payment.out_trade_no,
            "transaction_id": payment.transaction_id,
            "provider": payment.provider,
            "amount_fen": share.amount_fen,
            "order_amount_fen": payment.amount_fen,
            "utility_payment_id": share.utility_payment_id,
            "paid_at": payment.paid_at.isoformat(),
        },
        _transfer_detail(
            transfer,
            provider=payment.provider,
            out_trade_no=payment.out_trade_no,
            amount_fen=share.amount_fen,
        ),
    )


def record_refund(refund):
    """Record money going back to the payer, with the reason and the account it was for.

    A refund of a whole order (a payment on a closed order) names no transfer.
    """
    payment = refund.payment
    transfer = refund.share.transfer if refund.share_id else None
    extra = {
        "provider": payment.provider,
        "out_trade_no": payment.out_trade_no,
        "out_refund_no": refund.out_refund_no,
        "amount_fen": refund.amount_fen,
        "reason": refund.reason,
    }
    return append(
        REFUND,
        payment.case_id,
        transfer.id if transfer else None,
        {**extra, "created_at": refund.created_at.isoformat()},
        _transfer_detail(transfer, **extra) if transfer else extra,
    )


ENTRY_FIELDS = SIGNED_FIELDS + ("entry_hash", "signature")


def entry_dict(row):
    return {name: getattr(row, name) for name in ENTRY_FIELDS}


def stored_public_keys():
    """Return the stored public keys as base64 text by key id."""
    return {key.key_id: key.public_key for key in EvidenceKey.select()}


def _loaded_keys():
    return {
        key_id: load_public_key(text) for key_id, text in stored_public_keys().items()
    }


def _entries_in_order(query):
    """Yield entries of `query` in seq order, a batch at a time."""
    last_seq = 0
    while True:
        batch = list(
            query.where(EvidenceEntry.seq > last_seq)
            .order_by(EvidenceEntry.seq)
            .limit(VERIFY_BATCH)
        )
        if not batch:
            return
        for row in batch:
            yield entry_dict(row)
        last_seq = batch[-1].seq


def verify_log():
    """Check the log up to its head; return the count, or raise Broken.

    The head is read first, so entries that writers append meanwhile are
    left for the next check instead of being taken for a mismatch.
    """
    head = EvidenceHead.get_by_id(1)
    query = EvidenceEntry.select().where(EvidenceEntry.seq <= head.seq)
    count, last_hash = check_chain(_entries_in_order(query), _loaded_keys())
    if (count, last_hash) != (head.seq, head.entry_hash):
        raise Broken(
            count + 1,
            f"the head names seq {head.seq}, but the log ends at seq {count}: "
            "entries at the end are missing or the head was changed",
        )
    return count


def verify_case(case_id):
    """Check one case's entries and their links into the whole log; return the count.

    Raises Broken at the first bad entry.
    """
    keys = _loaded_keys()
    entries = list(
        _entries_in_order(
            EvidenceEntry.select().where(EvidenceEntry.case_id == case_id)
        )
    )
    count, _ = check_case_chain(entries, keys)
    for entry in entries:
        before = EvidenceEntry.get_or_none(EvidenceEntry.seq == entry["seq"] - 1)
        expected = before.entry_hash if before else GENESIS_HASH
        if entry["prev_hash"] != expected:
            raise Broken(entry["seq"], "prev_hash does not match the entry before")
    return count


def case_entries(case_id):
    return list(
        _entries_in_order(
            EvidenceEntry.select().where(EvidenceEntry.case_id == case_id)
        )
    )


def case_file(case_id):
    """Return a case's entries with the public keys and a signed head.

    A third party checks it with services/evidence_check.py, without the
    database.
    """
    entries = case_entries(case_id)
    keys = signing_keys()
    head = {
        "case_id": case_id,
        "entries": len(entries),
        "last_hash": entries[-1]["entry_hash"] if entries else GENESIS_HASH,
        "exported_at": now_text(),
        "key_id": keys.current_id,
    }
    head["signature"] = keys.sign(canonical({n: head[n] for n in HEAD_FIELDS}))
    public_keys = stored_public_keys()
    public_keys.setdefault(keys.current_id, keys.public_text(keys.current_id))
    return {
        "format": FILE_FORMAT,
        "case_id": case_id,
        "entries": entries,
        "public_keys": public_keys,
        "head": head,
    }

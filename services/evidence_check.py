"""Check evidence entries and case files without the database.

This module needs only the standard library and `cryptography`, so a third
party can copy it and run `python evidence_check.py CASE_FILE.json` on a case
file that `lianban evidence export` wrote. The hub's own checks use the same
functions.

Each entry's `entry_hash` is the SHA-256 of the canonical JSON of its signed
fields (keys sorted, no spaces, UTF-8), and `signature` is the Ed25519
signature of those same bytes by the key `key_id`. `prev_hash` links each
entry to the one before it in the whole log, and `case_prev_hash` to the
case's previous entry.
"""

import base64
import hashlib
import json
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

GENESIS_HASH = "0" * 64
FILE_FORMAT = "lianban-evidence-case/1"
SIGNED_FIELDS = (
    "seq",
    "prev_hash",
    "case_prev_hash",
    "kind",
    "case_id",
    "transfer_id",
    "occurred_at",
    "payload_digest",
    "detail",
    "key_id",
)
HEAD_FIELDS = ("case_id", "entries", "last_hash", "exported_at", "key_id")


def canonical(value):
    """Return the canonical JSON bytes of `value`, as hashed and signed."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def digest(value):
    """Return the SHA-256 hex digest of `value`'s canonical JSON."""
    return hashlib.sha256(canonical(value)).hexdigest()


def signed_bytes(entry):
    """Return the bytes an entry's hash and signature cover."""
    body = {name: entry[name] for name in SIGNED_FIELDS}
    body["detail"] = json.loads(entry["detail"])
    return canonical(body)


def load_public_key(encoded):
    return Ed25519PublicKey.from_public_bytes(base64.b64decode(encoded))


def check_signature(public_keys, key_id, signature, data):
    """Return None if the signature holds, else the problem."""
    key = public_keys.get(key_id)
    if key is None:
        return f"signed by unknown key {key_id!r}"
    try:
        key.verify(base64.b64decode(signature), data)
    except (InvalidSignature, ValueError):
        return "signature does not verify"
    return None


def check_entry(entry, public_keys):
    """Return None if the entry's hash and signature hold, else the problem."""
    try:
        data = signed_bytes(entry)
    except (KeyError, TypeError, ValueError) as error:
        return f"entry is malformed ({error})"
    if hashlib.sha256(data).hexdigest() != entry["entry_hash"]:
        return "entry_hash does not match the entry's content"
    return check_signature(public_keys, entry["key_id"], entry["signature"], data)


class Broken(Exception):
    """The first entry that fails a check, with its sequence number and the problem."""

    def __init__(self, seq, problem):
        super().__init__(f"entry seq={seq}: {problem}")
        self.seq = seq
        self.problem = problem


def check_chain(entries, public_keys):
    """Check a whole log in `seq` order; return the count and the last hash.

    Raises Broken at the first entry that is missing, out of order, altered
    or wrongly signed.
    """
    expected_seq = 1
    previous = GENESIS_HASH
    for entry in entries:
        if entry["seq"] != expected_seq:
            raise Broken(
                entry["seq"],
                f"expected seq {expected_seq} here: an entry is missing or moved",
            )
        if entry["prev_hash"] != previous:
            raise Broken(entry["seq"], "prev_hash does not match the entry before")
        problem = check_entry(entry, public_keys)
        if problem:
            raise Broken(entry["seq"], problem)
        previous = entry["entry_hash"]
        expected_seq += 1
    return expected_seq - 1, previous


def check_case_chain(entries, public_keys):
    """Check one case's entries in `seq` order through their `case_prev_hash` links.

    Returns the count and the last entry's hash; raises Broken.
    """
    previous = GENESIS_HASH
    last_seq = 0
    for entry in entries:
        if entry["seq"] <= last_seq:
            raise Broken(entry["seq"], "entries are out of order")
        if entry["case_prev_hash"] != previous:
            raise Broken(
                entry["seq"],
                "case_prev_hash does not match the case's entry before: "
                "an entry is missing or moved",
            )
        problem = check_entry(entry, public_keys)
        if problem:
            raise Broken(entry["seq"], problem)
        previous = entry["entry_hash"]
        last_seq = entry["seq"]
    return len(entries), previous


def check_case_file(document):
    """Check an exported case file; return a one-line summary or raise Broken.

    The file's `head`, signed at export, fixes the number of entries and the
    last hash, so an entry cut from the end is found too.
    """
    if document.get("format") != FILE_FORMAT:
        raise Broken(0, f"not a case file of format {FILE_FORMAT}")
    public_keys = {
        key_id: load_public_key(encoded)
        for key_id, encoded in document["public_keys"].items()
    }
    entries = document["entries"]
    for entry in entries:
        if entry["case_id"] != document["case_id"]:
            raise Broken(entry["seq"], "entry belongs to another case")
    count, last_hash = check_case_chain(entries, public_keys)
    head = document["head"]
    head_body = {name: head[name] for name in HEAD_FIELDS}
    problem = check_signature(
        public_keys, head["key_id"], head["signature"], canonical(head_body)
    )
    if problem:
        raise Broken(0, f"file head: {problem}")
    if head["case_id"] != document["case_id"]:
        raise Broken(0, "file head names another case")
    if (head["entries"], head["last_hash"]) != (count, last_hash):
        raise Broken(
            entries[-1]["seq"] if entries else 0,
            f"file head lists {head['entries']} entries ending in "
            f"{head['last_hash'][:12]}; the file has {count} ending in "
            f"{last_hash[:12]}",
        )
    return f"case {document['case_id']}: {count} entries verified"


def key_fingerprint(encoded):
    """Return the SHA-256 fingerprint of a base64 public key, to compare by eye."""
    return hashlib.sha256(base64.b64decode(encoded)).hexdigest()


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: evidence_check.py CASE_FILE.json", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as handle:
        document = json.load(handle)
    try:
        summary = check_case_file(document)
    except Broken as error:
        print(f"BROKEN: {error}")
        return 1
    print(f"OK: {summary}")
    for key_id, encoded in document["public_keys"].items():
        print(f"key {key_id} sha256 {key_fingerprint(encoded)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

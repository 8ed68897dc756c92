"""Roster linkage in the service: the registry's unit export, uploads, jobs.

A utility uploads its roster (Annex 1 CSV). The upload is checked for its
encoding and columns at once, sealed to disk, and linked in the background
against the registry's units: the imported export plus the units of
registration businesses. The results are stored per account, each account's
link is kept in `account_link` (where the main flow finds a unit's
accounts), and accounts in doubt go to the utility's reconciliation queue.
"""

import logging
import os
import struct
import time
import uuid
from datetime import timedelta
from pathlib import Path

from flask import current_app
from peewee import fn

from linkage import engine, records
from models import (
    AccountLink,
    Business,
    Party,
    ReconciliationItem,
    RegistryUnit,
    RosterEntry,
    RosterJob,
    Unit,
    Utility,
)
from models.base import is_storable_id, utcnow
from models.db import locked, transaction
from models.fields import data_keys
from services.errors import Invalid, NotFound

log = logging.getLogger(__name__)

RETURN_HEADERS = (
    "服务机构名称",
    "用户编号",
    "不动产单元代码",
    "不动产权证号",
    "坐落",
    "比对结果",
)
# Links that people made by hand are kept when a roster disagrees.
MANUAL_SOURCES = ("applicant", "reconciliation")
BATCH = 500
# Accounts written per transaction when a roster's results are stored.
CHUNK = 1000
JOB_NOT_FOUND = ("roster_job_not_found", "该名册任务不存在。")


# --- the registry's export -------------------------------------------------


def import_units(path):
    """Load a registry export into `registry_unit`; return (ReadResult, new, updated).

    Units already imported are replaced by the export's values. Runs in one
    transaction, so a failed import leaves the earlier export in place.
    """
    result = records.read_units(path)
    known = {
        row.unit_code: row.id
        for row in RegistryUnit.select(RegistryUnit.id, RegistryUnit.unit_code)
    }
    fresh = []
    updated = 0
    with transaction():
        for unit in result.records:
            values = _registry_values(unit)
            if unit.unit_code in known:
                RegistryUnit.update(**values).where(
                    RegistryUnit.id == known[unit.unit_code]
                ).execute()
                updated += 1
            else:
                fresh.append({"unit_code": unit.unit_code, **values})
        for start in range(0, len(fresh), BATCH):
            RegistryUnit.insert_many(fresh[start : start + BATCH]).execute()
    new = len(fresh)
    log.info(
        "registry units imported new=%d updated=%d left_out=%d",
        new,
        updated,
        len(result.bad_rows),
    )
    return result, new, updated


def _registry_values(unit):
    return {
        "certificate_no": unit.certificate_no or None,
        "location": unit.location,
        "usage": unit.usage or None,
        "building_area": unit.building_area,
        "inner_area": unit.inner_area,
        "owners": [[p.name, p.id_number] for p in unit.owners],
        "previous_owners": [[p.name, p.id_number] for p in unit.previous_owners],
        "imported_at": utcnow(),
    }


def engine_units():
    """Return the units to link against, as the engine's records.

    The imported export comes first; a unit known only from a registration
    business adds its current owners and the sellers named on that business.
    """
    units = {}
    for row in RegistryUnit.select():
        units[row.unit_code] = records.Unit(
            line=0,
            unit_code=row.unit_code,
            certificate_no=row.certificate_no or "",
            location=row.location,
            usage=row.usage or "",
            building_area=_float(row.building_area),
            inner_area=_float(row.inner_area),
            owners=tuple(records.Person(n, i) for n, i in row.owners),
            previous_owners=tuple(records.Person(n, i) for n, i in row.previous_owners),
        )
    for unit in Unit.select().where(Unit.unit_code.not_in(list(units) or [""])):
        business = (
            Business.select()
            .where(Business.unit == unit)
            .order_by(Business.id.desc())
            .first()
        )
        parties = list(Party.select().where(Party.business == business))
        units[unit.unit_code] = records.Unit(
            line=0,
            unit_code=unit.unit_code,
            certificate_no=unit.certificate_no or "",
            location=unit.location,
            usage=unit.usage or "",
            building_area=_float(unit.building_area),
            inner_area=_float(unit.inner_area),
            owners=tuple(
                records.Person(p.name, p.id_number)
                for p in parties
                if p.role == "owner"
            ),
            previous_owners=tuple(
                records.Person(p.name, p.id_number)
                for p in parties
                if p.role == "previous_owner"
            ),
        )
    return list(units.values())


def _float(value):
    return float(value) if value is not None else None


# --- uploads and jobs -------------------------------------------------------

# An upload is sealed in frames of at most this many plaintext bytes, so that
# neither sealing nor opening keeps the whole file in memory.
SEAL_CHUNK_BYTES = 1 << 20
# Each frame starts with the sealed length and 1 on the last frame, 0 before.
_FRAME_HEADER = struct.Struct(">IB")


class SealedRosterDamaged(Exception):
    """A sealed upload that ends early or does not open."""


class LeaseLost(Exception):
    """The job was queued again or ended while this run still worked on it."""


def upload_dir():
    path = Path(current_app.config["VAR_DIR"]) / "rosters"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sealed_path(upload_id):
    return upload_dir() / f"roster-{upload_id}.sealed"


def _job_path(job):
    # Jobs accepted before uploads were sealed in frames have no upload id.
    return _sealed_path(job.upload_id or job.id)


def _frame_associated(upload_id, index, last):
    return f"roster_upload.{upload_id}.{index}.{int(last)}".encode()


def accept_upload(utility, filename, chunks, uploaded_by):
    """Seal an uploaded roster to disk, check it and queue it; return the job.

    `chunks` yields the body in pieces, so that the web process never keeps
    the whole file in memory. The encoding and the header are checked before the job
    is created, and a file the engine cannot read is rejected with the
    reason. Whatever fails, including an exception that `chunks` raises
    (such as a body over the size limit), removes the sealed file. The rows
    are read again in the job, which reports each bad row with its line.
    """
    upload_id = uuid.uuid4().hex
    path = _sealed_path(upload_id)
    try:
        size, blank = _seal_to_file(chunks, path, upload_id)
        if blank:
            raise Invalid(
                "roster_empty",
                f"名册文件 {filename} 是空的，请上传带表头的 CSV。",
                errors={"body": ["empty"]},
            )
        try:
            parsed = records.read_roster_chunks(
                lambda: _open_sealed(path, upload_id),
                filename,
                max_problems=0,
                keep_records=False,
            )
        except records.RecordsError as error:
            raise Invalid(
                "roster_unreadable",
                f"名册文件无法读取：{error}",
                errors={"body": [str(error)]},
            ) from None
        with transaction():
            job = RosterJob.create(
                utility=utility,
                filename=filename,
                encoding=parsed.encoding,
                uploaded_by=uploaded_by,
                rows_read=parsed.rows_read,
                upload_id=upload_id,
            )
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    log.info(
        "roster accepted job=%s utility=%s rows=%d bytes=%d encoding=%s",
        job.id,
        utility.code,
        parsed.rows_read,
        size,
        parsed.encoding,
    )
    return job


def _seal_to_file(chunks, path, upload_id):
    """Write `chunks` sealed to `path`; return (bytes read, whether all blank)."""
    size = 0
    blank = True
    index = 0
    held = None
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(descriptor, "wb") as out:
        for chunk in _pieces(chunks, SEAL_CHUNK_BYTES):
            size += len(chunk)
            if blank and bytes(chunk).strip():
                blank = False
            # A frame is written once the next one is known to exist, so
            # that the last frame can be marked as last.
            if held is not None:
                _write_frame(out, held, upload_id, index, last=False)
                index += 1
            held = chunk
        _write_frame(out, held or b"", upload_id, index, last=True)
    return size, blank


def _pieces(chunks, limit):
    for chunk in chunks:
        for start in range(0, len(chunk), limit):
            yield bytes(chunk[start : start + limit])


def _write_frame(out, data, upload_id, index, last):
    sealed = data_keys.seal_bytes(data, _frame_associated(upload_id, index, last))
    out.write(_FRAME_HEADER.pack(len(sealed), int(last)))
    out.write(sealed)


def _open_sealed(path, upload_id):
    """Yield the plaintext of a sealed upload frame by frame.

    Raise SealedRosterDamaged when the file ends before its last frame, and
    cryptography's InvalidTag when a frame was changed, moved or taken from
    another upload.
    """
    with open(path, "rb") as sealed_file:
        index = 0
        while True:
            header = sealed_file.read(_FRAME_HEADER.size)
            if len(header) < _FRAME_HEADER.size:
                raise SealedRosterDamaged(f"{path.name} ends before its last part")
            length, last = _FRAME_HEADER.unpack(header)
            sealed = sealed_file.read(length)
            if len(sealed) < length:
                raise SealedRosterDamaged(f"{path.name} ends inside part {index}")
            yield data_keys.open_bytes(
                sealed, _frame_associated(upload_id, index, last)
            )
            if last:
                return
            index += 1


def _open_job_chunks(job):
    if job.upload_id is None:
        # Sealed whole, as uploads were before they were sealed in frames.
        associated = f"roster_job.{job.id}".encode()
        yield data_keys.open_bytes(_job_path(job).read_bytes(), associated)
        return
    yield from _open_sealed(_job_path(job), job.upload_id)


def job_for(utility, job_id):
    job = None
    if is_storable_id(job_id):
        job = RosterJob.get_or_none(
            (RosterJob.id == job_id) & (RosterJob.utility == utility)
        )
    if job is None:
        raise NotFound(*JOB_NOT_FOUND)
    return job


def jobs_of(utility):
    return (
        RosterJob.select()
        .where(RosterJob.utility == utility)
        .order_by(RosterJob.created_at.desc(), RosterJob.id.desc())
    )


def waiting_job_ids(min_age_seconds=60):
    """Return queued jobs whose task was probably lost, or that were queued again.

    A job younger than `min_age_seconds` most likely still has its task in
    the queue. A job released by `release_stalled_jobs` has none.
    """
    horizon = utcnow() - timedelta(seconds=min_age_seconds)
    query = RosterJob.select(RosterJob.id).where(
        (RosterJob.status == "queued")
        & ((RosterJob.created_at <= horizon) | (RosterJob.attempts > 0))
    )
    return [job.id for job in query]


def release_stalled_jobs():
    """Queue again each running job whose lease ran out; return their ids.

    A run renews its lease (`heartbeat_at`) as it reads, links and stores.
    A lease older than ROSTER_LEASE_SECONDS means the worker died or hangs,
    so the job is queued for another run, and after ROSTER_MAX_ATTEMPTS runs
    it fails with the reason instead. A run that is only slow finds its
    lease gone at its next heartbeat and stops.
    """
    config = current_app.config
    lease = config["ROSTER_LEASE_SECONDS"]
    max_attempts = config["ROSTER_MAX_ATTEMPTS"]
    horizon = utcnow() - timedelta(seconds=lease)
    renewed = fn.COALESCE(RosterJob.heartbeat_at, RosterJob.started_at)
    released = []
    stalled = RosterJob.select().where(
        (RosterJob.status == "running") & (renewed <= horizon)
    )
    for job in stalled:
        still_stalled = (
            (RosterJob.id == job.id)
            & (RosterJob.status == "running")
            & (RosterJob.attempts == job.attempts)
            & (renewed <= horizon)
        )
        if job.attempts >= max_attempts:
            reason = (
                f"The job was started {job.attempts} times and each time its "
                f"worker stopped sending a heartbeat for {lease} seconds, so it "
                "probably died (a restart, or too little memory). Upload the "
                "roster again, or split it into smaller files."
            )
            failed = (
                RosterJob.update(status="failed", error=reason, finished_at=utcnow())
                .where(still_stalled)
                .execute()
            )
            if failed:
                _job_path(job).unlink(missing_ok=True)
                log.error(
                    "roster job failed after lost workers job=%s attempts=%d",
                    job.id,
                    job.attempts,
                )
            continue
        requeued = RosterJob.update(status="queued").where(still_stalled).execute()
        if requeued:
            released.append(job.id)
            log.warning(
                "roster job lease expired; queued again job=%s attempts=%d",
                job.id,
                job.attempts,
            )
    return released


def run_job(job_id):
    """Run the queued jobs of `job_id`'s utility one at a time, oldest first.

    Two jobs of one utility write the same accounts, so they never run at
    once. A job that finds another of its utility running stays queued, and
    the run that has claimed the utility takes it next.
    """
    job = RosterJob.get_or_none(RosterJob.id == job_id)
    if job is None:
        log.warning("roster job not found job=%s", job_id)
        return
    while True:
        claimed = _claim_next(job.utility_id)
        if claimed is None:
            return
        _run_claimed(claimed)


def _claim_next(utility_id):
    """Mark the utility's oldest queued job running, unless one already runs."""
    with transaction():
        # Claims of one utility wait for each other here on PostgreSQL;
        # SQLite runs write transactions one at a time anyway.
        locked(Utility.select(Utility.id).where(Utility.id == utility_id)).get()
        of_utility = RosterJob.utility == utility_id
        if (
            RosterJob.select()
            .where(of_utility & (RosterJob.status == "running"))
            .exists()
        ):
            return None
        job = (
            RosterJob.select(RosterJob.id)
            .where(of_utility & (RosterJob.status == "queued"))
            .order_by(RosterJob.created_at, RosterJob.id)
            .first()
        )
        if job is None:
            return None
        now = utcnow()
        RosterJob.update(
            status="running",
            started_at=now,
            heartbeat_at=now,
            attempts=RosterJob.attempts + 1,
            rows_done=0,
            error=None,
        ).where(RosterJob.id == job.id).execute()
    return RosterJob.get_by_id(job.id)


class _Lease:
    """The claim one run holds on a job, renewed by heartbeats."""

    def __init__(self, job):
        self.job = job
        self.interval = current_app.config["ROSTER_LEASE_SECONDS"] / 5
        self.renewed = time.monotonic()

    def beat(self, force=False, **values):
        """Renew the lease, storing `values` too; raise LeaseLost if it is gone.

        Without `values` or `force`, renew at most once an interval.
        """
        now = time.monotonic()
        if not (force or values) and now - self.renewed < self.interval:
            return
        renewed = (
            RosterJob.update(heartbeat_at=utcnow(), **values)
            .where(
                (RosterJob.id == self.job.id)
                & (RosterJob.status == "running")
                & (RosterJob.attempts == self.job.attempts)
            )
            .execute()
        )
        if not renewed:
            raise LeaseLost(self.job.id)
        self.renewed = now

    def beating(self, chunks):
        for chunk in chunks:
            self.beat()
            yield chunk


def _run_claimed(job):
    lease = _Lease(job)
    try:
        _run(job, lease)
    except LeaseLost:
        log.warning(
            "roster job run stopped; its lease ended job=%s attempt=%d",
            job.id,
            job.attempts,
        )
        return
    except Exception as error:
        log.exception("roster job failed job=%s attempt=%d", job.id, job.attempts)
        failed = (
            RosterJob.update(
                status="failed", error=str(error)[:500], finished_at=utcnow()
            )
            .where(
                (RosterJob.id == job.id)
                & (RosterJob.status == "running")
                & (RosterJob.attempts == job.attempts)
            )
            .execute()
        )
        if failed:
            _job_path(job).unlink(missing_ok=True)
        return
    _job_path(job).unlink(missing_ok=True)


def _run(job, lease):
    org = job.utility.service_org

    def of_another_utility(account):
        if account.service_org == org:
            return None
        return f"服务机构名称 {account.service_org!r} is not the uploader's ({org})"

    parsed = records.read_roster_chunks(
        lambda: lease.beating(_open_job_chunks(job)),
        job.filename,
        max_problems=current_app.config["ROSTER_MAX_PROBLEMS"],
        reject=of_another_utility,
    )
    accounts = parsed.records
    problems = [
        {"line": p.line, "reason": p.reason, "dropped": p.dropped}
        for p in parsed.problems
    ]
    lease.beat(
        rows_read=parsed.rows_read,
        problems=problems,
        problems_left_out=parsed.problems_left_out,
    )

    def progress(done, total):
        lease.beat(rows_done=done)

    units = engine_units()
    lease.beat(force=True)
    results = engine.link(units, accounts, progress=progress)
    changes = _store(job, lease, accounts, results)
    summary = engine.summarise(results, parsed.rows_read, parsed.bad_row_count)
    lease.beat(
        status="done",
        rows_done=len(accounts),
        linked=summary.linked,
        for_review=summary.for_review,
        unmatched=summary.unmatched,
        pairs_compared=summary.pairs_compared,
        changes=changes,
        finished_at=utcnow(),
    )
    log.info(
        "roster job done job=%s attempt=%d linked=%d review=%d unmatched=%d",
        job.id,
        job.attempts,
        summary.linked,
        summary.for_review,
        summary.unmatched,
    )


def _store(job, lease, accounts, results):
    """Write the results, the accounts' links and the review items; return changes.

    Accounts already stored are updated in place under the same key, and
    none is deleted, because cases refer to them. Each chunk of accounts is
    written in one transaction with its results, so that other writers wait
    at most one chunk on SQLite.

    A run that stopped part-way left the chunks it finished. Running the job
    again replaces their entries and updates their accounts in place, and
    counts for each account the change its first run recorded, so the
    counts match those of a single run.
    """
    utility = job.utility
    changes = dict.fromkeys(
        ("new", "linked", "moved", "unchanged", "kept_by_hand", "now_in_doubt"), 0
    )
    existing = {
        link.account_no: link
        for link in AccountLink.select().where(AccountLink.utility == utility)
    }
    earlier = {
        entry.account_no: entry.change
        for entry in RosterEntry.select(
            RosterEntry.account_no, RosterEntry.change
        ).where(RosterEntry.job == job)
    }
    pairs = list(zip(accounts, results, strict=True))
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        with transaction():
            lease.beat(force=True)
            numbers = [account.account_no for account, _ in chunk]
            if earlier:
                RosterEntry.delete().where(
                    (RosterEntry.job == job) & RosterEntry.account_no.in_(numbers)
                ).execute()
            units = _units_for({r.unit_code for _, r in chunk if r.unit_code})
            rows = []
            for account, result in chunk:
                link = existing.get(account.account_no)
                kind = _apply(utility, account, result, link, units)
                kind = earlier.get(account.account_no) or kind
                changes[kind] += 1
                rows.append(_entry_row(job, account, result, kind))
            RosterEntry.insert_many(rows).execute()
    uploaded = {account.account_no for account in accounts}
    changes["not_in_upload"] = sum(
        1
        for number, link in existing.items()
        if number not in uploaded and link.source == "roster"
    )
    return changes


def _entry_row(job, account, result, change):
    return {
        "job": job.id,
        "line": account.line,
        "account_no": result.account_no,
        "unit_code": result.unit_code,
        "certificate_no": result.certificate_no or None,
        "location": result.location or None,
        "match_result": result.match_result,
        "score": result.score,
        "reasons": list(result.reasons),
        "change": change,
    }


def _apply(utility, account, result, link, units):
    """Store one account's result; return the kind of change it made."""
    unit = units.get(result.unit_code) if result.match_result == engine.LINKED else None
    kind = "unchanged"
    if link is not None and link.source in MANUAL_SOURCES:
        # A link someone checked by hand outranks the roster.
        return "kept_by_hand"
    if link is None:
        link = AccountLink(utility=utility, account_no=account.account_no)
        link.source = "roster"
        kind = "new"
    if unit is not None:
        if link.unit_id is not None and link.unit_id != unit.id:
            kind = "moved" if kind != "new" else kind
        elif link.unit_id is None and kind != "new":
            kind = "linked"
        link.unit = unit
        link.match_result = engine.LINKED
    else:
        if link.unit_id is not None and kind != "new":
            # A link the roster no longer supports stays until someone checks.
            kind = "now_in_doubt"
        link.match_result = result.match_result
    link.holder_name = account.holder_name or None
    link.holder_id_numbers = list(account.holder_ids)
    link.account_address = account.address or None
    link.updated_at = utcnow()
    link.save()
    if result.match_result == engine.REVIEW:
        _queue_review(utility, account, result, link)
    return kind


def unit_by_code(code):
    """Return the Unit of a registered unit code, made from the export if needed."""
    return _units_for({code}).get(code)


def _units_for(codes):
    """Return the Unit row of each code, made from the export where missing.

    Jobs of several utilities may make the same unit at once, so a row made
    meanwhile by another transaction is taken, not inserted again.
    """
    codes = list(set(codes))
    if not codes:
        return {}
    known = {
        unit.unit_code
        for unit in Unit.select(Unit.unit_code).where(Unit.unit_code.in_(codes))
    }
    fresh = [
        {
            "unit_code": row.unit_code,
            "location": row.location,
            "usage": row.usage,
            "building_area": row.building_area,
            "inner_area": row.inner_area,
            "certificate_no": row.certificate_no,
            "created_at": utcnow(),
            "updated_at": utcnow(),
        }
        for row in RegistryUnit.select().where(
            RegistryUnit.unit_code.in_([c for c in codes if c not in known])
        )
    ]
    for start in range(0, len(fresh), BATCH):
        Unit.insert_many(fresh[start : start + BATCH]).on_conflict_ignore().execute()
    return {
        unit.unit_code: unit for unit in Unit.select().where(Unit.unit_code.in_(codes))
    }


def _queue_review(utility, account, result, link):
    """Open or refresh the account's review item with the engine's candidates."""
    candidates = [
        {
            "unit_code": c.unit_code,
            "score": round(c.score, 3),
            "reasons": list(c.reasons),
            "location": c.location,
        }
        for c in result.candidates
    ]
    item = ReconciliationItem.get_or_none(
        (ReconciliationItem.utility == utility)
        & (ReconciliationItem.account_no == account.account_no)
        & (ReconciliationItem.source == "roster")
        & (ReconciliationItem.status == "open")
    )
    if item is None:
        item = ReconciliationItem(
            utility=utility, account_no=account.account_no, source="roster"
        )
    item.reasons = list(result.reasons)
    item.candidates = candidates
    item.holder_name = account.holder_name or None
    item.holder_id_numbers = list(account.holder_ids)
    item.account_address = account.address or None
    item.save()


def entries_of(job, match_result=None):
    query = RosterEntry.select().where(RosterEntry.job == job)
    if match_result is not None:
        query = query.where(RosterEntry.match_result == match_result)
    return query.order_by(RosterEntry.line)

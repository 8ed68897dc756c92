"""Roster linkage in the service: the registry's unit export, uploads, jobs.

A utility uploads its roster (Annex 1 CSV). The upload is checked for its
encoding and columns at once, sealed to disk, and linked in the background
against the registry's units: the imported export plus the units of
registration businesses. The results are stored per account, each account's
link is kept in `account_link` (where the main flow finds a unit's
accounts), and accounts in doubt go to the utility's reconciliation queue.
"""

import logging
from datetime import timedelta
from pathlib import Path

from flask import current_app

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
)
from models.base import is_storable_id, utcnow
from models.db import transaction
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


def upload_dir():
    path = Path(current_app.config["VAR_DIR"]) / "rosters"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sealed_path(job_id):
    return upload_dir() / f"roster-{job_id}.sealed"


def _associated(job_id):
    return f"roster_job.{job_id}".encode()


def accept_upload(utility, filename, data, uploaded_by):
    """Check an uploaded roster and queue it; return the job.

    NOTE: the whole upload is held in memory, up to ROSTER_MAX_BYTES.

    The encoding and the header are checked now, so that a file the engine
    cannot read is rejected with the reason before anything is stored. The
    rows are read in the job, which reports each bad row with its line.
    """
    if not data.strip():
        raise Invalid(
            "roster_empty",
            f"名册文件 {filename} 是空的，请上传带表头的 CSV。",
            errors={"body": ["empty"]},
        )
    try:
        parsed = records.read_roster_bytes(data, filename)
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
        )
        _sealed_path(job.id).write_bytes(
            data_keys.seal_bytes(data, _associated(job.id))
        )
    log.info(
        "roster accepted job=%s utility=%s rows=%d encoding=%s",
        job.id,
        utility.code,
        parsed.rows_read,
        parsed.encoding,
    )
    return job


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
    """Return queued jobs old enough that their task was probably lost."""
    # NOTE: a job whose worker died while it ran stays "running"; nothing
    # re-queues it yet, so the utility must upload the roster again.
    horizon = utcnow() - timedelta(seconds=min_age_seconds)
    query = RosterJob.select(RosterJob.id).where(
        (RosterJob.status == "queued") & (RosterJob.created_at <= horizon)
    )
    return [job.id for job in query]


def run_job(job_id):
    """Link a queued roster and store its results; a job runs once."""
    won = (
        RosterJob.update(status="running", started_at=utcnow())
        .where((RosterJob.id == job_id) & (RosterJob.status == "queued"))
        .execute()
    )
    if not won:
        return
    job = RosterJob.get_by_id(job_id)
    try:
        _run(job)
    except Exception as error:
        log.exception("roster job failed job=%s", job.id)
        RosterJob.update(
            status="failed", error=str(error)[:500], finished_at=utcnow()
        ).where(RosterJob.id == job.id).execute()
        return
    finally:
        _sealed_path(job.id).unlink(missing_ok=True)


def _run(job):
    data = data_keys.open_bytes(_sealed_path(job.id).read_bytes(), _associated(job.id))
    parsed = records.read_roster_bytes(data, job.filename)
    accounts = [a for a in parsed.records if a.service_org == job.utility.service_org]
    problems = [
        {"line": p.line, "reason": p.reason, "dropped": p.dropped}
        for p in parsed.problems
    ]
    for account in parsed.records:
        if account.service_org != job.utility.service_org:
            problems.append(
                {
                    "line": account.line,
                    "reason": f"服务机构名称 {account.service_org!r} is not the "
                    f"uploader's ({job.utility.service_org})",
                    "dropped": True,
                }
            )
    RosterJob.update(rows_read=parsed.rows_read, problems=problems).where(
        RosterJob.id == job.id
    ).execute()

    def progress(done, total):
        RosterJob.update(rows_done=done).where(RosterJob.id == job.id).execute()

    results = engine.link(engine_units(), accounts, progress=progress)
    changes = _store(job, accounts, results)
    summary = engine.summarise(results, parsed.rows_read, len(parsed.bad_rows))
    RosterJob.update(
        status="done",
        rows_done=len(accounts),
        linked=summary.linked,
        for_review=summary.for_review,
        unmatched=summary.unmatched,
        pairs_compared=summary.pairs_compared,
        changes=changes,
        finished_at=utcnow(),
    ).where(RosterJob.id == job.id).execute()
    log.info(
        "roster job done job=%s linked=%d review=%d unmatched=%d",
        job.id,
        summary.linked,
        summary.for_review,
        summary.unmatched,
    )


def _store(job, accounts, results):
    """Write the results, the accounts' links and the review items; return changes.

    Accounts already stored are updated in place under the same key, and
    none is deleted, because cases refer to them. Each chunk of accounts is
    written in one transaction with its results, so that other writers wait
    at most one chunk on SQLite. A job that fails part-way can be uploaded
    again, and the accounts it had written are then updated in place.
    """
    utility = job.utility
    changes = dict.fromkeys(
        ("new", "linked", "moved", "unchanged", "kept_by_hand", "now_in_doubt"), 0
    )
    existing = {
        link.account_no: link
        for link in AccountLink.select().where(AccountLink.utility == utility)
    }
    pairs = list(zip(accounts, results, strict=True))
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        with transaction():
            RosterEntry.insert_many(
                [_entry_row(job, account, result) for account, result in chunk]
            ).execute()
            units = _units_for({r.unit_code for _, r in chunk if r.unit_code})
            for account, result in chunk:
                link = existing.get(account.account_no)
                changes[_apply(utility, account, result, link, units)] += 1
    uploaded = {account.account_no for account in accounts}
    changes["not_in_upload"] = sum(
        1
        for number, link in existing.items()
        if number not in uploaded and link.source == "roster"
    )
    return changes


def _entry_row(job, account, result):
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

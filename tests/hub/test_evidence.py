"""The evidence log: entries for each step, one chain, and tampering found."""

import base64
import copy
import hashlib
import json
import os
import random
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from demo import scenarios
from models import EvidenceEntry, EvidenceHead, Transfer
from models.db import database, locked, transaction
from services import evidence, evidence_check
from services.evidence_cli import evidence_command
from tests.hub.flows import citizen_request, drive_to_submission, signed_call

ROOT = Path(__file__).resolve().parents[2]
CHECKER = ROOT / "services" / "evidence_check.py"


@pytest.fixture(scope="module")
def finished_case(stack):
    """A case paid, submitted, pushed and completed; return (client, home, case id)."""
    from demo.client import HubClient
    from tests.hub.conftest import Homes

    client = HubClient(
        stack.hub_url,
        stack.peers.idp_url,
        stack.peers.wechatpay_url,
        stack.registry_secret,
    )
    with stack.app.app_context(), database.connection_context():
        home = Homes(stack, stack.app).make(accounts=[("water", {"arrears_fen": 1200})])
    case_id = drive_to_submission(client, home)
    transfer_id = client.call("GET", f"/cases/{case_id}")["transfers"][0]["transfer_id"]
    payment = client.call(
        "POST", f"/cases/{case_id}/transfers/{transfer_id}/payments", {}
    )
    client.pay_in_sandbox(payment["code_url"])
    assert client.wait_for_payment(payment["payment_id"])["status"] == "paid"
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    progress = client.wait_until_final(case_id)
    assert progress["transfers"][0]["status"] == "completed"
    return client, home, case_id


def test_each_step_recorded(app, finished_case):
    _, _, case_id = finished_case

    kinds = [entry["kind"] for entry in evidence.case_entries(case_id)]

    assert kinds[:3] == [
        evidence.CONFIRMATION,
        evidence.AGREEMENT,
        evidence.PAYMENT,
    ]
    # The utility may report before the push's response is recorded.
    assert kinds[3:].count(evidence.PUSH) == 1
    assert kinds[3:].count(evidence.FEEDBACK) >= 1
    reports = [
        json.loads(entry["detail"])
        for entry in evidence.case_entries(case_id)
        if entry["kind"] == evidence.FEEDBACK
    ]
    assert reports[-1]["status"] == "completed"
    assert reports[-1]["utility"] == "water"


def test_entries_hold_no_personal_data(app, finished_case):
    _, home, case_id = finished_case

    text = json.dumps(evidence.case_entries(case_id), ensure_ascii=False)

    account_no = home.accounts[0].account_no
    for secret in (
        home.buyer.name,
        home.buyer.id_number,
        home.sellers[0].name,
        home.sellers[0].id_number,
        account_no,
        home.location,
    ):
        assert secret not in text
    assert f"{'*' * (len(account_no) - 4)}{account_no[-4:]}" in text


def test_whole_log_and_case_verify(app, finished_case):
    _, _, case_id = finished_case

    assert evidence.verify_log() >= 5
    assert evidence.verify_case(case_id) == len(evidence.case_entries(case_id))


def test_owner_fetches_case_file(finished_case, stack, homes):
    client, _, case_id = finished_case

    document = client.call("GET", f"/cases/{case_id}/evidence")

    assert document["case_id"] == case_id
    assert evidence_check.check_case_file(document).endswith("entries verified")
    stranger = type(client)(
        stack.hub_url, stack.peers.idp_url, stack.peers.wechatpay_url, None
    )
    stranger.login(homes.person())
    denied = citizen_request(stranger, "GET", f"/cases/{case_id}/evidence")
    assert denied.status_code == 404
    assert denied.json()["code"] == "case_not_found"


def write_case_file(tmp_path, document):
    path = tmp_path / "case.json"
    path.write_text(json.dumps(document, ensure_ascii=False), "utf-8")
    return path


def run_checker(path):
    return subprocess.run(
        [sys.executable, str(CHECKER), str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
        env={"PATH": os.environ.get("PATH", "")},
    )


def test_standalone_checker_accepts_file(app, finished_case, tmp_path):
    _, _, case_id = finished_case
    path = write_case_file(tmp_path, evidence.case_file(case_id))

    result = run_checker(path)
    cli = CliRunner().invoke(evidence_command, ["check", str(path)])

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK: case {case_id}:")
    assert cli.exit_code == 0, cli.output
    assert "entries verified" in cli.output


def tampered_files(document):
    """Yield (name, altered document, seq the checker must name)."""
    entries = document["entries"]
    second = entries[1]["seq"]

    altered = copy.deepcopy(document)
    detail = json.loads(altered["entries"][1]["detail"])
    detail["utility"] = "gas"
    altered["entries"][1]["detail"] = evidence_check.canonical(detail).decode()
    yield "payload", altered, second

    altered = copy.deepcopy(document)
    del altered["entries"][1]
    yield "deleted", altered, entries[2]["seq"]

    altered = copy.deepcopy(document)
    altered["entries"][1], altered["entries"][2] = (
        altered["entries"][2],
        altered["entries"][1],
    )
    yield "reordered", altered, entries[2]["seq"]

    altered = copy.deepcopy(document)
    altered["entries"][1]["signature"] = foreign_signature(altered["entries"][1])
    yield "signature", altered, second

    altered = copy.deepcopy(document)
    del altered["entries"][-1]
    yield "truncated", altered, entries[-2]["seq"]


def foreign_signature(entry):
    """Sign the entry's bytes with a key the platform never had."""
    signature = Ed25519PrivateKey.generate().sign(evidence_check.signed_bytes(entry))
    return base64.b64encode(signature).decode()


def test_checker_points_at_tampering(app, finished_case, tmp_path):
    _, _, case_id = finished_case
    document = evidence.case_file(case_id)
    assert len(document["entries"]) >= 4

    for name, altered, seq in tampered_files(document):
        with pytest.raises(evidence_check.Broken) as broken:
            evidence_check.check_case_file(altered)
        assert broken.value.seq == seq, (name, str(broken.value))
        path = write_case_file(tmp_path, altered)
        result = run_checker(path)
        assert result.returncode == 1, name
        assert result.stdout.startswith(f"BROKEN: entry seq={seq}:"), result.stdout


def append_test_entries(count=5):
    """Append consecutive entries of a case id no real case has; return them."""
    case_id = random.randrange(1_500_000_000, 1_900_000_000)
    entries = []
    with transaction():
        for number in range(count):
            entries.append(
                evidence.append(
                    evidence.FEEDBACK,
                    case_id,
                    number,
                    {"number": number},
                    {"status": "completed", "number": number},
                )
            )
    return case_id, entries


def broken_inside(change):
    """Apply `change` in a transaction, check the log and the case, roll back.

    Returns the Broken exceptions of the whole log and of the case.
    """
    found = []
    with database.atomic() as txn:
        case_id = change()
        for check in (evidence.verify_log, lambda: evidence.verify_case(case_id)):
            with pytest.raises(evidence_check.Broken) as broken:
                check()
            found.append(broken.value)
        txn.rollback()
    return found


def test_stored_tampering_found(app):
    case_id, entries = append_test_entries()
    third = entries[2]["seq"]

    def alter_payload():
        EvidenceEntry.update(payload_digest="0" * 64).where(
            EvidenceEntry.seq == third
        ).execute()
        return case_id

    def alter_and_rehash():
        row = EvidenceEntry.get(EvidenceEntry.seq == third)
        entry = evidence.entry_dict(row) | {"detail": '{"status":"returned"}'}
        rehashed = hashlib.sha256(evidence_check.signed_bytes(entry)).hexdigest()
        EvidenceEntry.update(detail=entry["detail"], entry_hash=rehashed).where(
            EvidenceEntry.seq == third
        ).execute()
        return case_id

    def wrong_signature():
        row = EvidenceEntry.get(EvidenceEntry.seq == third)
        EvidenceEntry.update(
            signature=foreign_signature(evidence.entry_dict(row))
        ).where(EvidenceEntry.seq == third).execute()
        return case_id

    for change, problem in (
        (alter_payload, "entry_hash does not match"),
        (alter_and_rehash, "signature does not verify"),
        (wrong_signature, "signature does not verify"),
    ):
        whole, case = broken_inside(change)
        assert whole.seq == third, (change.__name__, str(whole))
        assert problem in whole.problem
        assert case.seq == third, (change.__name__, str(case))
    assert evidence.verify_case(case_id) == 5


def test_stored_deletion_and_reorder_found(app):
    case_id, entries = append_test_entries()
    second, third = entries[1]["seq"], entries[2]["seq"]

    def delete():
        EvidenceEntry.delete().where(EvidenceEntry.seq == second).execute()
        return case_id

    def swap():
        EvidenceEntry.update(seq=-1).where(EvidenceEntry.seq == second).execute()
        EvidenceEntry.update(seq=second).where(EvidenceEntry.seq == third).execute()
        EvidenceEntry.update(seq=third).where(EvidenceEntry.seq == -1).execute()
        return case_id

    whole, case = broken_inside(delete)
    assert whole.seq == third
    assert "missing" in whole.problem
    assert case.seq == third

    whole, case = broken_inside(swap)
    assert whole.seq == second
    assert case.seq == second
    assert evidence.verify_case(case_id) == 5


def test_cut_head_found(app):
    append_test_entries(2)

    def cut():
        # Locked, so that no writer moves the head before the check.
        head = locked(EvidenceHead.select().where(EvidenceHead.id == 1)).get()
        EvidenceEntry.delete().where(EvidenceEntry.seq == head.seq).execute()
        return None

    with database.atomic() as txn:
        cut()
        with pytest.raises(evidence_check.Broken) as broken:
            evidence.verify_log()
        txn.rollback()
    assert "head names seq" in broken.value.problem


def test_append_needs_transaction(app):
    with pytest.raises(RuntimeError, match="inside the change's transaction"):
        evidence.append(evidence.FEEDBACK, None, None, {}, {})


def test_concurrent_writers_one_chain(stack, app):
    writers, per_writer = 6, 15
    start = threading.Barrier(writers)
    errors = []
    case_id = random.randrange(1_500_000_000, 1_900_000_000)
    before = EvidenceHead.get_by_id(1).seq

    def write(number):
        with stack.app.app_context():
            database.connect(reuse_if_open=True)
            try:
                start.wait()
                for item in range(per_writer):
                    with transaction():
                        evidence.append(
                            evidence.FEEDBACK,
                            case_id,
                            None,
                            {"writer": number, "item": item},
                            {"writer": number},
                        )
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)
            finally:
                database.close()

    threads = [threading.Thread(target=write, args=(n,)) for n in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)

    assert errors == []
    assert EvidenceHead.get_by_id(1).seq >= before + writers * per_writer
    assert evidence.verify_case(case_id) == writers * per_writer
    assert evidence.verify_log() >= before + writers * per_writer


def test_cli_verify_and_export(stack, finished_case, tmp_path):
    _, _, case_id = finished_case
    env = {
        **os.environ,
        "DATABASE_URL": stack.app.config["DATABASE_URL"],
        "LIANBAN_VAR_DIR": stack.app.config["VAR_DIR"],
    }
    lianban = [str(Path(sys.executable).parent / "lianban")]
    out = tmp_path / "export.json"

    verify = subprocess.run(
        [*lianban, "evidence", "verify", "--case", str(case_id)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )
    export = subprocess.run(
        [*lianban, "evidence", "export", "--case", str(case_id), "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
    )

    assert verify.returncode == 0, verify.stderr
    assert f"entries of case {case_id} verified" in verify.stdout
    assert export.returncode == 0, export.stderr
    assert run_checker(out).returncode == 0


def collected_tv_transfer(stack, client, homes):
    """Register a cable TV transfer and collect it; return the Transfer."""
    home = homes.make(accounts=[("tv", {})])
    case_id = drive_to_submission(client, home)
    client.call("POST", f"/cases/{case_id}/submission", {})
    client.put_business(home.business_no, scenarios.business_payload(home, "completed"))
    assert signed_call(stack, "tv", "GET", "/partner/exports").status_code == 200
    return Transfer.get(Transfer.case == case_id)


def feedback_statuses(case_id):
    return [
        json.loads(entry["detail"])["status"]
        for entry in evidence.case_entries(case_id)
        if entry["kind"] == evidence.FEEDBACK
    ]


def batch_item(transfer, status, return_reason=None):
    body = {
        "transfer_id": str(transfer.id),
        "account_no": transfer.account_no,
        "status": status,
    }
    if return_reason:
        body["return_reason"] = return_reason
    return body


def test_batch_feedback_recorded_in_order(stack, client, homes):
    first = collected_tv_transfer(stack, client, homes)
    second = collected_tv_transfer(stack, client, homes)
    items = [
        batch_item(first, "办理中"),
        batch_item(second, "退件", "用户地址与登记不一致"),
        batch_item(first, "办结"),
    ]

    answer = signed_call(
        stack, "tv", "POST", "/partner/feedback/batch", {"items": items}
    )

    assert answer.status_code == 200, answer.text
    assert feedback_statuses(first.case_id) == ["in_progress", "completed"]
    assert feedback_statuses(second.case_id) == ["returned"]
    [returned] = [
        json.loads(e["detail"])
        for e in evidence.case_entries(second.case_id)
        if e["kind"] == evidence.FEEDBACK
    ]
    reason_digest = hashlib.sha256("用户地址与登记不一致".encode()).hexdigest()
    assert returned["return_reason_digest"] == reason_digest
    assert "用户地址" not in json.dumps(evidence.case_entries(second.case_id))


def test_rejected_batch_leaves_no_entry(stack, client, homes):
    transfer = collected_tv_transfer(stack, client, homes)
    before = EvidenceHead.get_by_id(1).seq
    items = [
        batch_item(transfer, "办结"),
        {**batch_item(transfer, "办理中"), "transfer_id": "2000000000"},
    ]

    answer = signed_call(
        stack, "tv", "POST", "/partner/feedback/batch", {"items": items}
    )

    assert answer.status_code == 422, answer.text
    assert feedback_statuses(transfer.case_id) == []
    assert evidence.verify_log() >= before

"""The engine and the `lianban link` command on a small generated data set.

tests/linkage/data/generated was written by the data generator that made
the development set, with other communities:

    gen_linkage.py --seed 11 --units 300 --skip 70 --take 6
"""

import csv
from pathlib import Path

import pytest
from click.testing import CliRunner

from linkage import engine
from linkage.cli import RESULT_HEADERS
from linkage.cli import link as link_command
from linkage.engine import LINKED, link
from linkage.records import read_roster, read_units

DATA = Path(__file__).parent / "data" / "generated"


@pytest.fixture(scope="module")
def truth():
    with open(DATA / "truth.csv", encoding="utf-8-sig", newline="") as file:
        return {row["用户号"]: row["不动产单元代码"] for row in csv.DictReader(file)}


@pytest.fixture(scope="module")
def results():
    units = read_units(DATA / "units.csv")
    roster = read_roster(DATA / "roster.csv")
    return link(units.records, roster.records)


def test_generated_precision(results, truth):
    linked = [r for r in results if r.match_result == LINKED]
    right = sum(1 for r in linked if truth[r.account_no] == r.unit_code)

    assert right / len(linked) >= 0.998


def test_generated_recall(results, truth):
    linkable = sum(1 for code in truth.values() if code)
    right = sum(
        1
        for r in results
        if r.match_result == LINKED and truth[r.account_no] == r.unit_code
    )

    assert right / linkable >= 0.95


def test_generated_not_registered_never_linked(results, truth):
    wrong = [
        r.account_no
        for r in results
        if r.match_result == LINKED and not truth[r.account_no]
    ]

    assert wrong == []


def test_generated_pairs_compared_stay_small(results):
    assert results.pairs_compared < 5 * len(results)


def test_generated_split_same_results(results, monkeypatch):
    monkeypatch.setattr(engine, "PROGRESS_STEP", 50)
    monkeypatch.setattr(engine, "MIN_ACCOUNTS_TO_SPLIT", 2)
    monkeypatch.setattr(engine, "can_fork", lambda: True)
    units = read_units(DATA / "units.csv")
    roster = read_roster(DATA / "roster.csv")

    split = link(units.records, roster.records)

    assert split == results
    assert split.pairs_compared == results.pairs_compared


def test_link_command_writes_annex_results(tmp_path, truth):
    out = tmp_path / "results.csv"
    review = tmp_path / "review.csv"

    outcome = CliRunner().invoke(
        link_command,
        [
            "--units",
            str(DATA / "units.csv"),
            "--roster",
            str(DATA / "roster.csv"),
            "--out",
            str(out),
            "--review",
            str(review),
        ],
    )

    assert outcome.exit_code == 0, outcome.output
    assert "linking: 100%" in outcome.output
    assert "pairs compared" in outcome.output
    with open(out, encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file))
    assert tuple(rows[0]) == RESULT_HEADERS
    assert len(rows) - 1 == len(truth)
    assert {row[5] for row in rows[1:]} == {"一致", "待核对", "未匹配"}
    with open(review, encoding="utf-8-sig", newline="") as file:
        review_rows = list(csv.DictReader(file))
    assert review_rows
    assert all(row["比对结果"] == "待核对" for row in review_rows)


def test_link_command_reports_bad_rows(tmp_path):
    roster = tmp_path / "roster.csv"
    lines = (DATA / "roster.csv").read_text(encoding="utf-8").splitlines()[:3]
    lines.append("济南水务集团有限公司,,王芳,,燕子山小区3-2-601,,,")
    roster.write_text("\n".join(lines) + "\n", encoding="gbk")

    outcome = CliRunner().invoke(
        link_command,
        [
            "--units",
            str(DATA / "units.csv"),
            "--roster",
            str(roster),
            "--out",
            str(tmp_path / "results.csv"),
        ],
    )

    assert outcome.exit_code == 0, outcome.output
    assert "line 4: missing account number" in outcome.output
    assert "bad rows 1" in outcome.output
    assert "(GBK)" in outcome.output


def test_link_command_rejects_utf16(tmp_path):
    roster = tmp_path / "roster-utf16.csv"
    roster.write_bytes(
        (DATA / "roster.csv").read_text(encoding="utf-8").encode("utf-16")
    )

    outcome = CliRunner().invoke(
        link_command,
        [
            "--units",
            str(DATA / "units.csv"),
            "--roster",
            str(roster),
            "--out",
            str(tmp_path / "results.csv"),
        ],
    )

    assert outcome.exit_code == 1
    assert "roster-utf16.csv" in outcome.output
    assert "UTF-16" in outcome.output

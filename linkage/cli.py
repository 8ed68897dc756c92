"""The `lianban link` command: link a utility roster to a registry export."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click

from linkage import engine
from linkage.engine import REVIEW, LinkResults, summarise
from linkage.records import ReadResult, RecordsError, read_roster, read_units

RESULT_HEADERS = (
    "服务机构名称",
    "用户编号",
    "不动产单元代码",
    "不动产权证号",
    "坐落",
    "比对结果",
)
REVIEW_HEADERS = (
    "服务机构名称",
    "用户编号",
    "比对结果",
    "原因",
    "候选序号",
    "候选不动产单元代码",
    "候选坐落",
    "得分",
    "依据",
)
# Problems printed in full; the rest are counted.
SHOWN_PROBLEMS = 50


@click.command("link")
@click.option(
    "--units",
    "units_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Registry export (CSV: 不动产单元代码, 坐落, owners ...).",
)
@click.option(
    "--roster",
    "roster_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Utility roster (CSV with the Annex 1 headers).",
)
@click.option(
    "--out",
    "out_path",
    required=True,
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Results CSV to write, one row per account (UTF-8 with BOM).",
)
@click.option(
    "--review",
    "review_path",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Also write the candidates of each 待核对 account to this CSV.",
)
def link(units_path, roster_path, out_path, review_path):
    """Link each roster account to a unit code and write the Annex 1 results.

    比对结果 is 一致 for an automatic link, 待核对 where a person must decide
    and 未匹配 where no unit comes close.
    """
    units = _read(read_units, units_path)
    roster = _read(read_roster, roster_path)
    _echo_problems(units)
    _echo_problems(roster)

    results = _link_with_progress(units, roster)
    write_results(out_path, results)
    if review_path:
        write_review(review_path, results)

    summary = summarise(results, roster.rows_read, len(roster.bad_rows))
    click.echo(
        f"units read {len(units.records)} ({units.encoding}), "
        f"roster rows read {summary.rows_read} ({roster.encoding}), "
        f"bad rows {summary.bad_rows}"
    )
    click.echo(
        f"linked {summary.linked}, for review {summary.for_review}, "
        f"unmatched {summary.unmatched}, pairs compared {summary.pairs_compared}"
    )
    click.echo(f"results written to {out_path}")


def _read(reader, path: Path) -> ReadResult:
    try:
        return reader(path)
    except RecordsError as error:
        raise click.ClickException(str(error)) from None


def _echo_problems(read: ReadResult) -> None:
    for problem in read.problems[:SHOWN_PROBLEMS]:
        click.echo(str(problem), err=True)
    hidden = len(read.problems) - SHOWN_PROBLEMS
    if hidden > 0:
        click.echo(f"{read.path}: {hidden} more problems not shown", err=True)


def _link_with_progress(units: ReadResult, roster: ReadResult) -> LinkResults:
    """Run the engine with a progress bar on a terminal, or percent lines."""
    total = len(roster.records)
    if sys.stderr.isatty():
        with click.progressbar(length=total, label="linking", file=sys.stderr) as bar:
            return engine.link(
                units.records,
                roster.records,
                progress=lambda done, _: bar.update(done - bar.pos),
            )

    last_printed = -1

    def report(done: int, total: int) -> None:
        # One line per 10 %, so a log file gets about ten lines per run.
        nonlocal last_printed
        percent = done * 100 // total
        if percent // 10 > last_printed // 10:
            click.echo(f"linking: {percent}% ({done}/{total})", err=True)
            last_printed = percent

    return engine.link(units.records, roster.records, progress=report)


def write_results(path: Path, results: LinkResults) -> None:
    """Write one Annex 1 return row per account, linked or not."""
    with open(path, "w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(RESULT_HEADERS)
        for result in results:
            writer.writerow(
                (
                    result.service_org,
                    result.account_no,
                    result.unit_code or "",
                    result.certificate_no,
                    result.location,
                    result.match_result,
                )
            )


def write_review(path: Path, results: LinkResults) -> None:
    """Write one row per candidate of each account left for review."""
    with open(path, "w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(REVIEW_HEADERS)
        for result in results:
            if result.match_result != REVIEW:
                continue
            reason = "; ".join(result.reasons)
            for rank, candidate in enumerate(result.candidates, start=1):
                writer.writerow(
                    (
                        result.service_org,
                        result.account_no,
                        result.match_result,
                        reason,
                        rank,
                        candidate.unit_code,
                        candidate.location,
                        f"{candidate.score:g}",
                        "; ".join(candidate.reasons),
                    )
                )

"""Compare Lianban's roster linkage with splink and recordlinkage on one data set.

    .venv/bin/python bench/linkage.py --units UNITS.csv --roster ROSTER.csv \\
        --truth TRUTH.csv [--repeat 3] [--doc docs/benchmarks.md]

The three linkers read the same registry export and roster. splink (DuckDB
backend) and recordlinkage get the same features, parsed once with the
project's address parser and ID, name and certificate normalisers. Lianban's
engine takes the records as read and does its own parsing. Each linker runs
in a fresh subprocess, so the peak resident memory it reports is its own.

splink and recordlinkage give each account its best candidate unit. The link
is automatic (比对结果 一致) only when that candidate's match probability is at
least --cutoff and no other candidate of the account reaches it. Lianban's
engine decides by its own rules. Each linker's results are written as a
roster result CSV and scored against the true links. When the reference
scorer named by --scorer exists, it is run on each CSV, and its precision
and recall must agree with this script's.
"""

# Heavy libraries (pandas, splink, recordlinkage) are imported inside the
# functions that use them, so that each worker process loads only its own.
import argparse
import csv
import importlib
import json
import logging
import math
import os
import pickle
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter, defaultdict
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from linkage.addresses import community_key, parse_address  # noqa: E402
from linkage.index import building_key, certificate_key  # noqa: E402
from linkage.normalise import name_key, normalise_ids  # noqa: E402
from linkage.records import RecordsError, read_roster, read_units  # noqa: E402

LINKERS = ("lianban", "splink", "recordlinkage")
ADDRESS_PARTS = ("district", "road", "community", "building", "stair", "room")
RESULT_COLUMNS = (
    "服务机构名称",
    "用户编号",
    "不动产单元代码",
    "不动产权证号",
    "坐落",
    "比对结果",
    # Not an Annex 1 column: the match weight of splink and recordlinkage, or
    # the engine's own score, of the unit given.
    "得分",
)
LINKED, FOR_REVIEW, NOT_MATCHED = "一致", "待核对", "未匹配"
# The precision an automatic link should reach. Only the hindsight figures,
# which read the true links, use it.
TARGET_PRECISION = 0.998
DOC_TITLE = "## Roster linkage against splink and recordlinkage"
DOC_START = "<!-- bench/linkage.py results: start -->"
DOC_END = "<!-- bench/linkage.py results: end -->"


# Shared features ----------------------------------------------------------


def address_features(text):
    """Return the six address parts splink and recordlinkage compare."""
    address = parse_address(text or "")
    road = None
    if address.road and address.road_no:
        road = address.road + address.road_no
    return {
        "district": address.district,
        "road": road,
        "community": community_key(address.community),
        "building": building_key(address),
        "stair": address.stair,
        "room": address.room,
    }


def id_list(numbers):
    """Return normalised ID numbers as a list, or None when there are none."""
    values = [holder_id.value for holder_id in normalise_ids(list(numbers))]
    return values or None


def name_list(names):
    keys = sorted({key for key in (name_key(name) for name in names) if key})
    return keys or None


def unit_features(index, unit):
    current = id_list(person.id_number for person in unit.owners)
    earlier = id_list(person.id_number for person in unit.previous_owners)
    return {
        "record_id": f"U{index}",
        **address_features(unit.location),
        "ids_current": current,
        "ids_earlier": earlier,
        "ids_all": ((current or []) + (earlier or [])) or None,
        "names_current": name_list(person.name for person in unit.owners),
        "names_earlier": name_list(p.name for p in unit.previous_owners),
        "certificate_no": certificate_key(unit.certificate_no),
        "area": unit.building_area,
    }


def account_features(index, account):
    """Return an account's features in the units' columns.

    The holder's ID numbers and the holder and owner names go in the current
    columns. The earlier columns stay empty, because a roster does not say
    which of its numbers belong to earlier holders.
    """
    ids = id_list(account.holder_ids)
    return {
        "record_id": f"A{index}",
        **address_features(account.address),
        "ids_current": ids,
        "ids_earlier": None,
        "ids_all": ids,
        "names_current": name_list([account.holder_name, account.owner_name]),
        "names_earlier": None,
        "certificate_no": certificate_key(account.certificate_no),
        "area": account.area,
    }


def fill_communities(unit_rows):
    """Give units the community that other units at the same road name.

    Most registry locations give the road and house number without the
    community, while many accounts give only the community. A road whose
    units name exactly one community lends that name to the rest.
    """
    named = defaultdict(set)
    for row in unit_rows:
        if row["road"] and row["community"]:
            named[(row["district"], row["road"])].add(row["community"])
    for row in unit_rows:
        communities = named.get((row["district"], row["road"]), ())
        if not row["community"] and len(communities) == 1:
            row["community"] = next(iter(communities))


def build_features(units, accounts):
    """Return the feature rows of units and accounts as two lists of dicts."""
    unit_rows = [unit_features(index, unit) for index, unit in enumerate(units)]
    fill_communities(unit_rows)
    account_rows = [
        account_features(index, account) for index, account in enumerate(accounts)
    ]
    return unit_rows, account_rows


# Choosing one unit per account --------------------------------------------


def match_weight(probability):
    """Return the match weight, log2 of the odds, of a match probability."""
    return math.log2(probability / (1 - probability))


def choose_units(candidates, cutoff):
    """Pick each account's best candidate from scored pairs.

    `candidates` is a DataFrame with account, unit and score columns. The
    score is a match weight, which unlike a probability does not round to 1.0
    for strong matches.

    Return {account index: (unit index, score, runner-up score, automatic)}.
    The link is automatic when the best score reaches `cutoff` and the
    runner-up's does not, because two units cannot both be near certain for
    one account.
    """
    ranked = candidates.sort_values(["account", "score"], ascending=[True, False])
    ranked["rank"] = ranked.groupby("account").cumcount()
    best = ranked[ranked["rank"] == 0].set_index("account")
    runner_up = ranked[ranked["rank"] == 1].set_index("account")["score"]
    best = best.join(runner_up.rename("runner_up"))
    best["runner_up"] = best["runner_up"].fillna(-math.inf)

    automatic = (best["score"] >= cutoff) & (best["runner_up"] < cutoff)
    return {
        int(account): (int(row.unit), float(row.score), float(row.runner_up), bool(ok))
        for account, row, ok in zip(
            best.index, best.itertuples(), automatic, strict=True
        )
    }


def split_record_ids(left, right):
    """Return account and unit positions from two Series of record ids."""
    left_is_account = left.str.startswith("A")
    accounts = left.where(left_is_account, right)
    units = right.where(left_is_account, left)
    return accounts.str[1:].astype(int), units.str[1:].astype(int)


# splink --------------------------------------------------------------------


def splink_comparisons():
    import splink.comparison_level_library as cll
    import splink.comparison_library as cl

    def overlap(column, label):
        both_current = f"list_has_any({column}_current_l, {column}_current_r)"
        either_earlier = (
            f"list_has_any({column}_current_l, {column}_earlier_r) "
            f"OR list_has_any({column}_earlier_l, {column}_current_r)"
        )
        return cl.CustomComparison(
            output_column_name=label,
            comparison_levels=[
                cll.CustomLevel(
                    f"{column}_current_l IS NULL OR {column}_current_r IS NULL"
                ).configure(is_null_level=True),
                cll.CustomLevel(both_current, "holder is a current owner"),
                cll.CustomLevel(either_earlier, "holder is an earlier owner"),
                cll.ElseLevel(),
            ],
        )

    return [
        *(cl.ExactMatch(part) for part in ADDRESS_PARTS),
        overlap("ids", "id_numbers"),
        overlap("names", "names"),
        cl.ExactMatch("certificate_no"),
        cl.CustomComparison(
            output_column_name="area",
            comparison_levels=[
                cll.NullLevel("area"),
                cll.AbsoluteDifferenceLevel("area", 0.05),
                cll.AbsoluteDifferenceLevel("area", 1.5),
                cll.ElseLevel(),
            ],
        ),
    ]


def link_with_splink(unit_rows, account_rows, cutoff):
    """Train a splink model on the two tables and score every blocked pair.

    The prior is one match per account among all units. u probabilities come
    from one million random pairs (splink's default). m probabilities come
    from two EM runs, one blocked on community, building and stair and one on
    the certificate number, so that every comparison is trained in at least
    one. Levels that no training pair shows keep splink's default m.

    Return the number of pairs compared, {account index: decision} and the
    seconds spent training.
    """
    import pandas as pd
    from splink import DuckDBAPI, Linker, SettingsCreator, block_on

    logging.getLogger("splink").setLevel(logging.WARNING)
    units, accounts = pd.DataFrame(unit_rows), pd.DataFrame(account_rows)
    settings = SettingsCreator(
        link_type="link_only",
        unique_id_column_name="record_id",
        probability_two_random_records_match=1 / len(units),
        blocking_rules_to_generate_predictions=[
            block_on("community", "building", "room"),
            block_on("road", "building", "room"),
            block_on("ids_all", arrays_to_explode=["ids_all"]),
            block_on("certificate_no"),
        ],
        comparisons=splink_comparisons(),
        retain_intermediate_calculation_columns=False,
        retain_matching_columns=False,
    )
    linker = Linker(
        [units, accounts],
        settings,
        db_api=DuckDBAPI(),
        input_table_aliases=["units", "accounts"],
    )
    started = time.perf_counter()
    linker.training.estimate_u_using_random_sampling(max_pairs=1e6, seed=1)
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("community", "building", "stair")
    )
    linker.training.estimate_parameters_using_expectation_maximisation(
        block_on("certificate_no")
    )
    training = time.perf_counter() - started

    pairs = linker.inference.predict().as_pandas_dataframe()
    account, unit = split_record_ids(pairs["record_id_l"], pairs["record_id_r"])
    candidates = pd.DataFrame(
        {"account": account, "unit": unit, "score": pairs["match_weight"]}
    )
    candidates = candidates.drop_duplicates(["account", "unit"])
    chosen = choose_units(candidates, match_weight(cutoff))
    return len(candidates), chosen, training


# recordlinkage -------------------------------------------------------------


def link_with_recordlinkage(unit_rows, account_rows, cutoff):
    """Block, compare and classify with recordlinkage's ECM classifier.

    ECM (unsupervised Fellegi-Sunter, fitted by EM) takes binary features
    only, so each field gives two: whether both sides agree, and whether
    they are consistent (agree, or one side is missing). Together they keep
    "missing" apart from "different".

    Return the number of pairs compared, {account index: decision} and the
    seconds spent fitting the classifier.
    """
    import pandas as pd
    import recordlinkage
    from recordlinkage.index import Block

    SharedIdBlock, Consistent, Overlap, AreaClose = recordlinkage_features()
    units = pd.DataFrame(unit_rows)
    accounts = pd.DataFrame(account_rows)

    indexer = recordlinkage.Index()
    indexer.add(Block(["community", "building", "room"]))
    indexer.add(Block(["road", "building", "room"]))
    indexer.add(Block("certificate_no"))
    indexer.add(SharedIdBlock())
    pairs = indexer.index(units, accounts)

    compare = recordlinkage.Compare()
    for part in (*ADDRESS_PARTS, "certificate_no"):
        compare.exact(part, part, missing_value=0, label=f"{part}_agrees")
        compare.add(Consistent(part, part, label=f"{part}_consistent"))
    for field in ("ids", "names"):
        current, earlier = f"{field}_current", f"{field}_earlier"
        compare.add(Overlap(current, current, label=f"{field}_current"))
        compare.add(Overlap(earlier, current, label=f"{field}_earlier"))
    compare.add(AreaClose("area", "area", label="area_close"))
    compare.add(Consistent("area", "area", label="area_consistent"))
    features = compare.compute(pairs, units, accounts)

    started = time.perf_counter()
    classifier = recordlinkage.ECMClassifier(binarize=None)
    classifier.fit(features)
    training = time.perf_counter() - started
    # The fitted model's log probabilities, as a match weight, keep apart the
    # strong matches whose probability prob() rounds to 1.0.
    model = classifier.classifier
    log_probabilities = model.predict_log_proba(features.to_numpy())
    match_column = list(model.classes_).index(1)
    weights = (
        log_probabilities[:, match_column] - log_probabilities[:, 1 - match_column]
    ) / math.log(2)

    candidates = pd.DataFrame(
        {
            "unit": pairs.get_level_values(0),
            "account": pairs.get_level_values(1),
            "score": weights,
        }
    )
    chosen = choose_units(candidates, match_weight(cutoff))
    return len(pairs), chosen, training


def recordlinkage_features():
    """Return the custom index and compare classes, defined once recordlinkage
    is imported."""
    import numpy as np
    import pandas as pd
    from recordlinkage.base import BaseCompareFeature, BaseIndexAlgorithm

    class SharedIdBlock(BaseIndexAlgorithm):
        """Index of the pairs whose unit and account share an ID number.

        On the unit side the number is a current or earlier owner's, and on
        the account side a holder's.
        """

        def _link_index(self, df_a, df_b):
            left = df_a["ids_all"].explode().dropna()
            right = df_b["ids_all"].explode().dropna()
            joined = pd.merge(
                pd.DataFrame({"id": left.to_numpy(), "a": left.index}),
                pd.DataFrame({"id": right.to_numpy(), "b": right.index}),
                on="id",
            ).drop_duplicates(["a", "b"])
            return pd.MultiIndex.from_arrays(
                [joined["a"].to_numpy(), joined["b"].to_numpy()],
                names=[df_a.index.name, df_b.index.name],
            )

    class Consistent(BaseCompareFeature):
        """Feature that is 1 unless both values are present and differ."""

        def _compute_vectorized(self, s_left, s_right):
            missing = s_left.isna().to_numpy() | s_right.isna().to_numpy()
            same = s_left.to_numpy() == s_right.to_numpy()
            return pd.Series((missing | same).astype(np.int8))

    class Overlap(BaseCompareFeature):
        """Feature that is 1 when two lists share an element."""

        def _compute_vectorized(self, s_left, s_right):
            shared = [
                int(bool(left) and bool(right) and not set(left).isdisjoint(right))
                for left, right in zip(s_left, s_right, strict=True)
            ]
            return pd.Series(np.array(shared, dtype=np.int8))

    class AreaClose(BaseCompareFeature):
        """Feature that is 1 when two floor areas differ by at most 1.5 m²."""

        def _compute_vectorized(self, s_left, s_right):
            difference = np.abs(s_left.to_numpy(float) - s_right.to_numpy(float))
            return pd.Series((difference <= 1.5).astype(np.int8))

    return SharedIdBlock, Consistent, Overlap, AreaClose


# Lianban's engine ------------------------------------------------------------


def link_with_lianban(units, accounts):
    """Run the engine and return the pairs compared and {account index: decision}."""
    from linkage.engine import LINKED as ENGINE_LINKED
    from linkage.engine import link

    results = link(units, accounts)
    decisions = {}
    for index, result in enumerate(results):
        if result.match_result == ENGINE_LINKED:
            decisions[index] = (result.unit_code, result.score, None, True)
        elif result.candidates:
            best = result.candidates[0]
            decisions[index] = (best.unit_code, best.score, None, False)
    return results.pairs_compared, decisions


# Worker process ----------------------------------------------------------------


# Modules each worker imports before its clock starts, so that import time
# (seconds, for scikit-learn) is not counted as linking time.
LIBRARIES = {
    "lianban": ("linkage.engine",),
    "splink": ("pandas", "splink", "splink.comparison_library"),
    "recordlinkage": ("pandas", "recordlinkage", "recordlinkage.index"),
}


def run_worker(args):
    """Run one linker, then write its decisions, timing and peak memory as JSON.

    Loading the input and importing libraries are not timed. The timed part
    is the linker's own work, from its feature preparation to one decision
    per account.
    """
    for module in LIBRARIES[args.worker]:
        importlib.import_module(module)

    if args.worker == "lianban":
        units = read_units(args.units).records
        accounts = read_roster(args.roster).records
        started = time.perf_counter()
        pairs, decisions = link_with_lianban(units, accounts)
        training = None
        seconds = time.perf_counter() - started
    else:
        with open(args.features, "rb") as file:
            features = pickle.load(file)
        linker = {
            "splink": link_with_splink,
            "recordlinkage": link_with_recordlinkage,
        }[args.worker]
        started = time.perf_counter()
        pairs, chosen, training = linker(
            features["units"], features["accounts"], args.cutoff
        )
        seconds = time.perf_counter() - started
        codes = features["unit_codes"]
        decisions = {
            account: (codes[unit], score, runner_up, automatic)
            for account, (unit, score, runner_up, automatic) in chosen.items()
        }

    # ru_maxrss is in KiB on Linux.
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = {
        "pairs": int(pairs),
        "seconds": seconds,
        "training": training,
        "peak_kib": peak_kib,
        "decisions": {str(account): list(d) for account, d in decisions.items()},
    }
    Path(args.worker_output).write_text(json.dumps(report), encoding="utf-8")


def run_linker(name, args, features_path, work_dir):
    """Run one linker in a fresh Python process and return its report."""
    output = work_dir / f"{name}.json"
    command = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        name,
        "--worker-output",
        str(output),
        "--features",
        str(features_path),
        "--units",
        str(args.units),
        "--roster",
        str(args.roster),
        "--cutoff",
        str(args.cutoff),
    ]
    completed = subprocess.run(command, check=False)
    if completed.returncode != 0:
        sys.exit(
            f"{name}: the worker process failed with exit code "
            f"{completed.returncode}; its error output is above"
        )
    report = json.loads(output.read_text(encoding="utf-8"))
    report["decisions"] = {int(k): v for k, v in report["decisions"].items()}
    return report


# Results and scores ------------------------------------------------------------


def write_results(path, units, accounts, decisions):
    """Write one roster result row per account, in the roster's order."""
    by_code = {unit.unit_code: unit for unit in units}
    with open(path, "w", encoding="utf-8", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(RESULT_COLUMNS)
        for index, account in enumerate(accounts):
            code, score, _, automatic = decisions.get(index, (None, 0.0, None, False))
            unit = by_code.get(code) if automatic else None
            if automatic:
                outcome = LINKED
            else:
                outcome = FOR_REVIEW if code else NOT_MATCHED
            writer.writerow(
                [
                    account.service_org,
                    account.account_no,
                    code or "",
                    unit.certificate_no if unit else "",
                    unit.location if unit else "",
                    outcome,
                    f"{score:.3f}",
                ]
            )


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as file:
        return list(csv.DictReader(file))


def score_results(results_path, truth):
    """Score automatic links as the reference scorer does.

    A row whose 比对结果 is 一致 is an automatic link. Precision is right links
    over all automatic links, and recall is right links over accounts whose
    home is in the registry export. Right and wrong links are also counted
    by holder kind and by address form.
    """
    links = {}
    for row in read_csv(results_path):
        account = (row.get("用户编号") or row.get("用户号") or "").strip()
        if (row.get("比对结果") or "").strip() == LINKED:
            links[account] = (row.get("不动产单元代码") or "").strip()

    counts = {"right": 0, "wrong": 0, "linkable": 0}
    groups = defaultdict(Counter)
    for account, row in truth.items():
        expected, got = row["不动产单元代码"], links.get(account)
        outcome = None
        if got is not None:
            outcome = "right" if got == expected else "wrong"
        for group in (("kind", row["holder_kind"]), ("form", row["address_form"])):
            groups[group]["accounts"] += 1
            groups[group]["linkable"] += bool(expected)
            if outcome:
                groups[group][outcome] += 1
        counts["linkable"] += bool(expected)
        if outcome:
            counts[outcome] += 1

    linked = counts["right"] + counts["wrong"]
    precision = counts["right"] / linked if linked else 0.0
    recall = counts["right"] / counts["linkable"] if counts["linkable"] else 0.0
    f1 = 2 * precision * recall / (precision + recall) if linked else 0.0
    return {
        "links": len(links),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "groups": groups,
    }


def check_with_scorer(scorer, results_path, truth_path, figures):
    """Run the reference scorer and exit if its precision or recall differ."""
    completed = subprocess.run(
        [sys.executable, str(scorer), str(results_path), str(truth_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = completed.stdout.strip().splitlines()
    match = re.search(r"precision ([\d.]+) recall ([\d.]+)", lines[-1] if lines else "")
    if completed.returncode != 0 or not match:
        sys.exit(
            f"the reference scorer failed on {results_path} "
            f"(exit code {completed.returncode}): {completed.stderr.strip()}"
        )
    theirs = (match.group(1), match.group(2))
    ours = (f"{figures['precision']:.4f}", f"{figures['recall']:.4f}")
    if theirs != ours:
        sys.exit(
            f"{results_path}: the reference scorer reports precision and recall "
            f"{theirs}, this script {ours}; the two scoring rules differ"
        )
    return theirs


def hindsight_cutoff(decisions, accounts, truth):
    """Find the lowest cutoff whose links reach TARGET_PRECISION against the
    true links.

    Return (cutoff, precision, recall), or None when no cutoff reaches it.
    A production run cannot do this, because it has no true links. The
    figure shows how far the fixed cutoff is from the best one.
    """
    import numpy as np

    scores, others, right = [], [], []
    for index, (code, score, runner_up, _) in decisions.items():
        scores.append(score)
        others.append(-math.inf if runner_up is None else runner_up)
        right.append(code == truth[accounts[index].account_no]["不动产单元代码"])
    scores, others, right = np.array(scores), np.array(others), np.array(right)
    linkable = sum(1 for row in truth.values() if row["不动产单元代码"])

    best = None
    for cutoff in np.unique(scores)[::-1]:
        linked = (scores >= cutoff) & (others < cutoff)
        count, correct = int(linked.sum()), int((linked & right).sum())
        if count and correct / count >= TARGET_PRECISION:
            best = (float(cutoff), correct / count, correct / linkable)
    return best


# Report ----------------------------------------------------------------------


def machine_line():
    """Describe the CPU, Python and library versions of this run."""
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("splink", "duckdb", "recordlinkage", "pandas", "scikit-learn")
    )
    return (
        f"{os.cpu_count()} cores of {model}, Python {platform.python_version()}, "
        f"{versions}"
    )


def figures_table(rows):
    """Return the main table as Markdown lines."""
    splink = rows["splink"]
    lines = [
        "| linker | pairs compared | seconds | seconds with parsing "
        "| peak memory | automatic links | precision | recall | F1 "
        "| speed vs splink | end to end vs splink | F1 vs splink |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for name, row in rows.items():
        lines.append(
            f"| {name} | {row['pairs']:,} | {row['seconds']:.1f} "
            f"| {row['end_to_end']:.1f} | {row['peak_kib'] / 1024:,.0f} MiB "
            f"| {row['links']:,} | {row['precision']:.4f} | {row['recall']:.4f} "
            f"| {row['f1']:.4f} | {splink['seconds'] / row['seconds']:.2f}× "
            f"| {splink['end_to_end'] / row['end_to_end']:.2f}× "
            f"| {row['f1'] - splink['f1']:+.4f} |"
        )
    return lines


def target_line(rows):
    """State whether the engine met the project's target against splink."""
    engine, splink = rows["lianban"], rows["splink"]
    speed = splink["seconds"] / engine["seconds"]
    end_to_end = splink["end_to_end"] / engine["end_to_end"]
    f1_gain = engine["f1"] - splink["f1"]
    met = speed >= 3 and f1_gain > 0
    return (
        f"Lianban's engine ran at {speed:.2f}× splink's speed, or "
        f"{end_to_end:.2f}× when splink's time includes the shared parsing, "
        f"and its F1 differs from splink's by {f1_gain:+.4f}. The project's "
        "target, at least 3× splink's speed at a higher F1, was "
        f"{'met' if met else 'not met'} on this run."
    )


def groups_table(rows, kind, title):
    """Return recall (and wrong links) by holder kind or address form."""
    names = sorted(
        {
            group
            for row in rows.values()
            for _, group in [key for key in row["groups"] if key[0] == kind]
        }
    )
    header = f"| {title} | accounts | " + " | ".join(rows) + " |"
    lines = [header, "|---|--:|" + "--:|" * len(rows)]
    for group in names:
        cells = []
        for row in rows.values():
            counts = row["groups"][(kind, group)]
            if counts["linkable"]:
                cell = f"{counts['right'] / counts['linkable']:.3f}"
            else:
                cell = "–"
            if counts["wrong"]:
                cell += f" ({counts['wrong']} wrong)"
            cells.append(cell)
        accounts = next(iter(rows.values()))["groups"][(kind, group)]["accounts"]
        lines.append(f"| {group} | {accounts:,} | " + " | ".join(cells) + " |")
    return lines


def hindsight_table(rows, cutoff):
    lines = [
        f"| linker | match weight for precision ≥ {TARGET_PRECISION} "
        f"| as probability | precision | recall | recall at {cutoff} |",
        "|---|--:|--:|--:|--:|--:|",
    ]
    for name, row in rows.items():
        if "hindsight" not in row:
            continue
        if row["hindsight"] is None:
            lines.append(f"| {name} | not reached | – | – | – | {row['recall']:.4f} |")
            continue
        weight, precision, recall = row["hindsight"]
        probability = 1 / (1 + 2**-weight)
        lines.append(
            f"| {name} | {weight:.2f} | {probability:.6f} | {precision:.4f} "
            f"| {recall:.4f} | {row['recall']:.4f} |"
        )
    return lines


def wrap(paragraph):
    """Wrap a Markdown paragraph at the page's usual width."""
    return textwrap.fill(paragraph, width=76, break_on_hyphens=False)


def markdown_report(rows, timings, args, counts):
    """Return the generated part of the benchmark page's linkage section."""
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    runs = "1 run" if args.repeat == 1 else f"{args.repeat} runs"
    ranges = ", ".join(
        f"{name} {row['runs'][0]:.1f} to {row['runs'][-1]:.1f} s"
        for name, row in rows.items()
    )
    details = (
        f"on {counts['units']:,} registry units and {counts['accounts']:,} "
        f"accounts. The load average at the end of the run was {load}. "
        f"Reading both files into records took {timings['reading']:.1f} s, "
        "and parsing the features that splink and recordlinkage share took "
        f"{timings['parsing']:.1f} s. Seconds are the median of {runs} "
        f"({ranges}) and leave both steps out. Lianban's engine "
        "parses addresses inside its own seconds, so the column with parsing "
        "adds the shared parsing to splink and recordlinkage only. Of their "
        f"seconds, splink spent {rows['splink']['training']:.1f} s training "
        "(u from random pairs, then two EM runs) and recordlinkage "
        f"{rows['recordlinkage']['training']:.1f} s fitting ECM. Peak "
        "memory is the maximum resident set of each linker's own process."
    )
    lines = [
        wrap(f"Measured on {time.strftime('%Y-%m-%d')} on {machine_line()}, with"),
        "",
        "```",
        shown_command(args),
        "```",
        "",
        wrap(details),
        "",
        *figures_table(rows),
        "",
        wrap(target_line(rows)),
        "",
        "Recall of automatic links by holder kind, with wrong links:",
        "",
        *groups_table(rows, "kind", "holder kind"),
        "",
        "Recall of automatic links by address form, with wrong links:",
        "",
        *groups_table(rows, "form", "address form"),
        "",
        wrap(
            "In hindsight, the lowest cutoff that keeps precision at "
            f"{TARGET_PRECISION} or above, read off the true links (a "
            "production run cannot do this):"
        ),
        "",
        *hindsight_table(rows, args.cutoff),
    ]
    return "\n".join(lines)


def check_doc(path):
    """Exit with a message unless `path` is a page with the generated block."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        sys.exit(f"--doc {path}: cannot be read ({error.strerror})")
    start, end = text.find(DOC_START), text.find(DOC_END)
    if start < 0 or end < start:
        sys.exit(
            f"--doc {path}: the markers {DOC_START} and {DOC_END} are missing; "
            f"add them under the heading {DOC_TITLE!r} and run again"
        )
    return text


def update_doc(path, report):
    """Replace the generated block of the benchmark page's linkage section."""
    text = check_doc(path)
    start, end = text.find(DOC_START), text.find(DOC_END)
    text = text[: start + len(DOC_START)] + "\n" + report + "\n" + text[end:]
    Path(path).write_text(text, encoding="utf-8")


def shown_command(args):
    """Return the command line of this run, with the data directory as DATA."""
    data = Path(args.truth).resolve().parent
    words = [".venv/bin/python bench/linkage.py"]
    for option in ("units", "roster", "truth"):
        path = Path(getattr(args, option)).resolve()
        as_written = f"DATA/{path.name}" if path.parent == data else str(path)
        words.append(f"--{option} {as_written}")
    words += [f"--cutoff {args.cutoff}", f"--repeat {args.repeat}"]
    if args.doc:
        words.append(f"--doc {args.doc}")

    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + len(word) + 1 > 72:
            lines.append("    " + word)
        else:
            lines[-1] += " " + word
    return " \\\n".join(lines)


# Command line ------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    dev_set = Path("/work/shared/data/linkage-dev")

    parser.add_argument(
        "--units",
        type=Path,
        default=dev_set / "units.csv",
        help="registry export CSV (default: %(default)s)",
    )
    parser.add_argument(
        "--roster",
        type=Path,
        default=dev_set / "roster.csv",
        help="utility roster CSV with the Annex 1 headers (default: %(default)s)",
    )
    parser.add_argument(
        "--truth",
        type=Path,
        default=dev_set / "truth.csv",
        help="CSV of true links with the columns 用户号, 不动产单元代码, "
        "address_form and holder_kind (default: %(default)s)",
    )
    parser.add_argument(
        "--scorer",
        type=Path,
        default=Path("/work/shared/tools/score_linkage.py"),
        help="reference scorer to check the scores against, skipped when the "
        "file does not exist (default: %(default)s)",
    )

    parser.add_argument(
        "--cutoff",
        type=float,
        default=0.999,
        help="match probability at or above which splink and recordlinkage "
        "link automatically (default: %(default)s)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of each linker, each in a fresh process. The median seconds "
        "and the highest peak memory are reported (default: %(default)s)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help="directory for each linker's result CSV (default: a new "
        "temporary directory)",
    )
    parser.add_argument(
        "--doc",
        type=Path,
        help="Markdown page whose generated block of the linkage section "
        "gets the new figures, such as docs/benchmarks.md",
    )

    # Set by the parent process when it starts a worker.
    parser.add_argument("--worker", choices=LINKERS, help=argparse.SUPPRESS)
    parser.add_argument("--worker-output", help=argparse.SUPPRESS)
    parser.add_argument("--features", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def write_features(path, units, accounts):
    """Parse the shared features into a pickle file and return the seconds
    the parsing took."""
    started = time.perf_counter()
    unit_rows, account_rows = build_features(units, accounts)
    seconds = time.perf_counter() - started

    features = {
        "units": unit_rows,
        "accounts": account_rows,
        "unit_codes": [unit.unit_code for unit in units],
    }
    with open(path, "wb") as file:
        pickle.dump(features, file)
    return seconds


def linker_row(name, reports, records, args, out, timings):
    """Combine one linker's runs, write and score its results, and return its
    row of figures."""
    units, accounts, truth = records
    report = reports[-1]
    report["runs"] = sorted(run["seconds"] for run in reports)
    report["seconds"] = statistics.median(report["runs"])
    report["peak_kib"] = max(run["peak_kib"] for run in reports)
    if report["training"] is not None:
        report["training"] = statistics.median(run["training"] for run in reports)

    results_path = out / f"{name}.csv"
    write_results(results_path, units, accounts, report["decisions"])
    figures = score_results(results_path, truth)
    if args.scorer.exists():
        precision, recall = check_with_scorer(
            args.scorer, results_path, args.truth, figures
        )
        print(
            f"{name}: the reference scorer agrees, precision {precision} "
            f"recall {recall}",
            file=sys.stderr,
        )

    parsing = 0.0 if name == "lianban" else timings["parsing"]
    row = {**report, **figures, "end_to_end": report["seconds"] + parsing}
    if name != "lianban":
        row["hindsight"] = hindsight_cutoff(report["decisions"], accounts, truth)
    return row


def main():
    args = parse_args()
    if args.repeat < 1:
        sys.exit(f"--repeat must be at least 1, not {args.repeat}")
    if not 0 < args.cutoff < 1:
        sys.exit(f"--cutoff must be a probability between 0 and 1, not {args.cutoff}")
    if args.worker:
        run_worker(args)
        return

    for option in ("units", "roster", "truth"):
        path = getattr(args, option)
        if not path.is_file():
            sys.exit(f"--{option} {path}: file not found")
    if args.doc:
        check_doc(args.doc)

    started = time.perf_counter()
    try:
        units = read_units(args.units).records
        accounts = read_roster(args.roster).records
    except RecordsError as error:
        sys.exit(str(error))
    truth = {row["用户号"]: row for row in read_csv(args.truth)}
    timings = {"reading": time.perf_counter() - started}

    out = args.out or Path(tempfile.mkdtemp(prefix="linkage-bench-"))
    out.mkdir(parents=True, exist_ok=True)
    features_path = out / "features.pickle"
    timings["parsing"] = write_features(features_path, units, accounts)

    # Rounds run the linkers in turn, so that a change in the machine's load
    # during the run falls on all of them.
    reports = defaultdict(list)
    for round_no in range(1, args.repeat + 1):
        for name in LINKERS:
            print(f"round {round_no}: running {name}", file=sys.stderr)
            reports[name].append(run_linker(name, args, features_path, out))

    features_path.unlink()

    records = (units, accounts, truth)
    rows = {
        name: linker_row(name, reports[name], records, args, out, timings)
        for name in LINKERS
    }

    counts = {"units": len(units), "accounts": len(accounts)}
    report = markdown_report(rows, timings, args, counts)
    if args.doc:
        update_doc(args.doc, report)
    print(report)
    print(f"\nresult CSVs: {out}", file=sys.stderr)
    if not args.scorer.exists():
        print(
            f"not checked against a reference scorer: {args.scorer} not found",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()

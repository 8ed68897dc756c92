"""Accuracy and cost of the linkage engine on a generated data set.

    .venv/bin/python bench/linkage_accuracy.py [--data DIR] [--scorer SCRIPT]

DIR contains units.csv, roster.csv and truth.csv as written by gen_linkage.py;
the default is the development set in shared/data/linkage-dev beside this
repository. The results are scored by running the data set's scoring script
(score_linkage.py) on them. Prints precision and recall of the automatic
links, the share left for review, pairs compared, seconds for reading and
linking (wall clock, and CPU time, which other load on the machine
affects less), and the process's peak resident memory.
"""

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from linkage.cli import write_results  # noqa: E402
from linkage.engine import link, summarise  # noqa: E402
from linkage.records import read_roster, read_units  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=SHARED / "data" / "linkage-dev",
        help="folder with units.csv, roster.csv and truth.csv",
    )
    parser.add_argument(
        "--scorer",
        type=Path,
        default=SHARED / "tools" / "score_linkage.py",
        help="score_linkage.py to run on the results",
    )
    args = parser.parse_args()

    started, cpu_started = time.perf_counter(), time.process_time()
    units = read_units(args.data / "units.csv")
    roster = read_roster(args.data / "roster.csv")
    read_seconds = time.perf_counter() - started
    results = link(units.records, roster.records)
    link_seconds = time.perf_counter() - started - read_seconds
    cpu_seconds = time.process_time() - cpu_started
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    summary = summarise(results, roster.rows_read, len(roster.bad_rows))
    with tempfile.TemporaryDirectory(prefix="linkage-bench-") as folder:
        out = Path(folder) / "results.csv"
        write_results(out, results)
        scored = subprocess.run(
            [sys.executable, str(args.scorer), str(out), str(args.data / "truth.csv")],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        )
    print(scored.stdout.rstrip())
    print(
        f"units {len(units.records)}, accounts {len(roster.records)}, "
        f"linked {summary.linked}, for review {summary.for_review}, "
        f"unmatched {summary.unmatched}"
    )
    print(f"pairs compared {summary.pairs_compared}")
    print(
        f"seconds: read {read_seconds:.1f}, link {link_seconds:.1f}, "
        f"CPU for both {cpu_seconds:.1f}"
    )
    print(f"peak resident memory {peak_mib:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())

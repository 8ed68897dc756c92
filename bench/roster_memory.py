"""Peak memory of one roster upload and of its job, in the process that serves them.

    .venv/bin/python ../shared/tools/gen_linkage.py \
        --communities ../shared/data/jinan/communities.csv \
        --out /tmp/roster-bench --units 20000
    .venv/bin/python bench/roster_memory.py /tmp/roster-bench

The hub runs in this process on a fresh SQLite database, with the registry
export loaded and the water company registered. curl, a separate process,
uploads roster.csv with a utility staff member's token, so the body reaches
the hub as a stream. Then the job runs in this process. After each step the
script prints the peak resident set size (VmHWM, which it resets between the
steps through /proc/self/clear_refs) above the resident size before the step.
The engine links rosters of 2,000 accounts or more in two forked processes,
whose memory is not counted here.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    # The checkout this script sits in, not the installed project.
    sys.path.insert(0, str(ROOT))

from werkzeug.serving import make_server  # noqa: E402

WATER = "济南水务集团有限公司"
PASSWORD = "Bench-password-2026"


def memory_kib(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} missing from /proc/self/status")


def reset_peak():
    Path("/proc/self/clear_refs").write_text("5")


def measure(step):
    """Run `step()`; return (its result, peak RSS above the RSS before, in MiB)."""
    reset_peak()
    before = memory_kib("VmRSS")
    result = step()
    return result, (memory_kib("VmHWM") - before) / 1024


def prepare(var_dir, units_csv):
    from app import create_app
    from models import migrate
    from models.db import database
    from services import catalog, queue, rosters, staff

    app = create_app(
        {"VAR_DIR": str(var_dir), "DATABASE_URL": f"sqlite:///{var_dir / 'bench.db'}"}
    )
    with app.app_context(), database.connection_context():
        migrate.upgrade()
        rosters.import_units(units_csv)
        catalog.register_utility("water", WATER, "water", "channel")
        organisation = staff.create_organisation("utility", "水务", None, "water")
        staff.create_staff("bench1", "utility", organisation, "测试", PASSWORD)
    queue.configure(app)
    return app


def curl_json(*args):
    command = ["curl", "-sS", "--fail-with-body", *args]
    output = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(output.stdout)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="folder with units.csv and roster.csv")
    options = parser.parse_args()
    roster = options.data / "roster.csv"

    with tempfile.TemporaryDirectory(prefix="roster-bench-") as tmp:
        app = prepare(Path(tmp), options.data / "units.csv")
        server = make_server("127.0.0.1", 0, app, threaded=True)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        api = f"http://127.0.0.1:{server.server_port}/api/v1"
        token = curl_json(
            "-H",
            "Content-Type: application/json",
            "-d",
            json.dumps({"username": "bench1", "password": PASSWORD}),
            api + "/auth/login",
        )["access_token"]

        def upload():
            return curl_json(
                "-H",
                f"Authorization: Bearer {token}",
                "-H",
                "Content-Type: text/csv",
                "--data-binary",
                f"@{roster}",
                api + "/partner/rosters",
            )

        def run_job(job_id):
            from models import RosterJob
            from models.db import database
            from services import rosters

            with app.app_context(), database.connection_context():
                rosters.run_job(job_id)
                return RosterJob.get_by_id(job_id)

        started = time.monotonic()
        accepted, upload_mib = measure(upload)
        upload_seconds = time.monotonic() - started
        started = time.monotonic()
        job, job_mib = measure(lambda: run_job(accepted["job_id"]))
        job_seconds = time.monotonic() - started
        server.shutdown()

    print(f"roster {roster}: {roster.stat().st_size / 2**20:.1f} MiB, ", end="")
    print(f"{job.rows_read} rows, job {job.status}")
    print(f"upload: peak RSS +{upload_mib:.0f} MiB in {upload_seconds:.1f} s")
    print(f"job:    peak RSS +{job_mib:.0f} MiB in {job_seconds:.1f} s")
    print(f"bad rows stored {len(job.problems)}", end="")
    print(f", left out {getattr(job, 'problems_left_out', 0)}")


if __name__ == "__main__":
    main()

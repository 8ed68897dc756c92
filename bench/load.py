"""Load the service's `GET /api/v1/cases/{id}` and a bare endpoint alike.

    .venv/bin/python bench/load.py [--rounds 3] [--warmup 10] [--duration 20] \\
        [--connections 64] [--generator auto|wrk|python] [--py-spy PATH] \\
        [--doc docs/benchmarks.md]

The script seeds one real case in a temporary folder: `lianban db upgrade`,
then the demo stack's peers register a business, the identity sandbox logs
its buyer in, and the buyer opens the case. The stack is then stopped, and
two gunicorn servers start with the project's gunicorn.conf.py and the same
workers and threads. One serves the app from wsgi.py on that database, and
the other serves bench/bare_app.py, which returns the bytes of the service's
response for the case. Each round loads both servers one after the other,
in alternating order, over keep-alive connections on loopback: a warm-up
that is not counted, then the measured run.

The load comes from wrk when it is installed, else from a pure-Python
asyncio client. Both generators keep every connection busy with one request
at a time, so latency includes the wait in the server's queue. Because the
generator shares the machine's cores with the servers, its own CPU time is
reported beside the figures.

After the load, the script times each step of the same request in one
process through Flask's test client. With --py-spy it also samples the
service's busiest worker during the last round.
"""

import argparse
import asyncio
import contextlib
import functools
import http.client
import json
import logging
import os
import platform
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

log = logging.getLogger("bench.load")

HOST = "127.0.0.1"
CASE_PATH = "/api/v1/cases/{case_id}"
# A pool of connections, as production has on PostgreSQL.
DEFAULT_DATABASE_URL = (
    "sqlite+pool:///{var_dir}/lianban.db?max_connections=32&timeout=10"
)
SIDES = ("service", "bare")
TARGET_RATIO = 0.70
TARGET_P95_MS = 50.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# The steps of one request that the profile times, by the name the wrapped
# function gets in profiled_targets(). An arrow marks a part of the step above.
PROFILED_STEPS = (
    ("request", "whole request (`app.wsgi_app`)"),
    ("before", "before-request hooks"),
    ("connect", "→ opening the database connection"),
    ("decode", "token decode and claim checks (PyJWT, HS256)"),
    ("holder", "caller query (`tokens._holder`)"),
    ("family", "refresh-token family check query (`tokens._check_family`)"),
    ("case", "case query and owner check (`access.case_for`)"),
    ("view", "view building with its queries (`views.case_view`)"),
    ("dump", "response schema dump (marshmallow)"),
    ("json", "JSON encoding into the response (`app.json.response`)"),
    ("after", "after-request hooks"),
    ("teardown", "teardown, closing the connection"),
    ("rest", "the rest: routing, decorators, Flask's request handling"),
    ("query", "in the steps above: SQL text and execution (`Database.execute`)"),
    ("execute", "→ SQL execution alone (`Database.execute_sql`)"),
    ("sql_text", "→ SQL text generation by peewee (the difference)"),
    ("rows", "in the steps above: row fetching and model building"),
    ("sealed", "→ sealed-field decryption (`SealedField.python_value`)"),
)
PY_SPY_RATE = 250
# Kinds of work in a worker's stacks sampled by py-spy, by frames of the form
# "Class.function (path/file.py:line)". A stack counts for the first kind
# that one of its frames matches, so the specific kinds come first: SQL text
# built during view building counts as SQL text.
STACK_KINDS = tuple(
    (kind, re.compile(pattern))
    for kind, pattern in (
        ("sealed-field decryption", r"python_value \(models/fields\.py"),
        ("SQL execution", r"\.execute_sql \(peewee\.py"),
        ("SQL text generation", r"\.(sql|__sql__|query) \(peewee\.py"),
        (
            "row fetching and model building",
            r"\.(iterate|process_row|fill_cache|initialize) \(peewee\.py",
        ),
        (
            "database connect and close",
            r"\.(_?connect|_?close|_initialize_connection) \(peewee\.py"
            r"|connect_checked \(",
        ),
        ("token decode (PyJWT)", r"\(jwt/"),
        ("schema dump (marshmallow)", r"\(marshmallow/"),
        ("JSON encoding", r"\(json/"),
        ("view building", r"\((api/views|domain/masking)\.py"),
        (
            "Flask, flask-smorest and request hooks",
            r"\((flask|werkzeug|flask_smorest|flask_limiter|prometheus_client|api)/",
        ),
    )
)
DOC_TITLE = "## Load: GET /cases/{id} against a bare endpoint"
DOC_START = "<!-- bench/load.py results: start -->"
DOC_END = "<!-- bench/load.py results: end -->"

# wrk runs this script: it sends the token with every request and prints one
# line when the run ends, with times in microseconds.
WRK_REPORT = """
wrk.headers["Authorization"] = "Bearer " .. os.getenv("LOAD_BENCH_TOKEN")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %d %d %d %d %d %d %d %d\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(95),
    latency:percentile(99)))
end
"""


@dataclass
class StackSamples:
    """py-spy's samples of one worker while a thread held the GIL, by kind."""

    seconds: int
    # Samples that py-spy failed to read, because it does not stop the worker.
    errors: int = 0
    counts: Counter = field(default_factory=Counter)

    @property
    def gil_share(self):
        """The share of the time that some thread of the worker held the GIL."""
        return sum(self.counts.values()) / (self.seconds * PY_SPY_RATE)


@dataclass
class RunResult:
    """The figures of one measured run of the generator against one server."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    generator_cpu_seconds: float
    server_cpu_seconds: float = 0.0
    worker_restarts: int = 0
    # Open connections of each worker a quarter into the run, most first.
    connections_per_worker: tuple = ()
    stack_samples: StackSamples | None = None

    @property
    def rps(self):
        return self.requests / self.seconds

    @property
    def server_cpu_ms_per_request(self):
        return 1000 * self.server_cpu_seconds / max(self.requests, 1)

    @property
    def generator_cpu_share(self):
        """Generator CPU seconds per wall second: 1.0 is one core kept busy."""
        return self.generator_cpu_seconds / self.seconds


# Seeding --------------------------------------------------------------------


def upgrade_database(env):
    """Run `lianban db upgrade` as an operator would before starting the server."""
    finished = subprocess.run(
        [str(REPO / ".venv" / "bin" / "lianban"), "db", "upgrade"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if finished.returncode != 0:
        raise RuntimeError(f"lianban db upgrade failed:\n{finished.stderr}")


def seed_case(var_dir, config):
    """Open one case through the demo stack; return its id and a buyer's token."""
    from demo import scenarios
    from demo.client import HubClient
    from demo.stack import start_stack

    stack = start_stack(var_dir, config=config)
    try:
        peers = stack.peers
        client = HubClient(
            stack.hub_url, peers.idp_url, peers.wechatpay_url, stack.registry_secret
        )
        # The new-home case has four accounts, each with a linked holder.
        scenario = scenarios.build_scenarios()[0]
        client.put_business(
            scenario.business_no, scenarios.business_payload(scenario, "accepted")
        )
        client.login(scenario.buyer)
        case = client.call("POST", "/cases", {"business_no": scenario.business_no})
    finally:
        stack.stop()
    log.info(
        "case seeded case_id=%s transfers=%s", case["case_id"], len(case["transfers"])
    )
    return case["case_id"], client.token


# Servers --------------------------------------------------------------------


def free_port():
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


class Server:
    """A gunicorn master started with the project's gunicorn.conf.py."""

    def __init__(self, name, app_spec, env, var_dir, extra_args=()):
        self.name = name
        self.port = free_port()
        self.var_dir = var_dir
        self.error_log = var_dir / f"gunicorn-{name}.err"
        metrics_dir = var_dir / f"metrics-{name}"
        metrics_dir.mkdir()
        env = env | {
            "LIANBAN_BIND": f"{HOST}:{self.port}",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir),
        }
        command = [
            str(REPO / ".venv" / "bin" / "gunicorn"),
            "-c",
            str(REPO / "gunicorn.conf.py"),
            *extra_args,
            app_spec,
        ]
        # The access log goes to stdout, one line per request, as configured.
        with open(var_dir / f"gunicorn-{name}.log", "wb") as out:
            with open(self.error_log, "wb") as err:
                self.process = subprocess.Popen(
                    command, cwd=REPO, env=env, stdout=out, stderr=err
                )

    def wait_ready(self, seconds=30):
        """Wait until the server accepts connections, or raise RuntimeError."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            try:
                with socket.create_connection((HOST, self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(
            f"gunicorn for {self.name} did not start; see {self.error_log}"
        )

    def cpu_seconds(self):
        """Return the CPU seconds of the master and its workers, living or reaped."""
        total = _process_cpu(self.process.pid)
        for pid in _children(self.process.pid):
            total += _process_cpu(pid)
        return total

    def connections_per_worker(self):
        """Return the number of established connections of each worker's pid."""
        output = subprocess.run(
            ["ss", "-Htnp", "state", "established", f"( sport = :{self.port} )"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        counts = dict.fromkeys(_children(self.process.pid), 0)
        for pid in re.findall(r"pid=(\d+)", output):
            counts[int(pid)] = counts.get(int(pid), 0) + 1
        return counts

    def workers_booted(self):
        return self.error_log.read_text(errors="replace").count("Booting worker")

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _process_cpu(pid):
    """Return the CPU seconds of a process and of its children it has reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return 0.0
    fields = stat.rpartition(")")[2].split()
    # utime, stime, cutime and cstime are fields 14 to 17 in proc(5); index 0
    # here is field 3, the state.
    return sum(int(value) for value in fields[11:15]) / CLOCK_TICKS


def _children(parent):
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[1]) == parent:
            found.append(int(stat.parent.name))
    return found


def fetch(port, path, token=None):
    """Return the status, content type and body of one GET on loopback."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


# Load generators --------------------------------------------------------------


def run_wrk(port, path, token, connections, seconds, script):
    """Load `path` with wrk for `seconds`; return its RunResult."""
    threads = min(os.cpu_count() or 1, connections)
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://{HOST}:{port}{path}",
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    output = subprocess.run(
        command,
        env=os.environ | {"LOAD_BENCH_TOKEN": token},
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    ).stdout
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return _parse_wrk(output, cpu)


def _parse_wrk(output, cpu):
    match = re.search(r"^RESULT ((?:\d+ ?){10})$", output, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"wrk printed no result line:\n{output}")
    numbers = [int(value) for value in match.group(1).split()]
    requests, duration_us, *errors = numbers[:7]
    p50, p95, p99 = numbers[7:]
    return RunResult(
        requests=requests,
        seconds=duration_us / 1e6,
        errors=sum(errors),
        p50_ms=p50 / 1000,
        p95_ms=p95 / 1000,
        p99_ms=p99 / 1000,
        generator_cpu_seconds=cpu,
    )


def run_python(port, path, token, connections, seconds):
    """Load `path` from asyncio connections for `seconds`; return its RunResult."""
    request = (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\n"
        f"Authorization: Bearer {token}\r\n\r\n"
    ).encode()
    latencies, errors = [], [0]
    cpu_before = time.process_time()
    started = time.perf_counter()
    deadline = started + seconds
    asyncio.run(_load(port, request, connections, deadline, latencies, errors))
    wall = time.perf_counter() - started
    cpu = time.process_time() - cpu_before
    latencies.sort()
    return RunResult(
        requests=len(latencies),
        seconds=wall,
        errors=errors[0],
        p50_ms=_percentile(latencies, 50) * 1000,
        p95_ms=_percentile(latencies, 95) * 1000,
        p99_ms=_percentile(latencies, 99) * 1000,
        generator_cpu_seconds=cpu,
    )


def _percentile(ordered, percent):
    if not ordered:
        return float("nan")
    rank = round(percent / 100 * (len(ordered) - 1))
    return ordered[rank]


async def _load(port, request, connections, deadline, latencies, errors):
    await asyncio.gather(
        *(
            _keep_busy(port, request, deadline, latencies, errors)
            for _ in range(connections)
        )
    )


async def _keep_busy(port, request, deadline, latencies, errors):
    """Send `request` on one connection until `deadline`, reconnecting on close."""
    reader = writer = None
    while time.perf_counter() < deadline:
        sent = time.perf_counter()
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(HOST, port)
                sent = time.perf_counter()
            writer.write(request)
            status, keep_alive = await _read_response(reader)
        except (OSError, asyncio.IncompleteReadError, ValueError):
            errors[0] += 1
            if writer is not None:
                writer.close()
            writer = None
            # A server that refuses connections would otherwise spin this loop.
            await asyncio.sleep(0.01)
            continue
        latencies.append(time.perf_counter() - sent)
        if status != 200:
            errors[0] += 1
        if not keep_alive:
            writer.close()
            writer = None
    if writer is not None:
        writer.close()


async def _read_response(reader):
    """Read one response; return its status and whether the connection stays open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    await reader.readexactly(int(headers.get("content-length", "0")))
    return status, headers.get("connection") != "close"


# Rounds -----------------------------------------------------------------------


def load_once(server, path, token, seconds, args, script):
    if args.generator == "wrk":
        return run_wrk(server.port, path, token, args.connections, seconds, script)
    return run_python(server.port, path, token, args.connections, seconds)


def measure(server, path, token, args, script, sample_stacks=False):
    """Warm the server up, then return the RunResult of the measured run."""
    load_once(server, path, token, args.warmup, args, script)
    cpu_before = server.cpu_seconds()
    booted_before = server.workers_booted()
    found = {}
    watcher = threading.Timer(
        args.duration / 4, watch, (server, args, sample_stacks, found)
    )
    watcher.start()
    result = load_once(server, path, token, args.duration, args, script)
    watcher.join()
    result.connections_per_worker = found.get("connections", ())
    result.stack_samples = found.get("stacks")
    result.server_cpu_seconds = server.cpu_seconds() - cpu_before
    result.worker_restarts = server.workers_booted() - booted_before
    log.info(
        "%s: %.0f requests/s p95=%.1f ms errors=%d",
        server.name,
        result.rps,
        result.p95_ms,
        result.errors,
    )
    return result


def watch(server, args, sample_stacks, found):
    """Count each worker's connections, then sample the busiest one with py-spy."""
    try:
        counts = server.connections_per_worker()
        found["connections"] = tuple(sorted(counts.values(), reverse=True))
        if sample_stacks and counts:
            busiest = max(counts, key=counts.get)
            seconds = max(1, round(args.duration / 2))
            output = server.var_dir / f"py-spy-{server.name}-{busiest}.txt"
            found["stacks"] = record_stacks(args.py_spy, busiest, seconds, output)
    except (OSError, subprocess.SubprocessError) as error:
        log.warning(
            "watching %s failed; its columns stay empty: %s", server.name, error
        )


def record_stacks(py_spy, pid, seconds, output):
    """Return the GIL-holding samples of one process by kind of work."""
    command = [py_spy, "record", "--pid", str(pid), "--duration", str(seconds)]
    command += ["--rate", str(PY_SPY_RATE), "--gil", "--nonblocking"]
    command += ["--format", "raw", "--output", str(output)]
    finished = subprocess.run(
        command, capture_output=True, text=True, check=True, timeout=seconds + 60
    )
    errors = re.search(r"Errors: (\d+)", finished.stdout + finished.stderr)
    samples = StackSamples(
        seconds=seconds, errors=int(errors.group(1)) if errors else 0
    )
    for line in output.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        samples.counts[stack_kind(stack.split(";"))] += int(count)
    return samples


def stack_kind(frames):
    """Return the first kind of work in STACK_KINDS that any frame matches."""
    for kind, pattern in STACK_KINDS:
        if any(pattern.search(frame) for frame in frames):
            return kind
    return "gunicorn and the rest"


def run_rounds(servers, path, token, args, script):
    """Measure both servers in each round, the first one alternating."""
    results = {side: [] for side in SIDES}
    for number in range(args.rounds):
        order = SIDES if number % 2 == 0 else tuple(reversed(SIDES))
        for side in order:
            log.info("round %d of %d: %s", number + 1, args.rounds, side)
            # py-spy samples the service once, in the last round.
            sample = bool(args.py_spy) and side == "service"
            sample = sample and number == args.rounds - 1
            result = measure(servers[side], path, token, args, script, sample)
            results[side].append(result)
    return results


# Profile ----------------------------------------------------------------------


class StepTimer:
    """CPU time spent in wrapped functions, counted at the outermost call only.

    The thread's CPU clock leaves out the time other processes hold the core,
    which a machine shared with other jobs would add to a wall clock.
    """

    def __init__(self):
        self.seconds = dict.fromkeys((name for name, _ in PROFILED_STEPS), 0.0)
        self.calls = dict.fromkeys(self.seconds, 0)
        self.depth = dict.fromkeys(self.seconds, 0)

    def wrap(self, name, function):
        @functools.wraps(function)
        def timed(*args, **kwargs):
            self.depth[name] += 1
            started = time.thread_time()
            try:
                return function(*args, **kwargs)
            finally:
                self.depth[name] -= 1
                if self.depth[name] == 0:
                    self.seconds[name] += time.thread_time() - started
                    self.calls[name] += 1

        return timed


def profiled_targets(app):
    """Return the object and attribute that each profiled step wraps."""
    import marshmallow
    import peewee

    from api import views
    from models.db import database
    from models.fields import SealedField
    from services import access, tokens

    # Instance attributes shadow the class's methods, for this app and
    # database only. Everything else is patched on its module or class.
    targets = {
        "request": (app, "wsgi_app"),
        "before": (app, "preprocess_request"),
        "connect": (database.obj, "connect"),
        "decode": (tokens, "decode"),
        "holder": (tokens, "_holder"),
        "family": (tokens, "_check_family"),
        "case": (access, "case_for"),
        "view": (views, "case_view"),
        "dump": (marshmallow.Schema, "dump"),
        "json": (app.json, "response"),
        "after": (app, "process_response"),
        "teardown": (app, "do_teardown_appcontext"),
        "query": (database.obj, "execute"),
        "execute": (database.obj, "execute_sql"),
        "rows": (peewee.CursorWrapper, "iterate"),
        "sealed": (SealedField, "python_value"),
    }
    return targets


def profile_steps(app, path, token, requests, names):
    """Time the steps in `names` over `requests` GETs in this process."""
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    timer = StepTimer()
    targets = profiled_targets(app)
    with contextlib.ExitStack() as patches:
        for name in names:
            target, attribute = targets[name]
            wrapped = timer.wrap(name, getattr(target, attribute))
            patches.enter_context(mock.patch.object(target, attribute, wrapped))
        for _ in range(requests):
            response = client.get(path, headers=headers)
            if response.status_code != 200:
                raise RuntimeError(
                    f"GET {path} returned {response.status_code}, expected 200"
                )
    return timer


def profile_request(var_dir, config, path, token, requests):
    """Return the CPU seconds of the whole request alone and the timer of each step.

    The first pass times only the whole request, so that it shows what the
    timing of every step adds in the second pass. Kept views are off, so that
    each request builds the case view as the first request for a case does.
    """
    from app import create_app

    app = create_app({"VAR_DIR": str(var_dir), **config, "CASE_VIEW_CACHE_SIZE": 0})
    profile_steps(app, path, token, 20, ["request"])
    alone = profile_steps(app, path, token, requests, ["request"])
    timer = profile_steps(app, path, token, requests, profiled_targets(app))
    add_derived_steps(timer)
    return alone.seconds["request"], timer


def add_derived_steps(timer):
    """Fill in the steps that are differences of timed ones."""
    seconds, calls = timer.seconds, timer.calls
    seconds["sql_text"] = seconds["query"] - seconds["execute"]
    calls["sql_text"] = calls["query"]
    top_level = ("before", "decode", "holder", "family", "case", "view")
    top_level += ("dump", "json", "after", "teardown")
    seconds["rest"] = seconds["request"] - sum(seconds[name] for name in top_level)
    calls["rest"] = calls["request"]


def format_profile(alone_seconds, timer, requests):
    """Return the Markdown table of the steps of one request."""
    whole = timer.seconds["request"]
    text = (
        f"Profile of {requests:,} requests with kept views off, in one process "
        "through Flask's test client, after 20 unmeasured: "
        f"{1000 * alone_seconds / requests:.2f} ms "
        f"of CPU per request when only the whole request is timed, and "
        f"{1000 * whole / requests:.2f} ms when every step below is timed. "
        f"Each request ran {timer.calls['query'] / requests:.0f} queries. "
        "Times are inclusive: a step contains the steps marked with an arrow "
        "under it, and the rows from the first one that starts with “in the "
        "steps above” add up time that the earlier rows already contain."
    )
    rows = [
        _paragraph(text),
        "",
        "| step | CPU ms per request | share of the request | calls per request |",
        "|---|--:|--:|--:|",
    ]
    for name, label in PROFILED_STEPS:
        seconds = timer.seconds[name]
        rows.append(
            f"| {label} | {1000 * seconds / requests:.2f} | {seconds / whole:.0%} "
            f"| {timer.calls[name] / requests:.1f} |"
        )
    return rows


# Report -----------------------------------------------------------------------


def summarise(runs):
    """Return the medians, and the ranges of requests per second, of one side."""
    rps = [run.rps for run in runs]
    return {
        "rps": statistics.median(rps),
        "rps_min": min(rps),
        "rps_max": max(rps),
        "p50_ms": statistics.median(run.p50_ms for run in runs),
        "p95_ms": statistics.median(run.p95_ms for run in runs),
        "p99_ms": statistics.median(run.p99_ms for run in runs),
        "errors": sum(run.errors for run in runs),
        "requests": sum(run.requests for run in runs),
        "server_cpu_ms": statistics.median(
            run.server_cpu_ms_per_request for run in runs
        ),
        "generator_cpu": statistics.median(run.generator_cpu_share for run in runs),
        "worker_restarts": sum(run.worker_restarts for run in runs),
    }


def round_ratios(results):
    return [
        service.rps / bare.rps
        for service, bare in zip(results["service"], results["bare"], strict=True)
    ]


def format_report(results, facts, command):
    """Return the Markdown report: machine, command, tables and verdict."""
    summary = {side: summarise(results[side]) for side in SIDES}
    ratio = summary["service"]["rps"] / summary["bare"]["rps"]
    ratios = round_ratios(results)
    lines = [
        _paragraph(
            f"Measured on {facts['date']} on {facts['cores']} cores of "
            f"{facts['cpu']}, Python {facts['python']}, gunicorn "
            f"{facts['gunicorn']}, {facts['generator']}, {facts['database']}, with"
        ),
        "",
        "```",
        command,
        "```",
        "",
        _paragraph(
            f"Both servers ran {facts['workers']} workers of {facts['threads']} "
            f"threads. The load average was {facts['load_before']} before the "
            f"run and {facts['load_after']} after it."
        ),
        "",
        *_summary_table(summary),
        "",
        *_rounds_table(results, ratios),
        "",
        _paragraph(_verdict(ratio, ratios, summary["service"]["p95_ms"])),
        *_stacks_table(results["service"][-1].stack_samples),
    ]
    return "\n".join(lines) + "\n"


def _stacks_table(samples):
    if samples is None or not samples.counts:
        return []
    total = sum(samples.counts.values())
    rows = [
        "",
        _paragraph(
            f"py-spy sampled the service's busiest worker in the last round for "
            f"{samples.seconds} s at {PY_SPY_RATE} Hz. Some thread of it held "
            f"the GIL in {samples.gil_share:.0%} of the sampling times (the "
            f"{samples.errors} samples py-spy failed to read count as not "
            "held). The samples taken while one did split by kind of work as "
            "follows:"
        ),
        "",
        "| kind of work | share of the samples |",
        "|---|--:|",
    ]
    for kind, count in samples.counts.most_common():
        rows.append(f"| {kind} | {count / total:.0%} |")
    return rows


def _summary_table(summary):
    rows = [
        "| endpoint | requests/s (median) | range | p50 ms | p95 ms | p99 ms "
        "| errors | requests | server CPU ms per request | generator CPU "
        "| worker restarts |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for side in SIDES:
        s = summary[side]
        rows.append(
            f"| {side} | {s['rps']:,.0f} | {s['rps_min']:,.0f} to "
            f"{s['rps_max']:,.0f} | {s['p50_ms']:.1f} | {s['p95_ms']:.1f} "
            f"| {s['p99_ms']:.1f} | {s['errors']} | {s['requests']:,} "
            f"| {s['server_cpu_ms']:.2f} | {s['generator_cpu']:.0%} of a core "
            f"| {s['worker_restarts']} |"
        )
    return rows


def _rounds_table(results, ratios):
    rows = [
        "| round | service requests/s | service p95 ms "
        "| service connections per worker | bare requests/s | bare p95 ms "
        "| bare connections per worker | ratio |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for number, ratio in enumerate(ratios):
        service, bare = results["service"][number], results["bare"][number]
        rows.append(
            f"| {number + 1} | {service.rps:,.0f} | {service.p95_ms:.1f} "
            f"| {_spread(service)} | {bare.rps:,.0f} | {bare.p95_ms:.1f} "
            f"| {_spread(bare)} | {ratio:.1%} |"
        )
    return rows


def _paragraph(text):
    return textwrap.fill(text, width=76, break_on_hyphens=False)


def _spread(run):
    return "/".join(str(count) for count in run.connections_per_worker) or "–"


def _verdict(ratio, ratios, p95_ms):
    met = ratio >= TARGET_RATIO and p95_ms <= TARGET_P95_MS
    return (
        f"The service reached {ratio:.1%} of the bare endpoint's requests per "
        f"second (the ratio of the medians; per round {min(ratios):.1%} to "
        f"{max(ratios):.1%}), with a median p95 of {p95_ms:.1f} ms. The target, "
        f"at least {TARGET_RATIO:.0%} with p95 at most {TARGET_P95_MS:.0f} ms, "
        f"was {'met' if met else 'not met'} on this run."
    )


def machine_facts(args):
    with open("/proc/cpuinfo") as cpuinfo:
        models = re.findall(r"^model name\s*:\s*(.+)$", cpuinfo.read(), re.MULTILINE)
    generator = "the Python asyncio generator"
    if args.generator == "wrk":
        version = subprocess.run(["wrk", "-v"], capture_output=True, text=True)
        generator = " ".join(version.stdout.split()[:2])
    return {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "cpu": models[0] if models else platform.processor(),
        "python": platform.python_version(),
        "gunicorn": metadata.version("gunicorn"),
        "generator": generator,
        "database": database_label(args.database_url)
        + (", kept case views off" if args.without_kept_views else ""),
        "load_before": _load_average(),
    }


def database_label(url):
    """Name the backend of `url` and whether connections are pooled."""
    scheme = urllib.parse.urlsplit(url).scheme if url else "sqlite"
    backend = "SQLite" if scheme.startswith("sqlite") else "PostgreSQL"
    pooled = "+pool" in scheme
    return f"{backend}{' with a connection pool' if pooled else ''}"


def _load_average():
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def check_doc(path):
    """Return the text of `path`, or exit if its result markers are missing."""
    try:
        text = Path(path).read_text()
    except OSError as error:
        sys.exit(f"--doc {path}: cannot be read ({error.strerror})")
    if DOC_START not in text or DOC_END not in text:
        sys.exit(
            f"--doc {path}: the markers {DOC_START} and {DOC_END} are missing; "
            f"add them under the heading {DOC_TITLE!r}."
        )
    return text


def update_doc(path, report):
    """Replace the text between the result markers of `path` with `report`."""
    text = check_doc(path)
    head, _, rest = text.partition(DOC_START)
    _, _, tail = rest.partition(DOC_END)
    Path(path).write_text(f"{head}{DOC_START}\n{report}{DOC_END}{tail}")


def _without_password(url):
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":PASSWORD@")
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def command_line(args):
    words = [
        ".venv/bin/python bench/load.py",
        f"--rounds {args.rounds}",
        f"--warmup {args.warmup}",
        f"--duration {args.duration}",
        f"--connections {args.connections}",
        f"--generator {args.generator}",
        f"--profile-requests {args.profile_requests}",
    ]
    words += [f"--gunicorn-arg={value}" for value in args.gunicorn_arg]
    if args.py_spy:
        words.append(f"--py-spy {args.py_spy}")
    if args.database_url != DEFAULT_DATABASE_URL:
        words.append(f"--database-url '{_without_password(args.database_url)}'")
    if args.without_kept_views:
        words.append("--without-kept-views")
    if args.doc:
        words.append(f"--doc {args.doc}")
    lines = [words[0]]
    for word in words[1:]:
        if len(lines[-1]) + len(word) > 74:
            lines.append("   ")
        lines[-1] += " " + word
    return " \\\n".join(lines)


# Main -------------------------------------------------------------------------


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    _add_load_options(parser)
    _add_server_options(parser)
    args = parser.parse_args(argv)
    if args.generator == "auto":
        args.generator = "wrk" if shutil.which("wrk") else "python"
    return args


def _add_load_options(parser):
    parser.add_argument(
        "--rounds", type=int, default=3, help="Rounds of both servers (default 3)."
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=10,
        help="Seconds of load before each measured run, not counted (default 10).",
    )
    parser.add_argument(
        "--duration",
        type=int,
        default=20,
        help="Seconds of each measured run (default 20).",
    )
    parser.add_argument(
        "--connections",
        type=int,
        default=64,
        help="Concurrent keep-alive connections (default 64).",
    )
    parser.add_argument(
        "--generator",
        choices=("auto", "wrk", "python"),
        default="auto",
        help="Load generator: wrk, the asyncio client, or wrk when installed "
        "(default auto).",
    )
    parser.add_argument(
        "--py-spy",
        metavar="PATH",
        help="py-spy executable: sample the service's busiest worker during "
        "the last round (needs ptrace rights, e.g. root).",
    )
    parser.add_argument(
        "--profile-requests",
        type=int,
        default=300,
        help="Requests to time step by step in this process after the load, "
        "0 to skip (default 300).",
    )


def _add_server_options(parser):
    parser.add_argument(
        "--gunicorn-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="A gunicorn option for both servers, after gunicorn.conf.py so that "
        "it wins, e.g. --gunicorn-arg=--worker-connections=16; repeat for more.",
    )
    parser.add_argument(
        "--database-url",
        default=DEFAULT_DATABASE_URL,
        help="DATABASE_URL to seed and serve, where {var_dir} is replaced by the "
        "temporary folder, e.g. 'sqlite:///{var_dir}/lianban.db' for a "
        "connection per request, or an empty PostgreSQL database created "
        "beforehand (default: pooled SQLite connections in the temporary "
        "folder, '%(default)s').",
    )
    parser.add_argument(
        "--without-kept-views",
        action="store_true",
        help="Serve every request through the full path that builds the case "
        "view, with no kept views (CASE_VIEW_CACHE_SIZE=0).",
    )
    parser.add_argument(
        "--doc",
        help="Markdown file whose result markers get the report, "
        "e.g. docs/benchmarks.md.",
    )
    parser.add_argument(
        "--keep", action="store_true", help="Keep the temporary folder and logs."
    )


def server_env(var_dir, args):
    """Return the environment both the CLI and the servers run with."""
    # Tokens must outlive every round, with a margin for seeding and startup.
    token_seconds = args.rounds * 2 * (args.warmup + args.duration) + 600
    env = os.environ | {
        "LIANBAN_ENV": "development",
        "LIANBAN_VAR_DIR": str(var_dir),
        "LIANBAN_ACCESS_TOKEN_SECONDS": str(token_seconds),
    }
    if args.database_url:
        env["DATABASE_URL"] = args.database_url.format(var_dir=var_dir)
    return env


def start_servers(servers, var_dir, env, path, token, args):
    """Start the service, store its response for the case, then start the bare app.

    Each server is put in `servers` as soon as it runs, so that the caller
    stops it even when a later step fails.
    """
    extra = args.gunicorn_arg
    service_env = env
    if args.without_kept_views:
        service_env = env | {"LIANBAN_CASE_VIEW_CACHE_SIZE": "0"}
    servers["service"] = Server("service", "wsgi:app", service_env, var_dir, extra)
    servers["service"].wait_ready()
    body_file = var_dir / "case.json"
    store_case_body(servers["service"], path, token, body_file)
    bare_env = env | {"LOAD_BENCH_BODY_FILE": str(body_file)}
    servers["bare"] = Server(
        "bare", "bench.bare_app:create_app()", bare_env, var_dir, extra
    )
    servers["bare"].wait_ready()
    check_same_body(servers, path, token)


def store_case_body(server, path, token, body_file):
    """Fetch the case as the buyer and store its bytes for the bare endpoint."""
    status, content_type, body = fetch(server.port, path, token)
    if status != 200:
        raise RuntimeError(
            f"GET {path} returned {status}, expected 200: {body[:200]!r}"
        )
    body_file.write_bytes(body)
    log.info("case body stored bytes=%d type=%s", len(body), content_type)


def check_same_body(servers, path, token):
    service = fetch(servers["service"].port, path, token)
    bare = fetch(servers["bare"].port, path)
    if service[1:] != bare[1:]:
        raise RuntimeError(
            "The bare endpoint's response differs from the service's; "
            "check LOAD_BENCH_BODY_FILE."
        )


def run(args, var_dir):
    """Seed, serve, load both servers and return the report."""
    env = server_env(var_dir, args)
    facts = machine_facts(args)
    upgrade_database(env)
    config = {"ACCESS_TOKEN_SECONDS": int(env["LIANBAN_ACCESS_TOKEN_SECONDS"])}
    if args.database_url:
        config["DATABASE_URL"] = env["DATABASE_URL"]
    case_id, token = seed_case(var_dir, config)
    path = CASE_PATH.format(case_id=case_id)
    servers = {}
    try:
        start_servers(servers, var_dir, env, path, token, args)
        script = var_dir / "report.lua"
        script.write_text(WRK_REPORT)
        results = run_rounds(servers, path, token, args, script)
    finally:
        for server in servers.values():
            server.stop()
    facts.update(gunicorn_settings(env), load_after=_load_average())
    report = format_report(results, facts, command_line(args))
    if args.profile_requests:
        log.info("profiling %d requests in this process", args.profile_requests)
        alone, timer = profile_request(
            var_dir, config, path, token, args.profile_requests
        )
        rows = format_profile(alone, timer, args.profile_requests)
        report += "\n" + "\n".join(rows)
        report += "\n"
    return report


def gunicorn_settings(env):
    """Return the workers and threads gunicorn.conf.py gives under `env`."""
    code = "import runpy, json; c = runpy.run_path('gunicorn.conf.py'); "
    code += "print(json.dumps({'workers': c['workers'], 'threads': c['threads']}))"
    output = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=env | {"PROMETHEUS_MULTIPROC_DIR": "unused"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(output)


def main(argv=None):
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(name)s %(message)s"
    )
    log.setLevel(logging.INFO)
    args = parse_args(argv)
    if args.doc:
        check_doc(args.doc)
    var_dir = Path(tempfile.mkdtemp(prefix="lianban-load-"))
    try:
        report = run(args, var_dir)
    finally:
        if args.keep:
            log.info("kept %s", var_dir)
        else:
            shutil.rmtree(var_dir, ignore_errors=True)
    print(report)
    if args.doc:
        update_doc(args.doc, report)


if __name__ == "__main__":
    main()

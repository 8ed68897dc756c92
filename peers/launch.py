"""Start the partner peers as child processes for tests, demos and manual runs.

`start_peers` creates the development keys, starts the utility simulator, the
identity provider, the WeChat Pay sandbox and the Alipay sandbox on free
loopback ports, waits until each passes its health check and returns a
`Peers` handle. Each peer
writes its log to `workdir/logs/<name>.log`.

    python -m peers.launch --workdir DIR --hub-url http://127.0.0.1:5000

starts them in the foreground, prints their URLs and stops them on Ctrl-C.
"""

import argparse
import atexit
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import requests

from peers.common import PARENT_PID_VARIABLE, UTILITY_BY_CODE
from peers.devkeys import DevKeys, ensure_dev_keys

logger = logging.getLogger("peers.launch")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
LOG_TAIL_LINES = 20


@dataclass(frozen=True)
class PeerSpec:
    name: str
    module: str
    health_path: str


UTILITY_SIM = PeerSpec("utility_sim", "peers.utility_sim", "/_sim/health")
IDENTITY = PeerSpec("identity", "peers.identity", "/_sandbox/health")
WECHATPAY = PeerSpec("wechatpay", "peers.wechatpay_sandbox", "/_sandbox/health")
ALIPAY = PeerSpec("alipay", "peers.alipay_sandbox", "/_sandbox/health")
SUBSCRIBE = PeerSpec("subscribe", "peers.subscribe_sandbox", "/_sandbox/health")
SMS = PeerSpec("sms", "peers.sms_sandbox", "/_sandbox/health")


class PeerStartError(RuntimeError):
    """A peer process exited or did not become healthy in time."""


@dataclass
class PeerProcess:
    spec: PeerSpec
    process: subprocess.Popen
    log_path: Path
    log_file: IO[bytes]
    port_file: Path
    port: int | None = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError(f"Peer {self.spec.name} has no port yet.")
        return f"http://{HOST}:{self.port}"


class Peers:
    """Running peer processes, their URLs and the keys they share with the hub.

    Use it as a context manager or call `stop()`. An atexit handler stops the
    peers too if the program ends without doing so.
    """

    def __init__(self, workdir: Path, keys: DevKeys, processes: dict[str, PeerProcess]):
        self.workdir = workdir
        self.keys = keys
        self.processes = processes
        self._stopped = False
        atexit.register(self.stop)

    @property
    def utility_sim_url(self) -> str:
        return self.processes[UTILITY_SIM.name].url

    @property
    def idp_url(self) -> str:
        return self.processes[IDENTITY.name].url

    @property
    def wechatpay_url(self) -> str:
        process = self.processes.get(WECHATPAY.name)
        if process is None:
            raise RuntimeError(
                "The WeChat Pay sandbox was not started (include_wechatpay=False)."
            )
        return process.url

    @property
    def alipay_url(self) -> str:
        """Return the Alipay sandbox's base URL; its gateway is `/gateway.do`."""
        process = self.processes.get(ALIPAY.name)
        if process is None:
            raise RuntimeError(
                "The Alipay sandbox was not started (include_alipay=False)."
            )
        return process.url

    @property
    def subscribe_url(self) -> str:
        return self.processes[SUBSCRIBE.name].url

    @property
    def sms_url(self) -> str:
        return self.processes[SMS.name].url

    def utility_base_url(self, code: str) -> str:
        """Return the base URL of one simulated utility, e.g. `.../water`."""
        if code not in UTILITY_BY_CODE:
            raise KeyError(
                f"No utility {code!r}; known codes: {', '.join(UTILITY_BY_CODE)}."
            )
        return f"{self.utility_sim_url}/{code}"

    def log_path(self, name: str) -> Path:
        return self.processes[name].log_path

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate every peer, killing any that is still running after `timeout`."""
        if self._stopped:
            return
        self._stopped = True
        atexit.unregister(self.stop)
        _stop_processes(list(self.processes.values()), timeout)

    def __enter__(self) -> "Peers":
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


def free_port(host: str = HOST) -> int:
    """Return a TCP port that was free a moment ago.

    Another process may take the port before the caller binds it, so prefer
    `--port 0` with a port file where the server supports it.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def start_peers(
    workdir: Path,
    hub_url: str,
    accounts_file: Path | None = None,
    feedback_delay: float = 0.5,
    collect_interval: float = 0,
    *,
    include_wechatpay: bool = True,
    include_alipay: bool = True,
    code_lifetime: int = 300,
    feedback_retry_attempts: int = 8,
    feedback_retry_base_delay: float = 0.5,
    feedback_retry_max_delay: float = 30,
    startup_timeout: float = 15.0,
) -> Peers:
    """Start the peers for the hub at `hub_url` and wait until they are healthy.

    Keys go to `workdir/keys`, logs to `workdir/logs` and port files to
    `workdir/run`. Times are in seconds. Raises PeerStartError, naming the peer
    and its log file, if one exits or is not healthy within `startup_timeout`;
    the peers already started are stopped first.
    """
    # The children run in the project root, so relative paths would break.
    workdir = Path(workdir).resolve()
    keys = ensure_dev_keys(workdir / "keys")
    (workdir / "logs").mkdir(parents=True, exist_ok=True)
    (workdir / "run").mkdir(parents=True, exist_ok=True)

    utility_args = [
        "--hub-url",
        hub_url,
        "--feedback-delay",
        str(feedback_delay),
        "--collect-interval",
        str(collect_interval),
        "--retry-attempts",
        str(feedback_retry_attempts),
        "--retry-base-delay",
        str(feedback_retry_base_delay),
        "--retry-max-delay",
        str(feedback_retry_max_delay),
    ]
    if accounts_file is not None:
        utility_args += ["--accounts", str(Path(accounts_file).resolve())]
    launches = [
        (UTILITY_SIM, utility_args),
        (IDENTITY, ["--code-lifetime", str(code_lifetime)]),
        (SUBSCRIBE, []),
        (SMS, []),
    ]
    if include_wechatpay:
        launches.append((WECHATPAY, []))
    if include_alipay:
        launches.append((ALIPAY, []))

    processes: dict[str, PeerProcess] = {}
    try:
        for spec, extra_args in launches:
            processes[spec.name] = _spawn(spec, workdir, keys, extra_args)
        deadline = time.monotonic() + startup_timeout
        for peer in processes.values():
            _wait_until_healthy(peer, deadline, startup_timeout)
    except BaseException:
        _stop_processes(list(processes.values()), timeout=5.0)
        raise
    return Peers(workdir, keys, processes)


def _spawn(spec: PeerSpec, workdir: Path, keys: DevKeys, extra_args) -> PeerProcess:
    port_file = workdir / "run" / f"{spec.name}.port"
    port_file.unlink(missing_ok=True)
    log_path = workdir / "logs" / f"{spec.name}.log"
    command = [
        sys.executable,
        "-m",
        spec.module,
        "--port",
        "0",
        "--port-file",
        str(port_file),
        "--keys",
        str(keys.directory.resolve()),
        *extra_args,
    ]
    environment = dict(os.environ)
    python_path = environment.get("PYTHONPATH")
    environment["PYTHONPATH"] = (
        f"{PROJECT_ROOT}{os.pathsep}{python_path}" if python_path else str(PROJECT_ROOT)
    )
    environment["PYTHONUNBUFFERED"] = "1"
    environment[PARENT_PID_VARIABLE] = str(os.getpid())

    log_file = open(log_path, "ab")
    try:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=environment,
            cwd=PROJECT_ROOT,
        )
    except OSError:
        log_file.close()
        raise
    logger.info("started %s pid=%d log=%s", spec.name, process.pid, log_path)
    return PeerProcess(spec, process, log_path, log_file, port_file)


def _wait_until_healthy(peer: PeerProcess, deadline: float, timeout: float) -> None:
    name = peer.spec.name
    last_problem = "no port file yet"
    while time.monotonic() < deadline:
        exit_code = peer.process.poll()
        if exit_code is not None:
            raise PeerStartError(
                f"Peer {name} ({peer.spec.module}) exited with code {exit_code} "
                f"during startup; see {peer.log_path}.{_log_tail(peer.log_path)}"
            )
        if peer.port is None:
            peer.port = _read_port(peer.port_file)
        if peer.port is not None:
            try:
                response = requests.get(peer.url + peer.spec.health_path, timeout=1)
            except requests.RequestException as error:
                last_problem = f"health check failed: {error}"
            else:
                if response.status_code == 200:
                    logger.info("%s is healthy at %s", name, peer.url)
                    return
                last_problem = f"health check returned HTTP {response.status_code}"
        time.sleep(0.05)
    raise PeerStartError(
        f"Peer {name} ({peer.spec.module}) was not healthy within {timeout:.0f} s "
        f"({last_problem}); see {peer.log_path}.{_log_tail(peer.log_path)}"
    )


def _read_port(port_file: Path) -> int | None:
    try:
        text = port_file.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    # The peers replace the file atomically, so a partial number cannot appear.
    return int(text) if text.isdigit() else None


def _log_tail(log_path: Path) -> str:
    try:
        lines = log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as error:
        return f"\n(could not read the log: {error})"
    if not lines:
        return "\n(the log is empty)"
    return "\nLast log lines:\n" + "\n".join(lines[-LOG_TAIL_LINES:])


def _stop_processes(peers: list[PeerProcess], timeout: float) -> None:
    for peer in peers:
        if peer.process.poll() is None:
            peer.process.terminate()
    deadline = time.monotonic() + timeout
    for peer in peers:
        try:
            peer.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            logger.warning(
                "%s pid=%d did not stop within %.0f s, killing it",
                peer.spec.name,
                peer.process.pid,
                timeout,
            )
            peer.process.kill()
            peer.process.wait()
        peer.log_file.close()
        logger.info(
            "stopped %s pid=%d exit_code=%s",
            peer.spec.name,
            peer.process.pid,
            peer.process.returncode,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m peers.launch",
        description="Start all partner peers and keep them running until Ctrl-C.",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        required=True,
        help="Directory for keys/, logs/ and run/ (created if missing).",
    )
    parser.add_argument(
        "--hub-url",
        required=True,
        help="Base URL of the hub, e.g. http://127.0.0.1:5000.",
    )
    parser.add_argument("--accounts", type=Path, help="JSON file of accounts to load.")
    parser.add_argument(
        "--feedback-delay",
        type=float,
        default=0.5,
        help="Seconds before each feedback message of a transfer (default 0.5).",
    )
    parser.add_argument(
        "--collect-interval",
        type=float,
        default=0,
        help="Seconds between export collections for channel utilities; "
        "0 turns polling off (default 0).",
    )
    parser.add_argument(
        "--without-wechatpay",
        action="store_true",
        help="Do not start the WeChat Pay sandbox.",
    )
    parser.add_argument(
        "--without-alipay",
        action="store_true",
        help="Do not start the Alipay sandbox.",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s"
    )

    def stop_on_signal(signum, frame):
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, stop_on_signal)
    try:
        peers = start_peers(
            args.workdir,
            args.hub_url,
            accounts_file=args.accounts,
            feedback_delay=args.feedback_delay,
            collect_interval=args.collect_interval,
            include_wechatpay=not args.without_wechatpay,
            include_alipay=not args.without_alipay,
        )
    except PeerStartError as error:
        logger.error("%s", error)
        return 1

    with peers:
        # The URLs are this command's intended output.
        print(f"utility simulator:  {peers.utility_sim_url}  (utilities under /<code>)")
        print(f"identity provider:  {peers.idp_url}")
        if not args.without_wechatpay:
            print(f"wechatpay sandbox:  {peers.wechatpay_url}")
        if not args.without_alipay:
            print(f"alipay sandbox:     {peers.alipay_url}")
        print(f"subscribe messages: {peers.subscribe_url}")
        print(f"sms gateway:        {peers.sms_url}")
        print(f"keys:               {peers.keys.directory}")
        print(f"logs:               {args.workdir / 'logs'}")
        sys.stdout.flush()
        try:
            while all(p.process.poll() is None for p in peers.processes.values()):
                time.sleep(0.5)
        except KeyboardInterrupt:
            return 0
        for name, peer in peers.processes.items():
            if peer.process.poll() is not None:
                logger.error(
                    "%s exited with code %s; see %s",
                    name,
                    peer.process.returncode,
                    peer.log_path,
                )
        return 1


if __name__ == "__main__":
    sys.exit(main())

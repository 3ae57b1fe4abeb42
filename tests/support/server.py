"""Run a real `bentoml serve` on 127.0.0.1 for tests and benchmarks, and stop it by PID."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
BENTOML = str(Path(sys.executable).with_name("bentoml"))
# How many times a server that lost BentoML's own port race is started.
START_ATTEMPTS = 3
# BentoML reserves its supervisor's (circus's) control ports by binding port 0
# and releasing it before circus binds it again. Any connection opened in that
# moment, such as the readiness poll's, may take the port as its ephemeral one;
# the server then exits at start with this error, naming a port it chose itself.
_LOST_PORT_RACE = re.compile(r"ZMQError: Address already in use \(addr='tcp://127\.0\.0\.1:\d+'\)")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RunningServer:
    url: str
    process: subprocess.Popen
    log_path: Path
    ready_seconds: float
    # The decision store the server records into (LOAN_DECISION_STORE_URL).
    store_url: str = ""

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


@contextmanager
def bentoml_serve(
    target: str = "service:LoanApproval",
    *,
    env: Mapping[str, str] | None = None,
    log_path: Path,
    ready_timeout: float = 60.0,
    extra_args: tuple[str, ...] = (),
    cwd: Path = ROOT,
) -> Iterator[RunningServer]:
    """Start `bentoml serve target` in `cwd` (the project) on a free 127.0.0.1 port
    and wait for /readyz."""
    port = free_port()
    # A decision store of the server's own beside its log, unless the test names one.
    store = {
        "LOAN_DECISION_STORE_URL": f"sqlite:///{log_path.parent / f'decisions-{port}.sqlite3'}"
    }
    full_env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true", **store, **(env or {})}
    url = f"http://127.0.0.1:{port}"
    for _ in range(START_ATTEMPTS):
        started = time.monotonic()
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                [BENTOML, "serve", target, "--host", "127.0.0.1", "--port", str(port), *extra_args],
                cwd=cwd,
                env=full_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        ready = wait_ready(url, process, ready_timeout)
        if ready is not None or not lost_port_race(log_path.read_text(errors="replace")):
            break
        stop(process)
    try:
        if ready is None:
            raise RuntimeError(
                f"server did not become ready in {ready_timeout}s "
                f"(exit code {process.poll()}):\n{log_path.read_text()[-3000:]}"
            )
        yield RunningServer(
            url, process, log_path, ready - started, full_env["LOAN_DECISION_STORE_URL"]
        )
    finally:
        stop(process)


def lost_port_race(log_text: str) -> bool:
    """Whether a server exited at start because BentoML's supervisor lost the
    race for a port it had reserved (not the serving port the test chose)."""
    return _LOST_PORT_RACE.search(log_text) is not None


def wait_ready(
    url: str, process: subprocess.Popen, timeout: float, path: str = "/readyz"
) -> float | None:
    """Poll `path` until it answers 200; the monotonic time it did, or None."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        try:
            if httpx.get(f"{url}{path}", timeout=1.0).status_code == 200:
                return time.monotonic()
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    return None


def stop(process: subprocess.Popen, grace: float = 15.0) -> int | None:
    """SIGTERM the server's process group (it was started in a session of its own,
    so this reaches its workers and nothing else), then SIGKILL after `grace`."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)
    return process.returncode

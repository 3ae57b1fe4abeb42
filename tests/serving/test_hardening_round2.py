"""A second adversarial trial of the running service: each class of finding over
real HTTP or real sockets against a real `bentoml serve`, or through the real
offline command. Every exchange is bounded in size and time."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import psutil
import pytest

from loan_preprocessing.model_store import PIPELINE_FILE
from loan_preprocessing.schema import EXAMPLE_APPLICATION
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from tests.conftest import SAMPLE_CSV
from tests.support.server import ROOT, RunningServer, bentoml_serve

pytestmark = pytest.mark.e2e
EXAMPLE = EXAMPLE_APPLICATION.model_dump()
# How long a stopping server may take to exit, and one probe to answer, on a
# loaded 2-core machine (a worker's start alone takes 10 s there).
STOP_SECONDS: Final = 90.0
PROBE_SECONDS: Final = 10.0


def train_into(home: Path, seed: int) -> str:
    """A model trained by train.py in its own process into the store `home`; its tag."""
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--data",
            str(SAMPLE_CSV),
            "--seed",
            str(seed),
            "--quiet",
            "--report-dir",
            str(home / "reports"),
        ],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [tag] = re.findall(r"saved (loan_approval:\w+)", result.stdout + result.stderr)
    return tag


@pytest.fixture(scope="module")
def pristine_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("round2-home")
    train_into(home, seed=0)
    return home


@pytest.fixture
def own_home(pristine_home, tmp_path) -> Path:
    """A store of this test's own, holding the one model of `pristine_home`."""
    home = tmp_path / "home"
    shutil.copytree(pristine_home, home)
    return home


@pytest.fixture
def two_workers(own_home, tmp_path) -> Iterator[RunningServer]:
    """Two workers serving `loan_approval:latest` (the default) from `own_home`."""
    env = {"BENTOML_HOME": str(own_home), "LOAN_WORKERS": "2", "LOAN_MODEL_TAG": ""}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log", ready_timeout=120) as server:
        yield server


def workers(server: RunningServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children()


def kill_workers(server: RunningServer, count: int) -> set[int]:
    """SIGKILL `count` workers (as the kernel's OOM killer does); their pids."""
    killed = set()
    for worker in workers(server)[:count]:
        worker.send_signal(signal.SIGKILL)
        killed.add(worker.pid)
    return killed


def served_tags(server: RunningServer) -> set[str]:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return set(re.findall(r'^loan_model_info\{model_tag="([^"]*)"\} 1\.0$', text, flags=re.M))


def initialized(server: RunningServer) -> int:
    return server.log().count("Service LoanApproval initialized")


# 1. One model version per server, for the server's whole life.


def test_restarted_workers_serve_the_version_the_server_started_with(two_workers, own_home):
    [first] = [p.name for p in (own_home / "models" / "loan_approval").iterdir() if p.is_dir()]
    newer = train_into(own_home, seed=1)
    assert newer != f"loan_approval:{first}"
    before = initialized(two_workers)
    killed = kill_workers(two_workers, 2)
    deadline = time.monotonic() + STOP_SECONDS
    while initialized(two_workers) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert initialized(two_workers) == before + 2, two_workers.log()[-3000:]
    assert not killed & {w.pid for w in workers(two_workers)}
    answers = []
    for _ in range(40):  # a new connection each: both workers answer
        response = httpx.post(
            f"{two_workers.url}/predict", json={"applications": [EXAMPLE]}, timeout=30
        )
        assert response.status_code == 200, response.text
        answers.append((response.headers[MODEL_TAG_HEADER], response.json()[0]["probability"]))
    assert {tag for tag, _ in answers} == {f"loan_approval:{first}"}
    assert len({p for _, p in answers}) == 1
    assert served_tags(two_workers) == {f"loan_approval:{first}"}


# 2. A worker that cannot start stops the server; no client is left hanging.


def probe(server: RunningServer, path: str, timeout: float) -> int | None:
    """The status of one probe; None when the server refused or reset the
    connection (it is stopping). Raises httpx.TimeoutException when it does not
    answer within `timeout`."""
    try:
        return httpx.get(f"{server.url}{path}", timeout=timeout).status_code
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return None


@pytest.mark.parametrize(
    ("killed", "probe_seconds"),
    # With one worker left it answers every probe. With none, a connection waits in
    # the listening socket's backlog until a worker has started (BentoML's workers
    # share the socket; nothing else accepts), and is closed when the server stops.
    [(1, PROBE_SECONDS), (2, STOP_SECONDS)],
    ids=["one-worker", "both-workers"],
)
def test_a_worker_that_cannot_start_stops_the_server(two_workers, own_home, killed, probe_seconds):
    [model] = [p for p in (own_home / "models" / "loan_approval").iterdir() if p.is_dir()]
    with open(model / PIPELINE_FILE, "ab") as artifact:
        artifact.write(b"\0")  # the file changed after the server verified it
    kill_workers(two_workers, killed)
    statuses = []
    deadline = time.monotonic() + STOP_SECONDS
    while two_workers.process.poll() is None and time.monotonic() < deadline:
        for path in ("/livez", "/readyz"):
            try:
                statuses.append(probe(two_workers, path, probe_seconds))
            except httpx.TimeoutException:
                pytest.fail(f"{path} gave no answer in {probe_seconds} s: {statuses}")
        time.sleep(0.2)
    assert two_workers.process.poll() == 1, f"still running after {STOP_SECONDS} s"
    output = two_workers.log()
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, errors
    assert "does not match the recorded" in errors[0]
    assert set(statuses) <= {200, 503, None}

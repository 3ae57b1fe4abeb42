"""Client connections spread over both workers: the table's rule, then a real
`bentoml serve` with a client's 4 keep-alive connections, 10 times."""

from __future__ import annotations

import http.client
import json
import time

import psutil
import pytest

from bench.machine import connections_per_worker, worker_processes
from loan_preprocessing.serving.connection_balance import STALE_SECONDS, ConnectionTable
from tests.support.server import bentoml_serve

RUNS = 10
CONNECTIONS = 4
REQUESTS_PER_CONNECTION = 3


def test_a_worker_ahead_of_a_live_worker_waits(tmp_path):
    path = tmp_path / "table"
    mine, other = ConnectionTable(path, 2, 0), ConnectionTable(path, 2, 1)
    assert not mine.should_wait()
    mine.changed(+1)
    assert mine.should_wait() and not other.should_wait()
    other.changed(+1)
    assert not mine.should_wait() and not other.should_wait()
    mine.changed(+1)
    mine.changed(-1)
    assert not mine.should_wait()


def test_a_worker_that_stopped_or_is_stale_is_not_waited_for(tmp_path, monkeypatch):
    path = tmp_path / "table"
    mine, other = ConnectionTable(path, 2, 0), ConnectionTable(path, 2, 1)
    mine.changed(+1)
    other.alive = False
    other.publish()
    assert not mine.should_wait()
    other.alive = True
    other.publish()
    assert mine.should_wait()
    later = time.monotonic() + STALE_SECONDS + 1
    monkeypatch.setattr(time, "monotonic", lambda: later)
    assert not mine.should_wait()


def _cpu_seconds(process: psutil.Process) -> float:
    times = process.cpu_times()
    return times.user + times.system


def _wait_for_no_connections(pid: int, port: int) -> None:
    deadline = time.monotonic() + 10
    while sum(connections_per_worker(pid, port)) and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.mark.e2e
@pytest.mark.real_data
def test_a_clients_keep_alive_connections_use_both_workers_every_time(
    real_model_tag, real_test_rows, tmp_path
):
    """4 connections opened at once (as a client's pool or wrk opens them), each
    sending the 367 real rows to /predict: in every one of 10 runs both workers
    hold connections and both spend CPU on them. Before the balancing, most runs
    had all 4 on one worker."""
    env = {"LOAN_WORKERS": "2", "LOAN_MODEL_TAG": real_model_tag}
    body = json.dumps({"applications": real_test_rows})
    headers = {"Content-Type": "application/json"}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        # /readyz answers once one worker is up: wait for the second too.
        deadline = time.monotonic() + 120
        while server.log().count("Service LoanApproval initialized") < 2:
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.1)
        time.sleep(2 * STALE_SECONDS)  # every worker's heartbeat is fresh
        pid, port = server.process.pid, server.port
        workers = worker_processes(pid)
        assert len(workers) == 2
        splits, cpu_shares = [], []
        for _ in range(RUNS):
            clients = [http.client.HTTPConnection("127.0.0.1", port, timeout=60) for _ in range(4)]
            for client in clients:
                client.connect()
            cpu_before = [_cpu_seconds(w) for w in workers]
            for _ in range(REQUESTS_PER_CONNECTION):
                for client in clients:
                    client.request("POST", "/predict", body, headers)
                for client in clients:
                    answer = client.getresponse()
                    answer.read()
                    assert answer.status == 200
            splits.append(connections_per_worker(pid, port))
            spent = [_cpu_seconds(w) - b for w, b in zip(workers, cpu_before, strict=True)]
            cpu_shares.append(min(spent) / sum(spent))
            for client in clients:
                client.close()
            _wait_for_no_connections(pid, port)
    assert all(len(s) == 2 and min(s) >= 1 for s in splits), splits
    # Each worker did a real part of the work (2 connections each: about half).
    assert min(cpu_shares) > 0.2, (splits, cpu_shares)

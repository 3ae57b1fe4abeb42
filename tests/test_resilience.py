"""Graceful shutdown under load, and a bounded soak with memory sampled.

Traffic goes only to 127.0.0.1, from a few threads, for a bounded time."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

import httpx
import psutil
import pytest

from loan_preprocessing.records.store import DecisionStore
from loan_preprocessing.schema import EXAMPLE_APPLICATION
from tests.support.server import bentoml_serve

pytestmark = pytest.mark.e2e
EXAMPLE = EXAMPLE_APPLICATION.model_dump()
SOAK_SECONDS = float(os.environ.get("LOAN_SOAK_SECONDS", "60"))


@dataclass
class Load:
    """Single-application requests from `threads` threads until stopped; each has a
    unique Loan_ID so the server's prediction log can tell which it decided."""

    url: str
    threads: int = 6
    outcomes: Counter = field(default_factory=Counter)
    answered_ids: set = field(default_factory=set)
    failed: list = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._workers = [threading.Thread(target=self._run, args=(n,)) for n in range(self.threads)]

    def __enter__(self) -> Load:
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(30)

    def _run(self, thread: int) -> None:
        count = 0
        while not self._stop.is_set():
            loan_id = f"T{thread}-{count}"
            count += 1
            body = {"applications": [{**EXAMPLE, "Loan_ID": loan_id}]}
            try:
                # A new connection per request: no keep-alive races at shutdown.
                response = httpx.post(
                    f"{self.url}/predict", json=body, timeout=30, headers={"connection": "close"}
                )
            except httpx.ConnectError:
                outcome = "refused"  # never reached the server: not accepted
                time.sleep(0.05)
            except httpx.HTTPError as exc:
                outcome = f"dropped:{type(exc).__name__}"
            else:
                outcome = str(response.status_code)
            with self._lock:
                self.outcomes[outcome] += 1
                if outcome == "200":
                    self.answered_ids.add(loan_id)
                elif outcome != "refused":
                    self.failed.append((loan_id, outcome))


ANSWERED_BEFORE_SIGTERM = 50


def recorded(url: str) -> list[dict]:
    """Every decision recorded in the store at `url`."""
    store = DecisionStore(url)
    try:
        return list(store.export())
    finally:
        store.close()


def test_sigterm_under_load_lets_accepted_requests_finish(real_model_tag_or_none, tmp_path):
    env = {"LOAN_MODEL_TAG": ""}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        with Load(server.url) as load:
            # Under load for real before the signal, however busy the machine is:
            # a count of answers, not a number of seconds.
            deadline = time.monotonic() + 60
            while load.outcomes["200"] < ANSWERED_BEFORE_SIGTERM and time.monotonic() < deadline:
                time.sleep(0.1)
            # What Kubernetes does: SIGTERM to the main process only.
            os.kill(server.process.pid, signal.SIGTERM)
            server.process.wait(30)
            time.sleep(0.5)
        decided = {r["application"]["Loan_ID"] for r in recorded(server.store_url)}
    print(f"\nshutdown under load: {dict(load.outcomes)}; decided by the server: {len(decided)}")
    assert load.outcomes["200"] >= ANSWERED_BEFORE_SIGTERM
    assert server.process.returncode == 0
    # Every request the server decided was answered; no request got a 5xx.
    assert decided <= load.answered_ids, sorted(decided - load.answered_ids)[:5]
    assert not [f for f in load.failed if not f[1].startswith("dropped")], load.failed[:5]


@pytest.mark.slow
def test_soak_memory_stays_flat_and_nothing_fails(real_model_tag_or_none, tmp_path):
    with bentoml_serve(env={"LOAN_MODEL_TAG": ""}, log_path=tmp_path / "serve.log") as server:
        workers = psutil.Process(server.process.pid).children(recursive=True)
        samples: list[float] = []
        with Load(server.url, threads=4) as load:
            started = time.monotonic()
            while time.monotonic() - started < SOAK_SECONDS:
                time.sleep(SOAK_SECONDS / 12)
                samples.append(sum(w.memory_info().rss for w in workers if w.is_running()) / 2**20)
    print(
        f"\nsoak {SOAK_SECONDS:.0f}s: {dict(load.outcomes)}; "
        f"RSS of all server processes, MB: {[round(s) for s in samples]}"
    )
    assert load.outcomes["200"] > 100
    # BentoML's batcher sheds a request it cannot serve within LOAN_MAX_LATENCY_MS
    # with the documented 503 (retry). On this shared 2-core machine a stalled disk
    # sync under a decision-store commit has made it shed 2 requests in 3,315: rare
    # sheds (at most 1 in 1,000 answers) are allowed; any other failure is not.
    assert set(load.outcomes) <= {"200", "503"}, load.outcomes
    assert load.outcomes["503"] <= load.outcomes["200"] / 1000, load.outcomes
    # After warm-up (first quarter), resident memory grows by less than 25 MB.
    settled = samples[len(samples) // 4 :]
    assert max(settled) - settled[0] < 25, samples

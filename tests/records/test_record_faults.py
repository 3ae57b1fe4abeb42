"""Faults against a real `bentoml serve` recording decisions, over real HTTP, each
bounded in requests and seconds: a worker SIGKILLed under load, PostgreSQL
stopped mid-load and started again, a full disk (a small tmpfs), a read-only
store, two servers on one PostgreSQL, a 504, and retries with and without an
Idempotency-Key. Each test prints its figures (answered, records, duplicates,
undelivered, 503s); `pytest -s` shows them."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import psutil
import pytest

from loan_preprocessing.records.store import DecisionStore
from tests.records.support import applications, delivered_counter, records, serve_recording
from tests.support.server import BENTOML, ROOT, free_port, stop

# Bounds of every load below.
MAX_SECONDS = 60.0
THREADS = 4


class Load:
    """THREADS clients sending single-row /predict requests (unique Loan_IDs, one
    keep-alive connection each) until stopped or MAX_SECONDS pass."""

    def __init__(self, urls: list[str], rows: int = 1) -> None:
        self.urls = urls
        self.rows = rows
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.outcomes: collections.Counter[str] = collections.Counter()
        # Loan_ID -> the decision answered (200 only).
        self.answered: dict[str, dict] = {}
        self.sent: set[str] = set()
        self.missing_retry_after = 0
        self.threads = [
            threading.Thread(target=self._run, args=(i,), daemon=True) for i in range(THREADS)
        ]

    def __enter__(self) -> Load:
        self.started = time.monotonic()
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def count(self, outcome: str) -> int:
        with self.lock:
            return self.outcomes[outcome]

    def wait_for(self, outcome: str, at_least: int, seconds: float = 30.0) -> None:
        deadline = time.monotonic() + seconds
        while self.count(outcome) < at_least and time.monotonic() < deadline:
            time.sleep(0.05)

    def _run(self, index: int) -> None:
        url = self.urls[index % len(self.urls)]
        with httpx.Client(timeout=15) as client:
            while not self.stop.is_set() and time.monotonic() - self.started < MAX_SECONDS:
                rows = applications(self.rows, prefix=f"L{index}-")
                with self.lock:
                    self.sent.update(r["Loan_ID"] for r in rows)
                try:
                    response = client.post(f"{url}/predict", json={"applications": rows})
                except httpx.HTTPError:
                    outcome = "dropped"
                else:
                    outcome = str(response.status_code)
                with self.lock:
                    self.outcomes[outcome] += 1
                    if outcome == "200":
                        for row, decision in zip(rows, response.json(), strict=True):
                            self.answered[row["Loan_ID"]] = decision
                    elif outcome == "503" and "retry-after" not in response.headers:
                        self.missing_retry_after += 1
                if outcome != "200":
                    time.sleep(0.05)


def audit(load: Load, store_url: str, wait_seconds: float = 10.0) -> dict[str, int]:
    """Compare what was answered with what was recorded (waiting for delivery
    marks); the figures, printed."""
    deadline = time.monotonic() + wait_seconds
    while True:
        found = [r for r in records(store_url) if r["application"]["Loan_ID"] in load.sent]
        by_loan = collections.defaultdict(list)
        for record in found:
            by_loan[record["application"]["Loan_ID"]].append(record)
        delivered = {r["decision_id"] for r in found if r["delivered"]}
        pending = [loan for loan, d in load.answered.items() if d["decision_id"] not in delivered]
        if not pending or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    unmatched = 0
    for loan, decision in load.answered.items():
        mine = [r for r in by_loan[loan] if r["decision_id"] == decision["decision_id"]]
        if len(mine) != 1 or (
            mine[0]["probability"],
            mine[0]["Loan_Status"],
            mine[0]["reasons"],
        ) != (
            decision["probability"],
            decision["Loan_Status"],
            [r["code"] for r in decision["reasons"]],
        ):
            unmatched += 1
    figures = {
        "requests": sum(load.outcomes.values()),
        "answered": len(load.answered),
        "records": len(found),
        "duplicates": sum(len(v) - 1 for v in by_loan.values() if len(v) > 1),
        "answered_without_matching_record": unmatched,
        "answered_not_marked_delivered": len(pending),
        "undelivered": sum(not r["delivered"] for r in found),
        "delivered_but_not_answered": sum(
            r["delivered"] for r in found if r["application"]["Loan_ID"] not in load.answered
        ),
        **{f"status_{k}": v for k, v in sorted(load.outcomes.items())},
    }
    print(f"\nfigures: {figures}")
    return figures


def _ready(server) -> int:
    try:
        return httpx.get(f"{server.url}/readyz", timeout=5).status_code
    except httpx.HTTPError:
        return 0


def test_sigkill_of_a_worker_under_load_loses_no_answered_decision(
    real_model_tag_or_none, tmp_path
):
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    with serve_recording(url, tmp_path, LOAN_WORKERS="2") as server:
        workers = psutil.Process(server.process.pid).children(recursive=True)
        with Load([server.url]) as load:
            load.wait_for("200", 150)
            victim = max(workers, key=lambda p: p.memory_info().rss)
            os.kill(victim.pid, signal.SIGKILL)
            load.wait_for("200", load.count("200") + 150)
        figures = audit(load, url)
    assert figures["answered"] >= 150
    assert figures["answered_without_matching_record"] == 0
    assert figures["duplicates"] == 0
    assert figures["delivered_but_not_answered"] == 0
    # Answers handed to the connection in the moment before the kill, whose
    # delivery mark the killed worker had not committed yet: about one per
    # client in flight (THREADS; twice that for a client whose next answer came
    # within the same moment), each answered and recorded all the same.
    assert figures["answered_not_marked_delivered"] <= 2 * THREADS
    assert set(load.outcomes) <= {"200", "dropped"}, load.outcomes


def test_postgresql_stopped_mid_load_gives_503s_then_recovers_by_itself(
    real_model_tag_or_none, postgres, tmp_path
):
    url = postgres.new_database()
    with serve_recording(url, tmp_path, LOAN_WORKERS="1") as server:
        with Load([server.url]) as load:
            load.wait_for("200", 50)
            postgres.stop("fast")
            try:
                load.wait_for("503", 10)
                ready_while_down = _ready(server)
            finally:
                postgres.start()
            answered = load.count("200")
            deadline = time.monotonic() + 30
            while _ready(server) != 200 and time.monotonic() < deadline:
                time.sleep(0.2)
            load.wait_for("200", answered + 50)
        figures = audit(load, url)
    assert figures["status_503"] >= 10
    assert ready_while_down == 503
    assert load.missing_retry_after == 0
    assert load.count("200") >= answered + 50, "no recovery without a restart"
    assert set(load.outcomes) <= {"200", "503"}, load.outcomes  # never a 500
    assert figures["answered_without_matching_record"] == 0
    assert figures["answered_not_marked_delivered"] == 0
    assert figures["duplicates"] == 0


@contextmanager
def tmpfs(folder: Path, size: str) -> Iterator[Path]:
    """A small tmpfs mounted at `folder` (root only: the test skips, loudly, otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: this test mounts a small tmpfs to fill a disk; run it as root")
    folder.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"CANNOT MOUNT A TMPFS here ({mounted.stderr.strip()}); this test needs one")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def _fill(folder: Path) -> Path:
    filler = folder / "filler"
    # Unbuffered: a write the disk refused must not be tried again at close.
    with open(filler, "wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 65536)
        except OSError:
            pass
    return filler


def test_a_full_disk_gives_503s_and_no_partial_record(real_model_tag_or_none, tmp_path):
    # Room for SQLite's write-ahead log to reach its checkpoint (1000 pages, 4 MB)
    # beside the database: on a smaller disk the log can never be checkpointed,
    # so once space comes back it grows until the disk is full again.
    with tmpfs(tmp_path / "disk", "16m") as disk:
        url = f"sqlite:///{disk / 'decisions.sqlite3'}"
        with serve_recording(url, tmp_path, LOAN_WORKERS="1") as server:
            with Load([server.url], rows=20) as load:
                load.wait_for("200", 20)
                filler = _fill(disk)
                load.wait_for("503", 5)
                full_503s = load.count("503")
                filler.unlink()
                answered = load.count("200")
                load.wait_for("200", answered + 20)
            figures = audit(load, url)
    assert full_503s >= 5
    assert set(load.outcomes) <= {"200", "503"}, load.outcomes
    assert load.count("200") >= answered + 20, "no recovery once space came back"
    assert figures["answered_without_matching_record"] == 0
    assert figures["duplicates"] == 0
    # No partial record: every recorded request has all of its 20 rows.
    assert figures["records"] % 20 == 0, figures


def test_a_read_only_store_stops_the_server_at_start_with_one_line(
    real_model_tag_or_none, tmp_path
):
    """A store that cannot be written (here a read-only mount: file modes do not
    stop root) is refused at start, not served while every request fails."""
    with tmpfs(tmp_path / "disk", "20m") as disk:
        url = f"sqlite:///{disk / 'decisions.sqlite3'}"
        store = DecisionStore(url)
        store.prepare()
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
        log = tmp_path / "serve.log"
        env = {
            **os.environ,
            "BENTOML_DO_NOT_TRACK": "true",
            "LOAN_MODEL_TAG": "",
            "LOAN_DECISION_STORE_URL": url,
        }
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [BENTOML, "serve", "service:LoanApproval", "--host", "127.0.0.1",
                 "--port", str(free_port())],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            returncode = process.wait(90)
        finally:
            stop(process)
        text = log.read_text(errors="replace")
    print(f"\nread-only store at start: exit {returncode}; {text.strip().splitlines()[-1]}")
    assert returncode != 0
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text[-2000:]
    assert str(disk / "decisions.sqlite3") in lines[0]
    assert "unable to open" in lines[0] or "readonly" in lines[0]


def test_two_servers_on_one_postgresql_record_every_answer_once(
    real_model_tag_or_none, postgres, tmp_path
):
    url = postgres.new_database()
    with (
        serve_recording(url, tmp_path, LOAN_WORKERS="1") as first,
        serve_recording(url, tmp_path, LOAN_WORKERS="1") as second,
    ):
        with Load([first.url, second.url]) as load:
            load.wait_for("200", 300)
        figures = audit(load, url)
        counted = delivered_counter(first) + delivered_counter(second)
    assert figures["answered"] >= 300
    assert figures["records"] == figures["answered"]
    assert figures["duplicates"] == figures["undelivered"] == 0
    assert figures["answered_without_matching_record"] == 0
    assert counted == figures["answered"]


BIG = 4000


def test_a_504_leaves_its_records_undelivered_and_uncounted(real_model_tag_or_none, tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    rows = applications(BIG, prefix="T504-")
    with serve_recording(url, tmp_path, LOAN_WORKERS="1", LOAN_TIMEOUT_SECONDS="0.05") as server:
        statuses = [
            httpx.post(f"{server.url}/predict", json={"applications": rows}, timeout=60).status_code
            for _ in range(3)
        ]
        time.sleep(3)  # the batch goes on after the 504, and commits its records
        counted = delivered_counter(server)
    found = [r for r in records(url) if r["application"]["Loan_ID"].startswith("T504-")]
    print(f"\n504 figures: statuses {statuses}, records {len(found)}, counted {counted}")
    if 504 not in statuses:
        pytest.skip(f"NO 504 PRODUCED: {BIG} rows answered within 0.05 s ({statuses})")
    assert all(s in (200, 504) for s in statuses)
    delivered = sum(r["delivered"] for r in found)
    assert delivered == BIG * statuses.count(200)
    assert counted == BIG * statuses.count(200)


def test_retries_after_a_client_left_decide_twice_without_a_key_and_once_with_one(
    real_model_tag_or_none, tmp_path
):
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    figures = {}
    with serve_recording(url, tmp_path, LOAN_WORKERS="1") as server:
        for keyed in (False, True):
            prefix = "KEY-" if keyed else "NOKEY-"
            rows = applications(2000, prefix=prefix)
            headers = {"Idempotency-Key": f"{prefix}retry"} if keyed else {}
            body = {"applications": rows}
            # The client gives up before the answer comes, as on a lost connection.
            with pytest.raises(httpx.TimeoutException):
                httpx.post(
                    f"{server.url}/predict",
                    json=body,
                    headers=headers,
                    timeout=httpx.Timeout(30.0, read=0.05),
                )
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and not [
                r for r in records(url) if r["application"]["Loan_ID"].startswith(prefix)
            ]:
                time.sleep(0.2)
            retry = httpx.post(f"{server.url}/predict", json=body, headers=headers, timeout=60)
            assert retry.status_code == 200
            time.sleep(2)
            mine = [r for r in records(url) if r["application"]["Loan_ID"].startswith(prefix)]
            answered_ids = {d["decision_id"] for d in retry.json()}
            figures[prefix] = {
                "records": len(mine),
                "undelivered": sum(not r["delivered"] for r in mine),
                "replayed": retry.headers.get("Idempotent-Replayed") == "true",
            }
            assert {r["decision_id"] for r in mine if r["delivered"]} == answered_ids
            if keyed:
                # Recorded once: the retry got the first attempt's decisions.
                assert len(mine) == 2000
                assert figures[prefix]["undelivered"] == 0
                assert figures[prefix]["replayed"]
            else:
                # Without a key the retry is a new request: a second decision on
                # each application, the first one recorded as never delivered.
                assert len(mine) == 4000
                assert figures[prefix]["undelivered"] == 2000
    print(f"\nretry figures: {figures}")


STALL_SECONDS = 1.5
STALLED_REQUESTS = 16


def test_a_stalled_commit_sheds_nothing_and_each_answer_waits_for_its_record(
    real_model_tag_or_none, tmp_path
):
    """A disk or lock that stalls a commit for longer than the batcher's latency
    target (LOAN_MAX_LATENCY_MS, 500 ms) holds the answers until their records
    commit, and sheds none: the batcher does not wait for commits."""
    path = tmp_path / "decisions.sqlite3"
    url = f"sqlite:///{path}"
    with serve_recording(url, tmp_path, LOAN_WORKERS="1") as server:
        warm = httpx.post(f"{server.url}/predict", json={"applications": applications(1)})
        assert warm.status_code == 200, warm.text

        def one(index: int) -> tuple[int, float, tuple[list[dict], httpx.Response]]:
            rows = applications(1, prefix=f"STALL{index}-")
            response = httpx.post(f"{server.url}/predict", json={"applications": rows}, timeout=30)
            return response.status_code, time.monotonic(), (rows, response)

        # Another writer holds the store's write lock (within its 5 s busy timeout).
        holder = sqlite3.connect(path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        with ThreadPoolExecutor(STALLED_REQUESTS) as pool:
            answers = [pool.submit(one, i) for i in range(STALLED_REQUESTS)]
            time.sleep(STALL_SECONDS)
            released = time.monotonic()
            holder.execute("COMMIT")
            results = [a.result() for a in answers]
        holder.close()
        statuses = collections.Counter(status for status, _, _ in results)
        found = by_loan_id(url, "STALL")
        print(f"\nstalled-commit figures: statuses {dict(statuses)}, records {len(found)}")
        assert statuses == {200: STALLED_REQUESTS}, [r.text for _, _, (_, r) in results]
        # No answer left before the lock did: each waited for its own commit.
        assert all(at >= released for _, at, _ in results)
        for _, _, (rows, response) in results:
            [decision] = response.json()
            assert found[rows[0]["Loan_ID"]]["decision_id"] == decision["decision_id"]


def by_loan_id(url: str, prefix: str) -> dict[str, dict]:
    return {
        r["application"]["Loan_ID"]: r
        for r in records(url)
        if r["application"]["Loan_ID"].startswith(prefix)
    }

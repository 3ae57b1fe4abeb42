"""Helpers of the decision-record tests: a served model recording into a given
store, the records read back, and applications with unique Loan_IDs."""

from __future__ import annotations

import itertools
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from loan_preprocessing.records.store import DecisionStore
from loan_preprocessing.schema import EXAMPLE_APPLICATION
from tests.support.server import RunningServer, bentoml_serve

EXAMPLE = EXAMPLE_APPLICATION.model_dump()
_numbers = itertools.count(1)


def applications(count: int, prefix: str = "T") -> list[dict]:
    """`count` applications with unique Loan_IDs, every other one rejected (no
    credit history), so records hold reasons too."""
    made = []
    for _ in range(count):
        n = next(_numbers)
        made.append(
            {
                **EXAMPLE,
                "Loan_ID": f"{prefix}{n}",
                "Gender": "Female" if n % 3 else "Male",
                "Credit_History": n % 2,
                "ApplicantIncome": 2000 + 37 * n,
            }
        )
    return made


def records(url: str) -> list[dict]:
    """Every decision in the store, oldest first."""
    store = DecisionStore(url)
    try:
        return list(store.export())
    finally:
        store.close()


def by_id(url: str) -> dict[str, dict]:
    return {r["decision_id"]: r for r in records(url)}


def wait_delivered(url: str, decision_ids: set[str], timeout: float = 10.0) -> dict[str, dict]:
    """The records, once every one of `decision_ids` is marked delivered (marks are
    committed by a thread of each worker, a moment after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        found = by_id(url)
        if all(found.get(i, {}).get("delivered") for i in decision_ids):
            return found
        if time.monotonic() > deadline:
            return found
        time.sleep(0.2)


def delivered_counter(server: RunningServer) -> float:
    """loan_decisions_total over both statuses, from /metrics."""
    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    return sum(
        float(v) for v in re.findall(r"^loan_decisions_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    )


@contextmanager
def serve_recording(store_url: str, folder: Path, **settings: str) -> Iterator[RunningServer]:
    env = {"LOAN_MODEL_TAG": "", "LOAN_DECISION_STORE_URL": store_url, **settings}
    with bentoml_serve(env=env, log_path=folder / f"serve-{next(_numbers)}.log") as server:
        yield server

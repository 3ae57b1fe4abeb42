"""A challenger scored in shadow: a real `bentoml serve` with two versions trained
on the real data with different seeds. The client gets the champion's answers
only; the challenger's decisions on the same applications are counted, and
checked against both versions' decisions computed here independently."""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import prometheus_client as prom
import pytest

from loan_preprocessing.decide import Scorer
from loan_preprocessing.inputs.columns import validate_columns
from loan_preprocessing.model.store import ModelLoadError, get_model
from loan_preprocessing.records.challenger import export_challenger
from loan_preprocessing.records.store import DecisionStore
from loan_preprocessing.schema import TARGET_COLUMN, LoanApplication
from loan_preprocessing.serving.metrics import DomainMetrics
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from loan_preprocessing.serving.open_inference import INFER_PATH
from loan_preprocessing.serving.shadow import ChallengerShadow, resolve_challenger_tag
from tests.conftest import REAL_TRAINING_CSV, require_real_data
from tests.serving.test_open_inference import v2_request
from tests.support.server import bentoml_serve
from tests.support.trained import real_challenger

ANSWER_FIELDS = {"decision_id", "Loan_ID", "Loan_Status", "probability", "reasons", "counteroffer"}


@pytest.fixture(scope="session")
def challenger_tag(real_model_tag: str) -> str:
    """A second version trained on the same real data with another seed (other
    folds, other holdout, other search path), stored beside the champion."""
    require_real_data()
    tag = real_challenger()
    assert tag != real_model_tag
    return tag


@pytest.fixture(scope="session")
def real_training_rows() -> list[dict]:
    """The 614 labelled real applications as JSON records, without their label."""
    require_real_data()
    import json

    import pandas as pd

    frame = pd.read_csv(REAL_TRAINING_CSV, encoding="utf-8-sig").drop(columns=[TARGET_COLUMN])
    return json.loads(frame.to_json(orient="records"))


def _metric(text: str, name: str) -> float:
    found = re.findall(rf"^{re.escape(name)} (\S+)$", text, re.M)
    return float(found[0]) if found else 0.0


def _challenger_records(url: str, expected: int) -> dict[str, dict]:
    store = DecisionStore(url)
    try:
        deadline = time.monotonic() + 30
        while True:
            rows = {r["decision_id"]: r for r in export_challenger(store)}
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            time.sleep(0.2)
    finally:
        store.close()


def _statuses(scorer: Scorer, rows: list[dict]) -> list[str]:
    applications = [LoanApplication.model_validate(r) for r in rows]
    return [d.Loan_Status for d in scorer.decide(applications)]


def test_challenger_scores_in_shadow_and_the_client_sees_the_champion(
    real_model_tag: str,
    challenger_tag: str,
    real_test_rows: list[dict],
    real_training_rows: list[dict],
    tmp_path: Path,
) -> None:
    champion = Scorer.from_model(get_model(real_model_tag))
    challenger = Scorer.from_model(get_model(challenger_tag))
    store_url = f"sqlite:///{tmp_path / 'decisions.db'}"
    v2_rows = real_training_rows[:50]
    env = {
        "LOAN_MODEL_TAG": real_model_tag,
        "LOAN_CHALLENGER_TAG": challenger_tag,
        "LOAN_WORKERS": "1",
        "LOAN_DECISION_STORE_URL": store_url,
    }
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log", ready_timeout=180) as server:
        answers = []
        for rows in (real_test_rows, real_training_rows):
            response = httpx.post(f"{server.url}/predict", json={"applications": rows}, timeout=60)
            assert response.status_code == 200, response.text
            assert response.headers[MODEL_TAG_HEADER] == real_model_tag
            answers += response.json()
        v2 = httpx.post(f"{server.url}{INFER_PATH}", json=v2_request(v2_rows), timeout=60)
        assert v2.status_code == 200, v2.text
        metrics = httpx.get(f"{server.url}/metrics", timeout=10).text
        # Recorded from the store's thread after the answers: wait for the last.
        shadow = _challenger_records(store_url, len(answers) + len(v2_rows))
        log = server.log()
    sent = real_test_rows + real_training_rows
    # The client gets the champion's decisions, nothing of the challenger's.
    assert all(set(a) == ANSWER_FIELDS for a in answers)
    served = [a["Loan_Status"] for a in answers]
    assert served == _statuses(champion, sent)
    expected_p = champion.probabilities([LoanApplication.model_validate(r) for r in sent])
    assert np.allclose([a["probability"] for a in answers], expected_p, atol=1e-6)
    # The challenger decided the same applications (the V2 rows too), in shadow.
    everything = sent + v2_rows
    ours = _statuses(champion, everything)
    theirs = _statuses(challenger, everything)
    assert ours != theirs, "the two versions should disagree somewhere on 981 applications"
    counted = Counter(theirs)
    for status in ("Y", "N"):
        assert (
            _metric(metrics, f'loan_challenger_decisions_total{{loan_status="{status}"}}')
            == counted[status]
        )
    flips = Counter(f"{a}->{b}" for a, b in zip(ours, theirs, strict=True) if a != b)
    for direction in ("N->Y", "Y->N"):
        assert (
            _metric(metrics, f'loan_challenger_flips_total{{direction="{direction}"}}')
            == flips[direction]
        )
    assert _metric(metrics, "loan_challenger_failures_total") == 0
    # Recorded beside each of the champion's decisions, the challenger's own.
    challenged = challenger.decide([LoanApplication.model_validate(r) for r in sent])
    for answer, expected in zip(answers, challenged, strict=True):
        row = shadow[answer["decision_id"]]
        assert row["model_tag"] == challenger_tag
        assert row["Loan_Status"] == expected.Loan_Status
        assert row["probability"] == pytest.approx(expected.probability, abs=1e-9)
        assert row["reason_codes"] == ";".join(r.code for r in expected.reasons)
    assert _metric(metrics, 'loan_decisions_total{loan_status="Y"}') == Counter(ours)["Y"]
    assert "Traceback" not in log


@pytest.mark.parametrize("which", ["missing", "champion"])
def test_a_challenger_that_cannot_load_stops_the_service_with_one_line(
    real_model_tag: str, which: str, tmp_path: Path
) -> None:
    tag = "loan_approval:nosuchversion" if which == "missing" else real_model_tag
    env = {"LOAN_MODEL_TAG": real_model_tag, "LOAN_CHALLENGER_TAG": tag, "LOAN_WORKERS": "1"}
    log_path = tmp_path / "serve.log"
    with (
        pytest.raises(RuntimeError, match="did not become ready"),
        bentoml_serve(env=env, log_path=log_path, ready_timeout=90),
    ):
        pass
    log = log_path.read_text()
    lines = [line for line in log.splitlines() if f"LOAN_CHALLENGER_TAG={tag}" in line]
    assert len(lines) == 1, log[-3000:]
    assert "Traceback" not in log
    with pytest.raises(ModelLoadError, match="LOAN_CHALLENGER_TAG"):
        resolve_challenger_tag(tag, real_model_tag)


def _private_metrics() -> DomainMetrics:
    registry = prom.CollectorRegistry()
    counter = lambda name, *labels: prom.Counter(name, name, list(labels), registry=registry)  # noqa: E731
    return DomainMetrics(
        decisions=counter("d", "loan_status"),
        approval_probability=prom.Histogram("p", "p", registry=registry),
        validation_failures=counter("v", "field"),
        model_info=prom.Gauge("m", "m", ["model_tag"], registry=registry),
        unscored_rows=counter("u"),
        challenger_decisions=counter("cd", "loan_status"),
        challenger_flips=counter("cf", "direction"),
        challenger_failures=counter("cx"),
    )


def test_a_challenger_failing_at_run_time_is_counted_and_costs_the_champion_nothing(
    challenger_tag: str, real_test_rows: list[dict]
) -> None:
    """The challenger's real Scorer with its classifier made to raise (a fault
    injected into the loaded version, not a stand-in for it)."""
    broken = Scorer.from_model(get_model(challenger_tag))

    def raising(_: np.ndarray) -> np.ndarray:
        raise MemoryError("injected")

    object.__setattr__(broken, "_classifier_proba", raising)
    metrics = _private_metrics()
    shadow = ChallengerShadow(broken, metrics)
    applications = [LoanApplication.model_validate(r) for r in real_test_rows[:40]]
    by_objects = shadow.decide(applications)
    rows = real_test_rows[:40]
    columns = validate_columns({name: [r.get(name) for r in rows] for name in rows[0]}, len(rows))
    by_columns = shadow.decide_columns(columns)
    for result in (by_objects, by_columns):
        assert len(result) == 40
        assert result.statuses == [None] * 40 and result.model_tag == challenger_tag
    assert metrics.challenger_failures._value.get() == 80


def test_challenger_records_never_wait_in_memory_without_bound(tmp_path: Path) -> None:
    """With every slot of the store's queue taken (a store far behind), the next
    batch's challenger decisions are counted as failures, not queued; a write the
    store refuses (here: decisions it never recorded) is counted the same way."""
    from loan_preprocessing.serving.recording import (
        MAX_PENDING_CHALLENGER_BATCHES,
        DecisionRecorder,
    )
    from loan_preprocessing.serving.shadow import ShadowDecisions

    store = DecisionStore(f"sqlite:///{tmp_path / 'd.sqlite3'}")
    store.prepare()
    metrics = _private_metrics()
    recorder = DecisionRecorder(store, "loan_approval:champion", "0" * 64, metrics)
    shadow = ShadowDecisions("loan_approval:challenger", ["Y", "N"], [0.9, 0.1], ["", "INCOME"])
    try:
        for _ in range(MAX_PENDING_CHALLENGER_BATCHES):
            assert recorder.challenger_slots.acquire(blocking=False)
        recorder.record_challenger(["N", "N"], ["a" * 32, "b" * 32], shadow)
        assert metrics.challenger_failures._value.get() == 2
        # Counted all the same: its decisions and the flip.
        assert metrics.challenger_flips.labels(direction="N->Y")._value.get() == 1
        recorder.challenger_slots.release()
        recorder.record_challenger(["N", "N"], ["a" * 32, "b" * 32], shadow)
        recorder.executor.submit(lambda: None).result(10)  # the write has run
        assert metrics.challenger_failures._value.get() == 4
    finally:
        recorder.close()

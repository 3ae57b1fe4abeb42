"""The model-risk workflow end to end on the real Loan Prediction data: a real
`bentoml serve` of the real-data model with a challenger trained with another
seed in shadow, recording into a real store (a SQLite file and a PostgreSQL
server); the real test and training applications sent over HTTP; outcomes
posted for the training applications from their Loan_Status (Y: repaid, N:
defaulted; a stand-in for repayment, which the data set does not hold); a few
overrides; the three reports read from the store, and their figures checked
against the same figures computed here from the two versions' own decisions."""

from __future__ import annotations

import io
import json

import httpx
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from loan_preprocessing.decide import Scorer
from loan_preprocessing.model.store import get_model
from loan_preprocessing.operations.model_risk.__main__ import main as model_risk_main
from loan_preprocessing.schema import TARGET_COLUMN, LoanApplication
from tests.conftest import REAL_TEST_CSV, REAL_TRAINING_CSV, require_real_data
from tests.records.support import serve_recording, wait_delivered
from tests.support.trained import real_challenger

pytestmark = pytest.mark.e2e
OVERRIDDEN = 5
RATIONALE = "Manual review: compensating factors"
DAY = "2026-11-30"


def _rows(path) -> tuple[list[dict], list[str] | None]:
    frame = pd.read_csv(path, encoding="utf-8-sig")
    labels = list(frame.pop(TARGET_COLUMN)) if TARGET_COLUMN in frame else None
    return json.loads(frame.to_json(orient="records")), labels


def _report(name: str, url: str, capsys) -> dict:
    capsys.readouterr()  # what was printed before (training's lines)
    assert model_risk_main([name, "--url", url, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _rate(flags: np.ndarray) -> float:
    return round(float(np.mean(flags)), 4)


def test_the_three_reports_agree_with_the_figures_computed_independently(
    real_model_tag, store_url, tmp_path, capsys
):
    require_real_data()
    champion, challenger = real_model_tag, real_challenger()
    assert champion != challenger
    test_rows, _ = _rows(REAL_TEST_CSV)
    training_rows, labels = _rows(REAL_TRAINING_CSV)
    assert labels is not None
    env = {"LOAN_MODEL_TAG": champion, "LOAN_CHALLENGER_TAG": challenger}
    with serve_recording(store_url, tmp_path, **env) as server:
        answered = []
        for rows in (test_rows, training_rows):  # training last: its Loan_IDs' newest
            response = httpx.post(f"{server.url}/predict", json={"applications": rows}, timeout=300)
            assert response.status_code == 200, response.text[:500]
            answered.append(response.json())
        test_answers, training_answers = answered
        wait_delivered(store_url, {d["decision_id"] for d in test_answers + training_answers})
        # Outcomes: half as a JSON list by decision_id, half as a CSV upload by Loan_ID.
        outcome = ["repaid" if label == "Y" else "defaulted" for label in labels]
        half = len(training_rows) // 2
        listed = [
            {"decision_id": d["decision_id"], "outcome": o, "observed_on": DAY}
            for d, o in zip(training_answers[:half], outcome[:half], strict=True)
        ]
        posted = httpx.post(f"{server.url}/outcomes", json=listed, timeout=120)
        assert posted.status_code == 200, posted.text[:500]
        upload = io.StringIO()
        pd.DataFrame(
            {
                "Loan_ID": [r["Loan_ID"] for r in training_rows[half:]],
                "outcome": outcome[half:],
                "observed_on": DAY,
            }
        ).to_csv(upload, index=False)
        uploaded = httpx.post(
            f"{server.url}/outcomes",
            files={"file": ("outcomes.csv", upload.getvalue().encode())},
            timeout=120,
        )
        assert uploaded.status_code == 200, uploaded.text[:500]
        assert posted.json()["recorded"] + uploaded.json()["recorded"] == len(training_rows)
        # Overrides: the first rejected training applications approved by a person.
        overridden = [d for d in training_answers if d["Loan_Status"] == "N"][:OVERRIDDEN]
        for decision in overridden:
            made = httpx.post(
                f"{server.url}/decisions/{decision['decision_id']}/override",
                json={"person": "officer-1", "final_status": "Y", "rationale": RATIONALE},
                timeout=30,
            )
            assert made.status_code == 201, made.text

    # The same applications decided here by each version, in process.
    applications = [LoanApplication.model_validate(r) for r in test_rows + training_rows]
    ours = Scorer.from_model(get_model(champion)).decide(applications)
    theirs = Scorer.from_model(get_model(challenger)).decide(applications)
    served = test_answers + training_answers
    assert [d["Loan_Status"] for d in served] == [d.Loan_Status for d in ours]
    champion_y = np.array([d.Loan_Status == "Y" for d in ours])
    challenger_y = np.array([d.Loan_Status == "Y" for d in theirs])
    gender = np.array([r.get("Gender") for r in test_rows + training_rows], dtype=object)

    report = _report("challenger", store_url, capsys)
    assert report["champion_tags"] == [champion] and report["challenger_tags"] == [challenger]
    assert report["compared"] == len(applications)
    assert report["flips"]["N->Y"]["count"] == int((~champion_y & challenger_y).sum())
    assert report["flips"]["Y->N"]["count"] == int((champion_y & ~challenger_y).sum())
    assert report["approval_rate"]["champion"] == _rate(champion_y)
    assert report["approval_rate"]["challenger"] == _rate(challenger_y)
    by_gender = report["by_group"]["Gender"]
    for level in ("Male", "Female"):
        members = gender == level
        assert by_gender["champion"][level]["rate"] == _rate(champion_y[members])
        assert by_gender["challenger"][level]["rate"] == _rate(challenger_y[members])
    # Outcomes: the training applications approved in the end (the overrides too).
    n_test = len(test_rows)
    final_y = champion_y.copy()
    overridden_ids = {d["decision_id"] for d in overridden}
    for index, decision in enumerate(served):
        if decision["decision_id"] in overridden_ids:
            final_y[index] = True
    rows = np.flatnonzero(final_y[n_test:]) + n_test
    good = np.array([labels[i - n_test] == "Y" for i in rows], dtype=int)
    champion_auc = roc_auc_score(good, [ours[i].probability for i in rows])
    challenger_auc = roc_auc_score(good, [theirs[i].probability for i in rows])
    on_outcomes = report["outcomes"]
    assert on_outcomes["rows"] == len(rows) and on_outcomes["bad"] == int((good == 0).sum())
    assert on_outcomes["champion"]["roc_auc"] == pytest.approx(champion_auc, abs=1e-4)
    assert on_outcomes["challenger"]["roc_auc"] == pytest.approx(challenger_auc, abs=1e-4)

    outcomes = _report("outcomes", store_url, capsys)
    version = outcomes["versions"][champion]
    assert outcomes["decisions_without_outcome"] == n_test
    assert version["approved"] == int(final_y.sum())
    assert version["approved_with_outcome"] == len(rows)
    assert version["bad_rate"] == _rate(good == 0)
    assert version["roc_auc"] == pytest.approx(champion_auc, abs=1e-4)
    assert outcomes["overridden"]["count"] == OVERRIDDEN
    assert {e["decision_id"] for e in outcomes["overridden"]["examples"]} == overridden_ids

    overrides = _report("overrides", store_url, capsys)
    rejected = int((~champion_y).sum())
    assert overrides["by_direction"]["N->Y"] == {
        "overrides": OVERRIDDEN,
        "model_decisions": rejected,
        "rate": round(OVERRIDDEN / rejected, 4),
    }
    assert overrides["rationales"] == {RATIONALE.lower(): OVERRIDDEN}

    with capsys.disabled():
        change = {level: by_gender["change"][level] for level in by_gender["change"]}
        area = report["by_group"]["Property_Area"]["change"]
        print(
            f"\nreal-data demonstration ({store_url.split(':')[0]}): {len(applications)} "
            f"applications; flips N->Y {report['flips']['N->Y']['count']}, Y->N "
            f"{report['flips']['Y->N']['count']}; approval rate "
            f"{report['approval_rate']}; change by Gender {change}, by Property_Area {area}; "
            f"outcome AUC champion {on_outcomes['champion']['roc_auc']}, challenger "
            f"{on_outcomes['challenger']['roc_auc']} on {on_outcomes['rows']} approved "
            f"training applications; bad rate {version['bad_rate']}"
        )

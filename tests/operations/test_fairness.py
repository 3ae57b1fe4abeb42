"""The fairness audit: its figures on decisions whose group rates are known by
construction, the adverse-impact floor, and the report over a prediction log."""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from loan_preprocessing.decide import Scorer
from loan_preprocessing.model.store import get_model
from loan_preprocessing.operations import fairness
from loan_preprocessing.operations.fairness import (
    ADVERSE_IMPACT_RATIO,
    APPROVAL_RATE,
    AUDITED_ATTRIBUTES,
    BOOTSTRAP_SAMPLES,
    EQUAL_OPPORTUNITY_DIFFERENCE,
    EXIT_BELOW_FLOOR,
    FAIRNESS_KEY,
    TRUE_POSITIVE_RATE,
    audit_decisions,
    below_floor,
    bootstrap_rates,
)
from loan_preprocessing.schema import (
    APPROVED,
    PROTECTED_ATTRIBUTES,
    PROXY_ATTRIBUTES,
    REJECTED,
    LoanApplication,
)
from tests.conftest import ROOT
from tests.support.records import export_json_lines, record_delivered

# Decisions built group by group: (rows, approved, positives, approved positives).
WOMEN = (50, 30, 30, 21)  # approval 0.6, TPR 0.7
MEN = (100, 80, 60, 54)  # approval 0.8, TPR 0.9
NOT_STATED = (5, 5, 5, 5)


def _rows(gender: str | None, rows: int, approved: int, positives: int, both: int) -> pd.DataFrame:
    """`rows` applications of one gender: the first `positives` approved in the data,
    `both` of those and `approved - both` of the others approved by the model."""
    outcome = np.arange(rows) < positives
    decided = np.zeros(rows, dtype=bool)
    decided[:both] = True
    decided[positives : positives + approved - both] = True
    return pd.DataFrame(
        {
            "Gender": gender,
            "Married": np.where(np.arange(rows) % 2 == 0, "Yes", "No"),
            "Property_Area": {"Female": "Rural", "Male": "Urban"}.get(str(gender)),
            "approved": decided.astype(int),
            "outcome": outcome.astype(int),
        }
    )


@pytest.fixture(scope="module")
def constructed() -> pd.DataFrame:
    return pd.concat(
        [_rows("Female", *WOMEN), _rows("Male", *MEN), _rows(None, *NOT_STATED)],
        ignore_index=True,
    )


def _audit(frame: pd.DataFrame, seed: int = 0, outcomes: bool = True) -> dict:
    truth = frame["outcome"].to_numpy() if outcomes else None
    return audit_decisions(frame, frame["approved"].to_numpy(), truth, seed, "constructed")


def test_group_figures_are_the_constructed_ones(constructed):
    gender = _audit(constructed)["attributes"]["Gender"]
    women, men = gender["groups"]["Female"], gender["groups"]["Male"]
    assert (women["count"], men["count"], gender["not_stated"]) == (50, 100, 5)
    assert women[APPROVAL_RATE] == WOMEN[1] / WOMEN[0]
    assert men[APPROVAL_RATE] == MEN[1] / MEN[0]
    assert women[TRUE_POSITIVE_RATE] == WOMEN[3] / WOMEN[2]
    assert women["false_positive_rate"] == (WOMEN[1] - WOMEN[3]) / (WOMEN[0] - WOMEN[2])
    assert gender[ADVERSE_IMPACT_RATIO] == round((WOMEN[1] / WOMEN[0]) / (MEN[1] / MEN[0]), 4)
    assert gender[EQUAL_OPPORTUNITY_DIFFERENCE] == round(MEN[3] / MEN[2] - WOMEN[3] / WOMEN[2], 4)
    assert gender["protected"] and gender["stands_for"] == PROTECTED_ATTRIBUTES["Gender"]


def test_every_figure_has_a_bootstrap_interval_around_it(constructed):
    audit = _audit(constructed)
    assert audit["bootstrap"]["samples"] == BOOTSTRAP_SAMPLES
    for result in audit["attributes"].values():
        for metric in (ADVERSE_IMPACT_RATIO, EQUAL_OPPORTUNITY_DIFFERENCE):
            low, high = result[metric + "_interval"]
            assert low <= result[metric] <= high
        for values in result["groups"].values():
            for metric in (APPROVAL_RATE, TRUE_POSITIVE_RATE):
                low, high = values[metric + "_interval"]
                assert low <= values[metric] <= high


def test_intervals_are_seeded_and_shrink_with_more_rows(constructed):
    assert _audit(constructed, seed=1) == _audit(constructed, seed=1)
    assert _audit(constructed, seed=1) != _audit(constructed, seed=2)

    def width(frame: pd.DataFrame) -> float:
        low, high = _audit(frame)["attributes"]["Gender"]["groups"]["Female"][
            "approval_rate_interval"
        ]
        return high - low

    tenfold = pd.concat([constructed] * 10, ignore_index=True)
    assert width(tenfold) < width(constructed) / 2  # ~1/sqrt(10)


def test_the_bootstrap_centres_on_the_observed_rates():
    """Resampling the cells is resampling the rows: the resampled rates average to
    the observed ones."""
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 3, 2000)
    approved = (rng.random(2000) < 0.3 + 0.2 * codes).astype(int)
    outcomes = (rng.random(2000) < 0.7).astype(int)
    resampled = bootstrap_rates(codes, 3, approved, outcomes, np.random.default_rng(1))
    observed = [approved[codes == g].mean() for g in range(3)]
    assert resampled[APPROVAL_RATE].shape == (BOOTSTRAP_SAMPLES, 3)
    np.testing.assert_allclose(resampled[APPROVAL_RATE].mean(axis=0), observed, atol=0.005)
    assert np.mean(resampled[ADVERSE_IMPACT_RATIO]) == pytest.approx(
        min(observed) / max(observed), abs=0.01
    )


def test_without_outcomes_only_approval_rates_are_audited(constructed):
    gender = _audit(constructed, outcomes=False)["attributes"]["Gender"]
    assert EQUAL_OPPORTUNITY_DIFFERENCE not in gender
    assert set(gender["groups"]["Female"]) == {"count", APPROVAL_RATE, "approval_rate_interval"}


def test_the_floor_blocks_protected_attributes_only(constructed):
    audit = _audit(constructed)
    # Women 0.6 vs men 0.8: 0.75, below the four-fifths rule. Property_Area is
    # Rural for every woman, so the proxy shows the same gap, but never blocks.
    assert audit["attributes"]["Property_Area"][ADVERSE_IMPACT_RATIO] == 0.75
    [problem] = below_floor(audit, 0.8)
    assert problem.startswith("Gender (sex): adverse impact ratio 0.750 is below 0.80")
    assert "Female 0.600" in problem and "Male 0.800" in problem
    assert below_floor(audit, 0.75) == []
    assert set(AUDITED_ATTRIBUTES) == set(PROTECTED_ATTRIBUTES) | set(PROXY_ATTRIBUTES)


def test_one_group_alone_has_no_ratio(constructed):
    men = constructed[constructed["Gender"] == "Male"]
    gender = _audit(men)["attributes"]["Gender"]
    assert list(gender["groups"]) == ["Male"]
    assert gender[ADVERSE_IMPACT_RATIO] is None
    assert not any(p.startswith("Gender") for p in below_floor(_audit(men), 0.99))


@pytest.fixture(scope="module")
def decided_store(real_model_tag, real_test_rows, tmp_path_factory):
    """The real test applications decided by the real model, recorded in a real
    SQLite decision store by the service's own recording code."""
    scorer = Scorer.from_model(get_model(real_model_tag))
    applications = [LoanApplication.model_validate(r) for r in real_test_rows]
    url = f"sqlite:///{tmp_path_factory.mktemp('fairness-store') / 'decisions.sqlite3'}"
    record_delivered(url, scorer.tag, applications, scorer.decide(applications))
    return url


@pytest.fixture(scope="module")
def decided_log(decided_store, tmp_path_factory):
    """The same decisions exported as JSON lines (`make decisions-export`)."""
    return export_json_lines(decided_store, tmp_path_factory.mktemp("export") / "decided.jsonl")


def test_the_report_reads_the_store_as_it_reads_its_export(
    decided_store, decided_log, monkeypatch, capsys
):
    assert fairness.main(["--log", str(decided_log), "--json"]) == 0
    from_file = json.loads(capsys.readouterr().out)
    monkeypatch.setenv("LOAN_DECISION_STORE_URL", decided_store)
    assert fairness.main(["--json"]) == 0
    from_store = json.loads(capsys.readouterr().out)
    assert from_store["log"]["attributes"] == from_file["log"]["attributes"]


def _rates_in(path) -> pd.DataFrame:
    entries = [json.loads(line) for line in path.read_text().splitlines()]
    return pd.DataFrame(
        [{**e["application"], "approved": e["Loan_Status"] == APPROVED} for e in entries]
    )


def test_log_report_sets_the_logs_rates_beside_the_training_audit(
    decided_log, real_model_tag, capsys
):
    assert fairness.main(["--log", str(decided_log), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["model_tag"] == real_model_tag
    assert report["training"] == get_model(real_model_tag).info.metadata[FAIRNESS_KEY]
    logged = _rates_in(decided_log)
    for name in AUDITED_ATTRIBUTES:
        expected = logged.groupby(name)["approved"].agg(["mean", "size"])
        groups = report["log"]["attributes"][name]["groups"]
        assert set(groups) == set(expected.index)
        for group, row in expected.iterrows():
            assert groups[group]["count"] == row["size"]
            assert groups[group][APPROVAL_RATE] == pytest.approx(row["mean"], abs=1e-4)


def test_a_log_that_rejects_women_is_flagged(decided_log, tmp_path, capsys):
    skewed = tmp_path / "skewed.jsonl"
    lines = []
    for line in decided_log.read_text().splitlines():
        entry = json.loads(line)
        if entry["application"]["Gender"] == "Female":
            entry["Loan_Status"] = REJECTED
        lines.append(json.dumps(entry))
    skewed.write_text("\n".join(lines) + "\n")
    assert fairness.main(["--log", str(skewed)]) == 0  # reported, not failed, by default
    out = capsys.readouterr().out
    assert "FLAG Gender (sex): adverse impact ratio 0.000" in out
    assert fairness.main(["--log", str(skewed), "--fail-below-floor"]) == EXIT_BELOW_FLOOR


def test_make_fairness(decided_log, bentoml_home):
    result = subprocess.run(
        ["make", "--no-print-directory", "fairness", f"LOG={decided_log}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "BENTOML_HOME": str(bentoml_home)},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "training: loan_approval:" in result.stdout
    for name in AUDITED_ATTRIBUTES:
        assert f"{name}" in result.stdout
    assert "adverse impact ratio: training" in result.stdout


def test_a_model_without_an_audit_is_a_clear_error(tmp_path, capsys):
    path = tmp_path / "log.jsonl"
    path.write_text(
        json.dumps(
            {
                "model_tag": "loan_approval:doesnotexist",
                "application": {"Gender": "Male"},
                "Loan_Status": "Y",
            }
        )
        + "\n"
    )
    assert fairness.main(["--log", str(path)]) == 1
    assert "no model 'loan_approval:doesnotexist'" in capsys.readouterr().err

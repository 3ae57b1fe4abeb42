"""Drift reports: the reference profile, PSI and its bands, and the CLI on logs
written in the service's prediction-log format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from loan_preprocessing.data import read_applications
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.model.store import get_model
from loan_preprocessing.operations import drift
from loan_preprocessing.operations.drift import (
    BINNED_COLUMNS,
    CATEGORY_COLUMNS,
    EXIT_SIGNIFICANT,
    MISSING,
    MODERATE,
    NUMERIC_BINS,
    PROFILE_FILE,
    SIGNIFICANT,
    STABLE,
    band,
    build_reference_profile,
    compare_with_profile,
    population_stability_index,
)
from loan_preprocessing.schema import FEATURE_COLUMNS, LoanApplication
from tests.conftest import REAL_TRAINING_CSV, SAMPLE_CSV

INCOME_COLUMNS = ("ApplicantIncome", "CoapplicantIncome")


def write_log(path: Path, rows: list[dict], model_tag: str) -> Path:
    """A prediction log as the service writes it: one JSON object per application,
    the application as validated (model_dump), Loan_ID left out."""
    with open(path, "w") as handle:
        for row in rows:
            application = LoanApplication.model_validate(row).model_dump(exclude={"Loan_ID"})
            entry = {
                "time": datetime.now(UTC).isoformat(),
                "model_tag": model_tag,
                "application": application,
                "Loan_Status": "Y",
                "probability": 0.8,
            }
            handle.write(json.dumps(entry) + "\n")
    return path


def records(frame: pd.DataFrame) -> list[dict]:
    """Rows as the API receives them (pandas' JSON export: missing -> null)."""
    return json.loads(frame[list(FEATURE_COLUMNS)].to_json(orient="records"))


@pytest.fixture(scope="module")
def training_rows() -> pd.DataFrame:
    return read_applications(SAMPLE_CSV)


@pytest.fixture(scope="module")
def profile(training_rows) -> dict:
    return build_reference_profile(to_feature_frame(training_rows))


def test_psi_of_identical_distributions_is_zero_and_grows_with_shift():
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    small = population_stability_index([0.5, 0.5], [0.45, 0.55])
    large = population_stability_index([0.5, 0.5], [0.1, 0.9])
    assert 0 < small < large
    # An empty bin is smoothed, not infinite.
    assert np.isfinite(population_stability_index([0.5, 0.5, 0.0], [0.4, 0.4, 0.2]))


@pytest.mark.parametrize(
    ("psi", "expected"),
    [(0.0, STABLE), (0.099, STABLE), (0.1, MODERATE), (0.25, MODERATE), (0.251, SIGNIFICANT)],
)
def test_bands(psi, expected):
    assert band(psi) == expected


def test_profile_shape(profile, training_rows):
    assert profile["rows"] == len(training_rows)
    assert set(profile["columns"]) == set(BINNED_COLUMNS) | set(CATEGORY_COLUMNS)
    assert set(profile["columns"]) == set(FEATURE_COLUMNS)
    for name in BINNED_COLUMNS:
        column = profile["columns"][name]
        assert len(column["shares"]) == len(column["cuts"]) + 1 <= NUMERIC_BINS
        assert sum(column["shares"]) + column["missing"] == pytest.approx(1.0)
    income = profile["columns"]["ApplicantIncome"]["shares"]
    assert all(s == pytest.approx(0.1, abs=0.01) for s in income)  # deciles
    credit = profile["columns"]["Credit_History"]["shares"]
    assert set(credit) == {"0", "1", MISSING}  # a flag is compared as categories
    assert credit[MISSING] == pytest.approx(training_rows["Credit_History"].isna().mean())
    assert set(profile["columns"]["Dependents"]["shares"]) >= {"0", "1", "2", "3+"}
    json.dumps(profile)  # plain JSON data


def test_a_sample_of_the_same_distribution_is_stable(profile, training_rows):
    sample = to_feature_frame(training_rows.sample(300, random_state=1))
    assert {r.feature: r.band for r in compare_with_profile(profile, sample)} == dict.fromkeys(
        FEATURE_COLUMNS, STABLE
    )


def test_doubled_incomes_are_a_significant_shift(profile, training_rows):
    shifted = training_rows.sample(300, random_state=1)
    shifted[list(INCOME_COLUMNS)] *= 2
    bands = {r.feature: r.band for r in compare_with_profile(profile, to_feature_frame(shifted))}
    assert all(bands[c] == SIGNIFICANT for c in INCOME_COLUMNS)
    assert bands["Credit_History"] == bands["Property_Area"] == STABLE


def test_more_missing_values_show_in_the_table(profile, training_rows):
    sample = training_rows.sample(300, random_state=2)
    sample.loc[sample.index[:150], "LoanAmount"] = np.nan
    (row,) = [
        r
        for r in compare_with_profile(profile, to_feature_frame(sample))
        if r.feature == "LoanAmount"
    ]
    assert row.missing_current >= 0.5 > row.missing_reference
    assert row.band == SIGNIFICANT


def test_cli_with_a_reference_csv(tmp_path, training_rows, capsys):
    shifted = training_rows.sample(300, random_state=3)
    shifted[list(INCOME_COLUMNS)] *= 2
    log = write_log(tmp_path / "shifted.jsonl", records(shifted), "loan_approval:any")
    argv = ["--log", str(log), "--reference", str(SAMPLE_CSV)]
    assert drift.main(argv) == 0
    out = capsys.readouterr().out
    for line in out.splitlines():
        if line.startswith(INCOME_COLUMNS):
            assert SIGNIFICANT in line
    assert drift.main([*argv, "--fail-on-significant"]) == EXIT_SIGNIFICANT


def test_cli_reports_a_broken_log_line(tmp_path, capsys):
    log = tmp_path / "broken.jsonl"
    log.write_text('{"application": {}}\nnot json\n')
    assert drift.main(["--log", str(log), "--reference", str(SAMPLE_CSV)]) == 1
    assert f"{log}:2: not a decision record" in capsys.readouterr().err


# The model's own profile, on the real data (the real_model_tag fixture needs it).


def test_the_model_folder_holds_the_profile_of_its_training_rows(real_model_tag):
    stored = json.loads(Path(get_model(real_model_tag).path_of(PROFILE_FILE)).read_text())
    expected = build_reference_profile(to_feature_frame(read_applications(REAL_TRAINING_CSV)))
    assert stored == json.loads(json.dumps(expected))


def test_cli_on_real_test_rows_against_the_logged_model(
    real_model_tag, real_test_rows, tmp_path, capsys
):
    """The real test applications are not shifted in income; doubling them is."""
    calm = write_log(tmp_path / "calm.jsonl", real_test_rows, real_model_tag)
    doubled_rows = [{**r, **{c: r[c] * 2 for c in INCOME_COLUMNS}} for r in real_test_rows]
    doubled = write_log(tmp_path / "doubled.jsonl", doubled_rows, real_model_tag)

    # No --model-tag: the model named in the log is the reference.
    assert drift.main(["--log", str(calm), "--json", "--fail-on-significant"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["reference"] == real_model_tag
    bands = {r["feature"]: r["band"] for r in result["rows"]}
    assert SIGNIFICANT not in bands.values()
    assert all(bands[c] == STABLE for c in INCOME_COLUMNS)

    argv = ["--log", str(doubled), "--model-tag", real_model_tag, "--json"]
    assert drift.main(argv) == 0
    bands = {r["feature"]: r["band"] for r in json.loads(capsys.readouterr().out)["rows"]}
    assert all(bands[c] == SIGNIFICANT for c in INCOME_COLUMNS)


def test_cli_needs_a_reference_when_logs_name_several_models(tmp_path, training_rows, capsys):
    rows = records(training_rows.head(5))
    logs = [write_log(tmp_path / f"{t}.jsonl", rows, f"loan_approval:{t}") for t in ("a", "b")]
    assert drift.main([a for log in logs for a in ("--log", str(log))]) == 1
    assert "--model-tag" in capsys.readouterr().err

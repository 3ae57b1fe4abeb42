"""train.py end to end on the synthetic sample: what it stores and when it refuses."""

from __future__ import annotations

import bentoml
import numpy as np
import pytest
import sklearn

import train
from loan_preprocessing.data import features_and_target, file_sha256, read_applications
from loan_preprocessing.model.features import model_inputs
from loan_preprocessing.model.search import CANDIDATES, candidate
from loan_preprocessing.model.store import MODEL_INPUTS_KEY, MODEL_NAME, get_model, load_pipeline
from loan_preprocessing.operations.fairness import AUDITED_ATTRIBUTES, FAIRNESS_KEY, below_floor
from loan_preprocessing.schema import FEATURE_COLUMNS, PROTECTED_ATTRIBUTES
from tests.conftest import SAMPLE_CSV, TEST_REPORTS


@pytest.fixture(scope="module")
def sample_model(real_model_tag_or_none):
    """A model trained on the synthetic sample (after the real one, if any)."""
    assert (
        train.main(
            ["--data", str(SAMPLE_CSV), "--quiet", "--seed", "3", "--report-dir", str(TEST_REPORTS)]
        )
        == 0
    )
    return bentoml.models.get(f"{MODEL_NAME}:latest")


def test_metadata_records_metrics_and_lineage(sample_model):
    meta = sample_model.info.metadata
    assert set(meta["metrics"]) >= {
        "holdout_accuracy",
        "holdout_roc_auc",
        "holdout_brier",
        "classic_split_accuracy",
    }
    assert {"cv_accuracy", "cv_roc_auc", "classic_split_roc_auc"} <= set(meta["metrics"])
    assert all(0.0 <= v <= 1.0 for v in meta["metrics"].values())
    assert meta["threshold"] == 0.5
    assert set(meta["hyperparameters"]) == set(meta["search"]["grid"])
    assert meta["training_data"] == {
        "file": SAMPLE_CSV.name,
        "sha256": file_sha256(SAMPLE_CSV),
        "rows": 614,
    }
    assert meta["feature_schema"]["columns"] == list(FEATURE_COLUMNS)
    assert meta["versions"]["scikit-learn"] == sklearn.__version__
    assert meta["versions"]["numpy"] == np.__version__
    assert meta["search"]["seed"] == 3
    chosen = meta["selection"]["chosen"]
    assert meta[MODEL_INPUTS_KEY] == model_inputs(candidate(chosen).features)
    assert meta["search"]["candidates"] == {c.name: list(c.features) for c in CANDIDATES}


def test_metadata_records_the_fairness_audit_of_every_row(sample_model):
    """The audit covers every row of the training data once (out of fold), per
    attribute: the groups' counts and the not-stated rows add up to the rows."""
    audit = sample_model.info.metadata[FAIRNESS_KEY]
    frame = read_applications(SAMPLE_CSV)
    assert audit["rows"] == len(frame)
    assert set(audit["attributes"]) == set(AUDITED_ATTRIBUTES)
    for name, result in audit["attributes"].items():
        counts = frame[name].value_counts()
        assert {g: v["count"] for g, v in result["groups"].items()} == counts.to_dict(), name
        assert result["not_stated"] == frame[name].isna().sum(), name
        assert result["protected"] == (name in PROTECTED_ATTRIBUTES)
        rates = [v["approval_rate"] for v in result["groups"].values()]
        assert result["adverse_impact_ratio"] == pytest.approx(min(rates) / max(rates), abs=2e-4)
        for values in result["groups"].values():
            low, high = values["approval_rate_interval"]
            assert low <= values["approval_rate"] <= high


def test_out_of_fold_predictions_are_the_searchs_own(sample_model):
    """The audit's out-of-fold predictions come from the search's folds and chosen
    hyperparameters: fold by fold they score what the search's CV scored."""
    from sklearn.metrics import roc_auc_score

    from loan_preprocessing.model.search import make_search, search_folds

    features, target = features_and_target(read_applications(SAMPLE_CSV))
    search = make_search(seed=3, verbose=0).fit(features, target)
    out_of_fold = train.out_of_fold_probabilities(search.best_estimator_, features, target, 3)
    folds = search_folds(3).split(features, target)
    for index, (_, test) in enumerate(folds):
        scored = search.cv_results_[f"split{index}_test_score"][search.best_index_]
        assert roc_auc_score(target[test], out_of_fold[test]) == pytest.approx(scored, abs=1e-12)


def test_stored_pipeline_loads_and_predicts(sample_model):
    from loan_preprocessing.model.features import to_feature_frame
    from loan_preprocessing.schema import EXAMPLE_APPLICATION

    pipeline = load_pipeline(get_model(str(sample_model.tag)))
    probability = pipeline.predict_proba(to_feature_frame([EXAMPLE_APPLICATION.model_dump()]))
    assert probability.shape == (1, 2) and 0.0 <= probability[0, 1] <= 1.0


def test_training_refuses_a_model_below_the_auc_floor(sample_model, capsys):
    before = {str(m.tag) for m in bentoml.models.list(MODEL_NAME)}
    status = train.main(
        [
            "--data",
            str(SAMPLE_CSV),
            "--quiet",
            "--min-roc-auc",
            "0.999",
            "--report-dir",
            str(TEST_REPORTS),
        ]
    )
    assert status == 1
    assert "below the floor" in capsys.readouterr().err
    assert {str(m.tag) for m in bentoml.models.list(MODEL_NAME)} == before


def test_training_refuses_a_model_below_the_adverse_impact_floor(sample_model, capsys):
    before = {str(m.tag) for m in bentoml.models.list(MODEL_NAME)}
    argv = ["--data", str(SAMPLE_CSV), "--quiet", "--report-dir", str(TEST_REPORTS)]
    status = train.main([*argv, "--min-adverse-impact-ratio", "0.9999"])
    assert status == 1
    err = capsys.readouterr().err
    assert "adverse impact ratio" in err and "--allow-adverse-impact" in err
    assert any(f"{name} ({what})" in err for name, what in PROTECTED_ATTRIBUTES.items())
    assert "Property_Area" not in err  # a proxy is reported, never blocking
    assert {str(m.tag) for m in bentoml.models.list(MODEL_NAME)} == before

    # The override saves it, with the audit that failed the floor on record.
    overridden = [*argv, "--min-adverse-impact-ratio", "0.9999", "--allow-adverse-impact"]
    assert train.main(overridden) == 0
    [new] = {str(m.tag) for m in bentoml.models.list(MODEL_NAME)} - before
    audit = get_model(new).info.metadata[FAIRNESS_KEY]
    assert below_floor(audit, 0.9999)


def test_training_on_unlabelled_data_fails_clearly(tmp_path, capsys):
    import pandas as pd

    path = tmp_path / "unlabelled.csv"
    pd.read_csv(SAMPLE_CSV).drop(columns="Loan_Status").to_csv(path, index=False)
    status = train.main(["--data", str(path), "--quiet", "--report-dir", str(TEST_REPORTS)])
    assert status == 2
    # One line naming the missing label, not a traceback.
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: cannot train on") and "no Loan_Status column" in line

"""train.py end to end on the synthetic sample: what it stores and when it refuses."""

from __future__ import annotations

import bentoml
import numpy as np
import pytest
import sklearn

import train
from loan_preprocessing.data import file_sha256
from loan_preprocessing.model_store import MODEL_NAME, get_model, load_pipeline
from loan_preprocessing.schema import FEATURE_COLUMNS
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


def test_stored_pipeline_loads_and_predicts(sample_model):
    from loan_preprocessing.features import to_feature_frame
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


def test_training_on_unlabelled_data_fails_clearly(tmp_path):
    import pandas as pd

    path = tmp_path / "unlabelled.csv"
    pd.read_csv(SAMPLE_CSV).drop(columns="Loan_Status").to_csv(path, index=False)
    with pytest.raises(ValueError, match="Loan_Status"):
        train.main(["--data", str(path), "--quiet", "--report-dir", str(TEST_REPORTS)])

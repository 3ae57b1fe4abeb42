"""The serving fast path gives exactly the pipeline's numbers.

`FastPredictor` skips pandas and the pipeline's input validation; it is only
acceptable because its probabilities equal `pipeline.predict_proba(
to_feature_frame(rows))` bit for bit, on the real test applications and on
generated ones with every kind of missing value.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.preprocessing import StandardScaler

from loan_preprocessing.data import features_and_target
from loan_preprocessing.model.features import (
    DEFAULT_TERM_MONTHS,
    MODEL_FEATURES,
    UNKNOWN_CREDIT_HISTORY,
    FastPredictor,
    add_loan_features,
    applications_predictor,
    build_pipeline,
    to_feature_frame,
)
from loan_preprocessing.model.search import make_search
from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN, LoanApplication
from loan_preprocessing.synthetic import generate_applications


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as a client sends them: pandas' JSON records."""
    return json.loads(frame[[ID_COLUMN, *FEATURE_COLUMNS]].to_json(orient="records"))


def _applications(records: list[dict]) -> list[LoanApplication]:
    return [LoanApplication.model_validate(r) for r in records]


def _reference(pipeline, applications: list[LoanApplication]) -> np.ndarray:
    """What the service computed before the fast path."""
    return pipeline.predict_proba(to_feature_frame([a.model_dump() for a in applications]))


@pytest.fixture(scope="module")
def synthetic_pipeline():
    """The production model family (monotonic 3-leaf boosting), fitted on generated rows."""
    features, target = features_and_target(generate_applications(600, seed=5))
    classifier = make_search(seed=0, verbose=0).estimator.named_steps["classify"]
    return build_pipeline(classifier).fit(features, target)


@pytest.fixture(scope="module")
def synthetic_applications() -> list[LoanApplication]:
    frame = generate_applications(3000, seed=17)
    # Every optional field missing in some rows, all of them at once in one row.
    optional = [
        c for c in FEATURE_COLUMNS if c not in LoanApplication.model_json_schema()["required"]
    ]
    frame.loc[0, optional] = np.nan
    return _applications(_records(frame))


def test_generated_rows_have_missing_values(synthetic_applications):
    for name in ("LoanAmount", "Loan_Amount_Term", "Credit_History", "Married"):
        assert any(getattr(a, name) is None for a in synthetic_applications), name


def test_fast_path_equals_the_pipeline_on_generated_rows(
    synthetic_pipeline, synthetic_applications
):
    np.testing.assert_array_equal(
        FastPredictor(synthetic_pipeline).predict_proba(synthetic_applications),
        _reference(synthetic_pipeline, synthetic_applications),
    )


@pytest.mark.parametrize("size", [1, 2, 17, 256])
def test_fast_path_equals_the_pipeline_on_small_batches(
    synthetic_pipeline, synthetic_applications, size
):
    chosen = synthetic_applications[:size]
    np.testing.assert_array_equal(
        applications_predictor(synthetic_pipeline)(chosen),
        _reference(synthetic_pipeline, chosen),
    )


def test_fast_path_equals_the_real_model_on_the_real_test_rows(real_model, real_test_rows):
    _, pipeline = real_model
    applications = _applications(real_test_rows)
    assert FastPredictor.supports(pipeline)
    np.testing.assert_array_equal(
        FastPredictor(pipeline).predict_proba(applications), _reference(pipeline, applications)
    )


def test_numpy_features_equal_the_pandas_formulation(synthetic_applications):
    """The features as first written with pandas (the spelling train.py's models
    were fitted with) and the numpy definition agree exactly."""
    frame = to_feature_frame([a.model_dump() for a in synthetic_applications])
    income = frame["ApplicantIncome"] + frame["CoapplicantIncome"]
    term = frame["Loan_Amount_Term"].fillna(DEFAULT_TERM_MONTHS)
    instalment = frame["LoanAmount"] * 1000.0 / term
    credit = frame["Credit_History"]
    pandas_spelling = pd.DataFrame(
        {
            "CreditHistory": credit.where(credit.notna(), UNKNOWN_CREDIT_HISTORY),
            "IsSemiurban": (frame["Property_Area"] == "Semiurban").astype(np.float64),
            "IsGraduate": (frame["Education"] == "Graduate").astype(np.float64),
            "LogTotalIncome": np.log1p(income),
            "LogLoanAmount": np.log(frame["LoanAmount"]),
            "LogInstalmentToIncome": np.log(instalment / (income + 1.0)),
            "LogApplicantIncome": np.log1p(frame["ApplicantIncome"]),
            "Loan_Amount_Term": frame["Loan_Amount_Term"],
        }
    )
    derived = add_loan_features(frame)
    assert list(derived.columns) == list(MODEL_FEATURES)
    pd.testing.assert_frame_equal(derived, pandas_spelling, check_exact=True)


def test_other_pipelines_fall_back_to_the_pipeline(synthetic_applications):
    """A pipeline the fast path does not know is scored by the pipeline itself."""
    features, target = features_and_target(generate_applications(300, seed=2))
    pipeline = build_pipeline(HistGradientBoostingClassifier(max_iter=10))
    pipeline.steps.insert(2, ("scale", StandardScaler()))
    pipeline.fit(features, target)
    assert not FastPredictor.supports(pipeline)
    with pytest.raises(ValueError, match="no fast path"):
        FastPredictor(pipeline)
    chosen = synthetic_applications[:50]
    np.testing.assert_array_equal(
        applications_predictor(pipeline)(chosen), _reference(pipeline, chosen)
    )

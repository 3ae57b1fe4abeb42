"""Model quality, behaviour and fairness on the real Loan Prediction data (../shared).

The floors come from the issue: the classic Flask tutorial's pipeline scores
0.773 on the classic split and ~0.755 ROC AUC in 5x5 CV. They hold without the
protected characteristics as inputs (tests/test_fair_lending.py proves the model
ignores them).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.model_selection import RepeatedStratifiedKFold, cross_validate

from loan_preprocessing.data import features_and_target, read_applications
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.model.search import candidate, make_pipeline
from loan_preprocessing.operations.fairness import (
    AUDITED_ATTRIBUTES,
    DEFAULT_MIN_ADVERSE_IMPACT_RATIO,
    FAIRNESS_KEY,
    below_floor,
)
from tests.conftest import REAL_TRAINING_CSV

pytestmark = pytest.mark.real_data


def test_classic_split_accuracy_floor(real_model):
    stored, _ = real_model
    assert stored.info.metadata["metrics"]["classic_split_accuracy"] >= 0.78


def test_repeated_cv_floors(real_model):
    """5x5 repeated stratified CV of the chosen candidate's pipeline with the
    hyperparameters the search chose."""
    stored, _ = real_model
    features, target = features_and_target(read_applications(REAL_TRAINING_CSV))
    chosen = candidate(stored.info.metadata["selection"]["chosen"])
    pipeline = make_pipeline(0, chosen.features).set_params(
        **stored.info.metadata["hyperparameters"]
    )
    scores = cross_validate(
        pipeline,
        features,
        target,
        scoring=["accuracy", "roc_auc"],
        cv=RepeatedStratifiedKFold(n_splits=5, n_repeats=5, random_state=0),
    )
    assert scores["test_accuracy"].mean() >= 0.80
    assert scores["test_roc_auc"].mean() >= 0.77


def test_the_real_models_fairness_audit(real_model):
    """Every real training row is audited once per attribute, and no protected
    attribute is below the four-fifths floor (training would have refused it)."""
    stored, _ = real_model
    audit = stored.info.metadata[FAIRNESS_KEY]
    frame = read_applications(REAL_TRAINING_CSV)
    assert audit["rows"] == len(frame) == 614
    for name in AUDITED_ATTRIBUTES:
        result = audit["attributes"][name]
        counts = {g: v["count"] for g, v in result["groups"].items()}
        assert counts == frame[name].value_counts().to_dict(), name
        assert result["not_stated"] == frame[name].isna().sum(), name
    assert below_floor(audit, DEFAULT_MIN_ADVERSE_IMPACT_RATIO) == []


def _with(rows: list[dict], **changes) -> pd.DataFrame:
    return to_feature_frame([{**row, **changes} for row in rows])


def test_good_credit_history_raises_approval_for_every_real_applicant(real_model, real_test_rows):
    _, pipeline = real_model
    bad = pipeline.predict_proba(_with(real_test_rows, Credit_History=0.0))[:, 1]
    unknown = pipeline.predict_proba(_with(real_test_rows, Credit_History=None))[:, 1]
    good = pipeline.predict_proba(_with(real_test_rows, Credit_History=1.0))[:, 1]
    assert np.all(bad <= unknown) and np.all(unknown <= good)
    assert np.mean(good - bad) > 0.3  # credit history dominates, as in the data


def test_a_huge_loan_lowers_approval_on_average(real_model, real_test_rows):
    _, pipeline = real_model
    modest = pipeline.predict_proba(_with(real_test_rows, LoanAmount=100.0))[:, 1]
    huge = pipeline.predict_proba(_with(real_test_rows, LoanAmount=700.0))[:, 1]
    assert np.mean(huge) < np.mean(modest)


def test_missing_values_are_handled(real_model, real_test_rows):
    _, pipeline = real_model
    holes = {
        c: None
        for c in (
            "Gender",
            "Married",
            "Dependents",
            "Self_Employed",
            "LoanAmount",
            "Loan_Amount_Term",
            "Credit_History",
        )
    }
    probability = pipeline.predict_proba(_with(real_test_rows[:20], **holes))[:, 1]
    assert np.all((probability >= 0) & (probability <= 1))

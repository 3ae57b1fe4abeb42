"""The feature pipeline: canonical input frame, derived features, persistence."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingClassifier

from loan_preprocessing.data import features_and_target, read_applications
from loan_preprocessing.model.features import (
    DERIVED_FROM,
    MODEL_FEATURES,
    NOT_MODEL_INPUTS,
    UNKNOWN_CREDIT_HISTORY,
    add_loan_features,
    build_pipeline,
    model_inputs,
    to_feature_frame,
)
from loan_preprocessing.model.store import TRUSTED_TYPES
from loan_preprocessing.schema import (
    CATEGORICAL_COLUMNS,
    CATEGORY_LEVELS,
    EXAMPLE_APPLICATION,
    FEATURE_COLUMNS,
    ID_COLUMN,
    PROTECTED_ATTRIBUTES,
)
from loan_preprocessing.synthetic import generate_applications


@pytest.fixture(scope="module")
def small_frame() -> pd.DataFrame:
    return generate_applications(200, seed=3)


def test_csv_rows_and_json_rows_give_the_same_frame(small_frame, tmp_path):
    path = tmp_path / "rows.csv"
    small_frame.to_csv(path, index=False)
    from_csv = to_feature_frame(read_applications(path))
    from_json = to_feature_frame(
        [r.model_dump() for r in map(_as_application, small_frame.to_dict("records"))]
    )
    pd.testing.assert_frame_equal(from_csv, from_json)
    assert list(from_csv.columns) == list(FEATURE_COLUMNS)
    assert all(from_csv[c].dtype == object for c in CATEGORICAL_COLUMNS)


def _as_application(record: dict):
    from loan_preprocessing.schema import LoanApplication

    record = {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in record.items()}
    record.pop("Loan_Status")
    return LoanApplication.model_validate(record)


def test_missing_feature_column_is_named():
    with pytest.raises(ValueError, match="Property_Area"):
        to_feature_frame(pd.DataFrame([{"ApplicantIncome": 1}]).drop(columns=[]))


def test_derived_features():
    frame = to_feature_frame(
        [{**EXAMPLE_APPLICATION.model_dump(), "Credit_History": None, "CoapplicantIncome": 1000.0}]
    )
    derived = add_loan_features(frame)
    assert list(derived.columns) == list(MODEL_FEATURES)
    row = derived.iloc[0]
    assert row["CreditHistory"] == UNKNOWN_CREDIT_HISTORY
    assert row["LogTotalIncome"] == pytest.approx(np.log1p(5720 + 1000))
    assert row["LogInstalmentToIncome"] == pytest.approx(np.log(110_000 / 360 / 6721))
    assert row["IsSemiurban"] == 0.0 and row["IsGraduate"] == 1.0


def test_no_protected_attribute_is_a_model_input():
    """The fields the features are computed from leave out every protected
    characteristic and Dependents; each unused field says why."""
    assert not set(DERIVED_FROM) & set(PROTECTED_ATTRIBUTES)
    assert "Dependents" not in DERIVED_FROM
    assert set(DERIVED_FROM) | set(NOT_MODEL_INPUTS) == {ID_COLUMN, *FEATURE_COLUMNS}
    assert set(PROTECTED_ATTRIBUTES) <= set(NOT_MODEL_INPUTS)
    assert model_inputs() == {"fields": list(DERIVED_FROM), "features": list(MODEL_FEATURES)}


def test_features_do_not_read_the_protected_fields(small_frame):
    """The feature step's output is the same with the protected columns blanked or
    swapped: no derived feature reads them."""
    frame = to_feature_frame(small_frame)
    changed = frame.copy()
    for name, levels in ((n, CATEGORY_LEVELS[n]) for n in PROTECTED_ATTRIBUTES):
        changed[name] = [
            levels[(levels.index(v) + 1) % len(levels)] if v in levels else levels[0]
            for v in frame[name]
        ]
    blanked = frame.assign(**{name: np.nan for name in PROTECTED_ATTRIBUTES})
    for other in (changed, blanked):
        pd.testing.assert_frame_equal(add_loan_features(other), add_loan_features(frame))


def test_pipeline_round_trips_through_skops_with_only_the_trusted_types(small_frame):
    features, target = features_and_target(small_frame)
    pipeline = build_pipeline(HistGradientBoostingClassifier(max_iter=20)).fit(features, target)
    payload = skops.io.dumps(pipeline)
    assert set(skops.io.get_untrusted_types(data=payload)) <= set(TRUSTED_TYPES)
    loaded = skops.io.loads(payload, trusted=list(TRUSTED_TYPES))
    np.testing.assert_array_equal(loaded.predict_proba(features), pipeline.predict_proba(features))
    assert list(pipeline[:-1].get_feature_names_out()) == list(MODEL_FEATURES)
    clone(pipeline)  # parameters are plain, so the search can clone it

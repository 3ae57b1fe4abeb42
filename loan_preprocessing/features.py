"""The feature pipeline: one scikit-learn Pipeline holds every preprocessing step.

Training and serving both feed it a frame made by `to_feature_frame`, so the
model sees the same dtypes whether rows come from a CSV file or from JSON.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from loan_preprocessing.schema import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS

# The most common term in the data; used only to compute the monthly
# instalment when the term is missing.
DEFAULT_TERM_MONTHS: Final = 360.0
# Unknown credit history is approved a little less often than a good one and far
# more often than a bad one, so it is coded between the two: the model can then
# be monotonic in credit history and still give "unknown" its own weight.
UNKNOWN_CREDIT_HISTORY: Final = 0.85

# What the classifier sees, in order. Only these columns influence a decision.
MODEL_FEATURES: Final = (
    "CreditHistory",
    "IsMarried",
    "IsSemiurban",
    "IsGraduate",
    "LogTotalIncome",
    "LogLoanAmount",
    "LogInstalmentToIncome",
    "LogApplicantIncome",
    "Loan_Amount_Term",
)
# +1: a better credit history never lowers the approval probability.
MONOTONIC_CONSTRAINTS: Final = tuple(1 if f == "CreditHistory" else 0 for f in MODEL_FEATURES)


def to_feature_frame(rows: pd.DataFrame | Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Return the canonical model input: the feature columns in order, categories as
    Python strings (missing = NaN, object dtype) and numbers as float64."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame.from_records(list(rows))
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"missing columns: {', '.join(missing)}")
    index = pd.RangeIndex(len(frame))
    columns: dict[str, pd.Series] = {}
    for name in CATEGORICAL_COLUMNS:
        values = [np.nan if _is_missing(v) else str(v) for v in frame[name].astype(object)]
        # object, not pandas' str dtype, so the frame is the same whatever pandas infers.
        columns[name] = pd.Series(values, index=index, dtype=object)
    for name in NUMERIC_COLUMNS:
        values = pd.to_numeric(frame[name], errors="raise").to_numpy(dtype=np.float64)
        columns[name] = pd.Series(values, index=index, dtype=np.float64)
    return pd.DataFrame({name: columns[name] for name in FEATURE_COLUMNS})


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA


def add_loan_features(frame: pd.DataFrame) -> pd.DataFrame:
    """The model's features from an application frame: affordability (log incomes,
    instalment-to-income) and indicator columns. Stateless, so it lives in a
    FunctionTransformer; missing numbers stay NaN for the imputer."""
    income = frame["ApplicantIncome"] + frame["CoapplicantIncome"]
    term = frame["Loan_Amount_Term"].fillna(DEFAULT_TERM_MONTHS)
    # LoanAmount is in thousands; the instalment ignores interest on purpose
    # (the data has no rate), it is a ratio the model can rescale.
    instalment = frame["LoanAmount"] * 1000.0 / term
    credit = frame["Credit_History"]
    return pd.DataFrame(
        {
            "CreditHistory": credit.where(credit.notna(), UNKNOWN_CREDIT_HISTORY),
            "IsMarried": (frame["Married"] == "Yes").astype(np.float64),
            "IsSemiurban": (frame["Property_Area"] == "Semiurban").astype(np.float64),
            "IsGraduate": (frame["Education"] == "Graduate").astype(np.float64),
            "LogTotalIncome": np.log1p(income),
            "LogLoanAmount": np.log(frame["LoanAmount"]),
            "LogInstalmentToIncome": np.log(instalment / (income + 1.0)),
            "LogApplicantIncome": np.log1p(frame["ApplicantIncome"]),
            "Loan_Amount_Term": frame["Loan_Amount_Term"],
        },
        index=frame.index,
    )


def model_feature_names(transformer: object, input_features: Iterable[str]) -> list[str]:
    """Output names of `add_loan_features` (used by FunctionTransformer)."""
    return list(MODEL_FEATURES)


def build_pipeline(classifier: object) -> Pipeline:
    """The full model: derived features, median imputation, then the classifier."""
    derive = FunctionTransformer(add_loan_features, feature_names_out=model_feature_names)
    return Pipeline(
        [
            ("derive", derive),
            ("impute", SimpleImputer(strategy="median")),
            ("classify", classifier),
        ]
    )

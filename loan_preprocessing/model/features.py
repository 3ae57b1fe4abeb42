"""The feature pipeline: one scikit-learn Pipeline holds every preprocessing step.

Training and serving both feed it a frame made by `to_feature_frame`, so the
model sees the same dtypes whether rows come from a CSV file or from JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from loan_preprocessing.model.tree_ensemble import VectorizedBooster, unsupported_reason
from loan_preprocessing.schema import (
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    MODEL_FIELDS,
    NUMERIC_COLUMNS,
    PROHIBITED_BASIS_RULE,
    PROTECTED_ATTRIBUTES,
    LoanApplication,
)

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
    "IsSemiurban",
    "IsGraduate",
    "LogTotalIncome",
    "LogLoanAmount",
    "LogInstalmentToIncome",
    "LogApplicantIncome",
    "Loan_Amount_Term",
)
# The steps of build_pipeline's Pipeline, by name.
PIPELINE_STEPS: Final = ["derive", "impute", "classify"]
# +1: a better credit history never lowers the approval probability.
MONOTONIC_CONSTRAINTS: Final = tuple(1 if f == "CreditHistory" else 0 for f in MODEL_FEATURES)

# A validated application, or a row of the data set's columns (the slow path only).
Application = LoanApplication | Mapping[str, Any]


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
    columns = {name: frame[name].to_numpy() for name in DERIVED_FROM}
    return pd.DataFrame(
        loan_feature_matrix(columns), columns=list(MODEL_FEATURES), index=frame.index
    )


# The application fields the model's features are computed from: the only ones
# that can influence a decision. train.py records them with every model, and
# loading refuses a model whose recorded inputs hold a protected attribute.
DERIVED_FROM: Final = MODEL_FIELDS
# The application fields the model deliberately does not use, and why (the model
# card lists them).
NOT_MODEL_INPUTS: Final[dict[str, str]] = {
    **{
        name: f"protected characteristic ({characteristic}): a prohibited basis under "
        f"{PROHIBITED_BASIS_RULE}; kept in requests and logs for fairness monitoring only"
        for name, characteristic in PROTECTED_ATTRIBUTES.items()
    },
    "Dependents": "tied to marital and familial status (familial status is protected in "
    "housing credit); kept out on purpose",
    "Self_Employed": "not among the designed features; adding it is a model change to be "
    "measured and audited like any other",
    ID_COLUMN: "an identifier, not a property of the application",
}


def model_inputs() -> dict[str, list[str]]:
    """What a model trained with this code reads: the application fields and the
    features derived from them (recorded in its metadata as MODEL_INPUTS_KEY)."""
    return {"fields": list(DERIVED_FROM), "features": list(MODEL_FEATURES)}


def loan_feature_matrix(columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """MODEL_FEATURES as a float64 matrix (one row per application) from the
    DERIVED_FROM columns. Plain numpy, the one definition of the features: the
    pipeline's FunctionTransformer and the serving fast path both call it."""
    applicant = np.asarray(columns["ApplicantIncome"], dtype=np.float64)
    income = applicant + np.asarray(columns["CoapplicantIncome"], dtype=np.float64)
    amount = np.asarray(columns["LoanAmount"], dtype=np.float64)
    term = np.asarray(columns["Loan_Amount_Term"], dtype=np.float64)
    credit = np.asarray(columns["Credit_History"], dtype=np.float64)
    # LoanAmount is in thousands; the instalment ignores interest on purpose
    # (the data has no rate), it is a ratio the model can rescale.
    instalment = amount * 1000.0 / np.where(np.isnan(term), DEFAULT_TERM_MONTHS, term)
    features = {
        "CreditHistory": np.where(np.isnan(credit), UNKNOWN_CREDIT_HISTORY, credit),
        # Compared as object arrays: a missing category (None or NaN) is simply not equal.
        "IsSemiurban": np.asarray(columns["Property_Area"], dtype=object) == "Semiurban",
        "IsGraduate": np.asarray(columns["Education"], dtype=object) == "Graduate",
        "LogTotalIncome": np.log1p(income),
        "LogLoanAmount": np.log(amount),
        "LogInstalmentToIncome": np.log(instalment / (income + 1.0)),
        "LogApplicantIncome": np.log1p(applicant),
        "Loan_Amount_Term": term,
    }
    return np.column_stack([features[name] for name in MODEL_FEATURES]).astype(np.float64)


def model_feature_names(transformer: object, input_features: Iterable[str]) -> list[str]:
    """Output names of `add_loan_features` (used by FunctionTransformer)."""
    return list(MODEL_FEATURES)


def build_pipeline(classifier: object) -> Pipeline:
    """The full model: derived features, median imputation, then the classifier."""
    derive = FunctionTransformer(add_loan_features, feature_names_out=model_feature_names)
    return Pipeline(
        [
            (PIPELINE_STEPS[0], derive),
            (PIPELINE_STEPS[1], SimpleImputer(strategy="median")),
            (PIPELINE_STEPS[2], classifier),
        ]
    )


def application_columns(applications: Sequence[object]) -> dict[str, np.ndarray]:
    """The DERIVED_FROM columns of validated applications (objects with those
    attributes, e.g. LoanApplication), read straight from the attributes: no
    model_dump, no DataFrame. Missing numbers become NaN, missing categories None."""
    columns: dict[str, np.ndarray] = {}
    for name in DERIVED_FROM:
        values = [getattr(a, name) for a in applications]
        kind = np.float64 if name in NUMERIC_COLUMNS else object
        # numpy turns None into NaN in a float64 array, as to_feature_frame does.
        columns[name] = np.array(values, dtype=kind)
    return columns


class FastPredictor:
    """`predict_proba` of a fitted `build_pipeline` on validated applications, with
    the fitted steps called directly: the same features (`loan_feature_matrix`), the
    imputer's fitted medians and the same classifier on the same float64 matrix,
    so the numbers are identical (tests/model/test_fast_path.py), without the pandas and
    input-validation overhead that dominates small batches. A boosted classifier
    is walked all trees at once (VectorizedBooster), same numbers again.

    Build it once per loaded pipeline: it compiles the trees."""

    def __init__(self, pipeline: Pipeline) -> None:
        problem = _fast_path_problem(pipeline)
        if problem:
            raise ValueError(f"no fast path for this pipeline: {problem}")
        self.pipeline = pipeline
        self.medians = np.asarray(pipeline.named_steps["impute"].statistics_, dtype=np.float64)
        self.classifier = pipeline.named_steps["classify"]
        self.classifier_proba = (
            self.classifier.predict_proba
            if unsupported_reason(self.classifier)
            else VectorizedBooster(self.classifier).predict_proba
        )

    @classmethod
    def supports(cls, pipeline: object) -> bool:
        return not _fast_path_problem(pipeline)

    def model_inputs(self, applications: Sequence[Application]) -> np.ndarray:
        """The classifier's input: MODEL_FEATURES after imputation."""
        return self.model_inputs_columns(application_columns(applications))

    def model_inputs_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The same for applications already held as DERIVED_FROM columns."""
        matrix = loan_feature_matrix(columns)
        # What the fitted SimpleImputer does: each NaN becomes its column's median.
        return np.where(np.isnan(matrix), self.medians, matrix)

    def predict_proba(self, applications: Sequence[Application]) -> np.ndarray:
        return self.classifier_proba(self.model_inputs(applications))

    def predict_proba_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.classifier_proba(self.model_inputs_columns(columns))


def applications_predictor(pipeline: Pipeline) -> Callable[[Sequence[Application]], np.ndarray]:
    """`pipeline.predict_proba(to_feature_frame(rows))` for validated applications:
    through FastPredictor when the pipeline is the one `build_pipeline` makes, else
    through the pipeline itself (same numbers either way)."""
    if FastPredictor.supports(pipeline):
        return FastPredictor(pipeline).predict_proba
    return lambda applications: pipeline.predict_proba(
        to_feature_frame([_as_row(a) for a in applications])
    )


def columns_predictor(
    pipeline: Pipeline,
) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """As `applications_predictor`, for applications held as columns (numbers as
    float64 with NaN, categories as objects with None)."""
    if FastPredictor.supports(pipeline):
        return FastPredictor(pipeline).predict_proba_columns
    return lambda columns: pipeline.predict_proba(to_feature_frame(pd.DataFrame(dict(columns))))


def model_inputs_function(pipeline: Pipeline) -> Callable[[Sequence[Application]], np.ndarray]:
    """What the pipeline's last step (the classifier) is given for validated
    applications: MODEL_FEATURES after imputation, through FastPredictor when it
    applies, else through the pipeline's own steps (same numbers either way)."""
    if FastPredictor.supports(pipeline):
        return FastPredictor(pipeline).model_inputs
    preprocess = pipeline[:-1]
    return lambda applications: np.asarray(
        preprocess.transform(to_feature_frame([_as_row(a) for a in applications])),
        dtype=np.float64,
    )


def columns_model_inputs_function(
    pipeline: Pipeline,
) -> Callable[[Mapping[str, np.ndarray]], np.ndarray]:
    """As `model_inputs_function`, for applications held as columns."""
    if FastPredictor.supports(pipeline):
        return FastPredictor(pipeline).model_inputs_columns
    preprocess = pipeline[:-1]
    return lambda columns: np.asarray(
        preprocess.transform(to_feature_frame(pd.DataFrame(dict(columns)))), dtype=np.float64
    )


def _as_row(application: Application) -> Mapping[str, Any]:
    return application if isinstance(application, Mapping) else application.model_dump()


def _fast_path_problem(pipeline: object) -> str | None:
    """Why FastPredictor would not reproduce `pipeline`, or None when it would."""
    if not isinstance(pipeline, Pipeline) or list(pipeline.named_steps) != PIPELINE_STEPS:
        return f"steps are not {PIPELINE_STEPS}"
    derive, impute, classify = pipeline.named_steps.values()
    if not isinstance(derive, FunctionTransformer) or derive.func is not add_loan_features:
        return "the first step is not FunctionTransformer(add_loan_features)"
    if derive.validate or derive.kw_args or derive.inverse_func is not None:
        return "the feature step has extra options"
    if not isinstance(impute, SimpleImputer) or impute.add_indicator:
        return "the imputer is not a plain SimpleImputer"
    if not (isinstance(impute.missing_values, float) and np.isnan(impute.missing_values)):
        return "the imputer does not impute NaN"
    statistics = getattr(impute, "statistics_", None)
    if statistics is None or len(statistics) != len(MODEL_FEATURES):
        return "the imputer is not fitted on MODEL_FEATURES"
    if not np.all(np.isfinite(np.asarray(statistics, dtype=np.float64))):
        # SimpleImputer drops (or keeps empty) columns without a statistic.
        return "the imputer has a column without a median"
    if hasattr(classify, "feature_names_in_"):
        # Fitted on a frame (set_output): it would be given one, not a matrix.
        return "the classifier was fitted on a DataFrame, not the imputer's matrix"
    return None

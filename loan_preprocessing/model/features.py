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


def add_loan_features(
    frame: pd.DataFrame, features: Sequence[str] = MODEL_FEATURES
) -> pd.DataFrame:
    """The model's features from an application frame: affordability (log incomes,
    instalment-to-income) and indicator columns; `features`, a subset of
    MODEL_FEATURES in their order, for a model that reads fewer fields. Stateless,
    so it lives in a FunctionTransformer; missing numbers stay NaN for the imputer."""
    columns = {name: frame[name].to_numpy() for name in DERIVED_FROM}
    return pd.DataFrame(
        loan_feature_matrix(columns, features), columns=list(features), index=frame.index
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


# The application fields each feature is computed from: a model without a field
# is a model without every feature that reads it.
FEATURE_FIELDS: Final[dict[str, tuple[str, ...]]] = {
    "CreditHistory": ("Credit_History",),
    "IsSemiurban": ("Property_Area",),
    "IsGraduate": ("Education",),
    "LogTotalIncome": ("ApplicantIncome", "CoapplicantIncome"),
    "LogLoanAmount": ("LoanAmount",),
    "LogInstalmentToIncome": (
        "LoanAmount",
        "Loan_Amount_Term",
        "ApplicantIncome",
        "CoapplicantIncome",
    ),
    "LogApplicantIncome": ("ApplicantIncome",),
    "Loan_Amount_Term": ("Loan_Amount_Term",),
}


def features_without(fields: Iterable[str]) -> tuple[str, ...]:
    """MODEL_FEATURES, in order, less every feature computed from one of `fields`."""
    dropped = set(fields)
    return tuple(f for f in MODEL_FEATURES if not dropped & set(FEATURE_FIELDS[f]))


def fields_of(features: Sequence[str]) -> list[str]:
    """The application fields `features` are computed from, in DERIVED_FROM order."""
    read = {field for f in features for field in FEATURE_FIELDS[f]}
    return [f for f in DERIVED_FROM if f in read]


def feature_subset_problem(features: object) -> str | None:
    """Why `features` is not a feature set this code derives (a non-empty subset of
    MODEL_FEATURES in their order), or None."""
    if not isinstance(features, list | tuple) or not features:
        return f"{features!r} is not a non-empty list of features"
    if list(features) != [f for f in MODEL_FEATURES if f in features]:
        return f"{list(features)} is not a subset of {list(MODEL_FEATURES)} in that order"
    return None


def model_inputs(features: Sequence[str] = MODEL_FEATURES) -> dict[str, list[str]]:
    """What a model fitted on `features` reads: the application fields and the
    features derived from them (recorded in its metadata as MODEL_INPUTS_KEY)."""
    return {"fields": fields_of(features), "features": list(features)}


def pipeline_features(pipeline: Pipeline) -> tuple[str, ...]:
    """The features a `build_pipeline` pipeline derives (all of MODEL_FEATURES for
    one built without `features`, as every model before feature sets was)."""
    derive = pipeline.named_steps[PIPELINE_STEPS[0]]
    return tuple((derive.kw_args or {}).get("features", MODEL_FEATURES))


def loan_feature_matrix(
    columns: Mapping[str, np.ndarray], features: Sequence[str] = MODEL_FEATURES
) -> np.ndarray:
    """`features` (MODEL_FEATURES by default) as a float64 matrix (one row per
    application) from the DERIVED_FROM columns. Plain numpy, the one definition of
    the features: the pipeline's FunctionTransformer and the serving fast path both
    call it."""

    def number(name: str) -> np.ndarray:
        return np.asarray(columns[name], dtype=np.float64)

    def income() -> np.ndarray:
        return number("ApplicantIncome") + number("CoapplicantIncome")

    # Computed only when asked for: a model without a field never reads its column.
    derived: dict[str, Callable[[], np.ndarray]] = {
        "CreditHistory": lambda: np.where(
            np.isnan(credit := number("Credit_History")), UNKNOWN_CREDIT_HISTORY, credit
        ),
        # Compared as object arrays: a missing category (None or NaN) is simply not equal.
        "IsSemiurban": lambda: np.asarray(columns["Property_Area"], dtype=object) == "Semiurban",
        "IsGraduate": lambda: np.asarray(columns["Education"], dtype=object) == "Graduate",
        "LogTotalIncome": lambda: np.log1p(income()),
        "LogLoanAmount": lambda: np.log(number("LoanAmount")),
        "LogInstalmentToIncome": lambda: log_instalment_to_income(
            number("LoanAmount"), number("Loan_Amount_Term"), income()
        ),
        "LogApplicantIncome": lambda: np.log1p(number("ApplicantIncome")),
        "Loan_Amount_Term": lambda: number("Loan_Amount_Term"),
    }
    return np.column_stack([derived[name]() for name in features]).astype(np.float64)


# The features the loan's own terms (amount and term) enter, and nothing else does.
LOAN_TERMS_FEATURES: Final = ("LogLoanAmount", "LogInstalmentToIncome", "Loan_Amount_Term")


def loan_terms_features(
    amount: np.ndarray, term: np.ndarray, income: np.ndarray
) -> dict[str, np.ndarray]:
    """LOAN_TERMS_FEATURES from the amount, the term and the total income (float64,
    NaN where missing): the formulas of `loan_feature_matrix`, and what a
    counteroffer recomputes when it changes the amount or the term."""
    return {
        "LogLoanAmount": np.log(amount),
        "LogInstalmentToIncome": log_instalment_to_income(amount, term, income),
        "Loan_Amount_Term": term,
    }


def log_instalment_to_income(
    amount: np.ndarray, term: np.ndarray, income: np.ndarray
) -> np.ndarray:
    """log(monthly instalment / (total income + 1)), a missing term taken as the
    most common one."""
    # LoanAmount is in thousands; the instalment ignores interest on purpose
    # (the data has no rate), it is a ratio the model can rescale.
    instalment = amount * 1000.0 / np.where(np.isnan(term), DEFAULT_TERM_MONTHS, term)
    return np.log(instalment / (income + 1.0))


def model_feature_names(transformer: object, input_features: Iterable[str]) -> list[str]:
    """Output names of `add_loan_features` (used by FunctionTransformer)."""
    kw_args = getattr(transformer, "kw_args", None) or {}
    return list(kw_args.get("features", MODEL_FEATURES))


def build_pipeline(classifier: object, features: Sequence[str] = MODEL_FEATURES) -> Pipeline:
    """The full model: derived features (`features`, all of MODEL_FEATURES by
    default), median imputation, then the classifier. A subset is recorded in the
    feature step's kw_args, so the one saved pipeline says what it reads."""
    problem = feature_subset_problem(features)
    if problem:
        raise ValueError(problem)
    kw_args = None if tuple(features) == MODEL_FEATURES else {"features": list(features)}
    derive = FunctionTransformer(
        add_loan_features, kw_args=kw_args, feature_names_out=model_feature_names
    )
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
        self.features = pipeline_features(pipeline)
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
        """The classifier's input: the pipeline's features after imputation."""
        return self.model_inputs_columns(application_columns(applications))

    def model_inputs_columns(self, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """The same for applications already held as DERIVED_FROM columns."""
        matrix = loan_feature_matrix(columns, self.features)
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
    kw_args = derive.kw_args or {}
    if derive.validate or set(kw_args) - {"features"} or derive.inverse_func is not None:
        return "the feature step has extra options"
    features = kw_args.get("features", MODEL_FEATURES)
    problem = feature_subset_problem(features)
    if problem:
        return problem
    if not isinstance(impute, SimpleImputer) or impute.add_indicator:
        return "the imputer is not a plain SimpleImputer"
    if not (isinstance(impute.missing_values, float) and np.isnan(impute.missing_values)):
        return "the imputer does not impute NaN"
    statistics = getattr(impute, "statistics_", None)
    if statistics is None or len(statistics) != len(features):
        return "the imputer is not fitted on the feature step's features"
    if not np.all(np.isfinite(np.asarray(statistics, dtype=np.float64))):
        # SimpleImputer drops (or keeps empty) columns without a statistic.
        return "the imputer has a column without a median"
    if hasattr(classify, "feature_names_in_"):
        # Fitted on a frame (set_output): it would be given one, not a matrix.
        return "the classifier was fitted on a DataFrame, not the imputer's matrix"
    return None

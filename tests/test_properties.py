"""Property-based tests (hypothesis) of the request schema and the pipeline:
any valid application yields a probability in [0, 1]; any single invalid field
yields a validation error naming that field, in-process and over HTTP (400)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loan_preprocessing.data import features_and_target
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.model.search import make_search
from loan_preprocessing.schema import (
    CATEGORY_LEVELS,
    MAX_LOAN_AMOUNT,
    MAX_LOAN_TERM_MONTHS,
    MAX_MONTHLY_INCOME,
    MIN_LOAN_AMOUNT,
    MIN_LOAN_TERM_MONTHS,
    REQUIRED_COLUMNS,
    LoanApplication,
)
from loan_preprocessing.synthetic import generate_applications


def _optional(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


def _category(column: str) -> st.SearchStrategy:
    levels = st.sampled_from(CATEGORY_LEVELS[column])
    return levels if column in REQUIRED_COLUMNS else _optional(levels)


def _amount(low: float, high: float) -> st.SearchStrategy:
    return st.floats(min_value=low, max_value=high, allow_nan=False)


VALID_APPLICATIONS = st.fixed_dictionaries(
    {
        **{column: _category(column) for column in CATEGORY_LEVELS if column != "Dependents"},
        "ApplicantIncome": _amount(0, MAX_MONTHLY_INCOME) | st.integers(0, 100_000),
        "CoapplicantIncome": _amount(0, MAX_MONTHLY_INCOME),
        "LoanAmount": _optional(_amount(MIN_LOAN_AMOUNT, MAX_LOAN_AMOUNT)),
        "Loan_Amount_Term": _optional(_amount(MIN_LOAN_TERM_MONTHS, MAX_LOAN_TERM_MONTHS)),
        "Credit_History": _optional(st.sampled_from([0, 1, 0.0, 1.0])),
    },
    optional={
        # Any text but control characters and line separators (refused in an id).
        "Loan_ID": st.text(
            st.characters(exclude_categories=("Cc", "Cs"), exclude_characters="\u2028\u2029"),
            max_size=64,
        ),
        "Dependents": _category("Dependents") | st.integers(0, 3),
    },
)

# For each field, values that must be refused.
INVALID_VALUES = {
    "Gender": st.text().filter(lambda s: s not in CATEGORY_LEVELS["Gender"]),
    "Education": st.one_of(
        st.none(), st.integers(), st.text().filter(lambda s: s not in CATEGORY_LEVELS["Education"])
    ),
    "Property_Area": st.text().filter(lambda s: s not in CATEGORY_LEVELS["Property_Area"]),
    "Dependents": st.integers().filter(lambda n: not 0 <= n <= 3),
    "ApplicantIncome": st.one_of(
        st.floats(max_value=-1e-9),
        st.floats(min_value=1.1e7),
        st.just(math.inf),
        st.text(),
        st.booleans(),
    ),
    "CoapplicantIncome": st.one_of(st.floats(max_value=-1e-9), st.text()),
    "LoanAmount": st.one_of(st.floats(max_value=0), st.text(min_size=1)),
    "Loan_Amount_Term": st.one_of(st.floats(max_value=0.999), st.floats(min_value=601)),
    "Credit_History": st.one_of(st.integers().filter(lambda n: n not in (0, 1)), st.text()),
    "Loan_ID": st.text(min_size=65, max_size=80),
}


@pytest.fixture(scope="module")
def pipeline():
    """A real pipeline of the production family, fitted on synthetic rows."""
    features, target = features_and_target(generate_applications(600, seed=11))
    return make_search(seed=0, verbose=0).estimator.fit(features, target)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(record=VALID_APPLICATIONS)
def test_any_valid_application_gets_a_probability(pipeline, record):
    application = LoanApplication.model_validate(record)
    probability = pipeline.predict_proba(to_feature_frame([application.model_dump()]))[0, 1]
    assert np.isfinite(probability) and 0.0 <= probability <= 1.0


@settings(max_examples=30, deadline=None)
@given(records=st.lists(VALID_APPLICATIONS, min_size=1, max_size=40))
def test_a_batch_scores_each_row_as_it_would_alone(pipeline, records):
    rows = [LoanApplication.model_validate(r).model_dump() for r in records]
    together = pipeline.predict_proba(to_feature_frame(rows))[:, 1]
    alone = [pipeline.predict_proba(to_feature_frame([row]))[0, 1] for row in rows]
    np.testing.assert_array_equal(together, alone)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), record=VALID_APPLICATIONS)
def test_any_invalid_field_is_named(data, record):
    field = data.draw(st.sampled_from(sorted(INVALID_VALUES)))
    bad = {**record, field: data.draw(INVALID_VALUES[field])}
    with pytest.raises(ValidationError) as caught:
        LoanApplication.model_validate(bad)
    assert (field,) in [e["loc"][:1] for e in caught.value.errors()]


@pytest.fixture(scope="module")
def client(asgi_client):
    return asgi_client


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), record=VALID_APPLICATIONS)
def test_over_http_valid_is_200_and_invalid_is_400_naming_the_field(client, data, record):
    ok = client.post("/predict", json={"applications": [record]})
    assert ok.status_code == 200
    assert 0.0 <= ok.json()[0]["probability"] <= 1.0
    field = data.draw(st.sampled_from(sorted(INVALID_VALUES)))
    value = data.draw(
        INVALID_VALUES[field].filter(lambda v: not (isinstance(v, float) and math.isinf(v)))
    )  # JSON has no Infinity
    bad = client.post("/predict", json={"applications": [record, {**record, field: value}]})
    assert bad.status_code == 400
    assert ["applications", 1, field] in [e["loc"][:3] for e in bad.json()["detail"]]

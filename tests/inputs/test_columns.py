"""Columnar validation refuses exactly what LoanApplication refuses, naming the
same rows, fields and messages, and keeps exactly the values it keeps."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from loan_preprocessing.inputs.columns import (
    EXTRA_MESSAGE,
    MAX_REPORTED_PROBLEMS,
    MISSING_MESSAGE,
    RULES,
    ColumnsValidationError,
    FieldProblem,
    validate_columns,
)
from loan_preprocessing.schema import CATEGORY_LEVELS, EXAMPLE_APPLICATION, LoanApplication

FIELDS = list(LoanApplication.model_fields)
EXAMPLE = EXAMPLE_APPLICATION.model_dump()

# Values that probe every rule: valid ones, edges, wrong types, non-finite numbers.
ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-5, max_value=700),
    st.integers(min_value=-(10**400), max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([0, 1, 2, 3, 0.0, 1.0, 3.0, 0.001, 0.0009, 600.0, 600.5, 1e7, 1e7 + 1]),
    st.sampled_from([level for levels in CATEGORY_LEVELS.values() for level in levels]),
    st.sampled_from(["", "3", "yes", "x" * 64, "x" * 65, "Urban "]),
    st.lists(st.integers(), max_size=2),
)


def pydantic_problems(rows: list[dict[str, object]]) -> list[FieldProblem]:
    problems = []
    for row, record in enumerate(rows):
        try:
            LoanApplication.model_validate(record)
        except ValidationError as exc:
            problems += [
                FieldProblem(row, str(e["loc"][0]), e["msg"]) for e in exc.errors(include_url=False)
            ]
    return problems


def in_report_order(problems: list[FieldProblem], extra: list[str]) -> list[FieldProblem]:
    order = {name: i for i, name in enumerate([*FIELDS, *extra])}
    return sorted(problems, key=lambda p: (p.row, order[p.field]))


@st.composite
def batches(draw: st.DrawFn) -> tuple[list[str], list[dict[str, object]]]:
    """Rows sharing one set of keys (a column is present for every row or none),
    each value either the example's or anything at all."""
    keys = draw(st.lists(st.sampled_from([*FIELDS, "Unknown"]), unique=True, max_size=13))
    rows = draw(
        st.lists(
            st.fixed_dictionaries({k: st.one_of(st.just(EXAMPLE.get(k)), ANY_VALUE) for k in keys}),
            min_size=1,
            max_size=4,
        )
    )
    return keys, rows


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches())
def test_columns_refuse_exactly_what_pydantic_refuses(batch):
    keys, rows = batch
    columns = {k: [r[k] for r in rows] for k in keys}
    expected = in_report_order(pydantic_problems(rows), [k for k in keys if k not in FIELDS])
    if not expected:
        validated = validate_columns(columns, len(rows))
        for got, record in zip(validated.applications(), rows, strict=True):
            assert got == LoanApplication.model_validate(record)
        return
    with pytest.raises(ColumnsValidationError) as error:
        validate_columns(columns, len(rows))
    assert error.value.total == len(expected)
    assert error.value.problems == expected[:MAX_REPORTED_PROBLEMS]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.floats(allow_nan=True, allow_infinity=True, width=64) | st.integers(-3, 700),
        min_size=1,
        max_size=6,
    )
)
def test_a_float_array_column_means_nan_is_missing(values):
    """A numpy float column (what a frame holds) marks missing values with NaN."""
    rows = [{**EXAMPLE, "LoanAmount": None if math.isnan(v) else v} for v in map(float, values)]
    columns = {k: [r[k] for r in rows] for k in FIELDS}
    columns["LoanAmount"] = np.array(values, dtype=np.float64)
    expected = in_report_order(pydantic_problems(rows), [])
    if expected:
        with pytest.raises(ColumnsValidationError) as error:
            validate_columns(columns, len(rows))
        assert error.value.problems == expected[:MAX_REPORTED_PROBLEMS]
    else:
        validated = validate_columns(columns, len(rows))
        assert list(validated.applications()) == [LoanApplication(**r) for r in rows]


def test_the_error_list_is_bounded_and_counts_every_problem():
    rows = 5_000
    with pytest.raises(ColumnsValidationError) as error:
        validate_columns({"Surprise": [1] * rows}, rows)
    assert len(error.value.problems) == MAX_REPORTED_PROBLEMS
    # Every row misses each required field and has the unknown one.
    required = [n for n, rule in RULES.items() if rule.info.is_required()]
    assert error.value.total == rows * (len(required) + 1)
    assert {p.message for p in error.value.problems} == {MISSING_MESSAGE, EXTRA_MESSAGE}


def test_values_are_those_pydantic_keeps():
    columns = {k: [EXAMPLE[k]] * 2 for k in FIELDS}
    columns["Dependents"] = [3, "1"]
    validated = validate_columns(columns, 2)
    assert validated.values["Dependents"].tolist() == ["3+", "1"]
    assert validated.values["LoanAmount"].dtype == np.float64


def test_a_column_of_the_wrong_length_is_a_caller_error():
    with pytest.raises(ValueError, match="column Education has 1 values, expected 2"):
        validate_columns({"Education": ["Graduate"]}, 2)

"""The request schema: what is accepted, what is refused, and that it agrees with the constants."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from loan_preprocessing.schema import (
    CATEGORY_LEVELS,
    EXAMPLE_APPLICATION,
    FEATURE_COLUMNS,
    ID_COLUMN,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    TARGET_COLUMN,
    Decision,
    LoanApplication,
)

VALID = EXAMPLE_APPLICATION.model_dump()


def errors_for(payload: dict) -> list[tuple]:
    with pytest.raises(ValidationError) as caught:
        LoanApplication.model_validate(payload)
    return [e["loc"] for e in caught.value.errors()]


def test_constants_and_model_agree():
    fields = LoanApplication.model_fields
    assert list(fields) == [ID_COLUMN, *FEATURE_COLUMNS]
    assert {n for n, f in fields.items() if f.is_required()} == set(REQUIRED_COLUMNS)
    properties = LoanApplication.model_json_schema()["properties"]
    for column, levels in CATEGORY_LEVELS.items():
        enums = [
            v
            for option in properties[column].get("anyOf", [properties[column]])
            if option.get("type") != "integer"  # Dependents also takes 0-3
            for v in option.get("enum", [])
        ]
        assert enums == list(levels), column
    assert set(NUMERIC_COLUMNS) | set(CATEGORY_LEVELS) == set(FEATURE_COLUMNS)


def test_every_field_is_documented_with_an_example():
    for name, field in [*LoanApplication.model_fields.items(), *Decision.model_fields.items()]:
        assert field.description, name
        assert field.examples, name


def test_only_required_fields_are_enough():
    minimal = {name: VALID[name] for name in REQUIRED_COLUMNS}
    application = LoanApplication.model_validate(minimal)
    assert application.Credit_History is None and application.LoanAmount is None


@pytest.mark.parametrize(
    ("value", "expected"), [(0, "0"), (2, "2"), (3, "3+"), (1.0, "1"), ("3+", "3+"), (None, None)]
)
def test_dependents_accepts_the_data_set_strings_and_whole_numbers(value, expected):
    assert LoanApplication.model_validate({**VALID, "Dependents": value}).Dependents == expected


@pytest.mark.parametrize("credit_history", [0, 1, 0.0, 1.0, None])
def test_credit_history_accepts_pandas_floats(credit_history):
    LoanApplication.model_validate({**VALID, "Credit_History": credit_history})


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("Gender", "male"),
        ("Married", True),
        ("Dependents", 4),
        ("Dependents", "4"),
        ("Dependents", -1),
        ("Education", "PhD"),
        ("Education", None),
        ("Self_Employed", "Maybe"),
        ("ApplicantIncome", -1),
        ("ApplicantIncome", "5000"),
        ("ApplicantIncome", None),
        ("ApplicantIncome", True),
        ("ApplicantIncome", float("inf")),
        ("ApplicantIncome", 1e12),
        ("CoapplicantIncome", -0.01),
        ("LoanAmount", 0),
        ("LoanAmount", -10),
        ("LoanAmount", "big"),
        ("Loan_Amount_Term", 0),
        ("Loan_Amount_Term", 10_000),
        ("Credit_History", 2),
        ("Credit_History", 0.5),
        ("Credit_History", "yes"),
        ("Property_Area", "Downtown"),
        ("Loan_ID", 12345),
        ("Loan_ID", "x" * 65),
    ],
)
def test_bad_values_are_refused_naming_the_field(field, value):
    assert errors_for({**VALID, field: value}) == [(field,)]


@pytest.mark.parametrize("field", REQUIRED_COLUMNS)
def test_missing_required_field_is_refused(field):
    payload = {k: v for k, v in VALID.items() if k != field}
    assert errors_for(payload) == [(field,)]


def test_unknown_field_is_refused():
    assert errors_for({**VALID, "Salary": 1}) == [("Salary",)]


def test_decision_probability_is_bounded():
    with pytest.raises(ValidationError):
        Decision(Loan_ID=None, Loan_Status="Y", probability=1.5)


@pytest.mark.parametrize("value", [True, False])
def test_credit_history_is_a_number_not_a_boolean(value):
    with pytest.raises(ValidationError):
        LoanApplication.model_validate(
            {**EXAMPLE_APPLICATION.model_dump(), "Credit_History": value}
        )


def test_a_labelled_record_scores_as_the_unlabelled_one():
    import json

    from loan_preprocessing.schema import predict_request_model

    record = EXAMPLE_APPLICATION.model_dump()
    body = json.dumps({"applications": [{**record, TARGET_COLUMN: "N"}, record]})
    request = predict_request_model().model_validate_json(body)
    assert request.applications == [EXAMPLE_APPLICATION, EXAMPLE_APPLICATION]
    with pytest.raises(ValidationError):  # the label is not a field of an application
        LoanApplication.model_validate({**record, TARGET_COLUMN: "N"})


def test_a_request_with_many_errors_lists_the_first_and_counts_the_rest():
    import json

    from loan_preprocessing.schema import MAX_LISTED_ERRORS, MORE_ERRORS_TYPE, predict_request_model

    body = json.dumps({"applications": [{"Gender": "X"}] * 100})
    with pytest.raises(ValidationError) as caught:
        predict_request_model().model_validate_json(body)
    errors = caught.value.errors()
    assert len(errors) == MAX_LISTED_ERRORS + 1
    assert errors[0]["loc"] == ("applications", 0, "Gender")
    assert errors[-1]["type"] == MORE_ERRORS_TYPE
    assert errors[-1]["msg"].startswith(f"{100 * 5 - MAX_LISTED_ERRORS} more")

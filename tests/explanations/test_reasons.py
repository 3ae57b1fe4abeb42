"""The reasons of a rejection, on the real data and the real model.

What Regulation B asks of them, checked as behaviour: every rejection has one to
MAX_REASONS reasons and every approval none; the reasons are the factors that
lowered this applicant's score most, most negative first; a bad credit history
comes first when it is there; putting the first reason's fields at the
reference population's values raises P(Y); protected characteristics and
fields the model does not use are never named; the same application gets the
same reasons alone or in any batch.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loan_preprocessing.data import read_applications
from loan_preprocessing.explanations.reasons import MIN_REASON_LOG_ODDS, reference_rows
from loan_preprocessing.model.features import DERIVED_FROM, MODEL_FEATURES, NOT_MODEL_INPUTS
from loan_preprocessing.reason_codes import (
    CODES,
    FEATURE_REASONS,
    MAX_REASONS,
    REASON_CODES,
    WHEN_NOT_PROVIDED,
)
from loan_preprocessing.schema import (
    APPROVED,
    FEATURE_COLUMNS,
    ID_COLUMN,
    PROTECTED_ATTRIBUTES,
    REJECTED,
    LoanApplication,
)
from tests.conftest import REAL_TRAINING_CSV, ROOT
from tests.test_properties import VALID_APPLICATIONS

CODE_NAMES = [reason.code for reason in REASON_CODES]
# Fields no reason may name: the protected characteristics and every field the
# model does not read (Dependents among them).
NEVER_NAMED = {*PROTECTED_ATTRIBUTES, *NOT_MODEL_INPUTS}


def test_every_model_feature_has_a_code_and_every_code_a_use():
    assert set(FEATURE_REASONS) == set(MODEL_FEATURES)
    assert len(CODE_NAMES) == len(set(CODE_NAMES))
    used = {code for code in FEATURE_REASONS.values() if code} | set(WHEN_NOT_PROVIDED.values())
    assert used == set(CODES)
    for code, other in WHEN_NOT_PROVIDED.items():
        assert CODES[code].fields == CODES[other].fields


def test_codes_name_only_fields_the_model_uses_and_no_protected_characteristic():
    for reason in REASON_CODES:
        assert reason.fields, reason.code
        assert set(reason.fields) <= set(DERIVED_FROM) - NEVER_NAMED, reason.code
        assert reason.text and reason.text[0].isupper() and not reason.text.endswith(".")


def test_the_readme_lists_every_code_with_its_text_and_fields():
    readme = (ROOT / "README.md").read_text()
    for reason in REASON_CODES:
        fields = ", ".join(f"`{f}`" for f in reason.fields)
        assert f"| `{reason.code}` | {reason.text} | {fields} |" in readme, reason.code


def test_a_table_naming_a_protected_characteristic_is_refused(real_model, monkeypatch):
    import loan_preprocessing.explanations.reasons as reasons
    from loan_preprocessing.explanations.reasons import ReasonExplainer, load_reference
    from loan_preprocessing.reason_codes import ReasonCode

    stored, pipeline = real_model
    bad = ReasonCode("MARITAL_STATUS", "Marital status", ("Married",))
    monkeypatch.setattr(reasons, "REASON_CODES", (*REASON_CODES, bad))
    with pytest.raises(ValueError, match=r"MARITAL_STATUS.*Married"):
        ReasonExplainer(pipeline[-1], load_reference(stored))


@pytest.fixture(scope="module")
def scorer(real_model):
    from loan_preprocessing.decide import Scorer

    stored, _ = real_model
    return Scorer.from_model(stored)


@pytest.fixture(scope="module")
def real_rows(real_test_rows) -> list[dict]:
    """The 367 test and 614 training applications, as JSON records."""
    training = read_applications(REAL_TRAINING_CSV)[[ID_COLUMN, *FEATURE_COLUMNS]]
    return [*real_test_rows, *json.loads(training.to_json(orient="records"))]


@pytest.fixture(scope="module")
def decided(scorer, real_rows):
    applications = [LoanApplication.model_validate(r) for r in real_rows]
    return applications, scorer.decide(applications)


@pytest.fixture(scope="module")
def rejected(scorer, decided):
    """The rejections: (application, decision, contribution of each code)."""
    applications, decisions = decided
    chosen = [(a, d) for a, d in zip(applications, decisions, strict=True) if d.Loan_Status == "N"]
    contributions = scorer.explainer.code_contributions(scorer.model_inputs([a for a, _ in chosen]))
    return [(a, d, c) for (a, d), c in zip(chosen, contributions, strict=True)]


def test_every_rejection_has_reasons_and_no_approval_has_any(decided):
    _, decisions = decided
    statuses = [d.Loan_Status for d in decisions]
    assert statuses.count(REJECTED) > 100 and statuses.count(APPROVED) > 500
    for decision in decisions:
        if decision.Loan_Status == APPROVED:
            assert decision.reasons == []
        else:
            assert 1 <= len(decision.reasons) <= MAX_REASONS, decision
            codes = [r.code for r in decision.reasons]
            assert len(set(codes)) == len(codes)


def test_a_rejected_bad_credit_history_is_the_first_reason(rejected):
    bad_history = [d for a, d, _ in rejected if a.Credit_History == 0]
    assert len(bad_history) > 50
    assert all(d.reasons[0].code == "CREDIT_HISTORY" for d in bad_history)


def test_credit_history_is_named_for_what_the_application_said(rejected):
    named = {"CREDIT_HISTORY": set(), "NO_CREDIT_HISTORY": set()}
    for application, decision, _ in rejected:
        for reason in decision.reasons:
            if reason.code in named:
                named[reason.code].add(application.Credit_History)
    assert named["CREDIT_HISTORY"] == {0}
    # An unknown history is scored as its own value, and said so.
    assert named["NO_CREDIT_HISTORY"] == {None}


def test_the_reasons_are_the_factors_that_lowered_the_score_most(rejected):
    for _, decision, contributions in rejected:
        named = [contributions[CODE_NAMES.index(_scored_code(r.code))] for r in decision.reasons]
        assert named == sorted(named), (decision, named)
        assert named[0] < 0 and all(c <= -MIN_REASON_LOG_ODDS for c in named[1:]), decision
        others = [
            c for i, c in enumerate(contributions) if CODE_NAMES[i] not in _scored_codes(decision)
        ]
        if len(named) < MAX_REASONS:
            assert all(c > -MIN_REASON_LOG_ODDS for c in others), (decision, contributions)
        else:
            assert all(c >= named[-1] for c in others), (decision, contributions)


def test_reasons_of_a_rejection_add_up_to_less_than_the_reference(scorer, rejected):
    """Why every rejection has a reason: its contributions add up to its log-odds
    minus the reference population's mean, which is at or above the cutoff."""
    cutoff = np.log(scorer.threshold / (1 - scorer.threshold))
    assert scorer.explainer.expected_value >= cutoff
    for _, decision, contributions in rejected:
        assert contributions.sum() < 0, decision


def test_moving_the_first_reason_to_the_reference_raises_approval(scorer, rejected, capsys):
    """The first reason's fields given the reference applicants' values (each
    reference applicant's in turn, as the attributions compare) raise the mean
    P(Y), for every rejection: the model is nearly additive in its features."""
    reference = _reference_applications(scorer)
    raised = 0
    for application, decision, _ in rejected:
        fields = decision.reasons[0].fields
        moved = [
            application.model_copy(update={f: _plain(row[f]) for f in fields})
            for _, row in reference.iterrows()
        ]
        raised += bool(scorer.probabilities(moved).mean() > decision.probability)
    with capsys.disabled():
        print(f"\n  first reason moved to the reference: P(Y) rose for {raised} of {len(rejected)}")
    assert raised == len(rejected)


def test_reasons_never_name_protected_or_unused_fields(decided):
    _, decisions = decided
    assert {"Gender", "Married", "Dependents"} <= NEVER_NAMED
    allowed = set(DERIVED_FROM) - NEVER_NAMED
    for decision in decisions:
        for reason in decision.reasons:
            assert set(reason.fields) <= allowed
            assert reason == _declared(reason.code)


def test_the_same_application_gets_the_same_reasons_alone_and_in_any_batch(scorer, decided):
    applications, decisions = decided
    order = np.random.default_rng(0).permutation(len(applications))
    shuffled = scorer.decide([applications[i] for i in order])
    assert [shuffled[j] for j in np.argsort(order)] == decisions
    rejected_at = [i for i, d in enumerate(decisions) if d.Loan_Status == "N"][:40]
    for i in rejected_at:
        assert scorer.decide([applications[i]]) == [decisions[i]]
    assert scorer.decide(applications) == decisions


@settings(max_examples=150, deadline=None)
@given(st.lists(VALID_APPLICATIONS, min_size=1, max_size=8))
def test_any_valid_applications_get_faithful_reasons(scorer, records):
    """Beyond the real data: any valid applications (extreme incomes, missing
    values) get reasons exactly when rejected, from factors that lowered their
    score, and the attributions still add up to the log-odds."""
    applications = [LoanApplication.model_validate(r) for r in records]
    decisions = scorer.decide(applications)
    inputs = scorer.model_inputs(applications)
    phi = scorer.explainer.attributions(inputs)
    log_odds = scorer.pipeline[-1].decision_function(inputs)
    np.testing.assert_allclose(
        phi.sum(axis=1) + scorer.explainer.expected_value, log_odds, atol=1e-9
    )
    contributions = scorer.explainer.code_contributions(inputs)
    for decision, row, application in zip(decisions, contributions, applications, strict=True):
        assert (decision.Loan_Status == REJECTED) == bool(decision.reasons)
        named = [row[CODE_NAMES.index(_scored_code(r.code))] for r in decision.reasons]
        assert named == sorted(named) and all(c < 0 for c in named)
        assert len(decision.reasons) <= MAX_REASONS
        assert scorer.decide([application]) == [decision]


def _reference_applications(scorer) -> pd.DataFrame:
    """The training applications of the reference population, as application fields."""
    training = read_applications(REAL_TRAINING_CSV)
    records = json.loads(training[[ID_COLUMN, *FEATURE_COLUMNS]].to_json(orient="records"))
    probabilities = scorer.probabilities([LoanApplication.model_validate(r) for r in records])
    chosen = reference_rows(probabilities, scorer.threshold, len(scorer.reference.inputs))
    np.testing.assert_array_equal(
        scorer.model_inputs([LoanApplication.model_validate(records[i]) for i in chosen]),
        scorer.reference.inputs,
    )
    return training.iloc[chosen]


def _plain(value: object) -> object:
    """A data frame cell as the application field's value (NaN is missing)."""
    if isinstance(value, float) and np.isnan(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def _scored_code(code: str) -> str:
    """The code whose contributions a named code stands for."""
    return {other: scored for scored, other in WHEN_NOT_PROVIDED.items()}.get(code, code)


def _scored_codes(decision) -> set[str]:
    return {_scored_code(r.code) for r in decision.reasons}


def _declared(code: str):
    from loan_preprocessing.schema import Reason

    reason = CODES[code]
    return Reason(
        code=reason.code, fields=reason.fields, text=reason.text, actionable=reason.actionable
    )

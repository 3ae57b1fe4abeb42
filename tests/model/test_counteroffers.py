"""Counteroffers on the real data and the real model, checked against the
scikit-learn pipeline's own predict_proba (tests/support/counteroffers.py).

Every denial has one (an explicit none included) and no approval has any; an
offered amount is approved and no whole unit above it at a step point is; an
offered term is approved and no nearer standard term is; the answer is the
same alone, in any batch, and on the columnar path; a brute force over every
whole unit finds the same amounts; reasons say whether they are actionable
and the counteroffer names the reasons it addresses.
"""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_preprocessing.data import read_applications
from loan_preprocessing.decide import Scorer
from loan_preprocessing.inputs.columns import validate_columns
from loan_preprocessing.reason_codes import CHANGEABLE_FIELDS, CODES, REASON_CODES
from loan_preprocessing.schema import (
    APPROVED,
    FEATURE_COLUMNS,
    ID_COLUMN,
    NO_COUNTEROFFER,
    REJECTED,
    STANDARD_TERMS_MONTHS,
    Counteroffer,
    LoanApplication,
)
from tests.conftest import REAL_TRAINING_CSV
from tests.support.counteroffers import assert_exact, dense_amounts
from tests.test_properties import VALID_APPLICATIONS


@pytest.fixture(scope="module")
def scorer(real_model) -> Scorer:
    stored, _ = real_model
    return Scorer.from_model(stored)


@pytest.fixture(scope="module")
def applications(real_test_rows) -> list[LoanApplication]:
    """The 367 test and 614 training applications."""
    training = read_applications(REAL_TRAINING_CSV)[[ID_COLUMN, *FEATURE_COLUMNS]]
    rows = [*real_test_rows, *json.loads(training.to_json(orient="records"))]
    return [LoanApplication.model_validate(r) for r in rows]


@pytest.fixture(scope="module")
def decided(scorer, applications):
    return scorer.decide(applications)


def _offers(decisions):
    statuses = [d.Loan_Status for d in decisions]
    amounts = [d.counteroffer.LoanAmount if d.counteroffer else None for d in decisions]
    terms = [d.counteroffer.Loan_Amount_Term if d.counteroffer else None for d in decisions]
    return statuses, amounts, terms


def test_every_denial_has_a_counteroffer_and_no_approval_has_one(decided):
    denials = [d for d in decided if d.Loan_Status == REJECTED]
    assert len(denials) > 100
    assert all(isinstance(d.counteroffer, Counteroffer) for d in denials)
    assert all(d.counteroffer is None for d in decided if d.Loan_Status == APPROVED)
    # The real data has denials of every kind: an amount offer, a term offer, neither.
    with_amount = sum(d.counteroffer.LoanAmount is not None for d in denials)
    with_term = sum(d.counteroffer.Loan_Amount_Term is not None for d in denials)
    print(f"\n{len(denials)} real denials: {with_amount} with an amount, {with_term} with a term")
    assert with_amount > 10 and with_term > 5
    assert any(d.counteroffer == NO_COUNTEROFFER for d in denials)


def test_every_real_denial_gets_exact_offers(scorer, applications, decided):
    assert_exact(scorer.pipeline, scorer.threshold, applications, *_offers(decided))


def test_a_bad_credit_history_that_no_amount_overcomes_gets_explicit_nulls(
    scorer, applications, decided
):
    nothing = [
        a
        for a, d in zip(applications, decided, strict=True)
        if d.Loan_Status == REJECTED and d.counteroffer == NO_COUNTEROFFER
    ]
    assert any(a.Credit_History == 0 for a in nothing)
    body = scorer.decide(nothing[:1])[0].model_dump(mode="json")
    assert body["counteroffer"] == {"LoanAmount": None, "Loan_Amount_Term": None, "addresses": []}


def test_a_brute_force_over_every_whole_unit_finds_the_same_amounts(scorer, applications, decided):
    offered = [
        (a, d.counteroffer.LoanAmount)
        for a, d in zip(applications, decided, strict=True)
        if d.Loan_Status == REJECTED and d.counteroffer.LoanAmount is not None
    ]
    refused = [
        (a, None)
        for a, d in zip(applications, decided, strict=True)
        if d.Loan_Status == REJECTED and a.LoanAmount and d.counteroffer.LoanAmount is None
    ]
    # A few of each (every whole unit of a 150,000 loan is 150,000 rows for the pipeline).
    for application, amount in [*offered[:4], *refused[:2]]:
        assert dense_amounts(scorer.pipeline, scorer.threshold, application) == amount


def test_the_same_alone_in_any_batch_and_as_columns(scorer, applications, decided):
    denied = [i for i, d in enumerate(decided) if d.Loan_Status == REJECTED]
    for i in denied[:30]:
        assert scorer.decide([applications[i]]) == [decided[i]]
    order = list(range(len(applications)))
    random.Random(7).shuffle(order)
    shuffled = scorer.decide([applications[i] for i in order])
    assert [shuffled[k] for k in np.argsort(order)] == decided
    columns = validate_columns(
        {name: [getattr(a, name) for a in applications] for name in LoanApplication.model_fields},
        len(applications),
    )
    as_columns = scorer.decide_columns(columns)
    _, amounts, terms = _offers(decided)
    assert as_columns.counteroffer_amounts == amounts
    assert as_columns.counteroffer_terms == terms
    assert as_columns.decisions() == decided


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(VALID_APPLICATIONS, min_size=1, max_size=30))
def test_generated_applications_get_exact_offers(scorer, records):
    applications = [LoanApplication.model_validate(r) for r in records]
    decisions = scorer.decide(applications)
    assert_exact(scorer.pipeline, scorer.threshold, applications, *_offers(decisions))


# Applications near the real denials: the real data's incomes, amounts and terms.
NEAR_DENIALS = st.fixed_dictionaries(
    {
        "Education": st.sampled_from(["Graduate", "Not Graduate"]),
        "Property_Area": st.sampled_from(["Urban", "Semiurban", "Rural"]),
        "ApplicantIncome": st.floats(0, 20_000),
        "CoapplicantIncome": st.sampled_from([0.0]) | st.floats(0, 10_000),
        "LoanAmount": st.none() | st.floats(1, 700),
        "Loan_Amount_Term": st.none() | st.sampled_from(STANDARD_TERMS_MONTHS) | st.floats(1, 600),
        "Credit_History": st.none() | st.sampled_from([0, 1]),
    }
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(NEAR_DENIALS, min_size=1, max_size=30))
def test_applications_like_the_real_ones_get_exact_offers(scorer, records):
    applications = [LoanApplication.model_validate(r) for r in records]
    decisions = scorer.decide(applications)
    assert_exact(scorer.pipeline, scorer.threshold, applications, *_offers(decisions))


def test_reasons_say_whether_the_applicant_can_act_on_them(decided):
    assert {r.code for r in REASON_CODES if r.actionable} == {
        "LOAN_TO_INCOME",
        "LOAN_AMOUNT",
        "LOAN_TERM",
    }
    assert set(CHANGEABLE_FIELDS) == {"LoanAmount", "Loan_Amount_Term"}
    for decision in decided:
        for reason in decision.reasons:
            assert reason.actionable == CODES[reason.code].actionable
            assert reason.actionable == bool(set(reason.fields) & set(CHANGEABLE_FIELDS))


def test_a_counteroffer_names_the_reasons_it_addresses(decided):
    addressed = 0
    for decision in decided:
        offer = decision.counteroffer
        if offer is None:
            continue
        changed = set()
        if offer.LoanAmount is not None:
            changed.add("LoanAmount")
        if offer.Loan_Amount_Term is not None:
            changed.add("Loan_Amount_Term")
        expected = tuple(r.code for r in decision.reasons if changed & set(r.fields))
        assert offer.addresses == expected, decision
        addressed += bool(expected)
    assert addressed > 10

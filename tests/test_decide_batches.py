"""A row's decision does not depend on its batch: same bits, same reasons.

The service decides one to a thousand applications at a time, offline scoring
and the Spark job columns of thousands; the probabilities and reasons take
other code paths for large batches (side codes, rows merged by their codes,
reasons named per combination). Every row of 20,001 generated applications
(with missing values) gets, through `decide_columns` in one call and in chunks
that cross every boundary, exactly what `decide` gives it alone, and the
probability scikit-learn's pipeline gives it.
"""

from __future__ import annotations

import numpy as np
import pytest

from loan_preprocessing.inputs.columns import ValidatedColumns, validate_columns
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.reason_codes import WHEN_NOT_PROVIDED
from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN, REJECTED
from loan_preprocessing.synthetic import generate_applications

ROWS = 20_001


@pytest.fixture(scope="module")
def scorer(real_model):
    from loan_preprocessing.decide import Scorer

    stored, _ = real_model
    return Scorer.from_model(stored)


@pytest.fixture(scope="module")
def frame():
    return generate_applications(ROWS, seed=23)[[ID_COLUMN, *FEATURE_COLUMNS]]


@pytest.fixture(scope="module")
def columns(frame) -> ValidatedColumns:
    return validate_columns({name: frame[name].to_numpy() for name in frame.columns}, len(frame))


@pytest.fixture(scope="module")
def whole(scorer, columns):
    return scorer.decide_columns(columns)


def _rows(columns: ValidatedColumns, start: int, stop: int) -> ValidatedColumns:
    return ValidatedColumns(
        len(range(start, stop)[: columns.rows]),
        {name: values[start:stop] for name, values in columns.values.items()},
    )


def test_the_probabilities_are_scikit_learns(scorer, frame, whole):
    expected = scorer.pipeline.predict_proba(to_feature_frame(frame))[:, 1]
    np.testing.assert_array_equal(np.array(whole.probabilities), expected)


@pytest.mark.parametrize("size", [1, 127, 128, 129, 255, 257, 1000, 1025, 5000])
def test_any_chunking_gives_the_same_decisions(scorer, columns, whole, size):
    starts = range(0, ROWS, size) if size > 128 else range(0, 3 * size + 1, size)
    for start in starts:
        part = scorer.decide_columns(_rows(columns, start, start + size))
        stop = start + len(part)
        assert part.probabilities == whole.probabilities[start:stop]
        assert part.statuses == whole.statuses[start:stop]
        assert part.reasons == whole.reasons[start:stop]


def test_each_row_alone_gets_the_decision_it_gets_in_bulk(scorer, columns, whole):
    applications = list(columns.applications())
    alone = [scorer.decide([application])[0] for application in applications]
    assert [d.probability for d in alone] == whole.probabilities
    assert [d.Loan_Status for d in alone] == whole.statuses
    assert [tuple(d.reasons) for d in alone] == [tuple(r) for r in whole.reasons]
    assert scorer.decide(applications[:1000]) == alone[:1000]


def test_bulk_reasons_say_when_a_field_was_not_provided(columns, whole):
    """The swap of WHEN_NOT_PROVIDED, made on whole columns, is exercised here."""
    ((code, other),) = WHEN_NOT_PROVIDED.items()
    missing = [value is None for value in columns.values["Credit_History"].tolist()]
    named = [{r.code for r in reasons} for reasons in whole.reasons]
    rejected = np.array(whole.statuses) == REJECTED
    assert any(other in n for n, m in zip(named, missing, strict=True) if m)
    for n, m, r in zip(named, missing, rejected, strict=True):
        assert code not in n if m else other not in n
        assert bool(n) == r

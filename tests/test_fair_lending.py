"""The served model ignores the protected characteristics (schema.PROTECTED_ATTRIBUTES).

Changing `Gender` or `Married` of an application, to any level or to null, must not
change its probability by a single bit: on the 367 real test applications and on
hypothesis-generated ones, in-process (the pipeline and the service's fast path)
and over HTTP against a real `bentoml serve`. A model that reads them is refused
at load.
"""

from __future__ import annotations

import itertools

import httpx
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loan_preprocessing.decide import Scorer
from loan_preprocessing.model.features import MODEL_FEATURES, pipeline_features, to_feature_frame
from loan_preprocessing.model.store import (
    MODEL_INPUTS_KEY,
    ModelLoadError,
    check_model_inputs,
    model_metadata,
)
from loan_preprocessing.schema import CATEGORY_LEVELS, PROTECTED_ATTRIBUTES, LoanApplication
from tests.support.server import bentoml_serve
from tests.test_properties import VALID_APPLICATIONS

# Every combination of the protected fields' levels and null.
PROTECTED_VARIANTS = [
    dict(zip(PROTECTED_ATTRIBUTES, values, strict=True))
    for values in itertools.product(*((*CATEGORY_LEVELS[n], None) for n in PROTECTED_ATTRIBUTES))
]
PROTECTED_VALUES = st.fixed_dictionaries(
    {name: st.sampled_from((*CATEGORY_LEVELS[name], None)) for name in PROTECTED_ATTRIBUTES}
)


@pytest.fixture(scope="module")
def scorer(real_model) -> Scorer:
    """The served model as the service decides with it (fast path included)."""
    stored, _ = real_model
    return Scorer.from_model(stored)


def _applications(rows: list[dict], **changes) -> list[LoanApplication]:
    return [LoanApplication.model_validate({**row, **changes}) for row in rows]


def test_the_variants_cover_every_level_and_null():
    assert len(PROTECTED_VARIANTS) == np.prod(
        [len(CATEGORY_LEVELS[n]) + 1 for n in PROTECTED_ATTRIBUTES]
    )
    for name in PROTECTED_ATTRIBUTES:
        assert {v[name] for v in PROTECTED_VARIANTS} == {*CATEGORY_LEVELS[name], None}


def test_real_test_rows_in_process(real_model, scorer, real_test_rows):
    _, pipeline = real_model
    baseline_pipeline = pipeline.predict_proba(to_feature_frame(real_test_rows))[:, 1]
    baseline_served = scorer.probabilities(_applications(real_test_rows))
    for variant in PROTECTED_VARIANTS:
        changed = [{**row, **variant} for row in real_test_rows]
        np.testing.assert_array_equal(
            pipeline.predict_proba(to_feature_frame(changed))[:, 1], baseline_pipeline, str(variant)
        )
        np.testing.assert_array_equal(
            scorer.probabilities(_applications(changed)), baseline_served, str(variant)
        )


@settings(max_examples=100, deadline=None)
@given(
    records=st.lists(VALID_APPLICATIONS, min_size=1, max_size=20),
    data=st.data(),
)
def test_generated_applications_in_process(real_model, scorer, records, data):
    _, pipeline = real_model
    rows = [LoanApplication.model_validate(r).model_dump() for r in records]
    changed = [{**row, **data.draw(PROTECTED_VALUES)} for row in rows]
    np.testing.assert_array_equal(
        pipeline.predict_proba(to_feature_frame(changed))[:, 1],
        pipeline.predict_proba(to_feature_frame(rows))[:, 1],
    )
    np.testing.assert_array_equal(
        scorer.probabilities(_applications(changed)), scorer.probabilities(_applications(rows))
    )


@pytest.fixture(scope="module")
def server(real_model, tmp_path_factory):
    stored, _ = real_model
    log_path = tmp_path_factory.mktemp("fair-lending") / "serve.log"
    env = {"LOAN_MODEL_TAG": str(stored.tag), "LOAN_WORKERS": "1"}
    with bentoml_serve(env=env, log_path=log_path) as running:
        yield running


def _served(url: str, rows: list[dict]) -> list[float]:
    response = httpx.post(f"{url}/predict", json={"applications": rows}, timeout=30)
    assert response.status_code == 200, response.text
    return [d["probability"] for d in response.json()]


@pytest.mark.e2e
def test_real_test_rows_over_http(server, real_test_rows):
    baseline = _served(server.url, real_test_rows)
    for variant in PROTECTED_VARIANTS:
        # JSON carries floats exactly (shortest round-trip repr): equal means bit for bit.
        assert _served(server.url, [{**row, **variant} for row in real_test_rows]) == baseline, (
            variant
        )


@pytest.mark.e2e
@settings(max_examples=25, deadline=None)
@given(records=st.lists(VALID_APPLICATIONS, min_size=1, max_size=20), data=st.data())
def test_generated_applications_over_http(server, records, data):
    changed = [{**record, **data.draw(PROTECTED_VALUES)} for record in records]
    assert _served(server.url, changed) == _served(server.url, records)


def test_the_real_model_records_inputs_without_protected_fields(real_model):
    stored, pipeline = real_model
    recorded = model_metadata(stored)[MODEL_INPUTS_KEY]
    assert not set(recorded["fields"]) & set(PROTECTED_ATTRIBUTES)
    assert recorded["features"] == list(pipeline_features(pipeline))
    assert set(recorded["features"]) <= set(MODEL_FEATURES)


@pytest.mark.parametrize(
    ("inputs", "expected"),
    [
        (None, "does not record the application fields it uses"),
        ({"features": list(MODEL_FEATURES)}, "does not record the application fields it uses"),
        (
            {"fields": ["Credit_History", "Married"], "features": list(MODEL_FEATURES)},
            "uses the protected attribute(s) Married (marital status) as input",
        ),
        (
            {"fields": ["Gender"], "features": list(MODEL_FEATURES)},
            "uses the protected attribute(s) Gender (sex) as input",
        ),
        (
            {"fields": ["Credit_History"], "features": ["CreditHistory", "IsMarried"]},
            "was fitted on the features",
        ),
    ],
    ids=["no-record", "no-fields", "married", "gender", "old-features"],
)
def test_loading_refuses_a_model_that_reads_a_protected_field_or_does_not_say(
    real_model, inputs, expected
):
    stored, _ = real_model
    metadata = dict(model_metadata(stored))
    metadata.pop(MODEL_INPUTS_KEY)
    if inputs is not None:
        metadata[MODEL_INPUTS_KEY] = inputs
    with pytest.raises(ModelLoadError) as refused:
        check_model_inputs(str(stored.tag), metadata)
    message = str(refused.value)
    assert expected in message and str(stored.tag) in message
    assert "\n" not in message and "retrain" in message

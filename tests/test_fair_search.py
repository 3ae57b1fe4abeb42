"""The search for less discriminatory alternatives and the recorded cutoff, end to end.

A model trained with `--cutoff` and `--candidate without-Property_Area` (really
trained, on the synthetic sample) must record both, load through the store's
checks, serve and explain without ever reading or naming Property_Area, and be
decided by its own cutoff on every scoring path: /predict, the V2 API,
/predict_csv over a real `bentoml serve`, offline CSV scoring and the Spark job's
scoring function.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest

from loan_preprocessing.batch import score_csv, spark_job
from loan_preprocessing.data import features_and_target, read_applications
from loan_preprocessing.decide import Scorer
from loan_preprocessing.model.features import (
    FastPredictor,
    features_without,
    model_inputs,
    pipeline_features,
    to_feature_frame,
)
from loan_preprocessing.model.store import MODEL_INPUTS_KEY, get_model, load_pipeline
from loan_preprocessing.operations.model_card import ALTERNATIVES, CARD_FILE, PROXY_TEST
from loan_preprocessing.schema import (
    APPROVED,
    CATEGORY_LEVELS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    REJECTED,
    LoanApplication,
)
from loan_preprocessing.serving.open_inference import INFER_PATH
from loan_preprocessing.synthetic import generate_applications
from tests.conftest import SAMPLE_CSV
from tests.serving.test_open_inference import v2_request
from tests.support.counteroffers import assert_exact
from tests.support.server import bentoml_serve
from tests.support.trained import OWN_CUTOFF, WITHOUT_AREA, sample_model_with_cutoff_without_area

AREA_CODE = "PROPERTY_AREA"


@pytest.fixture(scope="module")
def tag(real_model_tag_or_none) -> str:
    return sample_model_with_cutoff_without_area()


@pytest.fixture(scope="module")
def scorer(tag) -> Scorer:
    return Scorer.from_model(get_model(tag))


@pytest.fixture(scope="module")
def sample_rows() -> list[dict]:
    """The sample's applications as JSON records (what a client sends)."""
    frame = read_applications(SAMPLE_CSV)
    return json.loads(frame[[ID_COLUMN, *FEATURE_COLUMNS]].to_json(orient="records"))


def test_the_model_records_the_candidate_and_the_cutoff(tag):
    metadata = get_model(tag).info.metadata
    assert metadata["threshold"] == OWN_CUTOFF
    assert metadata["cutoff"]["value"] == OWN_CUTOFF
    assert OWN_CUTOFF in [point["cutoff"] for point in metadata["cutoff"]["curve"]]
    assert metadata["selection"]["chosen"] == WITHOUT_AREA
    assert metadata[MODEL_INPUTS_KEY] == model_inputs(features_without(["Property_Area"]))
    assert "Property_Area" not in metadata[MODEL_INPUTS_KEY]["fields"]
    assert "IsSemiurban" not in metadata[MODEL_INPUTS_KEY]["features"]


def test_the_stored_pipeline_derives_only_the_recorded_features(tag):
    pipeline = load_pipeline(get_model(tag))
    assert list(pipeline_features(pipeline)) == list(features_without(["Property_Area"]))
    assert pipeline[-1].n_features_in_ == len(features_without(["Property_Area"]))
    assert FastPredictor.supports(pipeline)


def test_property_area_changes_nothing(tag, sample_rows):
    """The model does not read the field: any level, or none, gives the same P(Y)."""
    pipeline = load_pipeline(get_model(tag))
    answers = [
        pipeline.predict_proba(
            to_feature_frame([{**r, "Property_Area": level} for r in sample_rows])
        )
        for level in (*CATEGORY_LEVELS["Property_Area"], None)
    ]
    for answer in answers[1:]:
        assert np.array_equal(answer, answers[0])


def test_it_serves_and_explains_without_naming_property_area(scorer, sample_rows):
    generated = generate_applications(2000, seed=23)
    records = sample_rows + json.loads(
        generated[[ID_COLUMN, *FEATURE_COLUMNS]].to_json(orient="records")
    )
    applications = [LoanApplication.model_validate(r) for r in records]
    decided = scorer.decide(applications)
    # The fast path gives the pipeline's own numbers for this feature set.
    expected = scorer.pipeline.predict_proba(to_feature_frame(records))[:, 1]
    assert [d.probability for d in decided] == pytest.approx(expected.tolist(), abs=0.0)
    rejected = [d for d in decided if d.Loan_Status == REJECTED]
    assert rejected, "the test needs rejections to look at their reasons"
    assert all(d.reasons for d in rejected)  # every rejection has a reason
    named = {r.code for d in decided for r in d.reasons}
    assert AREA_CODE not in named
    assert not any("Property_Area" in r.fields for d in decided for r in d.reasons)


def test_its_counteroffers_are_exact_at_its_own_cutoff(scorer, sample_rows):
    """The counteroffer search reads the candidate's own features (fewer, at other
    positions than MODEL_FEATURES): its offers hold by the pipeline's predict_proba."""
    generated = generate_applications(1500, seed=29)
    records = sample_rows + json.loads(
        generated[[ID_COLUMN, *FEATURE_COLUMNS]].to_json(orient="records")
    )
    applications = [LoanApplication.model_validate(r) for r in records]
    decided = scorer.decide(applications)
    offers = [d.counteroffer for d in decided]
    assert any(o is not None and o.LoanAmount is not None for o in offers)
    assert_exact(
        scorer.pipeline,
        scorer.threshold,
        applications,
        [d.Loan_Status for d in decided],
        [None if o is None else o.LoanAmount for o in offers],
        [None if o is None else o.Loan_Amount_Term for o in offers],
    )


def test_the_reference_population_follows_the_cutoff(scorer):
    """The applicants the reasons compare with are approved at the recorded cutoff."""
    probabilities = scorer.pipeline[-1].predict_proba(scorer.reference.inputs)[:, 1]
    assert probabilities.min() >= OWN_CUTOFF
    assert f"threshold {OWN_CUTOFF:g}" in scorer.reference.selection


def test_the_card_says_it_was_overridden_and_by_how_much(tag):
    model = get_model(tag)
    selection = model.info.metadata["selection"]
    card = Path(model.path_of(CARD_FILE)).read_text(encoding="utf-8")
    section = card.split(f"# {ALTERNATIVES}", 1)[1].split(f"# {PROXY_TEST}", 1)[0]
    if selection["chosen_by_rule"] == WITHOUT_AREA:
        assert not selection["overridden"] and "(by the rule)" in section
        return
    assert selection["overridden"]
    margin = selection["override_margin"]
    frontier = selection["frontier"]
    ours, rules = frontier[WITHOUT_AREA], frontier[selection["chosen_by_rule"]]
    assert margin["roc_auc"] == pytest.approx(ours["roc_auc"] - rules["roc_auc"], abs=1e-4)
    assert "OVERRIDDEN" in section and selection["chosen_by_rule"] in section
    assert f"{margin['roc_auc']:+.4f}" in section
    assert "Property_Area was left out by the stated rule: the rule's choice was overridden" in card


def _expected_statuses(scorer: Scorer, records: list[dict]) -> list[str]:
    """The decision rule with the recorded cutoff: Y exactly when P(Y) >= cutoff."""
    p = scorer.pipeline.predict_proba(to_feature_frame(records))[:, 1]
    return [APPROVED if v >= OWN_CUTOFF else REJECTED for v in p.tolist()]


def test_the_cutoff_decides_some_rows_differently_from_the_default(scorer, sample_rows):
    """Otherwise the test below could not tell the recorded cutoff from 0.5."""
    p = scorer.pipeline.predict_proba(to_feature_frame(sample_rows))[:, 1]
    assert np.sum((p >= 0.5) & (p < OWN_CUTOFF)) >= 5


@pytest.mark.e2e
def test_every_http_path_decides_with_the_recorded_cutoff(tag, scorer, sample_rows, tmp_path):
    expected = _expected_statuses(scorer, sample_rows)
    csv_text = read_applications(SAMPLE_CSV)[[ID_COLUMN, *FEATURE_COLUMNS]].to_csv(index=False)
    env = {"LOAN_MODEL_TAG": tag, "LOAN_WORKERS": "1"}
    # A generous start-up time: the shared machine can be very busy.
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log", ready_timeout=240) as server:
        answer = httpx.post(f"{server.url}/predict", json={"applications": sample_rows}, timeout=60)
        assert answer.status_code == 200, answer.text
        assert [d["Loan_Status"] for d in answer.json()] == expected

        # An INT64 tensor holds whole numbers or null, not pandas' floats.
        v2_rows = [
            {
                **r,
                "Credit_History": None if r["Credit_History"] is None else int(r["Credit_History"]),
            }
            for r in sample_rows
        ]
        v2 = httpx.post(f"{server.url}{INFER_PATH}", json=v2_request(v2_rows), timeout=60)
        assert v2.status_code == 200, v2.text
        outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
        assert outputs["Loan_Status"] == expected

        files = {"file": ("sample.csv", csv_text, "text/csv")}
        table = httpx.post(f"{server.url}/predict_csv", files=files, timeout=60)
        assert table.status_code == 200, table.text
        assert [r["Loan_Status"] for r in csv.DictReader(io.StringIO(table.text))] == expected


def test_offline_scoring_decides_with_the_recorded_cutoff(tag, scorer, sample_rows, tmp_path):
    output = tmp_path / "decisions.csv"
    assert score_csv.main([str(SAMPLE_CSV), "--output", str(output), "--model-tag", tag]) == 0
    with open(output, newline="") as handle:
        statuses = [r["Loan_Status"] for r in csv.DictReader(handle)]
    assert statuses == _expected_statuses(scorer, sample_rows)


def test_the_spark_jobs_scoring_decides_with_the_recorded_cutoff(tag, scorer, sample_rows):
    """What each Spark worker runs on its batches (the model shipped as an archive),
    on both transports, given the cells as Spark reads a CSV: text, None when empty."""
    import pyarrow as pa

    package = spark_job.package_model(tag)
    cells = pd.read_csv(SAMPLE_CSV, dtype=str, keep_default_na=False)
    cells = cells[list(spark_job.INPUT_COLUMNS)].replace("", None)
    expected = _expected_statuses(scorer, sample_rows)
    [by_rows] = list(spark_job.score_frames([cells], package))
    assert by_rows["Loan_Status"].tolist() == expected
    batch = pa.RecordBatch.from_pandas(cells, preserve_index=False)
    [by_arrow] = list(spark_job.score_batches([batch], package))
    assert by_arrow.column("Loan_Status").to_pylist() == expected


def test_training_refuses_a_cutoff_that_is_not_a_probability(capsys):
    import train

    for bad in ("0", "1", "1.5", "-0.2"):
        with pytest.raises(SystemExit):
            train.parse_args(["--cutoff", bad])
        assert "strictly between 0 and 1" in capsys.readouterr().err


def test_training_refuses_an_unknown_candidate(capsys):
    import train

    with pytest.raises(SystemExit):
        train.parse_args(["--candidate", "without-Gender"])
    assert "invalid choice" in capsys.readouterr().err


def test_the_frontier_is_scored_on_every_training_row(tag):
    """Each candidate's audit covers the rows that state each attribute."""
    frontier = get_model(tag).info.metadata["selection"]["frontier"]
    features, _ = features_and_target(read_applications(SAMPLE_CSV))
    for name, point in frontier.items():
        for attribute, values in point["attributes"].items():
            assert set(values["approval_rates"]) == set(pd.unique(features[attribute].dropna())), (
                name,
                attribute,
            )

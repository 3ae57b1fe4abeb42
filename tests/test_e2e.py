"""End to end: a real `bentoml serve` subprocess on 127.0.0.1, real HTTP.

Both the working tree's service and a built Bento must answer the 367 real test
applications in order, with exactly the probabilities of the in-process pipeline
and the reasons and counteroffers of the in-process decision path, the same
every time, alone or in a batch, on /predict, V2 and /predict_csv; and every
counteroffer they answer is exact by the pipeline's own predict_proba.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest

from loan_preprocessing.decide import Scorer
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.schema import LoanApplication
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from loan_preprocessing.serving.open_inference import INFER_PATH
from tests.conftest import TEST_REPORTS
from tests.serving.test_open_inference import v2_request
from tests.support.counteroffers import assert_exact
from tests.support.server import bentoml_serve

pytestmark = pytest.mark.e2e
BENTOML = str(Path(sys.executable).with_name("bentoml"))


def without_ids(answers: list[dict]) -> list[dict]:
    """The decisions as answered, less their record ids: each answer is a new
    decision with an id of its own (GET /decisions/{id}), the rest must agree."""
    return [{k: v for k, v in a.items() if k != "decision_id"} for a in answers]


def assert_serves_like_the_pipeline(url: str, rows: list[dict], model) -> None:
    stored, pipeline = model
    expected = pipeline.predict_proba(to_feature_frame(rows))[:, 1]
    response = httpx.post(f"{url}/predict", json={"applications": rows}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers[MODEL_TAG_HEADER] == str(stored.tag)
    body = response.json()
    assert [d["Loan_ID"] for d in body] == [r["Loan_ID"] for r in rows]
    np.testing.assert_array_equal([d["probability"] for d in body], expected)
    assert [d["Loan_Status"] for d in body] == ["Y" if p >= 0.5 else "N" for p in expected]
    # The reasons of every rejection, as the in-process decision path gives them.
    in_process = Scorer.from_model(stored).decide([LoanApplication.model_validate(r) for r in rows])
    assert without_ids(body) == without_ids([d.model_dump(mode="json") for d in in_process])
    assert any(d["reasons"] for d in body)
    again = httpx.post(f"{url}/predict", json={"applications": rows}, timeout=30)
    assert again.status_code == 200 and without_ids(again.json()) == without_ids(body)
    # One application per request gives the same answers as the whole batch,
    # rejections (and their reasons) included.
    rejected = [(r, d) for r, d in zip(rows, body, strict=True) if d["Loan_Status"] == "N"]
    for row, want in [*zip(rows[:20], body[:20], strict=True), *rejected[:20]]:
        single = httpx.post(f"{url}/predict", json={"applications": [row]}, timeout=30)
        assert single.status_code == 200 and without_ids(single.json()) == without_ids([want])
    assert_counteroffers_over_http(url, rows, body, model)


def assert_counteroffers_over_http(url: str, rows: list[dict], body: list[dict], model) -> None:
    """Every denial answered with its counteroffer, exact by the pipeline itself,
    and V2 and /predict_csv answer the same offers as /predict."""
    stored, pipeline = model
    offers = [d["counteroffer"] or {} for d in body]
    amounts = [o.get("LoanAmount") for o in offers]
    terms = [o.get("Loan_Amount_Term") for o in offers]
    statuses = [d["Loan_Status"] for d in body]
    assert all(d["counteroffer"] is not None for d in body if d["Loan_Status"] == "N")
    assert any(a is not None for a in amounts) and any(t is not None for t in terms)
    applications = [LoanApplication.model_validate(r) for r in rows]
    threshold = float(stored.info.metadata["threshold"])
    assert_exact(pipeline, threshold, applications, statuses, amounts, terms)
    names = [n for n in LoanApplication.model_fields if n != "Loan_ID"]
    v2 = httpx.post(f"{url}{INFER_PATH}", json=v2_request(rows), timeout=30)
    assert v2.status_code == 200, v2.text
    outputs = {o["name"]: o["data"] for o in v2.json()["outputs"]}
    assert outputs["counteroffer_amount"] == amounts
    assert outputs["counteroffer_term"] == terms
    upload = io.StringIO()
    writer = csv.DictWriter(upload, fieldnames=["Loan_ID", *names])
    writer.writeheader()
    writer.writerows({k: "" if v is None else v for k, v in r.items()} for r in rows)
    answered = httpx.post(
        f"{url}/predict_csv", files={"file": ("rows.csv", upload.getvalue())}, timeout=30
    )
    assert answered.status_code == 200, answered.text
    table = list(csv.DictReader(io.StringIO(answered.text)))
    assert [
        float(r["counteroffer_amount"]) if r["counteroffer_amount"] else None for r in table
    ] == amounts
    assert [
        float(r["counteroffer_term"]) if r["counteroffer_term"] else None for r in table
    ] == terms


def test_bentoml_serve_answers_the_real_test_rows(real_model, real_test_rows, tmp_path):
    stored, _ = real_model
    with bentoml_serve(
        env={"LOAN_MODEL_TAG": str(stored.tag)}, log_path=tmp_path / "serve.log"
    ) as server:
        assert_serves_like_the_pipeline(server.url, real_test_rows, real_model)
        bad = httpx.post(
            f"{server.url}/predict", json={"applications": [{**real_test_rows[0], "Gender": "X"}]}
        )
        assert bad.status_code == 400
        assert ["applications", 0, "Gender"] in [e["loc"] for e in bad.json()["detail"]]
        assert httpx.get(f"{server.url}/livez").status_code == 200


def test_built_bento_serves_the_same_answers(built_bento, real_model, real_test_rows, tmp_path):
    import train
    from tests.conftest import SAMPLE_CSV

    # A newer model in the store must not change what the Bento serves.
    assert (
        train.main(["--data", str(SAMPLE_CSV), "--quiet", "--report-dir", str(TEST_REPORTS)]) == 0
    )
    with bentoml_serve(
        built_bento, env={"LOAN_MODEL_TAG": ""}, log_path=tmp_path / "bento.log"
    ) as server:
        assert_serves_like_the_pipeline(server.url, real_test_rows, real_model)


def test_bento_pins_the_versions_that_trained_the_model(built_bento, real_model, bentoml_home):
    stored, _ = real_model
    name, version = built_bento.split(":")
    bento_dir = bentoml_home / "bentos" / name / version
    locked = dict(
        re.findall(
            r"^([A-Za-z0-9_.-]+)==(\S+)$",
            (bento_dir / "env/python/requirements.txt").read_text(),
            re.M,
        )
    )
    trained = stored.info.metadata["versions"]
    for package in ("scikit-learn", "numpy", "pandas", "skops", "bentoml"):
        assert locked[package] == trained[package], package
    dockerfile = (bento_dir / "env/docker/Dockerfile").read_text()
    assert f"python:{'.'.join(trained['python'].split('.')[:2])}" in dockerfile
    assert "BENTOML_DO_NOT_TRACK=true" in dockerfile
    bento_yaml = (bento_dir / "bento.yaml").read_text()
    assert str(stored.tag) in bento_yaml

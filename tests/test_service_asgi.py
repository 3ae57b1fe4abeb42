"""The service in-process: the class called directly, and its ASGI app through
starlette's TestClient (real HTTP semantics, no server process)."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from loan_preprocessing.features import to_feature_frame
from loan_preprocessing.middleware import MODEL_TAG_HEADER
from loan_preprocessing.model_store import get_model, load_pipeline
from loan_preprocessing.schema import EXAMPLE_APPLICATION

EXAMPLE = EXAMPLE_APPLICATION.model_dump()


@pytest.fixture(scope="module")
def service_module(real_model_tag_or_none):
    if real_model_tag_or_none is None:  # no real data: serve a model of the sample
        import train
        from tests.conftest import SAMPLE_CSV

        assert train.main(["--data", str(SAMPLE_CSV), "--quiet"]) == 0
    import service

    return service


@pytest.fixture(scope="module")
def client(service_module):
    with TestClient(service_module.LoanApproval.to_asgi()) as test_client:
        yield test_client


def expected_probabilities(tag: str, rows: list[dict]) -> np.ndarray:
    return load_pipeline(get_model(tag)).predict_proba(to_feature_frame(rows))[:, 1]


def test_the_class_called_directly(service_module):
    instance = service_module.LoanApproval()
    [decision] = instance.predict([EXAMPLE_APPLICATION])
    assert decision.Loan_ID == "LP001015"
    assert decision.Loan_Status == ("Y" if decision.probability >= instance.threshold else "N")


def test_predict_returns_decisions_in_order_with_the_model_tag(client, real_test_rows):
    rows = real_test_rows[:25]
    response = client.post("/predict", json={"applications": rows})
    assert response.status_code == 200
    tag = response.headers[MODEL_TAG_HEADER]
    assert tag.startswith("loan_approval:")
    body = response.json()
    assert [d["Loan_ID"] for d in body] == [r["Loan_ID"] for r in rows]
    np.testing.assert_array_equal(
        [d["probability"] for d in body], expected_probabilities(tag, rows)
    )
    assert all(d["Loan_Status"] == ("Y" if d["probability"] >= 0.5 else "N") for d in body)


def test_swagger_example_is_a_valid_request(client):
    spec = client.get("/docs.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    example = body["schema"]["properties"]["applications"]["examples"][0]
    response = client.post("/predict", json={"applications": example})
    assert response.status_code == 200
    assert response.json()[0]["Loan_ID"] == EXAMPLE["Loan_ID"]


def test_an_empty_body_is_refused_not_defaulted(client):
    response = client.post("/predict", json={})
    assert response.status_code == 400
    assert ["applications"] in [e["loc"] for e in response.json()["detail"]]


@pytest.mark.parametrize(
    ("body", "location"),
    [
        ({"applications": []}, ["applications"]),
        (
            {"applications": [{**EXAMPLE, "ApplicantIncome": -1}]},
            ["applications", 0, "ApplicantIncome"],
        ),
        (
            {"applications": [EXAMPLE, {**EXAMPLE, "Property_Area": "Mars"}]},
            ["applications", 1, "Property_Area"],
        ),
        ({"applications": [{**EXAMPLE, "Bonus": 3}]}, ["applications", 0, "Bonus"]),
        ({"applications": [{**EXAMPLE, "LoanAmount": "12"}]}, ["applications", 0, "LoanAmount"]),
        ({"applications": EXAMPLE}, ["applications"]),
        ({"application": [EXAMPLE]}, ["application"]),
        ({"applications": [EXAMPLE] * 5001}, ["applications"]),
    ],
)
def test_bad_requests_get_400_naming_row_and_field(client, body, location):
    response = client.post("/predict", json=body)
    assert response.status_code == 400
    locations = [e["loc"] for e in response.json()["detail"]]
    assert location in locations
    assert "Traceback" not in response.text


def test_malformed_json_gets_400(client):
    response = client.post(
        "/predict", content=b'{"applications": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400

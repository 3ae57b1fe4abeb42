"""The service in-process: the class called directly, and its ASGI app through
starlette's TestClient (real HTTP semantics, no server process)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from loan_preprocessing.csv_output import CSV_COLUMNS, REASON_SEPARATOR
from loan_preprocessing.decide import Scorer
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.model.store import get_model, load_pipeline
from loan_preprocessing.schema import EXAMPLE_APPLICATION
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER

EXAMPLE = EXAMPLE_APPLICATION.model_dump()


@pytest.fixture
def client(asgi_client):
    return asgi_client


@pytest.fixture
def model_fails_on_poison(monkeypatch):
    """The model raises on any batch holding an application with Loan_ID POISON
    (the fault being simulated is in the model; the code under test is the
    service's isolation around it)."""
    from loan_preprocessing.decide import Scorer

    real_model_inputs = Scorer.model_inputs

    def fails_on_poison(self, applications):
        if any(a.Loan_ID == "POISON" for a in applications):
            raise RuntimeError("simulated model fault")
        return real_model_inputs(self, applications)

    monkeypatch.setattr(Scorer, "model_inputs", fails_on_poison)


def expected_probabilities(tag: str, rows: list[dict]) -> np.ndarray:
    return load_pipeline(get_model(tag)).predict_proba(to_feature_frame(rows))[:, 1]


def test_the_class_called_directly(service_module):
    instance = service_module.LoanApproval()
    [decision] = asyncio.run(instance.predict([EXAMPLE_APPLICATION]))
    assert decision.Loan_ID == "LP001015"
    assert decision.Loan_Status == (
        "Y" if decision.probability >= instance.scorer.threshold else "N"
    )


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
    # The rule is the stored model's own threshold (training may move it off 0.5).
    threshold = Scorer.from_model(get_model(tag)).threshold
    assert all(d["Loan_Status"] == ("Y" if d["probability"] >= threshold else "N") for d in body)


def test_swagger_example_is_a_valid_request(client):
    spec = client.get("/docs.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]
    example = body["schema"]["properties"]["applications"]["examples"][0]
    response = client.post("/predict", json={"applications": example})
    assert response.status_code == 200
    assert response.json()[0]["Loan_ID"] == EXAMPLE["Loan_ID"]


def test_the_openapi_document_describes_the_counteroffer_with_an_example(client):
    spec = client.get("/docs.json").json()
    schemas = spec["components"]["schemas"]
    offer = schemas["Counteroffer"]
    assert set(offer["properties"]) == {"LoanAmount", "Loan_Amount_Term", "addresses"}
    for name, field in offer["properties"].items():
        assert field.get("description") and field.get("examples"), name
    decision = schemas["Decision"]["properties"]["counteroffer"]
    assert decision["description"] and decision["examples"][0]["Loan_Amount_Term"] == 480.0
    assert "actionable" in schemas["Reason"]["properties"]


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


def test_predict_csv_answers_like_predict(client):
    from tests.conftest import REAL_TEST_CSV, require_real_data

    require_real_data()
    content = REAL_TEST_CSV.read_bytes()
    response = client.post("/predict_csv", files={"file": ("test.csv", content, "text/csv")})
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    lines = response.text.splitlines()
    # The CSV columns, then the id each decision is recorded under.
    assert lines[0] == ",".join((*CSV_COLUMNS, "decision_id"))
    assert len(lines) == 1 + 367
    import pandas as pd

    rows = json.loads(pd.read_csv(REAL_TEST_CSV, encoding="utf-8-sig").to_json(orient="records"))
    decisions = client.post("/predict", json={"applications": rows}).json()
    expected = [
        f"{d['Loan_ID']},{d['Loan_Status']},{d['probability']!r},"
        + REASON_SEPARATOR.join(r["code"] for r in d["reasons"])
        + "".join(
            "," + ("" if (d["counteroffer"] or {}).get(k) is None else repr(d["counteroffer"][k]))
            for k in ("LoanAmount", "Loan_Amount_Term")
        )
        for d in decisions
    ]
    assert [line.rpartition(",")[0] for line in lines[1:]] == expected
    assert len({line.rpartition(",")[2] for line in lines[1:]}) == 367
    assert any(d["reasons"] for d in decisions)
    assert any(d["counteroffer"] and d["counteroffer"]["LoanAmount"] for d in decisions)


def test_predict_csv_names_line_and_column_of_a_bad_row(client):
    csv_text = (
        "Loan_ID,Gender,Married,Dependents,Education,Self_Employed,ApplicantIncome,"
        "CoapplicantIncome,LoanAmount,Loan_Amount_Term,Credit_History,Property_Area\n"
        "A1,Male,Yes,0,Graduate,No,5720,0,110,360,1,Urban\n"
        "A2,Male,Yes,0,Graduate,No,-5,0,110,360,1,Urban\n"
    )
    response = client.post("/predict_csv", files={"file": ("x.csv", csv_text, "text/csv")})
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert detail[0]["line"] == 3 and detail[0]["column"] == "ApplicantIncome"


def test_a_row_the_model_raises_on_fails_only_its_own_request(client, model_fails_on_poison):
    """Isolation inside an adaptive batch: the model raising on one valid
    application must not fail the other requests batched with it."""
    from concurrent.futures import ThreadPoolExecutor

    bodies = [{"applications": [{**EXAMPLE, "Loan_ID": f"G{i}"}]} for i in range(12)]
    bodies.insert(5, {"applications": [{**EXAMPLE, "Loan_ID": "POISON"}]})
    with ThreadPoolExecutor(len(bodies)) as pool:
        responses = list(pool.map(lambda b: client.post("/predict", json=b), bodies))
    statuses = {
        b["applications"][0]["Loan_ID"]: r.status_code
        for b, r in zip(bodies, responses, strict=True)
    }
    assert statuses.pop("POISON") == 500
    assert set(statuses.values()) == {200}
    assert "simulated model fault" not in responses[5].text


def test_scorer_isolates_the_failing_row(service_module, model_fails_on_poison):
    from loan_preprocessing.decide import Unscored
    from loan_preprocessing.schema import LoanApplication

    instance = service_module.LoanApproval()
    rows = [LoanApplication(**{**EXAMPLE, "Loan_ID": i}) for i in ("A", "POISON", "B")]
    decisions = instance.scorer.decide(rows)
    assert [type(d) is Unscored for d in decisions] == [False, True, False]
    assert decisions[0].probability == decisions[2].probability


@pytest.mark.parametrize(
    ("path", "content_type", "body", "status"),
    [
        ("/predict", "multipart/form-data", b'{"applications": []}', 415),
        ("/predict", "text/plain", b"hello", 415),
        ("/predict_csv", "application/json", b"{}", 415),
        ("/predict_csv", "multipart/form-data", b"", 400),  # no boundary
        ("/predict_csv", "multipart/form-data; boundary=abc", b"--abc\r\n[]--abc--\r\n", 400),
    ],
)
def test_wrong_or_malformed_content_type_is_a_4xx(client, path, content_type, body, status):
    response = client.post(path, content=body, headers={"content-type": content_type})
    assert response.status_code == status
    assert "error" in response.json()

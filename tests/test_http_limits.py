"""Limits, security and observability on a real `bentoml serve` (127.0.0.1 only)."""

from __future__ import annotations

import json
import re
import socket
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlparse

import httpx
import pytest

from loan_preprocessing.schema import EXAMPLE_APPLICATION, FEATURE_COLUMNS, ID_COLUMN
from tests.support.server import bentoml_serve

pytestmark = pytest.mark.e2e
EXAMPLE = EXAMPLE_APPLICATION.model_dump()
API_KEY = "test-key-0123456789"
BODY_LIMIT = 200_000


@pytest.fixture(scope="module")
def guarded(real_model_tag_or_none, tmp_path_factory):
    """One worker, an API key, a small body limit, decisions recorded in SQLite."""
    folder = tmp_path_factory.mktemp("guarded")
    env = {
        "LOAN_WORKERS": "1",
        "LOAN_API_KEY": API_KEY,
        "LOAN_MAX_BODY_BYTES": str(BODY_LIMIT),
        "LOAN_MODEL_TAG": "",
    }
    with bentoml_serve(env=env, log_path=folder / "serve.log") as server:
        yield server


def auth(key: str = API_KEY) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def predict(server, body, headers=None) -> httpx.Response:
    return httpx.post(f"{server.url}/predict", json=body, headers=headers or auth(), timeout=30)


@pytest.mark.parametrize(
    "headers", [{}, auth("wrong-key"), {"Authorization": API_KEY}, auth(API_KEY + "x")]
)
def test_predict_needs_the_api_key(guarded, headers):
    response = httpx.post(
        f"{guarded.url}/predict", json={"applications": [EXAMPLE]}, headers=headers
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert API_KEY not in response.text


@pytest.mark.parametrize("path", ["/livez", "/readyz", "/metrics"])
def test_health_and_metrics_stay_open(guarded, path):
    assert httpx.get(f"{guarded.url}{path}").status_code == 200


def test_oversized_body_is_refused_before_it_is_read(guarded):
    rows = [EXAMPLE] * 1500  # ~500 kB, over the 200 kB limit
    response = predict(guarded, {"applications": rows})
    assert response.status_code == 413
    assert str(BODY_LIMIT) in response.json()["error"]


def test_oversized_chunked_body_is_refused(guarded):
    """No Content-Length: the limit must hold while the body streams in."""
    payload = json.dumps({"applications": [EXAMPLE] * 1500}).encode()

    def chunks():
        for start in range(0, len(payload), 16_384):
            yield payload[start : start + 16_384]

    response = httpx.post(
        f"{guarded.url}/predict",
        content=chunks(),
        headers={**auth(), "content-type": "application/json"},
        timeout=30,
    )
    assert response.status_code == 413


def test_lying_content_length_is_refused(guarded):
    host = urlparse(guarded.url)
    with socket.create_connection((host.hostname, host.port), timeout=10) as sock:
        sock.sendall(
            b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + API_KEY.encode() + b"\r\n"
            b"Content-Length: 99999999999\r\n\r\n{"
        )
        answer = sock.recv(4096).decode(errors="replace")
    assert answer.startswith("HTTP/1.1 413")


def test_metrics_count_decisions_probabilities_failures_and_the_model(guarded):
    before = scrape(guarded)
    answers = []
    for income in (1000, 5000, 20000):
        response = predict(
            guarded,
            {
                "applications": [
                    {**EXAMPLE, "ApplicantIncome": income},
                    {**EXAMPLE, "ApplicantIncome": income, "Credit_History": 0},
                ]
            },
        )
        assert response.status_code == 200
        answers += response.json()
    bad = predict(
        guarded, {"applications": [{**EXAMPLE, "LoanAmount": -1}, {**EXAMPLE, "LoanAmount": 0}]}
    )
    assert bad.status_code == 400
    after = scrape(guarded)
    tag = answers and predict(guarded, {"applications": [EXAMPLE]}).headers["X-Model-Tag"]

    approved = sum(a["Loan_Status"] == "Y" for a in answers)
    assert delta(before, after, 'loan_decisions_total{loan_status="Y"}') == approved
    assert delta(before, after, 'loan_decisions_total{loan_status="N"}') == 6 - approved
    assert delta(before, after, "loan_approval_probability_count") == 6
    assert delta(before, after, 'loan_approval_probability_bucket{le="0.5"}') == sum(
        a["probability"] <= 0.5 for a in answers
    )
    assert delta(before, after, "loan_approval_probability_sum") == pytest.approx(
        sum(a["probability"] for a in answers)
    )
    assert delta(before, after, 'loan_validation_failures_total{field="LoanAmount"}') == 2
    assert after.get(f'loan_model_info{{model_tag="{tag}"}}') == 1.0


def scrape(server) -> dict[str, float]:
    text = httpx.get(f"{server.url}/metrics").text
    samples = {}
    for line in text.splitlines():
        match = re.match(r"^(\w+)(\{[^}]*\})? ([0-9.eE+-]+)$", line)
        if match:
            labels = ",".join(sorted(re.findall(r'\w+="[^"]*"', match.group(2) or "")))
            samples[match.group(1) + (f"{{{labels}}}" if labels else "")] = float(match.group(3))
    return samples


def delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_each_decision_is_recorded_with_its_application_and_reasons(guarded):
    # The second application has no credit history: rejected, with its reasons.
    applications = [
        {**EXAMPLE, "Loan_ID": "REC-1", "Gender": "Female"},
        {**EXAMPLE, "Loan_ID": "REC-2", "Credit_History": 0, "ApplicantIncome": 1500},
    ]
    response = predict(guarded, {"applications": applications})
    assert response.status_code == 200
    answers = response.json()
    assert answers[1]["reasons"], answers[1]
    for sent, answer in zip(applications, answers, strict=True):
        record = httpx.get(
            f"{guarded.url}/decisions/{answer['decision_id']}", headers=auth(), timeout=10
        ).json()
        # Every field as received, the protected ones included (numbers compare
        # equal whether sent as 5000 or 5000.0).
        assert record["application"] == {
            name: sent.get(name) for name in (ID_COLUMN, *FEATURE_COLUMNS)
        }
        assert record["Loan_Status"] == answer["Loan_Status"]
        assert record["probability"] == answer["probability"]
        assert record["reasons"] == [reason["code"] for reason in answer["reasons"]]
        assert record["answer"] == answer
        assert record["model_tag"] == response.headers["X-Model-Tag"]


def test_the_records_need_the_api_key(guarded):
    response = httpx.get(f"{guarded.url}/decisions?loan_id=REC-1", timeout=10)
    assert response.status_code == 401


def test_overload_answers_429_not_collapse(real_model_tag_or_none, tmp_path):
    env = {"LOAN_WORKERS": "1", "LOAN_MAX_CONCURRENCY": "2", "LOAN_MODEL_TAG": ""}
    body = {"applications": [EXAMPLE] * 2000}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        with ThreadPoolExecutor(16) as pool:
            statuses = list(
                pool.map(
                    lambda _: (
                        httpx.post(f"{server.url}/predict", json=body, timeout=60).status_code
                    ),
                    range(32),
                )
            )
        assert set(statuses) <= {200, 429}, statuses
        assert statuses.count(429) > 0 and statuses.count(200) > 0
        # Once the flood is over, the service answers normally.
        assert httpx.post(f"{server.url}/predict", json=body, timeout=60).status_code == 200


def test_slow_request_answers_504(real_model_tag_or_none, tmp_path):
    env = {"LOAN_WORKERS": "1", "LOAN_TIMEOUT_SECONDS": "0.001", "LOAN_MODEL_TAG": ""}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        response = httpx.post(
            f"{server.url}/predict", json={"applications": [EXAMPLE] * 5000}, timeout=60
        )
        assert response.status_code == 504
        assert "Traceback" not in response.text

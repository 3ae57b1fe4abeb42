"""Every answered decision is recorded once, before it is sent, and marked
delivered: a real `bentoml serve` over real HTTP, recording into a SQLite file
and into a real PostgreSQL server (each test runs on both)."""

from __future__ import annotations

import csv
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from loan_preprocessing.serving.open_inference import INFER_PATH
from loan_preprocessing.serving.recording import REPLAY_HEADER
from tests.records.support import (
    EXAMPLE,
    applications,
    by_id,
    delivered_counter,
    serve_recording,
    wait_delivered,
)
from tests.support.server import bentoml_serve

CSV_FIELDS = list(EXAMPLE)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, real_model_tag_or_none, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"served-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'decisions.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    with serve_recording(url, folder) as server:
        yield server


def _predict(server, rows, headers=None) -> httpx.Response:
    return httpx.post(
        f"{server.url}/predict", json={"applications": rows}, headers=headers, timeout=60
    )


def _predict_retrying(server, rows) -> httpx.Response:
    """/predict as the documented client does: a 503 is retried, at most three
    times, after its Retry-After (the store's, when a commit failed) or a second
    (BentoML's batcher shedding a request it cannot serve in time, under a loaded
    machine). A 503 recorded nothing, so a retried request is still recorded once."""
    for _ in range(3):
        response = _predict(server, rows)
        if response.status_code != 503:
            return response
        time.sleep(float(response.headers.get("Retry-After", 1)))
    return _predict(server, rows)


def _v2_body(rows: list[dict]) -> dict:
    # Every column the model reads (a V2 request without one is refused), and Gender.
    names = ["Loan_ID", "Education", "ApplicantIncome", "CoapplicantIncome", "LoanAmount",
             "Loan_Amount_Term", "Property_Area", "Credit_History", "Gender"]  # fmt: skip
    numbers = ("ApplicantIncome", "CoapplicantIncome", "LoanAmount", "Loan_Amount_Term")
    inputs = []
    for name in names:
        numeric = name in (*numbers, "Credit_History")
        inputs.append(
            {
                "name": name,
                "datatype": "FP64" if numeric else "BYTES",
                "shape": [len(rows), 1],
                "data": [float(r[name]) if numeric else r[name] for r in rows],
            }
        )
    return {"id": "req-1", "inputs": inputs}


def _csv_file(rows: list[dict]) -> bytes:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, CSV_FIELDS)
    writer.writeheader()
    writer.writerows({k: ("" if r[k] is None else r[k]) for k in CSV_FIELDS} for r in rows)
    return buffer.getvalue().encode()


def _check_recorded(found: dict, decision_id: str, sent: dict, status, probability, codes):
    record = found[decision_id]
    assert record["delivered"] is True
    assert record["application"]["Loan_ID"] == sent["Loan_ID"]
    assert record["application"]["Gender"] == sent["Gender"]
    assert record["Loan_Status"] == status
    assert record["probability"] == probability
    assert record["reasons"] == codes


def test_predict_answers_under_concurrency_are_each_recorded_once(served):
    before = delivered_counter(served)
    # Concurrent requests of 1-3 rows: the batcher merges them, and each request
    # must still find its own decisions and ids.
    sent = [applications(1 + i % 3, prefix="P") for i in range(30)]
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda rows: _predict_retrying(served, rows), sent))
    refused = [(r.status_code, r.text) for r in responses if r.status_code != 200]
    assert not refused
    answered = [
        (a, d)
        for rows, r in zip(sent, responses, strict=True)
        for a, d in zip(rows, r.json(), strict=True)
    ]
    ids = [d["decision_id"] for _, d in answered]
    assert len(set(ids)) == len(ids)
    found = wait_delivered(served.store_url, set(ids))
    for application, decision in answered:
        codes = [reason["code"] for reason in decision["reasons"]]
        _check_recorded(
            found, decision["decision_id"], application, decision["Loan_Status"],
            decision["probability"], codes,
        )  # fmt: skip
        # The decision exactly as the client received it.
        assert found[decision["decision_id"]]["answer"] == decision
        assert found[decision["decision_id"]]["model_tag"] == responses[0].headers["X-Model-Tag"]
    assert delivered_counter(served) - before == len(answered)


def test_v2_and_csv_answers_carry_recorded_ids(served):
    rows = applications(5, prefix="V")
    response = httpx.post(f"{served.url}{INFER_PATH}", json=_v2_body(rows), timeout=60)
    assert response.status_code == 200
    outputs = {o["name"]: o["data"] for o in response.json()["outputs"]}
    rows_csv = applications(4, prefix="C")
    upload = httpx.post(
        f"{served.url}/predict_csv", files={"file": ("a.csv", _csv_file(rows_csv))}, timeout=60
    )
    assert upload.status_code == 200
    lines = list(csv.DictReader(io.StringIO(upload.text)))
    ids = set(outputs["decision_id"]) | {line["decision_id"] for line in lines}
    assert len(ids) == 9
    found = wait_delivered(served.store_url, ids)
    for i, sent in enumerate(rows):
        codes = [c for c in outputs["reasons"][i].split(";") if c]
        _check_recorded(
            found, outputs["decision_id"][i], sent, outputs["Loan_Status"][i],
            outputs["probability"][i], codes,
        )  # fmt: skip
        assert found[outputs["decision_id"][i]]["route"] == INFER_PATH
    for sent, line in zip(rows_csv, lines, strict=True):
        codes = [c for c in line["reasons"].split(";") if c]
        _check_recorded(
            found, line["decision_id"], sent, line["Loan_Status"], float(line["probability"]),
            codes,
        )  # fmt: skip
        assert found[line["decision_id"]]["answer"]["probability"] == line["probability"]


def test_a_v2_request_refused_after_parsing_leaves_no_record(served):
    before = len(by_id(served.store_url))
    counted = delivered_counter(served)
    body = {**_v2_body(applications(3, prefix="X")), "outputs": [{"name": "no_such_output"}]}
    response = httpx.post(f"{served.url}{INFER_PATH}", json=body, timeout=60)
    assert response.status_code == 400
    assert "no_such_output" in response.json()["error"]
    assert len(by_id(served.store_url)) == before
    assert delivered_counter(served) == counted


def test_a_retry_with_the_same_idempotency_key_gets_the_recorded_decisions(served):
    rows = applications(3, prefix="K")
    key = {"Idempotency-Key": f"retry-{rows[0]['Loan_ID']}"}
    first = _predict(served, rows, key)
    again = _predict(served, rows, key)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers[REPLAY_HEADER] == "true"
    assert REPLAY_HEADER not in first.headers
    assert again.headers["X-Model-Tag"] == first.headers["X-Model-Tag"]
    loan_ids = {r["Loan_ID"] for r in rows}
    recorded = [
        r for r in by_id(served.store_url).values() if r["application"]["Loan_ID"] in loan_ids
    ]
    assert len(recorded) == 3
    other = _predict(served, [{**rows[0], "ApplicantIncome": 99_999}], key)
    assert other.status_code == 422
    assert key["Idempotency-Key"] in other.json()["error"]


def test_idempotent_v2_and_csv_replays_are_the_first_answers(served):
    rows = applications(3, prefix="KV")
    key = {"Idempotency-Key": "v2-" + rows[0]["Loan_ID"]}
    first = httpx.post(f"{served.url}{INFER_PATH}", json=_v2_body(rows), headers=key, timeout=60)
    again = httpx.post(f"{served.url}{INFER_PATH}", json=_v2_body(rows), headers=key, timeout=60)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers[REPLAY_HEADER] == "true"
    file = _csv_file(applications(2, prefix="KC"))
    key = {"Idempotency-Key": "csv-" + rows[0]["Loan_ID"]}
    # A new multipart boundary each time, as a client's retry has: same content.
    first = httpx.post(f"{served.url}/predict_csv", files={"file": ("a.csv", file)}, headers=key)
    again = httpx.post(f"{served.url}/predict_csv", files={"file": ("a.csv", file)}, headers=key)
    assert first.status_code == again.status_code == 200
    assert again.text == first.text
    assert again.headers[REPLAY_HEADER] == "true"


def test_a_bad_idempotency_key_is_a_400_naming_the_header(served):
    response = _predict(served, applications(1), {"Idempotency-Key": "x" * 300})
    assert response.status_code == 400
    assert "Idempotency-Key" in response.json()["error"]


def test_the_read_side_answers_by_id_and_by_loan_id(served):
    rows = applications(1, prefix="R")
    decision = _predict(served, rows).json()[0]
    wait_delivered(served.store_url, {decision["decision_id"]})
    one = httpx.get(f"{served.url}/decisions/{decision['decision_id']}", timeout=10)
    assert one.status_code == 200
    assert one.json()["answer"] == decision
    listed = httpx.get(f"{served.url}/decisions", params={"loan_id": rows[0]["Loan_ID"]})
    assert [d["decision_id"] for d in listed.json()["decisions"]] == [decision["decision_id"]]
    assert httpx.get(f"{served.url}/decisions/{'0' * 32}").status_code == 404
    assert httpx.get(f"{served.url}/decisions/not-an-id").status_code == 400
    assert httpx.get(f"{served.url}/decisions").status_code == 400


def test_records_turned_off_say_so_at_start(real_model_tag_or_none, tmp_path):
    env = {"LOAN_MODEL_TAG": "", "LOAN_DECISION_RECORDS": "false"}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        decision = _predict(server, applications(1)).json()[0]
        assert decision["decision_id"] is None
        assert httpx.get(f"{server.url}/decisions?loan_id=x").status_code == 404
        assert delivered_counter(server) == 1
        log = server.log()
    assert log.count("decisions are not recorded") >= 1

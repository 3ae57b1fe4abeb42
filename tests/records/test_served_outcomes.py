"""Outcomes and overrides through a real `bentoml serve` over real HTTP, behind
the API key, recording into a SQLite file and into a real PostgreSQL server
(each test runs on both): POST /outcomes (JSON and CSV), POST
/decisions/{id}/override, and the decision lookup showing both beside the
model's decision."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import httpx
import pytest

from loan_preprocessing.records.outcomes import MAX_OVERRIDES_PER_DECISION
from loan_preprocessing.schema import OUTCOMES
from tests.records.support import applications, serve_recording, wait_delivered

KEY = "outcomes-test-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
MAX_ROWS = 40
DAY = "2026-11-30"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def served(request, real_model_tag_or_none, tmp_path_factory):
    folder = tmp_path_factory.mktemp(f"outcomes-{request.param}")
    if request.param == "sqlite":
        url = f"sqlite:///{folder / 'decisions.sqlite3'}"
    else:
        url = request.getfixturevalue("postgres").new_database()
    with serve_recording(
        url, folder, LOAN_API_KEY=KEY, LOAN_MAX_APPLICATIONS=str(MAX_ROWS)
    ) as server:
        yield server


def _decide(server, count: int, prefix: str) -> list[dict]:
    rows = applications(count, prefix=prefix)
    response = httpx.post(
        f"{server.url}/predict", json={"applications": rows}, headers=AUTH, timeout=60
    )
    assert response.status_code == 200, response.text
    decided = response.json()
    wait_delivered(server.store_url, {d["decision_id"] for d in decided})
    return decided


def _post(server, body=None, **kwargs) -> httpx.Response:
    headers = {**AUTH, **kwargs.pop("headers", {})}
    if body is not None:
        kwargs["json"] = body
    return httpx.post(f"{server.url}/outcomes", headers=headers, timeout=60, **kwargs)


def _lookup(server, decision_id: str) -> dict:
    response = httpx.get(f"{server.url}/decisions/{decision_id}", headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()


def test_outcomes_by_id_and_loan_id_are_recorded_once_and_shown(served):
    decided = _decide(served, 3, "OA")
    body = [
        {"decision_id": decided[0]["decision_id"], "outcome": "repaid", "observed_on": DAY},
        {"Loan_ID": decided[1]["Loan_ID"], "outcome": "defaulted", "observed_on": DAY},
    ]
    first = _post(served, body)
    assert first.status_code == 200, first.text
    assert first.json()["recorded"] == 2 and first.json()["already_recorded"] == 0
    assert [o["decision_id"] for o in first.json()["outcomes"]] == [
        decided[0]["decision_id"],
        decided[1]["decision_id"],
    ]
    again = _post(served, body)
    assert again.status_code == 200
    assert again.json()["recorded"] == 0 and again.json()["already_recorded"] == 2
    record = _lookup(served, decided[1]["decision_id"])
    assert [(o["outcome"], o["observed_on"]) for o in record["outcomes"]] == [("defaulted", DAY)]
    assert record["overrides"] == [] and record["final_status"] == record["Loan_Status"]
    assert _lookup(served, decided[2]["decision_id"])["outcomes"] == []


def test_an_unknown_decision_is_a_404_naming_it_and_nothing_is_recorded(served):
    decided = _decide(served, 1, "OB")
    missing = "0" * 32
    response = _post(
        served,
        [
            {"decision_id": decided[0]["decision_id"], "outcome": "repaid", "observed_on": DAY},
            {"decision_id": missing, "outcome": "repaid", "observed_on": DAY},
            {"Loan_ID": "NO-SUCH-LOAN", "outcome": "withdrawn", "observed_on": DAY},
        ],
    )
    assert response.status_code == 404
    assert missing in response.json()["error"] and "NO-SUCH-LOAN" in response.json()["error"]
    assert response.json()["total"] == 2
    assert _lookup(served, decided[0]["decision_id"])["outcomes"] == []


TOMORROW_BUT_ONE = (datetime.now(UTC).date() + timedelta(days=3)).isoformat()


@pytest.mark.parametrize(
    ("item", "field"),
    [
        ({"outcome": "paid"}, "outcome"),
        ({"observed_on": "yesterday"}, "observed_on"),
        ({"observed_on": 20261130}, "observed_on"),
        ({"observed_on": TOMORROW_BUT_ONE}, "observed_on"),
        ({"decision_id": "XYZ"}, "decision_id"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_a_bad_field_is_a_400_naming_it(served, item, field):
    body = [{"Loan_ID": "LPX", "outcome": "repaid", "observed_on": DAY, **item}]
    response = _post(served, body)
    assert response.status_code == 400, response.text
    assert field in response.json()["error"]
    assert response.json()["detail"][0]["loc"][:2] == [0, field]


@pytest.mark.parametrize(
    ("content", "phrase"),
    [
        (b"{not json", "not valid JSON"),
        (b'{"outcome": "repaid"}', "JSON list"),
        (b"[]", "1 to"),
        (b'[{"outcome": "repaid", "observed_on": "2026-11-30"}]', "exactly one of"),
    ],
)
def test_a_bad_body_is_a_400_saying_why(served, content, phrase):
    response = _post(served, content=content, headers={"Content-Type": "application/json"})
    assert response.status_code == 400, response.text
    assert phrase in response.json()["error"]


def test_more_outcomes_than_the_row_limit_are_refused(served):
    body = [{"Loan_ID": f"L{i}", "outcome": "repaid", "observed_on": DAY} for i in range(41)]
    response = _post(served, body)
    assert response.status_code == 400
    assert f"1 to {MAX_ROWS}" in response.json()["error"]
    csv = "Loan_ID,outcome,observed_on\n" + "".join(f"L{i},repaid,{DAY}\n" for i in range(41))
    response = _post(served, content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert response.status_code == 400
    assert f"more than {MAX_ROWS}" in response.json()["error"]


def test_a_csv_upload_records_outcomes_and_names_a_bad_line(served):
    decided = _decide(served, 2, "OC")
    csv = (
        "decision_id,Loan_ID,outcome,observed_on\n"
        f"{decided[0]['decision_id']},,delinquent,{DAY}\n"
        f",{decided[1]['Loan_ID']},withdrawn,{DAY}\n"
    )
    upload = _post(served, files={"file": ("outcomes.csv", csv.encode())})
    assert upload.status_code == 200, upload.text
    assert upload.json()["recorded"] == 2
    assert _lookup(served, decided[1]["decision_id"])["outcomes"][0]["outcome"] == "withdrawn"
    raw = _post(served, content=csv.encode(), headers={"Content-Type": "text/csv"})
    assert raw.status_code == 200 and raw.json()["already_recorded"] == 2
    bad = csv + f",{decided[1]['Loan_ID']},lost,{DAY}\n"
    refused = _post(served, files={"file": ("outcomes.csv", bad.encode())})
    assert refused.status_code == 400
    assert refused.json()["error"].startswith("line 4, field outcome")
    unknown = _post(
        served, content=b"decision_id,outcome,when\n", headers={"Content-Type": "text/csv"}
    )
    assert unknown.status_code == 400 and "'when'" in unknown.json()["error"]
    other = _post(served, content=b"x", headers={"Content-Type": "text/plain"})
    assert other.status_code == 415


def test_the_record_routes_need_the_api_key(served):
    decided = _decide(served, 1, "OD")
    decision_id = decided[0]["decision_id"]
    body = [{"decision_id": decision_id, "outcome": "repaid", "observed_on": DAY}]
    assert httpx.post(f"{served.url}/outcomes", json=body, timeout=30).status_code == 401
    override = {"person": "p", "final_status": "Y", "rationale": "r"}
    assert (
        httpx.post(
            f"{served.url}/decisions/{decision_id}/override", json=override, timeout=30
        ).status_code
        == 401
    )
    assert _lookup(served, decision_id)["outcomes"] == []


def test_an_override_is_appended_beside_the_models_decision(served):
    decided = _decide(served, 2, "OE")
    rejected = next((d for d in decided if d["Loan_Status"] == "N"), decided[0])
    decision_id, model_status = rejected["decision_id"], rejected["Loan_Status"]
    flipped = "Y" if model_status == "N" else "N"
    url = f"{served.url}/decisions/{decision_id}/override"
    asked = {"person": "officer-17", "final_status": flipped, "rationale": "  income verified  "}
    made = httpx.post(url, json=asked, headers=AUTH, timeout=30)
    assert made.status_code == 201, made.text
    assert made.json()["from_status"] == model_status
    assert made.json()["rationale"] == "income verified"
    record = _lookup(served, decision_id)
    assert record["Loan_Status"] == model_status and record["answer"] == rejected
    assert record["final_status"] == flipped
    assert [(o["person"], o["final_status"]) for o in record["overrides"]] == [
        ("officer-17", flipped)
    ]
    same = httpx.post(url, json=asked, headers=AUTH, timeout=30)
    assert same.status_code == 409 and "already stands" in same.json()["error"]
    listed = httpx.get(
        f"{served.url}/decisions", params={"loan_id": rejected["Loan_ID"]}, headers=AUTH, timeout=30
    )
    assert listed.json()["decisions"][0]["final_status"] == flipped
    assert MAX_OVERRIDES_PER_DECISION > 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"person": "p", "final_status": "Y"}, "rationale"),
        ({"person": "p", "final_status": "Y", "rationale": "   "}, "rationale"),
        ({"person": "", "final_status": "Y", "rationale": "r"}, "person"),
        ({"person": "p", "final_status": "maybe", "rationale": "r"}, "final_status"),
        ({"person": "p", "final_status": "Y", "rationale": "r" * 2001}, "rationale"),
    ],
)
def test_a_bad_override_is_a_400_naming_the_field(served, body, field):
    decided = _decide(served, 1, "OF")
    response = httpx.post(
        f"{served.url}/decisions/{decided[0]['decision_id']}/override",
        json=body,
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 400, response.text
    assert response.json()["error"].startswith(field)
    assert _lookup(served, decided[0]["decision_id"])["overrides"] == []


def test_an_override_of_an_unknown_decision_is_a_404(served):
    missing = "f" * 32
    response = httpx.post(
        f"{served.url}/decisions/{missing}/override",
        json={"person": "p", "final_status": "Y", "rationale": "r"},
        headers=AUTH,
        timeout=30,
    )
    assert response.status_code == 404 and missing in response.json()["error"]


def test_the_openapi_document_describes_the_record_routes(served):
    spec = httpx.get(f"{served.url}/docs.json", timeout=30).json()
    outcomes = spec["paths"]["/outcomes"]["post"]
    assert set(outcomes["requestBody"]["content"]) == {
        "application/json", "text/csv", "multipart/form-data"
    }  # fmt: skip
    assert outcomes["security"] == [{"bearerAuth": []}]
    override = spec["paths"]["/decisions/{decision_id}/override"]["post"]
    assert "201" in override["responses"] and "409" in override["responses"]
    schema = spec["components"]["schemas"]["ReportedOutcome"]
    assert schema["properties"]["outcome"]["enum"] == list(OUTCOMES)
    assert "rationale" in spec["components"]["schemas"]["OverrideRequest"]["required"]
    assert date.fromisoformat(DAY)

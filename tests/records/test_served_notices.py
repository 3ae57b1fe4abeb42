"""GET /decisions/{decision_id}/notice over real HTTP: the notice of a recorded
denial states exactly the reasons and counteroffer the applicant was answered,
an approval has none, and a service without the notice's sender says so."""

from __future__ import annotations

import httpx
import pytest

from loan_preprocessing.schema import APPROVED, REJECTED
from loan_preprocessing.serving.decisions_api import NOTICE_SETTINGS_NEEDED
from tests.records.support import applications, serve_recording

pytestmark = pytest.mark.e2e

NOTICE_ENV = {
    "LOAN_NOTICE_CREDITOR_NAME": "Example Lending Co.",
    "LOAN_NOTICE_CREDITOR_ADDRESS": r"1 Main Street\nSpringfield, IL 62701",
    "LOAN_NOTICE_AGENCY_NAME": "Federal Trade Commission",
    "LOAN_NOTICE_AGENCY_ADDRESS": r"Consumer Response Center\nWashington, DC 20580",
}


@pytest.fixture(scope="module")
def answered(real_model_tag_or_none, tmp_path_factory):
    folder = tmp_path_factory.mktemp("notices")
    url = f"sqlite:///{folder / 'decisions.sqlite3'}"
    with serve_recording(url, folder, **NOTICE_ENV) as server:
        sent = applications(12, prefix="N")
        answer = httpx.post(f"{server.url}/predict", json={"applications": sent}, timeout=60)
        assert answer.status_code == 200, answer.text
        yield server, answer.json()


def _notice(server, decision_id: str, **params: str) -> httpx.Response:
    return httpx.get(f"{server.url}/decisions/{decision_id}/notice", params=params, timeout=30)


def test_a_denials_notice_states_what_the_applicant_was_answered(answered):
    server, decisions = answered
    denials = [d for d in decisions if d["Loan_Status"] == REJECTED]
    assert denials, "the applications include denials (no credit history)"
    for decision in denials:
        text = _notice(server, decision["decision_id"], format="text")
        assert text.status_code == 200, text.text
        assert text.headers["content-type"].startswith("text/plain")
        body = text.text
        assert "Example Lending Co." in body and "Springfield, IL 62701" in body
        assert "Federal Trade Commission" in body
        assert "Equal Credit Opportunity Act" in body
        # Every reason given, in the order given.
        places = [body.index(reason["text"]) for reason in decision["reasons"]]
        assert places == sorted(places)
        html = _notice(server, decision["decision_id"])
        assert html.status_code == 200
        assert html.headers["content-type"].startswith("text/html")
        assert all(reason["text"] in html.text for reason in decision["reasons"])


def test_an_approval_has_no_notice(answered):
    server, decisions = answered
    approval = next(d for d in decisions if d["Loan_Status"] == APPROVED)
    response = _notice(server, approval["decision_id"])
    assert response.status_code == 404
    assert "approval" in response.json()["error"]


def test_an_unknown_or_malformed_decision_is_named(answered):
    server, _ = answered
    assert _notice(server, "0" * 32).status_code in (400, 404)
    assert _notice(server, "not-an-id").status_code == 400


def test_without_the_senders_settings_the_notice_says_what_to_set(real_model_tag_or_none, tmp_path):
    url = f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    with serve_recording(url, tmp_path) as server:
        answer = httpx.post(
            f"{server.url}/predict", json={"applications": applications(2, "M")}, timeout=60
        )
        assert answer.status_code == 200
        response = _notice(server, answer.json()[0]["decision_id"])
    assert response.status_code == 404
    assert NOTICE_SETTINGS_NEEDED in response.json()["error"]

"""`make promote` end to end: a real `bentoml serve` with a challenger in shadow
recording into a real store (a SQLite file and a PostgreSQL server), the
challenger report written from it, the challenger promoted on that report, and
a restarted server serving it; the promotion recorded with the report."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from loan_preprocessing.model.store import make_latest, served_by_default
from loan_preprocessing.operations.model_risk.__main__ import main as model_risk_main
from loan_preprocessing.operations.promote import main as promote_main
from loan_preprocessing.records.promotions import list_promotions
from loan_preprocessing.records.store import DecisionStore
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from tests.records.support import applications, serve_recording, wait_delivered
from tests.support.trained import sample_model_with_report

pytestmark = pytest.mark.e2e


@pytest.fixture
def two_versions(real_model_tag):
    """(champion, challenger): the sample-trained version as `latest`, the
    real-data one as the challenger; `latest` put back as it was afterwards (the
    session's store is shared)."""
    before = served_by_default()
    newer, _ = sample_model_with_report()
    make_latest(newer)
    yield newer, real_model_tag
    if before is not None:
        make_latest(before)


def test_a_challenger_promoted_on_its_report_is_served_after_a_restart(
    two_versions, store_url, tmp_path, capsys
):
    champion, challenger = two_versions
    env = {"LOAN_CHALLENGER_TAG": challenger, "LOAN_WORKERS": "1"}
    with serve_recording(store_url, tmp_path, **env) as server:
        response = httpx.post(
            f"{server.url}/predict", json={"applications": applications(30, "PR")}, timeout=60
        )
        assert response.status_code == 200
        assert response.headers[MODEL_TAG_HEADER] == champion
        wait_delivered(store_url, {d["decision_id"] for d in response.json()})
    assert model_risk_main(["challenger", "--url", store_url, "--json"]) == 0
    report = tmp_path / "challenger-report.json"
    report.write_text(capsys.readouterr().out)
    assert json.loads(report.read_text())["challenger_tags"] == [challenger]

    # A report about another version is refused, and nothing moves.
    assert promote_main(["--url", store_url, "--tag", champion, "--by", "lead",
                         "--report", str(report)]) == 1  # fmt: skip
    assert "compares" in capsys.readouterr().err
    assert served_by_default() == champion

    assert promote_main(["--url", store_url, "--tag", challenger, "--by", "lead-7",
                         "--report", str(report)]) == 0  # fmt: skip
    said = capsys.readouterr().out
    assert f"{challenger} is now loan_approval:latest" in said and "Restart" in said
    assert served_by_default() == challenger
    store = DecisionStore(store_url)
    try:
        [made] = list_promotions(store)
    finally:
        store.close()
    assert (made["model_tag"], made["previous_tag"], made["person"]) == (
        challenger,
        champion,
        "lead-7",
    )
    assert made["report_sha256"] == hashlib.sha256(report.read_bytes()).hexdigest()
    assert made["report_name"] == report.name and made["report"] == report.read_text()

    # A running service keeps its version; restarted, it serves the promoted one.
    with serve_recording(store_url, tmp_path) as server:
        response = httpx.post(
            f"{server.url}/predict", json={"applications": applications(1, "PS")}, timeout=60
        )
        assert response.headers[MODEL_TAG_HEADER] == challenger
    assert promote_main(["--url", store_url, "--list"]) == 0
    assert f"{challenger} (was {champion}) by lead-7" in capsys.readouterr().out


def test_an_unknown_version_is_refused_with_one_line(store_url, tmp_path, capsys):
    report = tmp_path / "r.txt"
    report.write_text("notes")
    before = served_by_default()
    code = promote_main(["--url", store_url, "--tag", "loan_approval:nosuchversion",
                         "--by", "lead", "--report", str(report)])  # fmt: skip
    assert code == 1
    assert "no model 'loan_approval:nosuchversion'" in capsys.readouterr().err
    assert served_by_default() == before

"""The challenger's decisions in a real store (a SQLite file and a PostgreSQL
server started by the tests): written beside recorded decisions, read back for
the challenger report, and purged with their decisions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from loan_preprocessing.operations.model_risk.__main__ import main as model_risk_main
from loan_preprocessing.records.challenger import export_challenger, record_challenger
from loan_preprocessing.records.store import DecisionStore, StoreUnavailable
from loan_preprocessing.schema import EXAMPLE_APPLICATION, Decision, LoanApplication
from tests.support.records import record_delivered

CHAMPION, CHALLENGER = "loan_approval:champion1", "loan_approval:challenger1"


def _recorded(url: str) -> list[str]:
    applications = [
        LoanApplication.model_validate({**EXAMPLE_APPLICATION.model_dump(), "Loan_ID": f"LP{i}"})
        for i in range(6)
    ]
    decisions = [
        Decision(Loan_ID=f"LP{i}", Loan_Status="Y" if i % 2 else "N", probability=i / 6, reasons=[])
        for i in range(6)
    ]
    return record_delivered(url, CHAMPION, applications, decisions)


def test_challenger_decisions_are_kept_beside_the_decisions_and_reported(store_url, capsys):
    ids = _recorded(store_url)
    store = DecisionStore(store_url)
    try:
        # Champion N,Y,N,Y,N,Y; the challenger approves all but the first, whose
        # row it could not score (None).
        record_challenger(
            store,
            CHALLENGER,
            ids,
            [None, "Y", "Y", "Y", "Y", "Y"],
            [None, 0.7, 0.6, 0.8, 0.9, 0.95],
            ["", "", "", "", "", ""],
        )
        rows = {r["decision_id"]: r for r in export_challenger(store)}
        assert set(rows) == set(ids)
        assert rows[ids[0]]["Loan_Status"] is None and rows[ids[0]]["probability"] is None
        assert rows[ids[2]] == {
            "decision_id": ids[2],
            "model_tag": CHALLENGER,
            "Loan_Status": "Y",
            "probability": 0.6,
            "reason_codes": "",
        }
        # Written once: a second write of the same decision is refused, one line.
        with pytest.raises(StoreUnavailable):
            record_challenger(store, CHALLENGER, ids[:1], ["Y"], [0.5], [""])
        # A decision that is not recorded cannot have a challenger row.
        with pytest.raises(StoreUnavailable):
            record_challenger(store, CHALLENGER, ["f" * 32], ["Y"], [0.5], [""])
        # The report, read from the store: 5 compared, 2 flips N->Y (rows 2, 4).
        assert model_risk_main(["challenger", "--url", store_url, "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        assert report["compared"] == 5 and report["not_scored_by_challenger"] == 1
        assert report["flips"]["N->Y"]["count"] == 2
        assert report["flips"]["Y->N"]["count"] == 0
        assert {e["Loan_ID"] for e in report["flips"]["N->Y"]["examples"]} == {"LP2", "LP4"}
        assert report["approval_rate"] == {"champion": 0.6, "challenger": 1.0, "change": 0.4}
        assert report["champion_tags"] == [CHAMPION]
        assert report["challenger_tags"] == [CHALLENGER]
        # Purged with their decisions (the retention rule applies to both).
        store.purge(datetime.now(UTC) + timedelta(days=1))
        assert list(export_challenger(store)) == []
    finally:
        store.close()


def test_the_reports_read_of_the_store_is_the_frame_of_its_export(store_url):
    """store_decisions reads columns straight from the store (fast on millions of
    decisions); it must give the frame decisions_frame makes of the export. Both
    leave out an answer never delivered (a 504, a client gone): the applicant
    was not told it."""
    import pandas as pd

    from loan_preprocessing.operations.model_risk.inputs import decisions_frame, store_decisions
    from loan_preprocessing.records.rows import object_columns
    from loan_preprocessing.records.store import Answer, new_ids

    _recorded(store_url)
    store = DecisionStore(store_url)
    try:
        answer_id, decision_id = new_ids(2)
        never_told = Decision(
            Loan_ID="LP9", Loan_Status="N", probability=0.1, reasons=[], decision_id=decision_id
        )
        columns = object_columns([EXAMPLE_APPLICATION], [never_told])
        store.record([Answer(answer_id, "/predict", CHAMPION, "0" * 64, columns)])
        assert sum(1 for _ in store.export()) == 7
        exported = decisions_frame(store.export())
        read = store_decisions(store)
        # A time window bounds both alike.
        assert store_decisions(store, end=datetime.now(UTC) - timedelta(days=1)).empty
    finally:
        store.close()
    assert len(read) == 6 and decision_id not in set(read["decision_id"])
    pd.testing.assert_frame_equal(read, exported, check_dtype=False)

"""Outcomes, overrides and promotions in a real store (a SQLite file and a
PostgreSQL server started by the tests): idempotent outcomes, Loan_ID resolved
to the newest delivered decision, append-only overrides, purged with their
decisions, and the older-schema refusal of a store at the previous revision."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import insert, select, text

from loan_preprocessing.records.migrations import SchemaOutOfDate
from loan_preprocessing.records.outcomes import (
    MAX_OVERRIDES_PER_DECISION,
    OutcomeReport,
    OverrideRefused,
    UnknownDecisions,
    export_outcomes,
    export_overrides,
    record_outcomes,
    record_override,
    with_follow_up,
)
from loan_preprocessing.records.promotions import list_promotions, record_promotion
from loan_preprocessing.records.store import new_ids
from loan_preprocessing.records.tables import decisions, outcomes
from loan_preprocessing.schema import EXAMPLE_APPLICATION, Decision, LoanApplication
from tests.support.records import record_delivered

TAG = "loan_approval:champion1"
DAY = date(2026, 11, 30)


def _recorded(url: str, loan_ids: list[str], statuses: str) -> list[str]:
    applications = [
        LoanApplication.model_validate({**EXAMPLE_APPLICATION.model_dump(), "Loan_ID": loan})
        for loan in loan_ids
    ]
    made = [
        Decision(
            Loan_ID=loan,
            Loan_Status="N" if s == "N" else "Y",
            probability=0.3 if s == "N" else 0.8,
            reasons=[],
        )
        for loan, s in zip(loan_ids, statuses, strict=True)
    ]
    return record_delivered(url, TAG, applications, made)


def test_the_same_outcome_twice_is_one_row_and_a_loan_id_is_its_newest_decision(store):
    first = _recorded(store.url, ["LP1", "LP2"], "YN")
    second = _recorded(store.url, ["LP1"], "Y")  # LP1 decided again, later
    results = record_outcomes(
        store,
        [
            OutcomeReport("repaid", DAY, decision_id=first[1]),
            OutcomeReport("repaid", DAY, loan_id="LP1"),
            OutcomeReport("repaid", DAY + timedelta(days=1), loan_id="LP1"),
        ],
    )
    assert [r["decision_id"] for r in results] == [first[1], second[0], second[0]]
    assert [r["recorded"] for r in results] == [True, True, False]
    # The first report's day stands for the duplicate.
    assert results[2]["observed_on"] == DAY.isoformat()
    again = record_outcomes(store, [OutcomeReport("repaid", DAY, decision_id=first[1])])
    assert again[0]["recorded"] is False
    # Another outcome of the same decision is a row of its own.
    record_outcomes(store, [OutcomeReport("delinquent", DAY, decision_id=first[1])])
    rows = sorted((r["decision_id"], r["outcome"]) for r in export_outcomes(store))
    assert rows == sorted([(first[1], "repaid"), (first[1], "delinquent"), (second[0], "repaid")])


def test_an_outcome_reported_meanwhile_by_another_caller_is_not_claimed_as_recorded(store):
    """Two callers report the same outcome at once: the one whose insert meets the
    other's (committed while it waited) says recorded: false, with the stored day."""
    ids = _recorded(store.url, ["LP5"], "Y")
    with store.engine.connect() as other:
        held = other.begin()
        other.execute(
            insert(outcomes).values(
                decision_id=ids[0], outcome="repaid", observed_on=DAY, recorded_at=datetime.now(UTC)
            )
        )
        later = OutcomeReport("repaid", DAY + timedelta(days=2), decision_id=ids[0])
        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(record_outcomes, store, [later])
            # It has read (no outcome committed yet) and waits at its insert.
            time.sleep(0.5)
            assert not pending.done()
            held.commit()
            result = pending.result(timeout=10)
    assert result[0]["recorded"] is False
    assert result[0]["observed_on"] == DAY.isoformat()
    assert [(r["outcome"], r["observed_on"]) for r in export_outcomes(store)] == [("repaid", DAY)]


def test_an_unknown_decision_records_nothing_and_is_named(store):
    ids = _recorded(store.url, ["LP7"], "Y")
    missing = new_ids(1)[0]
    with pytest.raises(UnknownDecisions, match=missing) as raised:
        record_outcomes(
            store,
            [
                OutcomeReport("repaid", DAY, decision_id=ids[0]),
                OutcomeReport("repaid", DAY, decision_id=missing),
                OutcomeReport("repaid", DAY, loan_id="NOSUCHLOAN"),
            ],
        )
    assert raised.value.unknown == [missing, "Loan_ID NOSUCHLOAN"]
    assert list(export_outcomes(store)) == []


def test_an_undelivered_decision_is_not_a_loan_ids_newest(store):
    delivered = _recorded(store.url, ["LP9"], "Y")
    with store.engine.begin() as connection:
        # A later decision on LP9 that never reached the client.
        connection.execute(text("UPDATE answers SET delivered = false"))
        connection.execute(
            text("UPDATE answers SET delivered = true WHERE answer_id IN "
                 "(SELECT answer_id FROM decisions WHERE decision_id = :d)"),
            {"d": delivered[0]},
        )  # fmt: skip
    undelivered_answer = _recorded(store.url, ["LP9"], "N")
    with store.engine.begin() as connection:
        connection.execute(
            text("UPDATE answers SET delivered = false WHERE answer_id IN "
                 "(SELECT answer_id FROM decisions WHERE decision_id = :d)"),
            {"d": undelivered_answer[0]},
        )  # fmt: skip
    results = record_outcomes(store, [OutcomeReport("withdrawn", DAY, loan_id="LP9")])
    assert results[0]["decision_id"] == delivered[0]


def test_overrides_are_appended_and_the_models_decision_is_kept(store):
    ids = _recorded(store.url, ["LP3"], "N")
    first = record_override(store, ids[0], "officer-17", "Y", "verified income", DAY_TIME)
    assert first is not None and first["from_status"] == "N" and first["final_status"] == "Y"
    with pytest.raises(OverrideRefused, match="already stands at Y"):
        record_override(store, ids[0], "officer-17", "Y", "again")
    second = record_override(store, ids[0], "officer-2", "N", "income letter forged")
    assert second is not None and second["from_status"] == "Y"
    assert record_override(store, new_ids(1)[0], "x", "Y", "r") is None
    with store.engine.connect() as connection:
        assert (
            connection.scalar(
                select(decisions.c.Loan_Status).where(decisions.c.decision_id == ids[0])
            )
            == "N"
        )
    record = with_follow_up(store, [store.find(ids[0])])[0]
    assert record["Loan_Status"] == "N" and record["final_status"] == "N"
    assert [o["person"] for o in record["overrides"]] == ["officer-17", "officer-2"]
    assert [o["final_status"] for o in export_overrides(store)] == ["Y", "N"]


def test_overrides_of_one_decision_are_capped(store):
    ids = _recorded(store.url, ["LP4"], "N")
    for n in range(MAX_OVERRIDES_PER_DECISION):
        assert record_override(store, ids[0], "p", "Y" if n % 2 == 0 else "N", "r") is not None
    with pytest.raises(OverrideRefused, match="the most this service records"):
        next_status = "Y" if MAX_OVERRIDES_PER_DECISION % 2 == 0 else "N"
        record_override(store, ids[0], "p", next_status, "r")


def test_outcomes_and_overrides_are_purged_with_their_decisions(store):
    ids = _recorded(store.url, ["LP5"], "N")
    record_outcomes(store, [OutcomeReport("withdrawn", DAY, decision_id=ids[0])])
    record_override(store, ids[0], "p", "Y", "r")
    store.purge(datetime.now(UTC) + timedelta(days=1))
    assert list(export_outcomes(store)) == [] and list(export_overrides(store)) == []


def test_promotions_are_appended_with_their_report(store):
    made = record_promotion(store, "loan_approval:b", "loan_approval:a", "lead", "r.json", "{}")
    assert made["report_sha256"] == (
        "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
    )
    listed = list_promotions(store)
    assert [(p["model_tag"], p["previous_tag"], p["person"]) for p in listed] == [
        ("loan_approval:b", "loan_approval:a", "lead")
    ]


def test_a_store_at_the_previous_revision_is_refused_and_migrates(store):
    with store.engine.begin() as connection:
        for table in ("promotions", "overrides", "outcomes"):
            connection.execute(text(f"DROP TABLE {table}"))
        connection.execute(text("UPDATE alembic_version SET version_num = '0002'"))
    with pytest.raises(SchemaOutOfDate, match=r"revision 0002.*make decisions-migrate"):
        store.prepare()
    assert store.upgrade() == "0003"
    store.prepare()
    assert list(export_outcomes(store)) == []


DAY_TIME = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)


def test_the_reports_read_outcomes_and_overrides_from_the_store(store, capsys, tmp_path):
    from loan_preprocessing.operations.model_risk.__main__ import main as model_risk_main

    # Model: Y,Y,Y,N,N,Y. LP23 is overridden to Y (and repays), LP20 to N.
    loans = [f"LP2{i}" for i in range(6)]
    ids = _recorded(store.url, loans, "YYYNNY")
    record_outcomes(
        store,
        [
            OutcomeReport("repaid", DAY, decision_id=ids[1]),
            OutcomeReport("defaulted", DAY, decision_id=ids[2]),
            OutcomeReport("repaid", DAY, loan_id="LP23"),
            OutcomeReport("delinquent", DAY, loan_id="LP25"),
        ],
    )
    record_override(store, ids[3], "officer-1", "Y", "Employer letter")
    record_override(store, ids[0], "officer-2", "N", "employer letter ")
    assert model_risk_main(["outcomes", "--url", store.url, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [version] = report["versions"].values()
    # Final: N,Y,Y,Y,N,Y: approved 4 (LP21 repaid, LP22 bad, LP23 repaid, LP25 bad).
    assert (version["approved"], version["overridden"]) == (4, 2)
    assert version["with_repayment_outcome"] == 4 and version["bad"] == 2
    assert version["bad_rate"] == 0.5
    assert version["bad_rate_overridden"] == 0.0
    assert version["bad_rate_not_overridden"] == round(2 / 3, 4)
    assert report["overridden"]["count"] == 2
    assert {(e["Loan_ID"], e["model_status"], e["final_status"], e["outcome"])
            for e in report["overridden"]["examples"]} == {
        ("LP23", "N", "Y", "repaid"), ("LP20", "Y", "N", None)
    }  # fmt: skip
    assert model_risk_main(["overrides", "--url", store.url, "--json"]) == 0
    overrides = json.loads(capsys.readouterr().out)
    assert json.dumps(overrides).count("employer letter") >= 1
    # A CSV still replaces the store's table: no outcomes in this one.
    empty = tmp_path / "outcomes.csv"
    empty.write_text("decision_id,outcome,observed_on\n")
    assert (
        model_risk_main(["outcomes", "--url", store.url, "--outcomes", str(empty), "--json"]) == 0
    )
    assert json.loads(capsys.readouterr().out)["decisions_without_outcome"] == 6

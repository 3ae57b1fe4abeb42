"""The decision store on real databases: a SQLite file and a PostgreSQL server
started by the tests (each test runs on both)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import text

from loan_preprocessing.records import migrations
from loan_preprocessing.records.migrations import SchemaOutOfDate
from loan_preprocessing.records.store import Answer, new_ids
from loan_preprocessing.records.tables import APPLICATION_COLUMNS, metadata


def _answer(rows: int, key: str | None = None, sha: str | None = None, loan: str = "LP") -> Answer:
    ids = new_ids(rows + 1)
    columns: dict[str, list] = {
        "decision_id": ids[1:],
        "Loan_ID": [f"{loan}{i}" for i in range(rows)],
        "Loan_Status": ["N" if i % 2 else "Y" for i in range(rows)],
        "probability": [i / rows for i in range(rows)],
        "reason_codes": ["CREDIT_HISTORY;LOAN_AMOUNT" if i % 2 else "" for i in range(rows)],
        "reasons": [
            '[{"code": "CREDIT_HISTORY", "text": "t"}]' if i % 2 else "[]" for i in range(rows)
        ],
        "answer": [f'{{"decision_id": "{d}", "counteroffer": {{"amount": 1}}}}' for d in ids[1:]],
    }
    for name in APPLICATION_COLUMNS:
        columns[name] = [1.5 if name == "ApplicantIncome" else None for _ in range(rows)]
    columns["Gender"] = ["Female"] * rows
    return Answer(ids[0], "/predict", "loan_approval:abc", "0" * 64, columns, key, sha)


def test_migrated_schema_is_the_declared_one(store):
    """The Alembic revisions create exactly the tables tables.py declares."""
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    assert differences == []


def test_a_batch_is_recorded_whole_and_read_back_as_answered(store):
    first, second = _answer(3), _answer(2, loan="Q")
    assert store.record([first, second]) == []
    assert store.count() == 5
    found = store.find(first.columns["decision_id"][1])
    assert found["application"]["Loan_ID"] == "LP1"
    assert found["application"]["Gender"] == "Female"
    assert found["application"]["ApplicantIncome"] == 1.5
    assert found["Loan_Status"] == "N"
    assert found["probability"] == pytest.approx(1 / 3)
    assert found["reasons"] == ["CREDIT_HISTORY", "LOAN_AMOUNT"]
    assert found["model_tag"] == "loan_approval:abc"
    assert found["delivered"] is False
    # A field the schema does not know (a counteroffer) is kept as answered.
    assert found["answer"]["counteroffer"] == {"amount": 1}
    assert [r["decision_id"] for r in store.find_by_loan_id("Q0", 10)] == [
        second.columns["decision_id"][0]
    ]


def test_delivered_marks_only_the_named_answers(store):
    first, second = _answer(2), _answer(2)
    store.record([first, second])
    store.mark_delivered([first.answer_id])
    delivered = {r["decision_id"]: r["delivered"] for r in store.export()}
    assert [delivered[i] for i in first.columns["decision_id"]] == [True, True]
    assert [delivered[i] for i in second.columns["decision_id"]] == [False, False]


def test_a_key_recorded_meanwhile_leaves_only_that_answer_out(store):
    store.record([_answer(1, key="retry-1", sha="a")])
    again, other = _answer(1, key="retry-1", sha="a"), _answer(2)
    refused = store.record([again, other])
    assert refused == [again]
    assert store.count() == 3
    assert store.answer_for_key("retry-1").answer["request_sha256"] == "a"


def test_a_key_recorded_meanwhile_leaves_out_every_part_of_that_request(store):
    """A request split over batches whose parts share one group commit: only its
    first part carries the key, and none of its parts is recorded."""
    store.record([_answer(1, key="retry-2", sha="a")])
    first, later = _answer(2, key="retry-2", sha="a"), _answer(3, key="retry-2", sha="a")
    first.request_id = later.request_id = "split-request"
    later.first_position = 2
    other = _answer(1)
    refused = store.record([first, other, later])
    assert refused == [first, later]
    assert store.count() == 2


def test_export_takes_a_time_range_and_purge_spares_younger_records(store):
    old, young = _answer(2), _answer(3)
    now = datetime.now(UTC)
    store.record([old], now=now - timedelta(days=800))
    store.record([young], now=now)
    assert len(list(store.export(now - timedelta(days=1), now + timedelta(days=1)))) == 3
    assert len(list(store.export(end=now - timedelta(days=1)))) == 2
    assert store.purge(now - timedelta(days=760)) == 2
    assert store.purge(now - timedelta(days=760)) == 0
    assert store.count() == 3


def test_a_store_of_an_older_schema_is_refused_with_the_command(store):
    with store.engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '0000'"))
    with pytest.raises(SchemaOutOfDate, match="make decisions-migrate"):
        store.prepare()


def test_head_revision_is_current_after_prepare(store):
    with store.engine.connect() as connection:
        assert migrations.current(connection) == migrations.head()

"""Where a decision record's time goes, timed in-process on real stores: the
rows built from a 1000-row columnar answer (as V2 builds them), and the commit
of that answer and of a single-row one, to SQLite (FULL and NORMAL sync) and,
when given, PostgreSQL. Then SQLite's own floor for the same 1000 rows, through
the sqlite3 module and no code of ours: what a record per decision costs in
the table as it is, without its two secondary indexes, and what one row per
answer would cost."""

from __future__ import annotations

import functools
import json
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from loan_preprocessing.decide import Scorer
from loan_preprocessing.inputs.columns import validate_columns
from loan_preprocessing.model.store import get_model
from loan_preprocessing.records.rows import column_columns
from loan_preprocessing.records.store import Answer, DecisionStore, new_ids
from loan_preprocessing.records.tables import decisions
from loan_preprocessing.serving.open_inference import row_answers

RUNS = 15


def _median_ms(call: Callable[[], object], runs: int = RUNS) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def _commit_next(store: DecisionStore, pending: list[Answer]) -> None:
    store.record([pending.pop()])


def measure_record_costs(
    tag: str, rows: list[dict], scratch: Path, postgres_url: str | None
) -> dict[str, float]:
    scorer = Scorer.from_model(get_model(tag))
    rows = (rows * (1000 // len(rows) + 1))[:1000]
    names = list(rows[0])
    validated = validate_columns({n: [r.get(n) for r in rows] for n in names}, len(rows))
    decided = scorer.decide_columns(validated)

    single = validated.take(np.arange(1))
    decided_single = scorer.decide_columns(single)

    def answer(size: int) -> Answer:
        ids = new_ids(size + 1)
        part, decided_part = (validated, decided) if size == 1000 else (single, decided_single)
        columns = column_columns(ids[1:], part, decided_part, row_answers(decided_part, ids[1:]))
        return Answer(ids[0], "/bench", tag, "0" * 64, columns)

    costs = {
        "decide 1000 rows (columns, the model and reasons)": _median_ms(
            lambda: scorer.decide_columns(validated)
        ),
        "build the records of 1000 rows (ids, columns, answer JSON)": _median_ms(
            lambda: answer(1000)
        ),
    }
    stores = {
        "SQLite FULL": f"sqlite:///{scratch / 'cost-full.sqlite3'}",
        "SQLite NORMAL": f"sqlite:///{scratch / 'cost-normal.sqlite3'}",
    }
    if postgres_url:
        stores["PostgreSQL"] = postgres_url
    for name, url in stores.items():
        store = DecisionStore(url, sqlite_sync="NORMAL" if "NORMAL" in name else "FULL")
        store.prepare()
        for size in (1000, 1):
            pending = [answer(size) for _ in range(RUNS)]
            label = f"commit {size} row{'s' if size > 1 else ''}, {name}"
            costs[label] = _median_ms(functools.partial(_commit_next, store, pending))
        store.close()
    costs.update(measure_sqlite_floor(answer(1000), scratch))
    return costs


# An answer id and its decision rows, with fresh ids, ready to insert.
FreshRows = tuple[str, list[list[Any]]]
# The decisions table's secondary indexes (Loan_ID, and (answer_id, position)),
# by the names the table declares.
SECONDARY_INDEXES = tuple(sorted(str(index.name) for index in decisions.indexes))


def measure_sqlite_floor(answer: Answer, scratch: Path) -> dict[str, float]:
    """The commit of `answer`'s 1000 decisions by sqlite3 alone, with the store's
    pragmas (WAL, FULL sync, foreign keys): into the `decisions` table as the
    store creates it (each row in four B-trees: the table, its decision_id key
    and the two indexes), into the same table without the two indexes, and as one
    row holding every decision's JSON text (a design with a record per answer).
    Each commit gets fresh ids, as the service's do."""
    names = [c.name for c in decisions.columns]
    given = {
        **answer.columns,
        "answer_id": [answer.answer_id] * len(answer),
        "position": list(range(len(answer))),
    }
    rows = list(zip(*(given[name] for name in names), strict=True))
    id_at = names.index("decision_id"), names.index("answer_id")
    quoted = ", ".join(f'"{name}"' for name in names)
    insert_decisions = f"INSERT INTO decisions ({quoted}) VALUES ({', '.join('?' * len(names))})"
    insert_answer = (
        "INSERT INTO answers (answer_id, request_id, first_position, answered_at, route, "
        "model_tag, model_sha256, rows, delivered) VALUES (?, ?, 0, '2026-01-01', '/bench', "
        "'tag', ?, ?, 0)"
    )
    body = "[" + ",".join(answer.columns["answer"]) + "]"

    def connect(name: str, indexed: bool) -> sqlite3.Connection:
        path = scratch / f"floor-{name}.sqlite3"
        store = DecisionStore(f"sqlite:///{path}")
        store.prepare()
        store.close()
        connection = sqlite3.connect(path, isolation_level=None)
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON"):
            connection.execute(f"PRAGMA {pragma}")
        if not indexed:
            for index in SECONDARY_INDEXES:
                connection.execute(f'DROP INDEX "{index}"')
        connection.execute("CREATE TABLE answer_bodies (answer_id TEXT PRIMARY KEY, body TEXT)")
        return connection

    def fresh_rows() -> FreshRows:
        ids = new_ids(len(rows) + 1)
        fresh = []
        for row, decision_id in zip(rows, ids[1:], strict=True):
            cells = list(row)
            cells[id_at[0]], cells[id_at[1]] = decision_id, ids[0]
            fresh.append(cells)
        return ids[0], fresh

    def per_decision(connection: sqlite3.Connection, pending: list[FreshRows]) -> None:
        answer_id, fresh = pending.pop()
        connection.execute("BEGIN")
        connection.execute(insert_answer, (answer_id, answer_id, "0" * 64, len(rows)))
        connection.executemany(insert_decisions, fresh)
        connection.execute("COMMIT")

    def per_answer(connection: sqlite3.Connection, pending: list[FreshRows]) -> None:
        answer_id, _ = pending.pop()
        connection.execute("BEGIN")
        connection.execute("INSERT INTO answer_bodies VALUES (?, ?)", (answer_id, body))
        connection.execute("COMMIT")

    costs = {}
    for label, name, indexed, commit in (
        ("a row per decision, the table as it is (4 B-trees)", "indexed", True, per_decision),
        ("a row per decision, without the 2 indexes", "bare", False, per_decision),
        ("one row per answer (its decisions as one JSON text)", "body", True, per_answer),
    ):
        connection = connect(name, indexed)
        pending = [fresh_rows() for _ in range(RUNS)]
        costs[f"sqlite3 alone, 1000 rows, FULL: {label}"] = _median_ms(
            functools.partial(commit, connection, pending)
        )
        connection.close()
    return costs


def main(argv: list[str]) -> int:
    """python -m bench.record_costs TAG ROWS_JSON SCRATCH [POSTGRES_URL]: the
    costs as JSON (run by bench/run.py with the bench's BENTOML_HOME)."""
    tag, rows_path, scratch = argv[0], Path(argv[1]), Path(argv[2])
    url = argv[3] if len(argv) > 3 else None
    print(json.dumps(measure_record_costs(tag, json.loads(rows_path.read_text()), scratch, url)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

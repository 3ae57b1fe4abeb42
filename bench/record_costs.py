"""Where a decision record's time goes, timed in-process on real stores: the
rows built from a 1000-row columnar answer (as V2 builds them), and the commit
of that answer and of a single-row one, to SQLite (FULL and NORMAL sync) and,
when given, PostgreSQL."""

from __future__ import annotations

import functools
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from loan_preprocessing.decide import Scorer
from loan_preprocessing.inputs.columns import validate_columns
from loan_preprocessing.model.store import get_model
from loan_preprocessing.records.rows import column_columns
from loan_preprocessing.records.store import Answer, DecisionStore, new_ids
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

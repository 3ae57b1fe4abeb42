"""The model-risk reports on a million recorded decisions, timed as an operator
runs them.

    python -m bench.model_risk_reports [--rows 1000000] [--home DIR] [--no-postgres]

Writes synthetic applications (loan_preprocessing.synthetic), decided by the
bench's served version and, in shadow, by its challenger (bench/model.py), into a
fresh SQLite store and a fresh PostgreSQL database (started for the run): the
decisions through the service's own recording code (DecisionStore.record, answers
of 10,000 rows spread over twelve months), the challenger's beside each through
records/challenger.py, an outcome for every approval (the synthetic Loan_Status
as a stand-in: Y repaid, N defaulted) and an override of one decision in fifty,
both inserted in bulk. Then times each report's command (`python -m
loan_preprocessing.operations.model_risk <report> --url ... --json`, a process
of its own, reading the store) and prints a table: the budget is 30 s each.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import numpy as np
from sqlalchemy import insert

from bench.machine import load_average, machine_info
from bench.model import default_home, ensure_challenger, ensure_model, training_data
from loan_preprocessing.decide import Scorer
from loan_preprocessing.environment import PROJECT_ROOT
from loan_preprocessing.inputs.columns import validate_columns
from loan_preprocessing.model.store import get_model
from loan_preprocessing.records.challenger import record_challenger
from loan_preprocessing.records.rows import column_columns
from loan_preprocessing.records.store import Answer, DecisionStore, new_ids
from loan_preprocessing.records.tables import outcomes, overrides
from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN, TARGET_COLUMN
from loan_preprocessing.serving.open_inference import row_answers
from loan_preprocessing.synthetic import generate_applications
from tests.support.postgres import postgres_server

REPORTS: Final = ("outcomes", "overrides", "challenger")
BUDGET_SECONDS: Final = 30.0
ANSWER_ROWS: Final = 10_000
OVERRIDE_EVERY: Final = 50
MONTHS: Final = 12


def fill_store(store: DecisionStore, champion: str, challenger: str, rows: int) -> dict[str, int]:
    """`rows` synthetic decisions, the challenger's, outcomes and overrides; counts."""
    served, shadow = (Scorer.from_model(get_model(tag)) for tag in (champion, challenger))
    model_sha256 = "0" * 64
    start = datetime.now(UTC) - timedelta(days=30 * MONTHS)
    counts = {"decisions": 0, "challenger": 0, "outcomes": 0, "overrides": 0}
    for first in range(0, rows, ANSWER_ROWS):
        size = min(ANSWER_ROWS, rows - first)
        frame = generate_applications(size, seed=first)
        frame[ID_COLUMN] = [f"B{first + i:08d}" for i in range(size)]
        truth = frame[TARGET_COLUMN].to_numpy()
        names = [ID_COLUMN, *FEATURE_COLUMNS]
        values = {n: [None if v != v else v for v in frame[n].tolist()] for n in names}
        validated = validate_columns(values, size)
        decided = served.decide_columns(validated)
        ids = new_ids(size + 1)
        columns = column_columns(ids[1:], validated, decided, row_answers(decided, ids[1:]))
        when = start + timedelta(days=30 * MONTHS * first / rows)
        store.record([Answer(ids[0], "/bench", champion, model_sha256, columns)], now=when)
        store.mark_delivered([ids[0]], now=when)
        challenged = shadow.decide_columns(validated)
        record_challenger(
            store,
            challenger,
            ids[1:],
            challenged.statuses,
            challenged.probabilities,
            challenged.reason_codes(),
        )
        approved = np.flatnonzero(np.asarray(decided.statuses) == "Y")
        outcome_rows = [
            {
                "decision_id": ids[1 + i],
                "outcome": "repaid" if truth[i] == "Y" else "defaulted",
                "observed_on": (when + timedelta(days=180)).date(),
                "recorded_at": when + timedelta(days=181),
            }
            for i in approved
        ]
        overridden = range(0, size, OVERRIDE_EVERY)
        override_rows = [
            {
                "override_id": override_id,
                "decision_id": ids[1 + i],
                "person": f"underwriter-{i % 7}",
                "final_status": "N" if decided.statuses[i] == "Y" else "Y",
                "rationale": ("verified income", "collateral", "policy exception")[i % 3],
                "overridden_at": when + timedelta(days=2),
            }
            for i, override_id in zip(overridden, new_ids(len(overridden)), strict=True)
        ]
        with store.engine.connect() as connection, connection.begin():
            connection.execute(insert(outcomes), outcome_rows)
            connection.execute(insert(overrides), override_rows)
        counts["decisions"] += size
        counts["challenger"] += size
        counts["outcomes"] += len(outcome_rows)
        counts["overrides"] += len(override_rows)
    return counts


def time_report(report: str, url: str, env: dict[str, str]) -> tuple[float, int]:
    """Wall seconds of one report's command on the store at `url`, and its exit code."""
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "loan_preprocessing.operations.model_risk", report,
         "--url", url, "--json"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    seconds = time.monotonic() - started
    if done.returncode != 0:
        print(done.stderr[-2000:], file=sys.stderr)
    else:
        json.loads(done.stdout)  # a whole report, not an error
    return seconds, done.returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--home", type=Path, help="BENTOML_HOME of the bench's models")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args(argv)
    data, _ = training_data()
    home = args.home or default_home(data)
    load_before = load_average()
    results: dict[str, Any] = {}
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loan-mrr-")))
        champion, _ = ensure_model(home, data, scratch / "train.log")
        challenger, _ = ensure_challenger(home, data, scratch / "challenger.log")
        os.environ["BENTOML_HOME"] = str(home)
        env = {**os.environ, "BENTOML_DO_NOT_TRACK": "true"}
        stores = {"SQLite": f"sqlite:///{scratch / 'decisions.sqlite3'}"}
        if not args.no_postgres:
            stores["PostgreSQL"] = stack.enter_context(postgres_server()).new_database()
        for name, url in stores.items():
            store = DecisionStore(url)
            store.prepare()
            started = time.monotonic()
            counts = fill_store(store, champion, challenger, args.rows)
            filled = time.monotonic() - started
            store.close()
            print(f"{name}: {counts} written in {filled:.0f} s", flush=True)
            results[name] = {
                "counts": counts,
                "fill_seconds": round(filled, 1),
                **{report: time_report(report, url, env) for report in REPORTS},
            }
    print(f"\n| report, {args.rows:,} decisions | " + " | ".join(stores) + " | budget |")
    print("|---|" + "---:|" * len(stores) + "---|")
    for report in REPORTS:
        cells = []
        for name in stores:
            seconds, code = results[name][report]
            cells.append(f"{seconds:.1f} s" if code == 0 else f"failed ({code})")
        print(f"| {report} | " + " | ".join(cells) + f" | <= {BUDGET_SECONDS:.0f} s |")
    print(f"\nload average before {load_before}, after {load_average()}; {machine_info()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

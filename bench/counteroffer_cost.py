"""In-process cost of the counteroffers: `Scorer.decide_columns` on many rows.

    python -m bench.counteroffer_cost [--rows 1000000] [--home DIR] [--out FILE]

Rows are the real applications (test and training files) drawn with replacement,
so the batch has the real data's denial rate. Times, in the same process and
alternating: `decide_columns` whole (decisions, reasons, counteroffers), and
the counteroffer step alone on the batch's denials; prints a table and writes
JSON with the machine's load average.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.bodies import application_rows
from bench.machine import load_average, machine_info
from bench.model import REAL_TEST_CSV, default_home, ensure_model, training_data


def _median_seconds(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def measure(rows: int, repeats: int) -> dict[str, Any]:
    from loan_preprocessing.decide import Scorer, _column_terms
    from loan_preprocessing.inputs.columns import validate_columns
    from loan_preprocessing.model.store import get_model
    from loan_preprocessing.schema import REJECTED, LoanApplication

    data, real = training_data()
    records = application_rows([REAL_TEST_CSV, data] if real else [data])
    scorer = Scorer.from_model(get_model("loan_approval:latest"))
    pick = np.random.default_rng(0).integers(0, len(records), rows)
    names = list(LoanApplication.model_fields)
    columns = validate_columns({n: [records[i].get(n) for i in pick] for n in names}, rows)
    decided = scorer.decide_columns(columns)
    denied = np.flatnonzero(np.array(decided.statuses) == REJECTED)
    inputs = scorer._columns_model_inputs(columns.values)[denied]
    terms = _column_terms(columns)(denied)
    whole = _median_seconds(lambda: scorer.decide_columns(columns), repeats)
    offers = _median_seconds(lambda: scorer.counteroffers.offers(inputs, terms), repeats)
    amounts = np.array([a is not None for a in decided.counteroffer_amounts])
    terms_offered = np.array([t is not None for t in decided.counteroffer_terms])
    return {
        "rows": rows,
        "denials": len(denied),
        "denial_rate": len(denied) / rows,
        "with_amount_offer": int(amounts.sum()),
        "with_term_offer": int(terms_offered.sum()),
        "decide_columns_s": whole,
        "counteroffers_s": offers,
        "counteroffers_share": offers / whole,
        "us_per_denial": offers / len(denied) * 1e6,
        "rows_per_s_with_counteroffers": rows / whole,
        "rows_per_s_without_counteroffers_estimate": rows / (whole - offers),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--home", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    import os

    data, _ = training_data()
    home = args.home or default_home(data)
    os.environ["BENTOML_HOME"] = str(home)
    os.environ["BENTOML_DO_NOT_TRACK"] = "true"
    ensure_model(home, data, Path(os.devnull))
    load_before = load_average()
    result = measure(args.rows, args.repeats)
    document = {
        "machine": machine_info(),
        "load_average_before": load_before,
        "load_average_after": load_average(),
        "result": result,
    }
    print("| rows | denials | decide_columns s | counteroffers s | share | us per denial |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {result['rows']:,} | {result['denials']:,} | {result['decide_columns_s']:.2f} | "
        f"{result['counteroffers_s']:.2f} | {result['counteroffers_share']:.0%} | "
        f"{result['us_per_denial']:.1f} |"
    )
    if args.out:
        args.out.write_text(json.dumps(document, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

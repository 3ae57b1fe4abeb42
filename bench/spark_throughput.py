"""Bulk scoring throughput: offline CSV on one core, and Spark, against the
row-by-row path they replaced, in one run.

    python bench/spark_throughput.py [--rows 1000000] [--master 'local[*]']

Writes synthetic applications (loan_preprocessing.synthetic) as a CSV file in the
data set's format, then times, validation, reasons and writing included:

- offline CSV scoring on one core (batch/score_csv.py: pyarrow reading, columnar
  validation, decide_columns) over every row;
- the Spark job (batch/spark_job.py: Spark reads the CSV, mapInArrow batches are
  validated and scored, scored/ and rejected/ written) over every row; its
  output is then compared with the offline output row for row;
- the row-by-row path both used before (csv_rows' reader and a LoanApplication
  per row, then Scorer.decide) on one core, over a sample (it is the slow one);
- the model alone (Scorer.decide_columns on already validated columns) and
  scikit-learn's predict_proba, on one core, for scale.

Prints a table of rows/s with each path's ratio to the row-by-row path, and
writes bench/results/spark.json. Needs a model in the store (`make train`).
"""

from __future__ import annotations

import argparse
import functools
import io
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import islice
from pathlib import Path
from typing import Any, Final

# Run from anywhere: the project root holds the loan_preprocessing package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from threadpoolctl import threadpool_limits

from loan_preprocessing.batch import score_csv, spark_job
from loan_preprocessing.batch.arrow_columns import parse_arrow_csv
from loan_preprocessing.csv_output import REASONS_COLUMN
from loan_preprocessing.environment import apply_project_defaults
from loan_preprocessing.inputs.csv_rows import iter_csv_applications, open_csv_text
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN
from loan_preprocessing.synthetic import generate_applications

RESULTS: Final = Path(__file__).resolve().parent / "results" / "spark.json"
CHUNK_ROWS: Final = score_csv.DEFAULT_CHUNK_SIZE
BASELINE: Final = "row_by_row_1_core"


def rate(rows: int, seconds: float) -> dict[str, float]:
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def timed(rows: int, run: Callable[[], object]) -> dict[str, float]:
    started = time.perf_counter()
    run()
    return rate(rows, time.perf_counter() - started)


def row_by_row(path: Path, rows: int, scorer: Any) -> None:
    """The path CSV uploads and offline scoring took before: a LoanApplication per row."""
    with open_csv_text(path) as text:
        applications = iter_csv_applications(text)
        while chunk := [a for _, a in islice(applications, CHUNK_ROWS)]:
            scorer.decide(chunk)
            rows -= len(chunk)
            if rows <= 0:
                return


def compare_outputs(offline: Path, spark_scored: Path) -> int:
    """Rows where the Spark job's answer differs from offline scoring's (by Loan_ID)."""
    expected = pd.read_csv(offline, dtype={ID_COLUMN: str}, keep_default_na=False)
    got = pq.read_table(spark_scored).to_pandas()
    got[REASONS_COLUMN] = got[REASONS_COLUMN].fillna("")
    columns = [ID_COLUMN, TARGET_COLUMN, "probability", REASONS_COLUMN]
    merged = expected[columns].merge(got[columns], on=ID_COLUMN, how="outer", indicator=True)
    unmatched = int((merged["_merge"] != "both").sum())
    both = merged[merged["_merge"] == "both"]
    differ = sum(int((both[f"{c}_x"] != both[f"{c}_y"]).sum()) for c in columns if c != ID_COLUMN)
    return unmatched + differ


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--master", default=spark_job.DEFAULT_MASTER)
    parser.add_argument("--model-tag", default=spark_job.DEFAULT_MODEL_TAG)
    parser.add_argument(
        "--row-by-row-rows",
        type=int,
        default=100_000,
        help="rows for the row-by-row baseline (it is the slow one)",
    )
    args = parser.parse_args(argv)
    apply_project_defaults()
    package = spark_job.package_model(args.model_tag)
    scorer = spark_job.loaded_model(package)
    results: dict[str, Any] = {
        "rows": args.rows,
        "model_tag": package.tag,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    }
    with tempfile.TemporaryDirectory(prefix="loan-bulk-bench-") as temp:
        temp_dir = Path(temp)
        source = temp_dir / "applications.csv"
        frame = generate_applications(args.rows, args.seed).drop(columns=TARGET_COLUMN)
        frame.to_csv(source, index=False)
        offline = temp_dir / "offline.csv"
        sample = min(args.row_by_row_rows, args.rows)
        # One core, as one Spark task gets (PySpark sets OMP_NUM_THREADS=spark.task.cpus).
        with threadpool_limits(1):

            def offline_scoring() -> None:
                with open(offline, "w", newline="") as sink:
                    score_csv.score_stream(source, sink, scorer)

            results["offline_csv_1_core"] = timed(args.rows, offline_scoring)
            results[BASELINE] = timed(sample, lambda: row_by_row(source, sample, scorer))
            columns = parse_arrow_csv(source)
            chunks = [
                columns.take(np.arange(s, min(s + CHUNK_ROWS, args.rows)))
                for s in range(0, args.rows, CHUNK_ROWS)
            ]
            results["model_only_decide_columns_1_core"] = timed(
                args.rows, functools.partial(list, map(scorer.decide_columns, chunks))
            )
            results["sklearn_predict_proba_1_core"] = timed(
                args.rows,
                lambda: [
                    scorer.pipeline.predict_proba(to_feature_frame(frame.iloc[s : s + CHUNK_ROWS]))
                    for s in range(0, args.rows, CHUNK_ROWS)
                ],
            )
        spark = spark_job.build_session(args.master)
        spark.sparkContext.setLogLevel("ERROR")
        cores = spark.sparkContext.defaultParallelism
        # A first small job, one task per core, starts the Python workers (each
        # loads the model once), as a long-running cluster has them.
        warm = temp_dir / "warm.csv"
        frame.head(1000).to_csv(warm, index=False)
        spark_job.ship_package(spark)
        started = time.perf_counter()
        warm_frame = spark_job.read_applications(spark, warm).repartition(cores)
        spark_job.score_dataframe(spark, warm_frame, package).write.format("noop").mode(
            "overwrite"
        ).save()
        results["spark_worker_start_seconds"] = round(time.perf_counter() - started, 2)
        # The same rows as Parquet too, typed as a data lake holds them (numbers
        # as doubles): Spark reads that far faster than CSV text.
        parquet = temp_dir / "applications.parquet"
        frame.to_parquet(parquet, index=False)
        differing = 0
        for kind, path in (("csv", source), ("parquet", parquet)):
            started = time.perf_counter()
            out = temp_dir / f"out-{kind}"
            summary = spark_job.score_file(spark, path, out, model_tag=package.tag, overwrite=True)
            spark_seconds = time.perf_counter() - started
            if summary.scored + summary.rejected != args.rows:
                raise RuntimeError(f"Spark wrote {summary} for {args.rows} rows")
            rows_differing = compare_outputs(offline, out / spark_job.SCORED_DIR)
            results[f"spark_{kind}_{args.master}"] = {
                **rate(args.rows, spark_seconds),
                "parallelism": cores,
                "transport": summary.transport,
                "rejected": summary.rejected,
                "rows_differing_from_offline": rows_differing,
            }
            differing += rows_differing
        spark.stop()
        results["spark_rows_differing_from_offline"] = differing

    baseline = results[BASELINE]["rows_per_s"]
    table = io.StringIO()
    table.write(f"| path | rows | seconds | rows/s | vs {BASELINE} |\n|---|---:|---:|---:|---:|\n")
    for name, row in results.items():
        if isinstance(row, dict) and "rows_per_s" in row:
            table.write(
                f"| {name} | {row['rows']:,} | {row['seconds']} | {row['rows_per_s']:,} "
                f"| {row['rows_per_s'] / baseline:.2f} |\n"
            )
    print(table.getvalue(), end="")
    print(
        f"Spark output equal to offline scoring row for row: "
        f"{results['spark_rows_differing_from_offline'] == 0} "
        f"({results['spark_rows_differing_from_offline']} rows differ)"
    )
    print(f"machine: {results['machine']}; load average at the end {os.getloadavg()[0]:.2f}")
    results["machine"]["load_average_at_end"] = os.getloadavg()[0]
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[2])}")
    return 0 if results["spark_rows_differing_from_offline"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

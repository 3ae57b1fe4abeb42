"""Throughput of Spark batch scoring against the in-process pandas path.

    python bench/spark_throughput.py [--rows 1000000] [--master 'local[*]']

Generates synthetic applications (loan_preprocessing.synthetic) into a temporary
Parquet file, scores them with the Spark job (loan_preprocessing.batch.spark_job:
read, validate every row, score, write scored/ and rejected/), then on one core
in this process: the bare pipeline (to_feature_frame + predict_proba in chunks),
and the Spark job's own batch function (validation + scoring, no Spark) on a
sample. Prints a table of rows/s and writes bench/results/spark.json.
Needs a model in the store (`make train`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Final

# Run from anywhere: the project root holds the loan_preprocessing package.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from threadpoolctl import threadpool_limits

from loan_preprocessing.batch import spark_job
from loan_preprocessing.environment import apply_project_defaults
from loan_preprocessing.features import to_feature_frame
from loan_preprocessing.schema import (
    NUMERIC_COLUMNS,
    TARGET_COLUMN,
)
from loan_preprocessing.synthetic import generate_applications

RESULTS: Final = Path(__file__).resolve().parent / "results" / "spark.json"
CHUNK_ROWS: Final = 10_000


def write_parquet(spark: Any, rows: int, seed: int, directory: Path) -> Path:
    """Synthetic applications as Parquet with the data set's types (pandas writes a
    CSV, Spark converts it, so no pyarrow is needed)."""
    frame = generate_applications(rows, seed).drop(columns=TARGET_COLUMN)
    frame.to_csv(directory / "applications.csv", index=False)
    schema = ", ".join(
        f"{name} {'double' if name in NUMERIC_COLUMNS else 'string'}" for name in frame.columns
    )
    target = directory / "applications.parquet"
    spark.read.csv(str(directory / "applications.csv"), header=True, schema=schema).write.parquet(
        str(target)
    )
    return target


def rate(rows: int, seconds: float) -> dict[str, float]:
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_s": round(rows / seconds)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--master", default=spark_job.DEFAULT_MASTER)
    parser.add_argument("--model-tag", default=spark_job.DEFAULT_MODEL_TAG)
    parser.add_argument(
        "--validated-rows",
        type=int,
        default=200_000,
        help="rows for the single-core validate-and-score measurement (it is the slow one)",
    )
    args = parser.parse_args(argv)
    apply_project_defaults()
    package = spark_job.package_model(args.model_tag)
    spark = spark_job.build_session(args.master)
    spark.sparkContext.setLogLevel("ERROR")
    cores = spark.sparkContext.defaultParallelism
    results: dict[str, Any] = {
        "rows": args.rows,
        "model_tag": package.tag,
        "machine": {
            "cpus": os.cpu_count(),
            "load_average_at_start": os.getloadavg()[0],
            "python": platform.python_version(),
        },
    }
    with tempfile.TemporaryDirectory(prefix="loan-spark-bench-") as temp:
        temp_dir = Path(temp)
        source = write_parquet(spark, args.rows, args.seed, temp_dir)
        started = time.perf_counter()
        summary = spark_job.score_file(
            spark, source, temp_dir / "out", model_tag=package.tag, overwrite=True
        )
        spark_seconds = time.perf_counter() - started
        spark.stop()
        if summary.scored + summary.rejected != args.rows:
            raise RuntimeError(f"Spark wrote {summary} for {args.rows} rows")
        results["spark"] = {
            **rate(args.rows, spark_seconds),
            "master": args.master,
            "parallelism": cores,
            "transport": summary.transport,
            "rejected": summary.rejected,
        }

    frame = generate_applications(args.rows, args.seed).drop(columns=TARGET_COLUMN)
    model = spark_job.loaded_model(package)
    # One core, as one Spark task gets (PySpark sets OMP_NUM_THREADS=spark.task.cpus).
    with threadpool_limits(1):
        started = time.perf_counter()
        for start in range(0, args.rows, CHUNK_ROWS):
            chunk = frame.iloc[start : start + CHUNK_ROWS]
            model.pipeline.predict_proba(to_feature_frame(chunk))
        results["pandas_predict_1_core"] = rate(args.rows, time.perf_counter() - started)

        sample = frame.iloc[: args.validated_rows]
        started = time.perf_counter()
        for start in range(0, len(sample), CHUNK_ROWS):
            spark_job.score_frame(sample.iloc[start : start + CHUNK_ROWS], model)
        results["pandas_validate_and_predict_1_core"] = rate(
            len(sample), time.perf_counter() - started
        )

    print(f"{'path':<40} {'rows':>10} {'seconds':>9} {'rows/s':>10}")
    for name in ("spark", "pandas_predict_1_core", "pandas_validate_and_predict_1_core"):
        row = results[name]
        print(f"{name:<40} {row['rows']:>10} {row['seconds']:>9} {row['rows_per_s']:>10}")
    print(
        f"machine: {results['machine']}; Spark {args.master} ({cores} cores, {summary.transport})"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {RESULTS.relative_to(RESULTS.parents[2])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

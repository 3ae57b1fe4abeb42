"""The Spark batch job (loan_preprocessing.batch.spark_job) on a local Spark:
it answers like the HTTP service, row for row, and never scores a row the
service would refuse."""

from __future__ import annotations

import csv
import hashlib
import io
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Final

import httpx
import numpy as np
import pytest

from loan_preprocessing.csv_output import neutralised
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.model.store import PIPELINE_FILE, ModelLoadError
from loan_preprocessing.schema import APPROVED, FEATURE_COLUMNS, ID_COLUMN, REJECTED, TARGET_COLUMN
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from tests.conftest import REAL_TEST_CSV
from tests.support.server import ROOT, bentoml_serve

if shutil.which("java") is None:
    pytest.skip(
        "JAVA ABSENT: Spark needs a Java runtime (17+) on the PATH; the Spark batch "
        "scoring tests cannot run without it",
        allow_module_level=True,
    )
pyspark = pytest.importorskip("pyspark", reason="PySpark ABSENT: install requirements/spark.txt")

from loan_preprocessing.batch import spark_job  # noqa: E402
from loan_preprocessing.batch.spark_job import (  # noqa: E402
    ERROR_COLUMN,
    MODEL_TAG_COLUMN,
    PROBABILITY_COLUMN,
    REJECTED_DIR,
    SCORED_DIR,
)
from loan_preprocessing.csv_output import (  # noqa: E402
    COUNTEROFFER_AMOUNT_COLUMN,
    COUNTEROFFER_TERM_COLUMN,
    REASON_SEPARATOR,
    REASONS_COLUMN,
)

SPARK_MASTER: Final = "local[2]"
# Optional columns the Parquet test file leaves out (the first three) or sends
# empty (those the model reads, which a file must carry: schema.BATCH_COLUMNS).
ABSENT_COLUMNS: Final = (
    "Gender",
    "Dependents",
    "Self_Employed",
    "LoanAmount",
    "Loan_Amount_Term",
    "Credit_History",
)
# Bad rows and the column each one's error must name.
BAD_ROWS: Final = {
    "BAD-GENDER": ("Gender", "X"),
    "BAD-INCOME": ("ApplicantIncome", "lots"),
    "BAD-CREDIT": ("Credit_History", "2"),
    "BAD-EDUCATION": ("Education", ""),
}


@pytest.fixture(scope="module")
def spark():
    session = (
        pyspark.sql.SparkSession.builder.master(SPARK_MASTER)
        .appName("loan-approval-tests")
        .config("spark.sql.shuffle.partitions", "2")
        .config("spark.default.parallelism", "2")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def read_output(spark, path: Path, output_format: str = "parquet") -> list[dict]:
    reader = spark.read.option("header", True)
    frame = reader.csv(str(path)) if output_format == "csv" else reader.parquet(str(path))
    return [row.asDict() for row in frame.collect()]


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def csv_rows_of_real_test_file() -> list[dict]:
    with open(REAL_TEST_CSV, newline="", encoding="utf-8-sig") as handle:
        return list(csv.DictReader(handle))


def test_spark_answers_like_the_http_service(spark, real_model, real_test_rows, tmp_path):
    stored, _ = real_model
    summary = spark_job.score_file(
        spark, REAL_TEST_CSV, tmp_path / "out", model_tag=str(stored.tag)
    )
    assert (summary.scored, summary.rejected) == (len(real_test_rows), 0)
    assert summary.model_tag == str(stored.tag)
    scored = {r[ID_COLUMN]: r for r in read_output(spark, tmp_path / "out" / SCORED_DIR)}
    assert read_output(spark, tmp_path / "out" / REJECTED_DIR) == []

    with bentoml_serve(
        env={"LOAN_MODEL_TAG": str(stored.tag)}, log_path=tmp_path / "serve.log"
    ) as server:
        response = httpx.post(
            f"{server.url}/predict", json={"applications": real_test_rows}, timeout=60
        )
    assert response.status_code == 200, response.text
    answers = response.json()
    assert sorted(scored) == sorted(a[ID_COLUMN] for a in answers)
    for answer in answers:
        row = scored[answer[ID_COLUMN]]
        assert row[PROBABILITY_COLUMN] == answer[PROBABILITY_COLUMN], answer[ID_COLUMN]
        assert row[TARGET_COLUMN] == answer[TARGET_COLUMN], answer[ID_COLUMN]
        assert row[REASONS_COLUMN] == REASON_SEPARATOR.join(r["code"] for r in answer["reasons"])
        offer = answer["counteroffer"] or {}
        assert row[COUNTEROFFER_AMOUNT_COLUMN] == offer.get("LoanAmount"), answer[ID_COLUMN]
        assert row[COUNTEROFFER_TERM_COLUMN] == offer.get("Loan_Amount_Term"), answer[ID_COLUMN]
        assert row[MODEL_TAG_COLUMN] == response.headers[MODEL_TAG_HEADER]
    assert any(row[REASONS_COLUMN] for row in scored.values())
    assert any(row[COUNTEROFFER_AMOUNT_COLUMN] is not None for row in scored.values())


def test_invalid_rows_are_rejected_with_the_reason_not_scored(spark, real_model, tmp_path):
    stored, pipeline = real_model
    good = csv_rows_of_real_test_file()[:6]
    bad = [
        {**good[0], ID_COLUMN: loan_id, column: value}
        for loan_id, (column, value) in BAD_ROWS.items()
    ]
    source = write_csv(tmp_path / "mixed.csv", good + bad)
    summary = spark_job.score_file(
        spark, source, tmp_path / "out", output_format="csv", model_tag=str(stored.tag)
    )
    assert (summary.scored, summary.rejected) == (len(good), len(bad))

    rejected = {r[ID_COLUMN]: r for r in read_output(spark, tmp_path / "out" / REJECTED_DIR, "csv")}
    assert sorted(rejected) == sorted(BAD_ROWS)
    for loan_id, (column, _) in BAD_ROWS.items():
        assert rejected[loan_id][ERROR_COLUMN].startswith(f"{column}: "), rejected[loan_id]

    scored = read_output(spark, tmp_path / "out" / SCORED_DIR, "csv")
    assert [r[ID_COLUMN] for r in scored] == [r[ID_COLUMN] for r in good]
    expected = pipeline.predict_proba(to_feature_frame(good))[:, 1]
    # CSV output keeps every digit: the probabilities read back are the same floats.
    np.testing.assert_array_equal([float(r[PROBABILITY_COLUMN]) for r in scored], expected)
    assert [r[TARGET_COLUMN] for r in scored] == [
        APPROVED if p >= 0.5 else REJECTED for p in expected
    ]


def test_parquet_input_keeps_its_types_and_may_lack_optional_columns(spark, real_model, tmp_path):
    """Optional columns the model does not read may be absent; those it reads are
    sent empty, which says "unknown"."""
    stored, pipeline = real_model
    rows = [
        {**r, "ApplicantIncome": float(r["ApplicantIncome"]), "Married": r["Married"] or None}
        for r in csv_rows_of_real_test_file()[:10]
    ]
    frame = spark.createDataFrame(
        [
            (r[ID_COLUMN], r["Married"], r["Education"], r["ApplicantIncome"], 0.0, "Urban")
            + (None,) * 3
            for r in rows
        ],
        "Loan_ID string, Married string, Education string, ApplicantIncome double, "
        "CoapplicantIncome double, Property_Area string, LoanAmount double, "
        "Loan_Amount_Term double, Credit_History double",
    )
    frame.write.parquet(str(tmp_path / "in.parquet"))
    spark_job.score_file(
        spark, tmp_path / "in.parquet", tmp_path / "out", model_tag=str(stored.tag)
    )
    scored = {r[ID_COLUMN]: r for r in read_output(spark, tmp_path / "out" / SCORED_DIR)}
    expected = pipeline.predict_proba(
        to_feature_frame(
            [
                {
                    "Married": r["Married"],
                    "Education": r["Education"],
                    "ApplicantIncome": r["ApplicantIncome"],
                    "CoapplicantIncome": 0.0,
                    "Property_Area": "Urban",
                    **dict.fromkeys(ABSENT_COLUMNS),
                }
                for r in rows
            ]
        )
    )[:, 1]
    np.testing.assert_array_equal(
        [scored[r[ID_COLUMN]][PROBABILITY_COLUMN] for r in rows], expected
    )


def test_unknown_column_stops_the_job_before_scoring(spark, real_model, tmp_path):
    stored, _ = real_model
    rows = [{**r, "Salary": "1"} for r in csv_rows_of_real_test_file()[:2]]
    with pytest.raises(ValueError, match="column Salary: unknown column"):
        spark_job.score_file(
            spark, write_csv(tmp_path / "x.csv", rows), tmp_path / "out", model_tag=str(stored.tag)
        )
    assert not (tmp_path / "out").exists()


def test_a_missing_column_the_model_reads_stops_the_job_naming_it(spark, real_model, tmp_path):
    stored, _ = real_model
    rows = [
        {k: v for k, v in r.items() if k != "Credit_History"}
        for r in csv_rows_of_real_test_file()[:2]
    ]
    with pytest.raises(ValueError, match="column Credit_History: column is missing"):
        spark_job.score_file(
            spark, write_csv(tmp_path / "x.csv", rows), tmp_path / "out", model_tag=str(stored.tag)
        )
    assert not (tmp_path / "out").exists()


def test_model_is_loaded_once_per_process_and_verified(real_model):
    stored, _ = real_model
    package = spark_job.package_model(str(stored.tag))
    first = spark_job.loaded_model(package)
    assert spark_job.loaded_model(package) is first
    assert first.tag == str(stored.tag)

    # A package whose pipeline file was changed fails the store's sha256 check on load.
    tampered = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(package.archive)) as source,
        tarfile.open(fileobj=tampered, mode="w") as target,
    ):
        for member in source.getmembers():
            data = source.extractfile(member) if member.isfile() else None
            if member.name.endswith(PIPELINE_FILE):
                payload = data.read() + b"\0"
                member.size = len(payload)
                data = io.BytesIO(payload)
            target.addfile(member, data)
    archive = tampered.getvalue()
    bad = spark_job.ModelPackage(package.tag, archive, hashlib.sha256(archive).hexdigest())
    with pytest.raises(ModelLoadError, match="sha256"):
        spark_job.loaded_model(bad)


def test_command_line_exits_non_zero_on_rejected_rows_when_asked(real_model, tmp_path):
    stored, _ = real_model
    rows = csv_rows_of_real_test_file()[:3]
    source = write_csv(tmp_path / "in.csv", [*rows, {**rows[0], "Property_Area": "Moon"}])
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "loan_preprocessing.batch.spark_job",
            "--input",
            str(source),
            "--output",
            str(tmp_path / "out"),
            "--master",
            "local[1]",
            "--model-tag",
            str(stored.tag),
            "--fail-on-rejected",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1, result.stderr[-3000:]
    assert f"scored {len(rows)} applications with {stored.tag}" in result.stdout
    assert "1 rows were rejected" in result.stderr
    assert (tmp_path / "out" / SCORED_DIR / "_SUCCESS").is_file()
    assert (tmp_path / "out" / REJECTED_DIR / "_SUCCESS").is_file()


def test_csv_output_neutralises_formulas_and_keeps_identifiers(spark, real_model, tmp_path):
    """Spark's CSV output is as safe to open in a spreadsheet as the service's,
    and an identifier that looks like a missing value is still echoed."""
    stored, _ = real_model
    good = csv_rows_of_real_test_file()[0]
    ids = ["=cmd|' /C calc'!A0", "@SUM(1)", "+1", "-1", "NA", "#N/A", "null", "LP1"]
    rows = [{**good, ID_COLUMN: loan_id} for loan_id in ids]
    rows.append({**good, ID_COLUMN: "=BAD", "Gender": "X"})  # a rejected row
    source = write_csv(tmp_path / "hostile.csv", rows)
    spark_job.score_file(
        spark, source, tmp_path / "out", output_format="csv", model_tag=str(stored.tag)
    )
    scored = read_output(spark, tmp_path / "out" / SCORED_DIR, "csv")
    rejected = read_output(spark, tmp_path / "out" / REJECTED_DIR, "csv")
    assert sorted(r[ID_COLUMN] for r in scored) == sorted(neutralised(loan_id) for loan_id in ids)
    assert [r[ID_COLUMN] for r in rejected] == ["'=BAD"]


def run_command(module: str, *args: str) -> subprocess.CompletedProcess:
    """A batch command of the project, in its own process, on the session's store."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


INPUT_HEADER: Final = ",".join((ID_COLUMN, *FEATURE_COLUMNS))
GOOD_LINE: Final = b"LP1,Male,No,0,Graduate,No,5720,0,110,360,1,Urban\n"
# Files no batch path scores, and the reason every one of them gives.
UNSCORABLE: Final = {
    "header only": INPUT_HEADER.encode() + b"\n",
    "empty": b"",
    "blank": b"\n\n",
    # A Latin-1 byte on line 3, which Spark's reader alone would make U+FFFD.
    "not utf-8": (
        INPUT_HEADER.encode() + b"\n" + GOOD_LINE + GOOD_LINE.replace(b"Urban", b"Urb\xe4n")
    ),
}


@pytest.mark.parametrize("name", list(UNSCORABLE))
def test_an_unscorable_file_is_refused_as_offline_scoring_refuses_it(real_model, tmp_path, name):
    """Header only, empty, blank or not UTF-8: the job exits non-zero with the one
    error line score_csv gives for the same file (naming it, and the line), and
    writes nothing."""
    stored, _ = real_model
    source = tmp_path / "input.csv"
    source.write_bytes(UNSCORABLE[name])
    offline = run_command(
        "loan_preprocessing.batch.score_csv", str(source), "--model-tag", str(stored.tag), "--quiet"
    )
    [expected] = [line for line in offline.stderr.splitlines() if line.startswith("error: ")]
    assert expected.startswith(f"error: {source}: line ")
    job = run_command(
        "loan_preprocessing.batch.spark_job",
        *("--input", str(source), "--output", str(tmp_path / "out")),
        *("--master", "local[1]", "--model-tag", str(stored.tag)),
    )
    assert job.returncode != 0, job.stdout
    errors = [line for line in job.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [expected], job.stderr[-3000:]
    assert not (tmp_path / "out").exists()

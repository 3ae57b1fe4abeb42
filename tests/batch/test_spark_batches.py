"""The Spark job's batch function, without Spark: Arrow batches (mapInArrow) and
pandas batches (no pyarrow) give the row-by-row path's answers and errors."""

from __future__ import annotations

import csv

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from loan_preprocessing.batch import spark_job
from loan_preprocessing.csv_output import (
    COUNTEROFFER_AMOUNT_COLUMN,
    COUNTEROFFER_TERM_COLUMN,
    reason_codes_cell,
)
from loan_preprocessing.decide import Scorer
from loan_preprocessing.explanations.reasons import load_reference
from loan_preprocessing.inputs.csv_rows import (
    CsvValidationError,
    application_from_record,
    read_value,
)
from loan_preprocessing.schema import ID_COLUMN
from tests.conftest import REAL_TEST_CSV

# Rows the schema refuses, each for one reason, and rows at the edges it accepts.
ODD_CELLS = [
    ("ApplicantIncome", "5_720"),
    ("ApplicantIncome", "-1"),
    ("LoanAmount", "lots"),
    ("Gender", "male"),
    ("Credit_History", "true"),
    ("Dependents", "4"),
    ("Education", ""),
    (ID_COLUMN, "L" * 65),
    ("LoanAmount", " 120 "),
    ("Credit_History", "1.0"),
    ("Dependents", "3.0"),
    ("Married", "NA"),
    ("CoapplicantIncome", "1e3"),
]


@pytest.fixture(scope="module")
def scorer(real_model) -> Scorer:
    stored, pipeline = real_model
    threshold = float(stored.info.metadata["threshold"])
    return Scorer(pipeline, str(stored.tag), load_reference(stored), threshold)


@pytest.fixture(scope="module")
def rows() -> list[dict[str, str]]:
    with open(REAL_TEST_CSV, newline="", encoding="utf-8-sig") as handle:
        real = list(csv.DictReader(handle))
    odd = [
        {**real[i], ID_COLUMN: f"ODD{i}", column: value}
        for i, (column, value) in enumerate(ODD_CELLS)
    ]
    # The odd rows spread among the real ones, so each batch mixes both.
    mixed = list(real)
    for i, row in enumerate(odd):
        mixed.insert(i * 29, row)
    return [{name: row.get(name, "") for name in spark_job.INPUT_COLUMNS} for row in mixed]


def expected(rows: list[dict[str, str]], scorer: Scorer) -> list[tuple]:
    """Each row through csv_rows and Scorer.decide, one at a time."""
    answers: list[tuple] = []
    for row in rows:
        record = {name: read_value(name, row[name]) for name in spark_job.INPUT_COLUMNS}
        try:
            application = application_from_record(record, 0)
        except CsvValidationError as exc:
            error = "; ".join(f"{p.column or 'row'}: {p.message}" for p in exc.problems)
            answers.append((row[ID_COLUMN] or None, None, None, None, None, None, error))
            continue
        decision = scorer.decide([application])[0]
        offer = decision.counteroffer
        answers.append(
            (
                row[ID_COLUMN] or None,
                decision.Loan_Status,
                decision.probability,
                reason_codes_cell(decision),
                offer.LoanAmount if offer else None,
                offer.Loan_Amount_Term if offer else None,
                None,
            )
        )
    return answers


def answers(results: dict) -> list[tuple]:
    columns = [
        results[spark_job.ID_COLUMN],
        results[spark_job.TARGET_COLUMN],
        [None if p != p else p for p in results[spark_job.PROBABILITY_COLUMN]],
        results[spark_job.REASONS_COLUMN],
        [None if v is None or v != v else v for v in results[COUNTEROFFER_AMOUNT_COLUMN]],
        [None if v is None or v != v else v for v in results[COUNTEROFFER_TERM_COLUMN]],
        results[spark_job.ERROR_COLUMN],
    ]
    return list(zip(*columns, strict=True))


def test_arrow_batches_answer_as_the_rows_do(rows, scorer, monkeypatch):
    monkeypatch.setattr(spark_job, "loaded_model", lambda package: scorer)
    table = pa.Table.from_pylist(rows)
    batches = table.to_batches(max_chunksize=100)
    results = [b.to_pydict() for b in spark_job.score_batches(batches, package=None)]
    merged = {name: [v for r in results for v in r[name]] for name in results[0]}
    assert answers(merged) == expected(rows, scorer)
    assert sum(e is not None for e in merged[spark_job.ERROR_COLUMN]) == 8


def test_pandas_batches_answer_as_the_rows_do(rows, scorer):
    frame = pd.DataFrame(rows)
    result = spark_job.score_frame(frame, scorer)
    merged = {name: result[name].tolist() for name in result.columns}
    assert answers(merged) == expected(rows, scorer)


def test_typed_batches_read_numbers_as_numbers(rows, scorer, monkeypatch):
    """Parquet's doubles reach the same decisions as the CSV text of the same numbers."""
    monkeypatch.setattr(spark_job, "loaded_model", lambda package: scorer)
    valid = [r for r in rows if not r[ID_COLUMN].startswith("ODD")]
    numeric = ["ApplicantIncome", "CoapplicantIncome", "LoanAmount", "Loan_Amount_Term"]
    typed = pd.DataFrame(valid)
    for name in numeric:
        typed[name] = pd.to_numeric(typed[name].replace("", np.nan))
    batch = pa.RecordBatch.from_pandas(typed, preserve_index=False)
    (result,) = spark_job.score_batches([batch], package=None)
    assert answers(result.to_pydict()) == expected(valid, scorer)

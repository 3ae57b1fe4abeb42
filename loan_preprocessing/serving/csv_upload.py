"""The answer to a CSV upload (/predict_csv): the decisions as CSV, or the
file's problems as JSON with the line and column of each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from starlette.responses import JSONResponse, Response

from loan_preprocessing import deadline
from loan_preprocessing.csv_output import decisions_to_csv
from loan_preprocessing.decide import ColumnDecisions, UnscoredRowError
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.inputs.csv_columns import parse_csv_columns
from loan_preprocessing.inputs.csv_rows import CsvValidationError

# Decides and records the rows; the decisions and their ids (None: not recorded).
DecideColumns = Callable[[ValidatedColumns], tuple[ColumnDecisions, list[str] | None]]


def csv_problems(exc: CsvValidationError) -> JSONResponse:
    """400: the first problems of a refused file, each with its line and column."""
    return JSONResponse(
        status_code=400,
        content={
            "error": str(exc),
            "detail": [
                {"line": p.line, "column": p.column, "msg": p.message} for p in exc.problems
            ],
            "total": exc.total,
        },
    )


def answer_csv_upload(file: Path, max_rows: int, decide_columns: DecideColumns) -> Response:
    """Read and check the uploaded file whole, then decide every row of it. Both
    stop at the request's deadline (loan_preprocessing/deadline.py)."""
    try:
        columns = parse_csv_columns(file, max_rows=max_rows)
    except CsvValidationError as exc:
        return csv_problems(exc)
    deadline.check()
    try:
        decided, decision_ids = decide_columns(columns)
    except UnscoredRowError:
        return JSONResponse(
            status_code=500,
            content={"error": "the model could not score every row; see the server log"},
        )
    return Response(decisions_to_csv(decided, decision_ids), media_type="text/csv")

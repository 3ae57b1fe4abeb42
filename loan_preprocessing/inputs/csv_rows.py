"""Loan applications from CSV text in the data set's format, validated row by row.

Used by offline scoring (`python -m loan_preprocessing.batch.score_csv`) and by the
service's POST /predict_csv, so both refuse a bad file with the same messages:
every problem names its line (1-based, the header is line 1) and its column.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import pandas as pd
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from loan_preprocessing import deadline
from loan_preprocessing.schema import (
    BATCH_COLUMNS,
    FEATURE_COLUMNS,
    ID_COLUMN,
    MAX_LISTED_ERRORS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
    TARGET_COLUMN,
    LoanApplication,
)

# Cells read as missing: the empty cell of the data set, and the spellings pandas
# reads as NaN by default, so a file pandas wrote or read means the same here.
MISSING_CELLS: Final = frozenset(
    {"", "NA", "N/A", "n/a", "NaN", "nan", "-NaN", "-nan", "NULL", "null", "None", "<NA>", "#N/A"}
)
# An identifier is the caller's text, echoed exactly: "NA" or "null" is a Loan_ID
# like any other, and only an empty cell means there is none.
MISSING_ID_CELLS: Final = frozenset({""})
# A number as JSON writes one (ASCII digits, optional sign, fraction and exponent):
# Python's float() also takes "5_720", "٥٧٢٠" and "infinity", which JSON refuses.
NUMBER_PATTERN: Final = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# Columns a file may carry that are not inputs: a labelled file scores as it is.
IGNORED_COLUMNS: Final = (TARGET_COLUMN,)
KNOWN_COLUMNS: Final = (ID_COLUMN, *FEATURE_COLUMNS, *IGNORED_COLUMNS)
# Past this many, a file is clearly the wrong one; more messages would not help.
MAX_REPORTED_PROBLEMS: Final = MAX_LISTED_ERRORS
HEADER_LINE: Final = 1
# The refusal of a file with a header and no row (every batch path's words).
NO_APPLICATIONS: Final = "the file has no applications"
# A header far wider than any valid one (each known column at most once) is
# refused before its names are examined: a client chooses the width, and a
# 3 MB header of 400,000 names must cost no more than a glance.
MAX_HEADER_COLUMNS: Final = 256
_SHOWN_VALUE_CHARS: Final = 40

CsvSource = bytes | str | os.PathLike[str]
# A cell as read: text from a CSV file, or a number from a typed frame (Parquet).
Cell = str | int | float | None


@dataclass(frozen=True)
class CsvProblem:
    """One thing wrong with one cell (or, with column None, with a whole line)."""

    line: int
    column: str | None
    message: str

    def __str__(self) -> str:
        where = f"line {self.line}" + (f", column {self.column}" if self.column else "")
        return f"{where}: {self.message}"


class CsvValidationError(ValueError):
    """The CSV holds invalid rows; `.problems` lists them (at most
    MAX_REPORTED_PROBLEMS), `.line`/`.column`/`.message` describe the first."""

    def __init__(self, problems: list[CsvProblem], total: int | None = None) -> None:
        if not problems:
            raise ValueError("CsvValidationError needs at least one problem")
        self.problems = problems[:MAX_REPORTED_PROBLEMS]
        self.total = max(total or 0, len(problems))
        first = self.problems[0]
        self.line, self.column, self.message = first.line, first.column, first.message
        more = self.total - 1
        suffix = f" (and {more} more problem{'s' * (more > 1)})" if more else ""
        super().__init__(f"{first}{suffix}")


def parse_csv_applications(data: CsvSource, max_rows: int | None = None) -> list[LoanApplication]:
    """Every application in `data` (CSV bytes or text, or a path to a CSV file),
    in file order. Raises CsvValidationError listing the problems of every bad
    row (capped), or at once when there are more than `max_rows` rows."""
    applications: list[LoanApplication] = []
    problems: list[CsvProblem] = []
    total = rows = 0
    with open_csv_text(data) as text:
        for line, record in read_records(text):
            rows += 1
            if max_rows is not None and rows > max_rows:
                raise CsvValidationError(
                    [CsvProblem(line, None, f"more than {max_rows} applications in one file")]
                )
            try:
                applications.append(application_from_record(record, line))
            except CsvValidationError as exc:
                total += exc.total
                problems.extend(exc.problems[: MAX_REPORTED_PROBLEMS - len(problems)])
    if problems:
        raise CsvValidationError(problems, total)
    if not applications:
        raise CsvValidationError([CsvProblem(HEADER_LINE, None, NO_APPLICATIONS)])
    return applications


def iter_csv_applications(text: TextIO | Iterable[str]) -> Iterator[tuple[int, LoanApplication]]:
    """(line number, application) for each row of an open CSV, lazily, so a large
    file is never held in memory; stops with CsvValidationError at the first bad row."""
    for line, record in read_records(text):
        yield line, application_from_record(record, line)


def read_records(text: TextIO | Iterable[str]) -> Iterator[tuple[int, dict[str, str | None]]]:
    """The cells of each data row as read (missing cells as None) with the line it
    starts on; checks the header first. Blank lines are skipped, not counted as rows."""
    rows = read_rows(text)
    header = next(rows)[1]
    for line, cells in rows:
        yield line, {name: read_cell(name, cell) for name, cell in zip(header, cells, strict=True)}


def read_rows(text: TextIO | Iterable[str]) -> Iterator[tuple[int, list[str]]]:
    """The checked header (line 1), then each data row's raw cells with the line
    it starts on. Blank lines are skipped, not counted as rows; a row with the
    wrong number of cells stops the reading with its line. Stops at a request's
    deadline (loan_preprocessing/deadline.py): a file of blank lines is never
    refused for its row count, and may be all the body limit allows."""
    reader = csv.reader(text)
    header = _next_row(reader)
    if header is None:
        raise CsvValidationError([CsvProblem(HEADER_LINE, None, "the file is empty")])
    header = [name.strip().lstrip("\ufeff") for name in header]
    check_header(header)
    yield HEADER_LINE, header
    line = reader.line_num + 1
    read = 0
    while (cells := _next_row(reader)) is not None:
        read += 1
        if not read % deadline.CHECK_EVERY:
            deadline.check()
        # A quoted cell may span lines: a row starts where the previous one ended.
        start, line = line, reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue
        if len(cells) != len(header):
            raise CsvValidationError(
                [
                    CsvProblem(
                        start,
                        None,
                        f"{len(cells)} values but the header has {len(header)} columns",
                    )
                ]
            )
        yield start, cells


def read_cell(name: str, text: str) -> str | None:
    """A cell's text as read, or None when it means "missing" in its column."""
    if name == ID_COLUMN:
        return None if text in MISSING_ID_CELLS else text
    text = text.strip()
    return None if text in MISSING_CELLS else text


def read_value(name: str, value: object) -> Cell:
    """A cell of any source as `read_cell` reads text: missing as None (None, NaN,
    pandas' NA), text as read in its column, numpy scalars as Python ones
    (pydantic's strict numbers refuse numpy types). For typed inputs (Parquet,
    Arrow, pandas), where a number needs no parsing."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, np.generic):
        return read_value(name, value.item())
    if isinstance(value, str):
        return read_cell(name, value)
    if isinstance(value, int | float):
        return value
    return str(value)


def _next_row(reader: Iterator[list[str]]) -> list[str] | None:
    """The next row, or None at the end; malformed CSV becomes a CsvValidationError."""
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise CsvValidationError(
            [CsvProblem(reader.line_num, None, f"not valid CSV: {exc}")]  # type: ignore[attr-defined]
        ) from None


def check_header(header: list[str]) -> None:
    """Refuse a header wider than any valid one, unknown or duplicated columns, and
    a missing column that is required or that the model reads (schema.BATCH_COLUMNS:
    a whole column absent is a broken export, not "unknown"; cells left empty say
    that). Other optional columns may be absent (then every row is missing them).
    Linear in the header's width, which is bounded before anything else."""
    if len(header) > MAX_HEADER_COLUMNS:
        raise CsvValidationError(
            [
                CsvProblem(
                    HEADER_LINE,
                    None,
                    f"the header has {len(header)} columns, at most {MAX_HEADER_COLUMNS} are "
                    f"read; allowed: {_allowed()}",
                )
            ]
        )
    counts = Counter(header)
    problems = [
        CsvProblem(HEADER_LINE, name or "(empty)", f"unknown column; allowed: {_allowed()}")
        for name in header
        if name not in KNOWN_COLUMNS
    ]
    problems += [
        CsvProblem(HEADER_LINE, name, "column appears more than once")
        for name in sorted(name for name, count in counts.items() if count > 1)
    ]
    problems += [
        CsvProblem(HEADER_LINE, name, _missing_column_message(name))
        for name in BATCH_COLUMNS
        if name not in counts
    ]
    if problems:
        raise CsvValidationError(problems)


def _missing_column_message(name: str) -> str:
    if name in REQUIRED_COLUMNS:
        return "required column is missing"
    return (
        "column is missing; the model reads it, so a file without it is refused rather than "
        "read as unknown: send the column with empty cells to say every value is unknown"
    )


def application_from_record(record: Mapping[str, Cell], line: int) -> LoanApplication:
    """Validate one row with the API's own schema; CsvValidationError lists every
    bad cell of the row."""
    fields: dict[str, object] = {}
    problems: list[CsvProblem] = []
    for name, cell in record.items():
        if name in IGNORED_COLUMNS:
            continue
        try:
            fields[name] = typed_cell(name, cell)
        except ValueError:
            problems.append(CsvProblem(line, name, f"not a number: {_shown(cell)}"))
            fields[name] = cell
    try:
        application = LoanApplication.model_validate(fields)
    except ValidationError as exc:
        reported = {p.column for p in problems}
        for error in exc.errors():
            column = str(error["loc"][0]) if error["loc"] else None
            if column not in reported:
                problems.append(CsvProblem(line, column, _message(error, record)))
    if problems:
        raise CsvValidationError(sorted(problems, key=_column_order))
    return application


def _column_order(problem: CsvProblem) -> int:
    """Problems of a row in the data set's column order."""
    known = list(KNOWN_COLUMNS)
    return known.index(problem.column) if problem.column in known else -1


def typed_cell(name: str, cell: Cell) -> object:
    """A cell as the JSON API would receive it: numbers as floats, the rest as text.
    ValueError when a number column holds something else."""
    if cell is None:
        return None
    if name in NUMERIC_COLUMNS:
        return _number(cell)
    if name == "Dependents":
        # pandas writes 1.0 for 1 when the column has gaps; the schema accepts numbers.
        try:
            return _number(cell)
        except ValueError:
            return cell
    return cell


def _number(cell: str | int | float) -> float:
    """A cell as a float, for the spellings a JSON number may have only."""
    if isinstance(cell, str) and not NUMBER_PATTERN.fullmatch(cell):
        raise ValueError(cell)
    return float(cell)


def _message(error: ErrorDetails, record: Mapping[str, Cell]) -> str:
    loc = error["loc"]
    message = str(error["msg"])
    if error.get("type") == "missing" or (error.get("input") is None and loc):
        return "required value is missing"
    if loc and str(loc[0]) in record:
        return f"{message}, got {_shown(record[str(loc[0])])}"
    return message


def _shown(cell: Cell) -> str:
    text = "" if cell is None else str(cell)
    return repr(text if len(text) <= _SHOWN_VALUE_CHARS else text[:_SHOWN_VALUE_CHARS] + "...")


def _allowed() -> str:
    return ", ".join(KNOWN_COLUMNS)


@contextmanager
def open_csv_text(data: CsvSource) -> Iterator[TextIO]:
    """A text stream over CSV bytes, CSV text or a file path (str is text, not a path)."""
    if isinstance(data, str):
        yield io.StringIO(data, newline="")
        return
    raw = data if isinstance(data, bytes) else Path(data).read_bytes()
    try:
        # utf-8-sig: some copies of the public data start with a byte-order mark.
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CsvValidationError([CsvProblem(line, None, "not UTF-8 text")]) from None
    yield io.StringIO(text, newline="")

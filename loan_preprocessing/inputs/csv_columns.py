"""CSV cells checked a column at a time, by csv_rows' own rules.

csv_rows reads a file row by row: each cell through `read_cell`/`read_value`
(what counts as missing) and `typed_cell` (numbers as JSON would send them), then
the row through `LoanApplication`. The bulk paths (POST /predict_csv, offline
scoring, the Spark job) do the same work a column at a time: the same two cell
functions run once per distinct value of a column, and `columns.check_columns`
applies LoanApplication's rules to the columns. Only the messages are left to
the row path: a file with a refused row is read again by csv_rows (or the
refused row alone is, in the Spark job), so every error names the line, column
and words it always did. tests/inputs/test_csv_columns.py proves the two paths accept
the same files and give the same values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
import pandas as pd

from loan_preprocessing import deadline
from loan_preprocessing.inputs.columns import (
    CheckedColumns,
    CodedColumn,
    Column,
    ValidatedColumns,
    check_columns,
)
from loan_preprocessing.inputs.csv_rows import (
    IGNORED_COLUMNS,
    CsvSource,
    open_csv_text,
    parse_csv_applications,
    read_rows,
    read_value,
    typed_cell,
)


@dataclass(frozen=True)
class CellColumns:
    """A batch's cells as typed columns, and the rows with a cell the CSV rules
    refuse before validation (text in a number column)."""

    rows: int
    columns: Mapping[str, Column]
    unreadable: np.ndarray

    def check(self) -> CheckedColumns:
        """LoanApplication's verdict on every row; an unreadable row is refused."""
        checked = check_columns(self.columns, self.rows)
        return CheckedColumns(
            checked.columns, checked.refused | self.unreadable, checked.problems, checked.total
        )


def coded_cells(
    name: str, codes: np.ndarray, raw: Sequence[object]
) -> tuple[CodedColumn, np.ndarray]:
    """A column given as the distinct raw values `raw` and each row's index into
    them (-1: missing), read and typed once per distinct value; with the mask of
    rows whose value cannot be read as the column's type."""
    distinct: list[object] = []
    unreadable_values = []
    for index, value in enumerate(raw):
        if not index % deadline.CHECK_EVERY:
            deadline.check()
        try:
            distinct.append(typed_cell(name, read_value(name, value)))
        except ValueError:
            distinct.append(None)
            unreadable_values.append(index)
    unreadable = (
        np.isin(codes, unreadable_values) if unreadable_values else np.zeros(len(codes), dtype=bool)
    )
    return CodedColumn(codes, distinct), unreadable


def cell_columns(header: Sequence[str], rows: Sequence[Sequence[object]]) -> CellColumns:
    """Rows of raw cells (as csv_rows.read_rows yields them, or typed values) as
    checked-ready columns; `header` names the cells of each row."""
    count = len(rows)
    by_column = list(zip(*rows, strict=True)) if rows else [() for _ in header]
    columns: dict[str, Column] = {}
    unreadable = np.zeros(count, dtype=bool)
    for name, cells in zip(header, by_column, strict=True):
        if name in IGNORED_COLUMNS:
            continue
        deadline.check()
        codes, uniques = pd.factorize(np.array(cells, dtype=object), use_na_sentinel=True)
        columns[name], bad = coded_cells(name, codes, uniques.tolist())
        unreadable |= bad
    return CellColumns(count, columns, unreadable)


def parse_csv_columns(data: CsvSource, max_rows: int | None = None) -> ValidatedColumns:
    """Every application in `data` (CSV bytes or text, or a path to a CSV file)
    as validated columns, in file order. A file csv_rows.parse_csv_applications
    refuses is refused with its CsvValidationError, word for word."""
    with open_csv_text(data) as text:
        rows = read_rows(text)
        header = next(rows)[1]
        cells = []
        for _, row in rows:
            cells.append(row)
            if max_rows is not None and len(cells) > max_rows:
                break
    if cells and (max_rows is None or len(cells) <= max_rows):
        checked = cell_columns(header, cells).check()
        if not checked.refused.any():
            return checked.columns
    raise_row_errors(data, max_rows)


def raise_row_errors(data: CsvSource, max_rows: int | None = None) -> NoReturn:
    """Raise the CsvValidationError csv_rows gives for a file the columns refused."""
    parse_csv_applications(data, max_rows)
    # Both paths apply the same rules; one accepting what the other refused is a bug.
    raise AssertionError("the columnar check refused a CSV file that csv_rows accepts")

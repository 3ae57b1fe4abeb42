"""Arrow columns (a CSV read by pyarrow, or a Spark Arrow batch) as CellColumns.

Python's csv module and a dict per row cost more than the model on a large
file; pyarrow parses CSV in C++ and hands over columns. Every cell still means
what csv_rows says it means (csv_columns.py):

- a number cell in the form JSON writes numbers (csv_rows.NUMBER_PATTERN, no
  spaces) is converted by Arrow's cast, which rounds exactly as Python's
  float() does (tests/inputs/test_csv_columns.py checks both on generated numbers);
- every other cell goes through csv_rows' own functions, once per distinct value.

Where Arrow and the csv module could read a file differently (a line of only
spaces, which Arrow counts as a row of one cell; a cell longer than the csv
module's field limit), the file is read by the csv module instead, so the
answer never depends on the reader. pyarrow is a batch-only dependency
(requirements/spark.txt): the service never imports this module.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final, TextIO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from loan_preprocessing.inputs.columns import CodedColumn, Column, ValidatedColumns
from loan_preprocessing.inputs.csv_columns import (
    CellColumns,
    cell_columns,
    coded_cells,
    parse_csv_columns,
    raise_row_errors,
)
from loan_preprocessing.inputs.csv_rows import (
    IGNORED_COLUMNS,
    NUMBER_PATTERN,
    NUMERIC_COLUMNS,
    CsvSource,
    open_csv_text,
    read_rows,
)
from loan_preprocessing.schema import ID_COLUMN

# csv_rows.NUMBER_PATTERN for RE2 (where \d is ASCII only, as with re.ASCII).
ARROW_NUMBER: Final = f"^(?:{NUMBER_PATTERN.pattern})$"
# Every character Python's str.strip() removes (str.isspace); a test checks the list.
PYTHON_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005"
    "\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_BLANK: Final = "^[" + "".join(f"\\x{{{ord(c):x}}}" for c in PYTHON_WHITESPACE) + "]*$"
# Rows per Arrow block when streaming a file (about 10k rows of the data set).
BLOCK_BYTES: Final = 1 << 20


class ArrowReadError(ValueError):
    """Arrow cannot read the file as the csv module does; read it with csv_rows."""


def parse_arrow_csv(data: CsvSource, max_rows: int | None = None) -> ValidatedColumns:
    """As csv_columns.parse_csv_columns, reading with pyarrow."""
    header = read_header(data)
    try:
        batches = [arrow_cell_columns(b) for b in _arrow_batches(data, header, use_threads=True)]
    except ArrowReadError:
        return parse_csv_columns(data, max_rows)
    rows = sum(b.rows for b in batches)
    if rows and (max_rows is None or rows <= max_rows):
        checked = [b.check() for b in batches]
        if not any(c.refused.any() for c in checked):
            parts = [c.columns for c in checked]
            return ValidatedColumns(
                rows, {n: np.concatenate([p.values[n] for p in parts]) for n in parts[0].values}
            )
    raise_row_errors(data, max_rows)


def iter_cell_columns(
    path: Path, *, max_rows: int = 10_000, use_threads: bool = False
) -> Iterator[CellColumns]:
    """The file's rows as CellColumns of at most `max_rows` rows (a large file is
    never held in memory): read by Arrow, and from where Arrow cannot read on, by
    the csv module, so the chunks together hold the rows csv_rows would read, in
    order."""
    header = read_header(path)
    done = 0
    try:
        for batch in _arrow_batches(path, header, use_threads=use_threads):
            for start in range(0, batch.num_rows, max_rows):
                cells = arrow_cell_columns(batch.slice(start, max_rows))
                done += cells.rows
                yield cells
        return
    except ArrowReadError:
        pass
    with open_stream(path) as text:
        rows = read_rows(text)
        next(rows)
        chunk: list[list[str]] = []
        for index, (_, row) in enumerate(rows):
            if index < done:
                continue
            chunk.append(row)
            if len(chunk) == max_rows:
                yield cell_columns(header, chunk)
                chunk = []
        if chunk:
            yield cell_columns(header, chunk)


def read_header(data: CsvSource) -> list[str]:
    """The file's header as csv_rows reads and checks it (its errors, word for word)."""
    opened = open_stream(data) if isinstance(data, os.PathLike) else open_csv_text(data)
    with opened as text:
        return next(read_rows(text))[1]


def open_stream(path: os.PathLike[str]) -> TextIO:
    """A CSV file as text, read as it is consumed (not all at once, as csv_rows
    does for an upload); a byte that is not UTF-8 raises UnicodeDecodeError."""
    # utf-8-sig: some copies of the public data start with a byte-order mark.
    return open(path, encoding="utf-8-sig", newline="")


def _arrow_batches(
    data: CsvSource, header: list[str], *, use_threads: bool
) -> Iterator[pa.RecordBatch]:
    source = (
        io.BytesIO(data.encode() if isinstance(data, str) else data)
        if isinstance(data, str | bytes)
        else os.fspath(data)
    )
    try:
        reader = pcsv.open_csv(
            source,
            read_options=pcsv.ReadOptions(
                skip_rows=1, column_names=header, block_size=BLOCK_BYTES, use_threads=use_threads
            ),
            parse_options=pcsv.ParseOptions(newlines_in_values=True),
            convert_options=pcsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
        for batch in reader:
            if batch.num_rows:
                yield _without_blank_rows(batch)
    except (pa.ArrowInvalid, UnicodeDecodeError) as exc:
        raise ArrowReadError(str(exc)) from None


def _without_blank_rows(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch without the rows csv_rows skips (every cell blank), and checked
    for cells the csv module would refuse as too long."""
    limit = csv.field_size_limit()
    for column in batch.columns:
        if len(column) and pc.max(pc.binary_length(column)).as_py() > limit:
            raise ArrowReadError("a cell is longer than the csv module's field limit")
    blank = None
    for column in batch.columns:
        here = pc.match_substring_regex(column, _BLANK)
        blank = here if blank is None else pc.and_(blank, here)
        if not pc.any(blank).as_py():  # no blank row: most batches stop at the first column
            return batch
    return batch if blank is None else batch.filter(pc.invert(blank))


def arrow_cell_columns(batch: pa.RecordBatch | pa.Table) -> CellColumns:
    """An Arrow batch's columns (CSV text, or Parquet's typed values) as CellColumns."""
    rows = batch.num_rows
    columns: dict[str, Column] = {}
    unreadable = np.zeros(rows, dtype=bool)
    for name in batch.schema.names:
        if name in IGNORED_COLUMNS:
            continue
        array = batch.column(name)
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        if name == ID_COLUMN and pa.types.is_string(array.type):
            # An identifier is read exactly; only an empty cell means there is none.
            no_id = pc.equal(array, "")
            columns[name] = pc.if_else(no_id, None, array).to_numpy(zero_copy_only=False)
            continue
        if name in NUMERIC_COLUMNS and pa.types.is_string(array.type):
            columns[name], bad = _number_column(name, array)
        else:
            columns[name], bad = _coded(name, array)
        unreadable |= bad
    return CellColumns(rows, columns, unreadable)


def _number_column(name: str, array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Text cells of a number column as float64 (NaN: missing), and the mask of
    cells that are not numbers."""
    plain = pc.fill_null(pc.match_substring_regex(array, ARROW_NUMBER), False)
    values = pc.cast(pc.if_else(plain, array, None), pa.float64()).to_numpy(zero_copy_only=False)
    others = np.flatnonzero(~plain.to_numpy(zero_copy_only=False))
    unreadable = np.zeros(len(array), dtype=bool)
    if len(others):
        # Spaces, missing spellings and refused text: csv_rows' own reading.
        coded, bad = _coded(name, array.take(pa.array(others)))
        distinct = np.array([np.nan if v is None else v for v in [*coded.distinct, None]])
        values[others] = distinct[coded.codes]
        unreadable[others] = bad
    return np.asarray(values, dtype=np.float64), unreadable


def _coded(name: str, array: pa.Array) -> tuple[CodedColumn, np.ndarray]:
    """Any column by distinct value (pyarrow's dictionary encoding), typed by csv_rows."""
    encoded = pc.dictionary_encode(array)
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.intp)
    raw = encoded.dictionary.to_pylist()
    return coded_cells(name, codes, raw)

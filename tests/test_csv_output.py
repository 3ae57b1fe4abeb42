"""Every CSV the project writes is safe to open in a spreadsheet (OWASP CSV injection)."""

from __future__ import annotations

import csv
import io

import pandas as pd
import pytest

from loan_preprocessing.csv_output import (
    FORMULA_ESCAPE,
    FORMULA_TRIGGERS,
    decisions_to_csv,
    neutralised,
)
from loan_preprocessing.schema import Decision


@pytest.mark.parametrize("trigger", FORMULA_TRIGGERS)
def test_a_cell_that_starts_like_a_formula_is_quoted(trigger):
    assert neutralised(f"{trigger}SUM(A1)") == f"{FORMULA_ESCAPE}{trigger}SUM(A1)"


@pytest.mark.parametrize("cell", ["LP001015", "", "a=b", "NA", "1-2"])
def test_other_cells_are_unchanged(cell):
    assert neutralised(cell) == cell


def test_decisions_csv_neutralises_loan_ids():
    rows = [
        Decision(Loan_ID="=cmd|' /C calc'!A0", Loan_Status="Y", probability=0.5, reasons=[]),
        Decision(Loan_ID="NA", Loan_Status="N", probability=0.25, reasons=[]),
    ]
    read = list(csv.DictReader(io.StringIO(decisions_to_csv(rows))))
    assert [r["Loan_ID"] for r in read] == ["'=cmd|' /C calc'!A0", "NA"]


@pytest.mark.parametrize(
    "loan_id", ["LP001", "a,b", 'say "hi"', "two\nlines", "cr\rhere", "=SUM(A1)", None, ""]
)
def test_column_lines_are_what_csv_writer_writes(loan_id):
    from loan_preprocessing.csv_output import column_csv_lines, column_csv_rows
    from loan_preprocessing.decide import ColumnDecisions
    from loan_preprocessing.reason_codes import CODES
    from loan_preprocessing.schema import Reason

    fields = ("code", "fields", "text", "actionable")
    reason = Reason(**{k: getattr(CODES["INCOME"], k) for k in fields})
    decided = ColumnDecisions(
        [loan_id, "LP2", "LP3"],
        ["N", "Y", "N"],
        [0.1234567890123, 1e-05, 0.25],
        [(reason,), (), (reason,)],
        [84.123, None, None],
        [480.0, None, None],
    )
    rows = [list(row) for row in column_csv_rows(decided)]
    lines = column_csv_lines(decided)
    # Read back, every row is whole (a bare CR would end a row for csv and pandas).
    assert list(csv.reader(io.StringIO(lines, newline=""))) == rows
    assert len(pd.read_csv(io.StringIO(lines), header=None, keep_default_na=False)) == len(rows)
    if "\r" not in (loan_id or ""):
        # csv.writer's own bytes, where it quotes what needs quoting.
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\n").writerows(rows)
        assert lines == buffer.getvalue()

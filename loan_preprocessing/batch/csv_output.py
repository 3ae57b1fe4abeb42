"""Decisions as CSV (`Loan_ID,Loan_Status,probability,reasons`), for the CSV API
and offline scoring. `reasons` holds a rejection's reason codes, most important
first, separated by REASON_SEPARATOR (empty for an approval)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Final

from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

REASONS_COLUMN: Final = "reasons"
CSV_COLUMNS: Final = (ID_COLUMN, TARGET_COLUMN, "probability", REASONS_COLUMN)
CsvRow = tuple[str, str, str, str]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV
# injection); OWASP's advice is to prefix such a cell with a single quote, which
# spreadsheets show as text. Every CSV this project writes goes through this.
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
FORMULA_ESCAPE: Final = "'"


def neutralised(cell: str) -> str:
    """`cell`, made inert for spreadsheets: quoted when it starts like a formula."""
    return FORMULA_ESCAPE + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def reason_codes_cell(decision: Decision) -> str:
    return REASON_SEPARATOR.join(reason.code for reason in decision.reasons)


def csv_row(decision: Decision) -> CsvRow:
    """One CSV row; repr of a float round-trips exactly, so CSV and JSON answers agree."""
    return (
        neutralised(decision.Loan_ID or ""),
        decision.Loan_Status,
        repr(decision.probability),
        reason_codes_cell(decision),
    )


def decisions_to_csv(decisions: Iterable[Decision]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(decision) for decision in decisions)
    return buffer.getvalue()

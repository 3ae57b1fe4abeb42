"""Decisions as CSV (`Loan_ID,Loan_Status,probability`), for the CSV API and offline scoring."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Final

from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

CSV_COLUMNS: Final = (ID_COLUMN, TARGET_COLUMN, "probability")
# A spreadsheet runs a cell that starts with one of these as a formula (CSV
# injection); OWASP's advice is to prefix such a cell with a single quote, which
# spreadsheets show as text. Every CSV this project writes goes through this.
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
FORMULA_ESCAPE: Final = "'"


def neutralised(cell: str) -> str:
    """`cell`, made inert for spreadsheets: quoted when it starts like a formula."""
    return FORMULA_ESCAPE + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def csv_row(decision: Decision) -> tuple[str, str, str]:
    """One CSV row; repr of a float round-trips exactly, so CSV and JSON answers agree."""
    return (
        neutralised(decision.Loan_ID or ""),
        decision.Loan_Status,
        repr(decision.probability),
    )


def decisions_to_csv(decisions: Iterable[Decision]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(decision) for decision in decisions)
    return buffer.getvalue()

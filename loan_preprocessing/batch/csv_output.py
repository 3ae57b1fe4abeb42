"""Decisions as CSV (`Loan_ID,Loan_Status,probability,reasons`), for the CSV API
and offline scoring. `reasons` holds a rejection's reason codes, most important
first, separated by REASON_SEPARATOR (empty for an approval)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Final

from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

REASONS_COLUMN: Final = "reasons"
REASON_SEPARATOR: Final = ";"
CSV_COLUMNS: Final = (ID_COLUMN, TARGET_COLUMN, "probability", REASONS_COLUMN)
CsvRow = tuple[str, str, str, str]


def reason_codes_cell(decision: Decision) -> str:
    return REASON_SEPARATOR.join(reason.code for reason in decision.reasons)


def csv_row(decision: Decision) -> CsvRow:
    """One CSV row; repr of a float round-trips exactly, so CSV and JSON answers agree."""
    return (
        decision.Loan_ID or "",
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

"""Decisions as CSV (`Loan_ID,Loan_Status,probability`), for the CSV API and offline scoring."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Final

from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

CSV_COLUMNS: Final = (ID_COLUMN, TARGET_COLUMN, "probability")


def csv_row(decision: Decision) -> tuple[str, str, str]:
    """One CSV row; repr of a float round-trips exactly, so CSV and JSON answers agree."""
    return (decision.Loan_ID or "", decision.Loan_Status, repr(decision.probability))


def decisions_to_csv(decisions: Iterable[Decision]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    writer.writerows(csv_row(decision) for decision in decisions)
    return buffer.getvalue()

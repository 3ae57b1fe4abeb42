"""Decisions as CSV (`Loan_ID,Loan_Status,probability`), for the CSV API and offline scoring."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from typing import Final

from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

CSV_COLUMNS: Final = (ID_COLUMN, TARGET_COLUMN, "probability")


def decisions_to_csv(decisions: Iterable[Decision]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for decision in decisions:
        # repr of a float round-trips exactly, so CSV and JSON answers agree.
        writer.writerow([decision.Loan_ID or "", decision.Loan_Status, repr(decision.probability)])
    return buffer.getvalue()

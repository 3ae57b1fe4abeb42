"""Optional JSON-lines log of what the service decided, for drift monitoring.

One line per application: {"time", "model_tag", "application": {fields...},
"Loan_Status", "probability", "reasons"}; `reasons` holds a rejection's reason
codes, most important first (empty for an approval), so the log keeps the
principal reasons each applicant was given with the decision (a creditor keeps
the statement of reasons with its records: Regulation B, 12 CFR 1002.12(b)).
Every application field is logged, the protected
ones (schema.PROTECTED_ATTRIBUTES) included although the model ignores them: the
fairness report (`make fairness`) needs them to compare approval rates by group.
Loan_ID is left out unless asked for: the log is for distributions, and an
identifier makes it personal data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN, Decision, LoanApplication

# What each line records of an application (with ID_COLUMN only when asked).
LOGGED_FIELDS: Final = FEATURE_COLUMNS


class PredictionLog:
    def __init__(self, path: str | Path, include_loan_id: bool = False) -> None:
        self.path = Path(path)
        self.include_loan_id = include_loan_id
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def write(
        self, model_tag: str, applications: Sequence[LoanApplication], decisions: Sequence[Decision]
    ) -> None:
        """Append one line per scored application. Every worker appends to the same
        file; one O_APPEND write per batch keeps their lines whole."""
        now = datetime.now(UTC).isoformat(timespec="milliseconds")
        fields = (ID_COLUMN, *LOGGED_FIELDS) if self.include_loan_id else LOGGED_FIELDS
        lines = [
            json.dumps(
                {
                    "time": now,
                    "model_tag": model_tag,
                    "application": {name: getattr(application, name) for name in fields},
                    "Loan_Status": decision.Loan_Status,
                    "probability": decision.probability,
                    "reasons": [reason.code for reason in decision.reasons],
                }
            )
            for application, decision in zip(applications, decisions, strict=True)
        ]
        if not lines:
            return
        descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640)
        try:
            os.write(descriptor, ("\n".join(lines) + "\n").encode())
        finally:
            os.close(descriptor)

"""The reports' frames, read from the decision store (decisions, the
challenger's, outcomes and overrides), or from files: decisions as the store
exports them (JSON lines, one record per decision), outcomes, overrides and
challenger decisions as CSV files with the columns frames.py names."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd

from loan_preprocessing.operations.model_risk.frames import (
    DECIDED_AT,
    DECISION_ID,
    FINAL_STATUS,
    GROUP_ATTRIBUTES,
    MODEL_TAG,
    OBSERVED_ON,
    OUTCOME,
    OVERRIDDEN_AT,
    PERSON,
    PROBABILITY,
    RATIONALE,
    REASONS,
    STATUS,
)
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.records.challenger import challenger_columns
from loan_preprocessing.records.outcomes import export_overrides, outcome_columns
from loan_preprocessing.records.store import DecisionStore
from loan_preprocessing.schema import ID_COLUMN, OUTCOMES

OUTCOME_COLUMNS = (DECISION_ID, OUTCOME, OBSERVED_ON)
OVERRIDE_COLUMNS = (DECISION_ID, PERSON, RATIONALE, FINAL_STATUS, OVERRIDDEN_AT)
CHALLENGER_COLUMNS = (DECISION_ID, MODEL_TAG, STATUS, PROBABILITY, REASONS)


class TableError(ValueError):
    """A table the reports cannot read; the message names the file and column."""


def decisions_frame(records: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Decision records as the store exports them (`time`, `model_tag`,
    `application`, `Loan_Status`, `probability`, `reasons` as a list of codes).
    A record marked undelivered was never given to the applicant and is left
    out, as drift and fairness leave it out."""
    rows = []
    for record in records:
        if record.get("delivered") is False:
            continue
        application = record.get("application") or {}
        reasons = record.get("reasons") or []
        rows.append(
            {
                DECISION_ID: record["decision_id"],
                MODEL_TAG: record["model_tag"],
                DECIDED_AT: record["time"],
                STATUS: record["Loan_Status"],
                PROBABILITY: record["probability"],
                REASONS: REASON_SEPARATOR.join(reasons)
                if isinstance(reasons, list)
                else str(reasons),
                ID_COLUMN: application.get(ID_COLUMN),
                **{name: application.get(name) for name in GROUP_ATTRIBUTES},
            }
        )
    columns = [DECISION_ID, MODEL_TAG, DECIDED_AT, STATUS, PROBABILITY, REASONS, ID_COLUMN]
    frame = pd.DataFrame(rows, columns=[*columns, *GROUP_ATTRIBUTES])
    frame[DECIDED_AT] = pd.to_datetime(frame[DECIDED_AT], utc=True, format="ISO8601")
    frame[PROBABILITY] = frame[PROBABILITY].astype("float64")
    return frame


def read_decisions(path: Path) -> pd.DataFrame:
    """A JSON-lines export of the decision store."""
    with path.open(encoding="utf-8") as lines:
        return decisions_frame(json.loads(line) for line in lines if line.strip())


def _read_csv(path: Path | None, columns: tuple[str, ...], times: tuple[str, ...]) -> pd.DataFrame:
    if path is None:
        return pd.DataFrame({name: pd.Series(dtype=object) for name in columns}).assign(
            **{name: pd.Series(dtype="datetime64[ns, UTC]") for name in times}
        )
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    missing = [name for name in columns if name not in frame.columns]
    if missing:
        raise TableError(f"{path}: no column {', '.join(missing)} (needs {', '.join(columns)})")
    frame = frame[list(columns)]
    for name in times:
        try:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601")
        except ValueError as exc:
            raise TableError(f"{path}: column {name}: {exc}") from None
    return frame


def read_outcomes(path: Path | None) -> pd.DataFrame:
    frame = _read_csv(path, OUTCOME_COLUMNS, (OBSERVED_ON,))
    unknown = sorted(set(frame[OUTCOME]) - set(OUTCOMES))
    if unknown:
        raise TableError(
            f"{path}: column {OUTCOME}: {unknown[0]!r} is not one of {', '.join(OUTCOMES)}"
        )
    return frame


def read_overrides(path: Path | None) -> pd.DataFrame:
    return _read_csv(path, OVERRIDE_COLUMNS, (OVERRIDDEN_AT,))


def read_challenger(path: Path | None) -> pd.DataFrame:
    frame = _read_csv(path, CHALLENGER_COLUMNS, ())
    frame[STATUS] = frame[STATUS].replace("", None)
    frame[PROBABILITY] = pd.to_numeric(frame[PROBABILITY].replace("", None))
    return frame


# The frame's columns from the store's: what decisions_frame makes of an export.
STORE_DECISION_COLUMNS: Final = {
    DECISION_ID: "decision_id",
    MODEL_TAG: "model_tag",
    DECIDED_AT: "answered_at",
    STATUS: "Loan_Status",
    PROBABILITY: "probability",
    REASONS: "reason_codes",
    ID_COLUMN: "Loan_ID",
    **{name: name for name in GROUP_ATTRIBUTES},
}


def store_decisions(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The decisions delivered in [start, end), from the store: the frame
    decisions_frame makes of the same decisions exported, read as columns."""
    columns = store.decision_columns(
        list(STORE_DECISION_COLUMNS.values()), start, end, delivered_only=True
    )
    frame = pd.DataFrame(
        {name: columns[stored] for name, stored in STORE_DECISION_COLUMNS.items()},
        columns=list(STORE_DECISION_COLUMNS),
    )
    # To the millisecond, as the export writes the time.
    frame[DECIDED_AT] = pd.to_datetime(frame[DECIDED_AT], utc=True, format="ISO8601").dt.floor("ms")
    frame[PROBABILITY] = frame[PROBABILITY].astype("float64")
    return frame


def store_challenger(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The challenger's decisions beside those answered in [start, end)."""
    stored = ("decision_id", "model_tag", "Loan_Status", "probability", "reason_codes")
    columns = challenger_columns(store, start, end)
    frame = pd.DataFrame(
        {name: columns[s] for name, s in zip(CHALLENGER_COLUMNS, stored, strict=True)},
        columns=list(CHALLENGER_COLUMNS),
    )
    frame[PROBABILITY] = frame[PROBABILITY].astype("float64")
    return frame


def store_outcomes(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The outcomes of the decisions answered in [start, end), from the store."""
    columns = outcome_columns(store, start, end)
    frame = pd.DataFrame(
        {name: columns[name] for name in OUTCOME_COLUMNS}, columns=list(OUTCOME_COLUMNS)
    )
    frame[OBSERVED_ON] = pd.to_datetime(frame[OBSERVED_ON], utc=True, format="ISO8601")
    return frame


def store_overrides(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> pd.DataFrame:
    """The overrides of the decisions answered in [start, end), oldest first."""
    frame = pd.DataFrame(list(export_overrides(store, start, end)), columns=list(OVERRIDE_COLUMNS))
    frame[OVERRIDDEN_AT] = pd.to_datetime(frame[OVERRIDDEN_AT], utc=True, format="ISO8601")
    return frame

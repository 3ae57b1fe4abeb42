"""Decisions as the columns of the `decisions` table, from either form the
deciding code holds them in: objects (/predict) or columns (V2, CSV, batch).

Built a column at a time: a 1000-row answer is recorded with a handful of list
operations per column, not a dict per row.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final

import numpy as np
from pydantic_core import to_json

from loan_preprocessing.decide import ColumnDecisions
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.records.tables import APPLICATION_COLUMNS
from loan_preprocessing.schema import ID_COLUMN, Decision, LoanApplication, Reason

Columns = dict[str, list[Any]]
NO_REASONS: Final = "[]"


def _reason_texts(reasons: Sequence[Reason]) -> str:
    return json.dumps([{"code": r.code, "text": r.text} for r in reasons])


def _reasons_columns(all_reasons: Sequence[Sequence[Reason]]) -> tuple[list[str], list[str]]:
    """Each row's reason codes (joined) and reasons with texts (JSON). Rows share
    their reasons' tuples, so each combination is rendered once."""
    rendered: dict[int, tuple[str, str]] = {}
    codes, texts = [], []
    for reasons in all_reasons:
        cell = rendered.get(id(reasons))
        if cell is None:
            cell = rendered[id(reasons)] = (
                REASON_SEPARATOR.join(r.code for r in reasons),
                _reason_texts(reasons) if reasons else NO_REASONS,
            )
        codes.append(cell[0])
        texts.append(cell[1])
    return codes, texts


def object_columns(
    applications: Sequence[LoanApplication], decisions: Sequence[Decision]
) -> Columns:
    """The records of decisions answered as objects; each decision's `decision_id`
    is already set, and `answer` is its JSON as the client receives it."""
    codes, texts = _reasons_columns([d.reasons for d in decisions])
    columns: Columns = {
        "decision_id": [d.decision_id for d in decisions],
        ID_COLUMN: [a.Loan_ID for a in applications],
        "Loan_Status": [d.Loan_Status for d in decisions],
        "probability": [d.probability for d in decisions],
        "reason_codes": codes,
        "reasons": texts,
        "answer": [d.model_dump_json() for d in decisions],
    }
    for name in APPLICATION_COLUMNS:
        columns[name] = [getattr(a, name) for a in applications]
    return columns


def _python_values(column: np.ndarray) -> list[Any]:
    if column.dtype.kind == "f":
        return [None if v != v else v for v in column.tolist()]
    return column.tolist()


def column_columns(
    decision_ids: list[str],
    validated: ValidatedColumns,
    decided: ColumnDecisions,
    answers: list[str],
) -> Columns:
    """The records of decisions answered as columns (V2, CSV): `answers` holds
    each row's answer as JSON text, in the route's own form."""
    codes, texts = _reasons_columns(decided.reasons)
    columns: Columns = {
        "decision_id": decision_ids,
        ID_COLUMN: list(decided.loan_ids),
        "Loan_Status": list(decided.statuses),
        "probability": list(decided.probabilities),
        "reason_codes": codes,
        "reasons": texts,
        "answer": answers,
    }
    for name in APPLICATION_COLUMNS:
        values = validated.values.get(name)
        columns[name] = [None] * len(validated) if values is None else _python_values(values)
    return columns


def json_rows(values: dict[str, list[Any]]) -> list[str]:
    """Each row of `values` (output name -> one value per row) as a JSON object,
    in pydantic-core's compact form (as /predict's answers are written)."""
    names = list(values)
    return [
        to_json(dict(zip(names, row, strict=True))).decode()
        for row in zip(*values.values(), strict=True)
    ]

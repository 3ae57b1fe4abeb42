"""The challenger's decisions (scored in shadow, never answered), one row beside
each recorded decision: written after the champion's records are committed, read
for the challenger report."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Select, insert, select
from sqlalchemy.exc import SQLAlchemyError

from loan_preprocessing.records.store import DecisionStore, StoreUnavailable, one_line
from loan_preprocessing.records.tables import answers, challenger_decisions, decisions

EXPORT_CHUNK: Final = 10_000


def record_challenger(
    store: DecisionStore,
    model_tag: str,
    decision_ids: Sequence[str],
    statuses: Sequence[str | None],
    probabilities: Sequence[float | None],
    reason_codes: Sequence[str],
) -> None:
    """Commit the challenger's decisions on these recorded decisions (one
    transaction). StoreUnavailable when it cannot."""
    rows = [
        {
            "decision_id": i,
            "model_tag": model_tag,
            "Loan_Status": s,
            "probability": p,
            "reason_codes": r,
        }
        for i, s, p, r in zip(decision_ids, statuses, probabilities, reason_codes, strict=True)
    ]
    if not rows:
        return
    try:
        with store.engine.connect() as connection, connection.begin():
            connection.execute(insert(challenger_decisions), rows)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None


def _challenger_query(start: datetime | None, end: datetime | None) -> Select[Any]:
    """The challenger's rows beside decisions answered in [start, end)."""
    query = (
        select(challenger_decisions)
        .join(decisions, decisions.c.decision_id == challenger_decisions.c.decision_id)
        .join(answers, answers.c.answer_id == decisions.c.answer_id)
    )
    if start is not None:
        query = query.where(answers.c.answered_at >= start)
    if end is not None:
        query = query.where(answers.c.answered_at < end)
    return query


def export_challenger(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The challenger's decisions on decisions answered in [start, end)."""
    with store.engine.connect() as connection:
        result = connection.execution_options(yield_per=EXPORT_CHUNK).execute(
            _challenger_query(start, end)
        )
        for row in result:
            yield dict(row._mapping)


def challenger_columns(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> dict[str, list[Any]]:
    """export_challenger's rows as columns (decision_id, model_tag, Loan_Status,
    probability, reason_codes), for reports over millions of decisions."""
    names = [column.name for column in challenger_decisions.columns]
    return store.columns(_challenger_query(start, end), names)

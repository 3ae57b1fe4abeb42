"""Promotions (`make promote`): which version was made the served one, by whom,
when, and on which report, kept in the decision store beside the decisions the
versions made."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert, select
from sqlalchemy.exc import SQLAlchemyError

from loan_preprocessing.records.store import DecisionStore, StoreUnavailable, new_ids, one_line
from loan_preprocessing.records.tables import promotions


def record_promotion(
    store: DecisionStore,
    model_tag: str,
    previous_tag: str | None,
    person: str,
    report_name: str,
    report: str,
    now: datetime | None = None,
) -> dict[str, Any]:
    """Append a promotion; the row as recorded (with the report's sha256)."""
    row = {
        "promotion_id": new_ids(1)[0],
        "model_tag": model_tag,
        "previous_tag": previous_tag,
        "person": person,
        "promoted_at": now or datetime.now(UTC),
        "report_name": report_name,
        "report_sha256": hashlib.sha256(report.encode()).hexdigest(),
        "report": report,
    }
    try:
        with store.engine.connect() as connection, connection.begin():
            connection.execute(insert(promotions), [row])
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None
    return row


def list_promotions(store: DecisionStore) -> list[dict[str, Any]]:
    """Every promotion, oldest first."""
    try:
        with store.engine.connect() as connection:
            rows = connection.execute(
                select(promotions).order_by(promotions.c.promoted_at, promotions.c.promotion_id)
            )
            return [dict(r._mapping) for r in rows]
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None

"""Outcomes and overrides of recorded decisions: written by POST /outcomes and
POST /decisions/{decision_id}/override, shown by the decision lookup, read by
the model-risk reports.

An outcome names its decision by decision_id, or by Loan_ID: the newest
*delivered* decision on that Loan_ID (the one the applicant was last told).
The same outcome reported again for a decision is one row (the first report's
observed_on stands). An override is appended, never changed; the decision's own
row is never altered, so the model's decision stays beside every override.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Final

from sqlalchemy import Connection, Select, insert, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import SQLAlchemyError

from loan_preprocessing.records.store import DecisionStore, StoreUnavailable, new_ids, one_line
from loan_preprocessing.records.tables import answers, decisions, outcomes, overrides
from loan_preprocessing.schema import ID_COLUMN

# Ids looked up in one statement (SQLite allows 32766 parameters; stay far below).
LOOKUP_CHUNK: Final = 900
# At most this many overrides of one decision: each must change the status that
# stands, so a decision flipped back and forth cannot grow the log without bound.
MAX_OVERRIDES_PER_DECISION: Final = 20
# How many unknown decisions an error names (the total is given too).
NAMED_UNKNOWN: Final = 10
EXPORT_CHUNK: Final = 10_000


@dataclass(frozen=True)
class OutcomeReport:
    """One reported outcome: by `decision_id`, or else by `loan_id`."""

    outcome: str
    observed_on: date
    decision_id: str | None = None
    loan_id: str | None = None


class UnknownDecisions(LookupError):
    """Reports naming decisions the store does not hold: which (the first
    NAMED_UNKNOWN of them) and how many in all."""

    def __init__(self, unknown: Sequence[str]) -> None:
        self.unknown = list(unknown)
        named = ", ".join(self.unknown[:NAMED_UNKNOWN])
        more = len(self.unknown) - NAMED_UNKNOWN
        super().__init__(
            f"no recorded decision for {named}" + (f" (and {more} more)" if more > 0 else "")
        )


class OverrideRefused(ValueError):
    """An override that would change nothing, or one past the per-decision cap."""


def _now() -> datetime:
    return datetime.now(UTC)


def _chunks(values: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(values), LOOKUP_CHUNK):
        yield values[start : start + LOOKUP_CHUNK]


def _known_ids(connection: Connection, ids: Sequence[str]) -> set[str]:
    found: set[str] = set()
    for chunk in _chunks(ids):
        found.update(
            connection.scalars(
                select(decisions.c.decision_id).where(decisions.c.decision_id.in_(chunk))
            )
        )
    return found


def newest_delivered(connection: Connection, loan_ids: Sequence[str]) -> dict[str, str]:
    """Each Loan_ID's newest delivered decision (its id); Loan_IDs without one
    are left out."""
    newest: dict[str, str] = {}
    for chunk in _chunks(loan_ids):
        rows = connection.execute(
            select(decisions.c.Loan_ID, decisions.c.decision_id)
            .join(answers, answers.c.answer_id == decisions.c.answer_id)
            .where(decisions.c.Loan_ID.in_(chunk), answers.c.delivered.is_(True))
            # Ids sort by time too: the later of two decisions in one answer wins.
            .order_by(answers.c.answered_at.desc(), decisions.c.decision_id.desc())
        )
        for loan_id, decision_id in rows:
            newest.setdefault(loan_id, decision_id)
    return newest


def _insert_new(connection: Connection, rows: list[dict[str, Any]]) -> set[tuple[str, str]]:
    """Insert the outcomes not stored yet; the (decision_id, outcome) of the rows
    it inserted. One that a concurrent report committed meanwhile is skipped,
    and left out, so only one of two reports says it recorded it."""
    if not rows:
        return set()
    dialect = postgresql if connection.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(outcomes)
        .on_conflict_do_nothing(index_elements=["decision_id", "outcome"])
        .returning(outcomes.c.decision_id, outcomes.c.outcome)
    )
    return {(row.decision_id, row.outcome) for row in connection.execute(statement, rows)}


def _stored_days(connection: Connection, ids: list[str]) -> dict[tuple[str, str], date]:
    stored = select(outcomes.c.decision_id, outcomes.c.outcome, outcomes.c.observed_on)
    return {
        (row.decision_id, row.outcome): row.observed_on
        for chunk in _chunks(ids)
        for row in connection.execute(stored.where(outcomes.c.decision_id.in_(chunk)))
    }


def record_outcomes(
    store: DecisionStore, reports: Sequence[OutcomeReport], now: datetime | None = None
) -> list[dict[str, Any]]:
    """Record these outcomes in one transaction, or none of them: UnknownDecisions
    when any names no recorded decision. Each report's result, in order: its
    decision_id, outcome, observed_on and whether it was new (`recorded`) or
    already there (false; the stored observed_on is given)."""
    now = now or _now()
    try:
        with store.engine.connect() as connection, connection.begin():
            wanted = {r.loan_id for r in reports if r.decision_id is None and r.loan_id}
            by_loan = newest_delivered(connection, sorted(wanted))
            resolved = [r.decision_id or by_loan.get(r.loan_id or "") for r in reports]
            named = sorted({r.decision_id for r in reports if r.decision_id})
            known = _known_ids(connection, named)
            unknown = [
                (f"{ID_COLUMN} {r.loan_id}" if r.decision_id is None else str(r.decision_id))
                for r, i in zip(reports, resolved, strict=True)
                if i is None or (r.decision_id is not None and r.decision_id not in known)
            ]
            if unknown:
                raise UnknownDecisions(list(dict.fromkeys(unknown)))
            ids = sorted({i for i in resolved if i is not None})
            existing = _stored_days(connection, ids)
            keys = []
            for report, decision_id in zip(reports, resolved, strict=True):
                assert decision_id is not None
                keys.append((decision_id, report.outcome))
            # The first report of an outcome not stored yet gives its day.
            fresh: dict[tuple[str, str], date] = {}
            for key, report in zip(keys, reports, strict=True):
                if key not in existing:
                    fresh.setdefault(key, report.observed_on)
            inserted = _insert_new(
                connection,
                [
                    {"decision_id": d, "outcome": o, "observed_on": day, "recorded_at": now}
                    for (d, o), day in fresh.items()
                ],
            )
            if len(inserted) < len(fresh):  # reported meanwhile: the stored day stands
                existing = _stored_days(connection, ids)
            results, claimed = [], set()
            for key in keys:
                day = fresh[key] if key in inserted else existing[key]
                results.append(
                    {
                        "decision_id": key[0],
                        "outcome": key[1],
                        "observed_on": day.isoformat(),
                        "recorded": key in inserted and key not in claimed,
                    }
                )
                claimed.add(key)
            return results
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None


def record_override(
    store: DecisionStore,
    decision_id: str,
    person: str,
    final_status: str,
    rationale: str,
    now: datetime | None = None,
) -> dict[str, Any] | None:
    """Append an override of a recorded decision; the override as recorded, with
    the status it replaced (`from_status`), or None when no such decision is
    recorded. OverrideRefused when it would restate the status that stands, or
    the decision has MAX_OVERRIDES_PER_DECISION already."""
    now = now or _now()
    try:
        with store.engine.connect() as connection, connection.begin():
            # FOR UPDATE on PostgreSQL: two overrides of one decision at once are
            # taken one after the other (SQLite writes one at a time anyway).
            model_status = connection.scalar(
                select(decisions.c.Loan_Status)
                .where(decisions.c.decision_id == decision_id)
                .with_for_update()
            )
            if model_status is None:
                return None
            earlier = _overrides_of(connection, [decision_id]).get(decision_id, [])
            standing = earlier[-1]["final_status"] if earlier else model_status
            if len(earlier) >= MAX_OVERRIDES_PER_DECISION:
                raise OverrideRefused(
                    f"decision {decision_id} has been overridden {len(earlier)} times, "
                    f"the most this service records ({MAX_OVERRIDES_PER_DECISION})"
                )
            if final_status == standing:
                raise OverrideRefused(
                    f"decision {decision_id} already stands at {standing}: an override "
                    "must change it"
                )
            row = {
                "override_id": new_ids(1)[0],
                "decision_id": decision_id,
                "person": person,
                "final_status": final_status,
                "rationale": rationale,
                "overridden_at": now,
            }
            connection.execute(insert(overrides), [row])
            return {**_override_record(row), "from_status": standing}
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None


def _iso(value: datetime) -> str:
    if value.tzinfo is None:  # SQLite hands back naive UTC times
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="milliseconds")


def _override_record(row: Any) -> dict[str, Any]:
    mapping = dict(row) if isinstance(row, dict) else dict(row._mapping)
    return {
        "override_id": mapping["override_id"],
        "person": mapping["person"],
        "final_status": mapping["final_status"],
        "rationale": mapping["rationale"],
        "overridden_at": _iso(mapping["overridden_at"]),
    }


def _overrides_of(connection: Connection, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(ids):
        rows = connection.execute(
            select(overrides)
            .where(overrides.c.decision_id.in_(chunk))
            .order_by(overrides.c.overridden_at, overrides.c.override_id)
        )
        for row in rows:
            found.setdefault(row.decision_id, []).append(_override_record(row))
    return found


def _outcomes_of(connection: Connection, ids: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for chunk in _chunks(ids):
        rows = connection.execute(
            select(outcomes)
            .where(outcomes.c.decision_id.in_(chunk))
            .order_by(outcomes.c.observed_on, outcomes.c.outcome)
        )
        for row in rows:
            found.setdefault(row.decision_id, []).append(
                {
                    "outcome": row.outcome,
                    "observed_on": row.observed_on.isoformat(),
                    "recorded_at": _iso(row.recorded_at),
                }
            )
    return found


def with_follow_up(store: DecisionStore, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision records (as store.find gives them) with their `outcomes` and
    `overrides`, oldest first, and `final_status`: the latest override's status,
    else the model's `Loan_Status` (which is never changed)."""
    ids = [r["decision_id"] for r in records]
    try:
        with store.engine.connect() as connection:
            found_outcomes = _outcomes_of(connection, ids)
            found_overrides = _overrides_of(connection, ids)
    except SQLAlchemyError as exc:
        raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None
    completed = []
    for record in records:
        listed = found_overrides.get(record["decision_id"], [])
        completed.append(
            {
                **record,
                "final_status": listed[-1]["final_status"] if listed else record["Loan_Status"],
                "outcomes": found_outcomes.get(record["decision_id"], []),
                "overrides": listed,
            }
        )
    return completed


def _in_window(query: Any, start: datetime | None, end: datetime | None) -> Any:
    if start is not None:
        query = query.where(answers.c.answered_at >= start)
    if end is not None:
        query = query.where(answers.c.answered_at < end)
    return query


def _outcomes_query(start: datetime | None, end: datetime | None) -> Select[Any]:
    """The outcomes of decisions answered in [start, end)."""
    return _in_window(
        select(outcomes.c.decision_id, outcomes.c.outcome, outcomes.c.observed_on)
        .join(decisions, decisions.c.decision_id == outcomes.c.decision_id)
        .join(answers, answers.c.answer_id == decisions.c.answer_id),
        start,
        end,
    )


def export_outcomes(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The outcomes of decisions answered in [start, end)."""
    query = _outcomes_query(start, end)
    with store.engine.connect() as connection:
        result = connection.execution_options(yield_per=EXPORT_CHUNK).execute(query)
        for row in result:
            yield dict(row._mapping)


def outcome_columns(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> dict[str, list[Any]]:
    """export_outcomes' rows as columns (decision_id, outcome, observed_on: the
    driver's date or SQLite's text), for reports over millions of decisions."""
    return store.columns(_outcomes_query(start, end), ["decision_id", "outcome", "observed_on"])


def export_overrides(
    store: DecisionStore, start: datetime | None = None, end: datetime | None = None
) -> Iterator[dict[str, Any]]:
    """The overrides of decisions answered in [start, end), oldest first."""
    query = _in_window(
        select(
            overrides.c.decision_id,
            overrides.c.person,
            overrides.c.rationale,
            overrides.c.final_status,
            overrides.c.overridden_at,
        )
        .join(decisions, decisions.c.decision_id == overrides.c.decision_id)
        .join(answers, answers.c.answer_id == decisions.c.answer_id),
        start,
        end,
    ).order_by(overrides.c.overridden_at, overrides.c.override_id)
    with store.engine.connect() as connection:
        result = connection.execution_options(yield_per=EXPORT_CHUNK).execute(query)
        for row in result:
            yield {**row._mapping, "overridden_at": _iso(row.overridden_at)}

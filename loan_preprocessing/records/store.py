"""The decision store: one database (SQLite file or PostgreSQL) named by a URL.

Writes are few and large: `record` commits every answer of an adaptive batch in
one transaction (group commit), `mark_delivered` flags answers that reached their
client. Every database failure surfaces as StoreUnavailable with a one-line
reason, so the service can answer 503 instead of deciding without a record.
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import pandas as pd
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Dialect, make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from loan_preprocessing.records import migrations
from loan_preprocessing.records.tables import APPLICATION_COLUMNS, answers, decisions
from loan_preprocessing.records.write_gate import WriteGate

# How long a connection attempt or a lock wait may take before the store counts
# as unavailable: well inside the service's request timeout.
CONNECT_TIMEOUT_SECONDS: Final = 3
SQLITE_BUSY_MILLISECONDS: Final = 5_000
# Answers marked delivered by one UPDATE.
MARKS_PER_STATEMENT: Final = 10_000
# Rows fetched at a time by `export`, and by `decision_columns`.
EXPORT_CHUNK: Final = 2_000
COLUMNS_CHUNK: Final = 50_000
# How COPY writes a NULL for `columns` (an empty CSV cell is an empty string).
COPY_NULL: Final = r"\N"


class StoreUnavailable(RuntimeError):
    """The store could not read or commit; the message is one line for the client."""


def new_ids(count: int) -> list[str]:
    """`count` fresh ids: 12 hex digits of the time in milliseconds, then 20 random
    ones (80 bits), so ids sort by time; one urandom call for all of them."""
    prefix = f"{int(datetime.now(UTC).timestamp() * 1000):012x}"
    random = os.urandom(10 * count).hex()
    return [prefix + random[20 * i : 20 * (i + 1)] for i in range(count)]


@dataclass
class Answer:
    """One answer to be recorded. `columns` holds its decisions as columns of the
    `decisions` table (every column but answer_id and position, which `record`
    adds), one value per decision in answer order."""

    answer_id: str
    route: str
    model_tag: str
    model_sha256: str
    columns: dict[str, list[Any]]
    idempotency_key: str | None = None
    request_sha256: str | None = None
    # A part of a request split over batches: the request's id, and its row at
    # which this part starts. The key is recorded on the first part only.
    request_id: str | None = None
    first_position: int = 0

    def __len__(self) -> int:
        return len(self.columns["decision_id"])


@dataclass
class StoredAnswer:
    """A request's answer read back: its first part's `answers` row, every part,
    and its decisions in order."""

    answer: dict[str, Any]
    parts: list[dict[str, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def delivered(self) -> bool:
        return all(part["delivered"] for part in self.parts)


def engine_for(url: str, sqlite_sync: str = "FULL") -> Engine:
    """An engine for `url`; `postgresql://` means psycopg 3. SQLite runs in WAL mode,
    by default with every commit synced to disk (a power cut loses nothing
    answered); `sqlite_sync="NORMAL"` syncs at checkpoints only."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            parsed,
            connect_args={"timeout": SQLITE_BUSY_MILLISECONDS / 1000},
        )
        event.listen(engine, "connect", functools.partial(_sqlite_pragmas, sqlite_sync))
        return engine
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            parsed,
            connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
            pool_size=2,
            max_overflow=2,
            pool_timeout=CONNECT_TIMEOUT_SECONDS,
        )
    raise ValueError(f"not a SQLite or PostgreSQL URL: {parsed.render_as_string()}")


def _sqlite_pragmas(sync: str, connection: Any, _record: Any) -> None:
    if sync not in ("FULL", "NORMAL"):
        raise ValueError(f"SQLite synchronous must be FULL or NORMAL, not {sync!r}")
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA synchronous={sync}")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MILLISECONDS}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def one_line(exc: BaseException) -> str:
    """The first line of a database error, without SQLAlchemy's background link."""
    original = getattr(exc, "orig", None) or exc
    text = str(original).strip().splitlines()
    return (text[0] if text else type(original).__name__)[:200]


def _now() -> datetime:
    return datetime.now(UTC)


class DecisionStore:
    """The store behind one URL. Thread-safe as SQLAlchemy engines are; the
    service uses it from one writer thread per worker."""

    def __init__(self, url: str, sqlite_sync: str = "FULL") -> None:
        self.url = url
        self.engine = engine_for(url, sqlite_sync)
        database = make_url(url).database
        self.gate = (
            WriteGate(Path(database), SQLITE_BUSY_MILLISECONDS / 1000)
            if self.engine.dialect.name == "sqlite" and database and database != ":memory:"
            else None
        )

    def _writing(self) -> contextlib.AbstractContextManager[None]:
        """Around a write transaction: SQLite's writers take turns at the gate."""
        return self.gate.held() if self.gate is not None else contextlib.nullcontext()

    @property
    def where(self) -> str:
        """The URL without its password, for messages."""
        return self.redacted(self.url)

    @staticmethod
    def redacted(url: str) -> str:
        return make_url(url).render_as_string(hide_password=True)

    def close(self) -> None:
        self.engine.dispose()
        if self.gate is not None:
            self.gate.close()

    # -- schema ---------------------------------------------------------------

    def prepare(self) -> None:
        """Create the tables in an empty store; refuse (StoreUnavailable, one line
        naming the command) a store at an older schema revision."""
        try:
            with self.engine.connect() as connection:
                migrations.prepare(connection, self.where)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(
                f"decision store {self.where} cannot be used: {one_line(exc)}"
            ) from None

    def upgrade(self) -> str:
        """Migrate the store to the newest schema; the revision it is at after."""
        with self._connection() as connection:
            return migrations.upgrade(connection)

    # -- writes ---------------------------------------------------------------

    def record(
        self,
        batch: Sequence[Answer],
        now: datetime | None = None,
        delivered: Sequence[str] = (),
    ) -> list[Answer]:
        """Commit every answer of `batch` in one transaction, with the delivery
        marks of earlier answers `delivered`. An answer whose Idempotency-Key was
        recorded meanwhile (a concurrent retry) is left out and returned; the
        others are committed. StoreUnavailable when nothing could be."""
        with self._writing():
            return self._record(batch, now or _now(), delivered)

    def _record(
        self, batch: Sequence[Answer], now: datetime, delivered: Sequence[str]
    ) -> list[Answer]:
        try:
            with self._connection() as connection, connection.begin():
                self._insert(connection, batch, now)
                self._mark(connection, delivered, now)
            return []
        except IntegrityError:
            keyed = [a.idempotency_key for a in batch if _key(a) is not None]
            if not keyed:
                raise StoreUnavailable("the decision store refused the records") from None
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None
        # A key collided: commit the rest without the answers whose key now exists.
        try:
            with self._connection() as connection, connection.begin():
                taken = set(
                    connection.scalars(
                        select(answers.c.idempotency_key).where(
                            answers.c.idempotency_key.in_(keyed)
                        )
                    )
                )
                # A request's later parts carry no key: they go with its first.
                refused = {_request(a) for a in batch if _key(a) in taken}
                kept = [a for a in batch if _request(a) not in refused]
                self._insert(connection, kept, now)
                self._mark(connection, delivered, now)
            return [a for a in batch if _request(a) in refused]
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None

    @staticmethod
    def _insert(connection: Connection, batch: Sequence[Answer], now: datetime) -> None:
        if not batch:
            return
        connection.execute(
            insert(answers),
            [
                {
                    "answer_id": a.answer_id,
                    "request_id": _request(a),
                    "first_position": a.first_position,
                    "answered_at": now,
                    "route": a.route,
                    "model_tag": a.model_tag,
                    "model_sha256": a.model_sha256,
                    "rows": len(a),
                    "delivered": False,
                    "delivered_at": None,
                    "idempotency_key": _key(a),
                    "request_sha256": a.request_sha256,
                }
                for a in batch
            ],
        )
        sql, order = _decision_insert(connection.dialect)
        values: list[Any] = []
        for a in batch:
            n = len(a)
            given = {
                **a.columns,
                "answer_id": [a.answer_id] * n,
                "position": list(range(a.first_position, a.first_position + n)),
            }
            values.extend(zip(*(given[name] for name in order), strict=True))
        if not values:
            return
        if connection.dialect.name == "postgresql":
            # COPY streams the rows in one statement: an executemany of 1000 rows
            # cost ten times as much (a statement, and its row of results, each).
            _copy_rows(connection, order, values)
            return
        # The driver's executemany on a statement compiled once: SQLAlchemy's
        # per-row parameter processing cost more than the database's insert
        # (these values are plain strings and numbers, which need none).
        if connection.dialect.positional:
            connection.exec_driver_sql(sql, values)
        else:
            connection.exec_driver_sql(sql, [dict(zip(order, row, strict=True)) for row in values])

    @staticmethod
    def _mark(connection: Connection, answer_ids: Sequence[str], now: datetime) -> None:
        # In slices: SQLite takes at most 32766 parameters in a statement, and
        # marks kept through an outage can be many more.
        for start in range(0, len(answer_ids), MARKS_PER_STATEMENT):
            connection.execute(
                update(answers)
                .where(answers.c.answer_id.in_(answer_ids[start : start + MARKS_PER_STATEMENT]))
                .values(delivered=True, delivered_at=now)
            )

    def mark_delivered(self, answer_ids: Sequence[str], now: datetime | None = None) -> None:
        """Flag these answers as delivered (one transaction)."""
        if not answer_ids:
            return
        try:
            with self._writing(), self._connection() as connection, connection.begin():
                self._mark(connection, answer_ids, now or _now())
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None

    def probe(self) -> None:
        """A write that commits, or StoreUnavailable: is the store usable now?"""
        try:
            with self._connection() as connection, connection.begin():
                migrations.touch(connection)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None

    def purge(self, before: datetime) -> int:
        """Delete the answers (and their decisions) given before `before`; how many
        decisions were deleted."""
        with self._connection() as connection, connection.begin():
            old = select(answers.c.answer_id).where(answers.c.answered_at < before)
            count = connection.scalar(
                select(func.count()).select_from(decisions).where(decisions.c.answer_id.in_(old))
            )
            connection.execute(delete(decisions).where(decisions.c.answer_id.in_(old)))
            connection.execute(delete(answers).where(answers.c.answered_at < before))
        return int(count or 0)

    # -- reads ----------------------------------------------------------------

    def answer_for_key(self, key: str) -> StoredAnswer | None:
        """The answer recorded under Idempotency-Key `key`, with its decisions."""
        try:
            with self._connection() as connection:
                row = connection.execute(
                    select(answers).where(answers.c.idempotency_key == key)
                ).first()
                if row is None:
                    return None
                parts = connection.execute(
                    select(answers)
                    .where(answers.c.request_id == row.request_id)
                    .order_by(answers.c.first_position)
                ).all()
                found = connection.execute(
                    select(decisions)
                    .where(decisions.c.answer_id.in_([p.answer_id for p in parts]))
                    .order_by(decisions.c.position)
                )
                return StoredAnswer(
                    dict(row._mapping),
                    [dict(p._mapping) for p in parts],
                    [dict(r._mapping) for r in found],
                )
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None

    def find(self, decision_id: str) -> dict[str, Any] | None:
        """One decision with its answer's facts, as `export` writes it."""
        rows = self._joined(decisions.c.decision_id == decision_id, limit=1)
        return rows[0] if rows else None

    def find_by_loan_id(self, loan_id: str, limit: int) -> list[dict[str, Any]]:
        """The newest `limit` decisions on applications with this Loan_ID, newest first."""
        return self._joined(decisions.c.Loan_ID == loan_id, limit=limit)

    def _joined(self, condition: Any, limit: int) -> list[dict[str, Any]]:
        query = (
            select(decisions, *_ANSWER_FACTS)
            .join(answers, answers.c.answer_id == decisions.c.answer_id)
            .where(condition)
            .order_by(answers.c.answered_at.desc(), decisions.c.position)
            .limit(limit)
        )
        try:
            with self._connection() as connection:
                return [as_record(dict(r._mapping)) for r in connection.execute(query)]
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None

    def export(
        self, start: datetime | None = None, end: datetime | None = None
    ) -> Iterator[dict[str, Any]]:
        """Every decision made in [start, end), oldest first, as record dicts."""
        query = _decisions_in([decisions, *_ANSWER_FACTS], start, end)
        with self._connection() as connection:
            result = connection.execution_options(yield_per=EXPORT_CHUNK).execute(query)
            for row in result:
                yield as_record(dict(row._mapping))

    def decision_columns(
        self,
        names: Sequence[str],
        start: datetime | None = None,
        end: datetime | None = None,
        delivered_only: bool = False,
    ) -> dict[str, list[Any]]:
        """Columns `names` of every decision made in [start, end) (of those whose
        answer was delivered, when `delivered_only`), oldest first, as lists: a
        decisions column by its name, or one of the answer's facts (`answered_at`,
        `model_tag`, ...). For reports over millions of decisions: no record
        dicts, no JSON read (`export` builds both for each decision)."""
        facts = {column.name: column for column in _ANSWER_FACTS}
        selected = [facts[n] if n in facts else decisions.c[n] for n in names]
        query = _decisions_in(selected, start, end)
        if delivered_only:
            query = query.where(answers.c.delivered.is_(True))
        return self.columns(query, names)

    def columns(self, query: Select[Any], names: Sequence[str]) -> dict[str, list[Any]]:
        """The columns of `query`'s rows (named `names`, in its order) as lists,
        fetched by the driver itself: on a million decisions SQLAlchemy's work per
        row cost three times the database's read. Its values are the driver's
        own: a time is SQLite's text or PostgreSQL's datetime, a date likewise."""
        # Literal parameters: the statement runs on the driver's own cursor, which
        # knows nothing of SQLAlchemy's processing of bound values.
        sql = str(
            query.compile(dialect=self.engine.dialect, compile_kwargs={"literal_binds": True})
        )
        if self.engine.dialect.name == "postgresql":
            return self._copied_columns(sql, names)
        columns: dict[str, list[Any]] = {name: [] for name in names}
        try:
            with self._connection() as connection:
                cursor = connection.connection.cursor()
                try:
                    cursor.execute(sql)
                    while part := cursor.fetchmany(COLUMNS_CHUNK):
                        for name, values in zip(names, zip(*part, strict=True), strict=True):
                            columns[name].extend(values)
                finally:
                    cursor.close()
        except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None
        return columns

    def _copied_columns(self, sql: str, names: Sequence[str]) -> dict[str, Any]:
        """PostgreSQL: the rows as CSV through COPY, parsed by pandas' C reader. On
        a million decisions the Python tuples of a fetch cost more than the query.
        Every value comes back as text (NULL as NaN, an empty string as itself),
        a time as PostgreSQL writes it ("2026-12-04 19:00:00.123+00")."""
        buffer = io.BytesIO()
        statement = f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, NULL '{COPY_NULL}')"
        try:
            with self._connection() as connection:
                cursor = connection.connection.cursor()
                try:
                    with cursor.copy(statement) as copy:  # type: ignore[attr-defined]
                        for data in copy:
                            buffer.write(data)
                finally:
                    cursor.close()
        except (SQLAlchemyError, self.engine.dialect.loaded_dbapi.Error) as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None
        buffer.seek(0)
        frame = pd.read_csv(
            buffer,
            header=None,
            names=list(names),
            dtype=str,
            na_values=[COPY_NULL],
            keep_default_na=False,
        )
        return {name: frame[name].tolist() for name in names}

    def count(self) -> int:
        with self._connection() as connection:
            return int(connection.scalar(select(func.count()).select_from(decisions)) or 0)

    def _connection(self) -> Connection:
        try:
            return self.engine.connect()
        except SQLAlchemyError as exc:
            raise StoreUnavailable(f"decision store unavailable: {one_line(exc)}") from None


def _decisions_in(selected: Sequence[Any], start: datetime | None, end: datetime | None) -> Any:
    """`selected` of every decision made in [start, end), oldest first."""
    query = select(*selected).join(answers, answers.c.answer_id == decisions.c.answer_id)
    if start is not None:
        query = query.where(answers.c.answered_at >= start)
    if end is not None:
        query = query.where(answers.c.answered_at < end)
    return query.order_by(answers.c.answered_at, decisions.c.answer_id, decisions.c.position)


def _copy_rows(connection: Connection, order: Sequence[str], values: list[Any]) -> None:
    """COPY `values` (rows in `order`) into decisions, in the connection's own
    transaction (psycopg 3's copy on the same DBAPI connection)."""
    names = ", ".join(f'"{name}"' for name in order)
    statement = f"COPY decisions ({names}) FROM STDIN"
    driver_error = connection.dialect.loaded_dbapi.Error
    cursor = connection.connection.cursor()
    try:
        with cursor.copy(statement) as copy:  # type: ignore[attr-defined]
            for row in values:
                copy.write_row(row)
    except driver_error as exc:
        # As SQLAlchemy words a driver's error, so the callers' handling holds.
        raise DBAPIError.instance(statement, None, exc, driver_error) from exc
    finally:
        cursor.close()


@functools.cache
def _decision_insert(dialect: Dialect) -> tuple[str, tuple[str, ...]]:
    """The INSERT of a decisions row in `dialect`'s own SQL and parameter style,
    and the order of its parameters."""
    names = [c.name for c in decisions.columns]
    compiled = insert(decisions).compile(dialect=dialect, column_keys=names)
    order = tuple(compiled.positiontup) if compiled.positional and compiled.positiontup else names
    return str(compiled), tuple(order)


_ANSWER_FACTS: Final = (
    answers.c.answered_at,
    answers.c.route,
    answers.c.model_tag,
    answers.c.model_sha256,
    answers.c.delivered,
    answers.c.delivered_at,
    answers.c.idempotency_key,
)


def _request(answer: Answer) -> str:
    """The request an answer is part of (an answer given alone is its own)."""
    return answer.request_id or answer.answer_id


def _key(answer: Answer) -> str | None:
    """The Idempotency-Key as recorded: on a request's first part only."""
    return answer.idempotency_key if answer.first_position == 0 else None


def _iso(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:  # SQLite hands back naive UTC times
        value = value.replace(tzinfo=UTC)
    return value.isoformat(timespec="milliseconds")


def as_record(row: dict[str, Any]) -> dict[str, Any]:
    """A joined row as the read side and the export give it: the facts, the
    application as received, the decision, and the answer as the client got it.
    `time`, `model_tag`, `application`, `Loan_Status`, `probability` and `reasons`
    (codes) are the keys drift and fairness monitoring read."""
    application = {"Loan_ID": row["Loan_ID"]}
    application.update({name: row[name] for name in APPLICATION_COLUMNS})
    return {
        "decision_id": row["decision_id"],
        "time": _iso(row["answered_at"]),
        "route": row["route"],
        "model_tag": row["model_tag"],
        "model_sha256": row["model_sha256"],
        "delivered": bool(row["delivered"]),
        "delivered_at": _iso(row["delivered_at"]),
        "idempotency_key": row["idempotency_key"],
        "application": application,
        "Loan_Status": row["Loan_Status"],
        "probability": row["probability"],
        "reasons": [code for code in row["reason_codes"].split(";") if code],
        "reason_texts": json.loads(row["reasons"]),
        "answer": json.loads(row["answer"]),
    }

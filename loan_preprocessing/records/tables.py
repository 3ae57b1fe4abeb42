"""The decision store's tables, declared once (SQLAlchemy Core); migrations/ holds
the Alembic revisions that create them.

One `answers` row per answer the service gave (a request, or a part of one when
the batcher split a large request: its parts share a request_id): when, on which
route, by which model, whether it reached the client, and the request's
Idempotency-Key (on its first part). One `decisions` row per application in it: what was received,
what was decided, and the decision exactly as it was answered (`answer`, its JSON
text), so a field added to the answers later is recorded without a new column.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from loan_preprocessing.schema import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, NUMERIC_COLUMNS

# Decision and answer ids: 32 hex digits, the first 12 the time in milliseconds,
# so ids sort by time and index well.
ID_LENGTH: Final = 32
# Longest Idempotency-Key accepted (longer ones are a 400).
MAX_IDEMPOTENCY_KEY_LENGTH: Final = 255
# The application's fields as the service received them, under the schema's names.
APPLICATION_COLUMNS: Final = FEATURE_COLUMNS

metadata: Final = MetaData()


def _application_column(name: str) -> Column[object]:
    if name in NUMERIC_COLUMNS:
        return Column(name, Float, nullable=True)
    assert name in CATEGORICAL_COLUMNS, name
    return Column(name, String(32), nullable=True)


answers: Final = Table(
    "answers",
    metadata,
    Column("answer_id", String(ID_LENGTH), primary_key=True),
    Column("request_id", String(ID_LENGTH), nullable=False, index=True),
    # The request's row at which this part starts (0: the first part).
    Column("first_position", Integer, nullable=False),
    Column("answered_at", DateTime(timezone=True), nullable=False, index=True),
    # /predict, /v2/models/loan_approval/infer, /predict_csv, or a batch job's name.
    Column("route", String(64), nullable=False),
    Column("model_tag", String(200), nullable=False),
    # sha256 of the model file that decided (skops file in the model store).
    Column("model_sha256", String(64), nullable=False),
    Column("rows", Integer, nullable=False),
    # False until the whole answer was handed to the client's connection; stays
    # False for a 504, a client gone, or a worker killed before it answered.
    Column("delivered", Boolean, nullable=False, default=False),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    # The request's Idempotency-Key, and the sha256 of the body it came with.
    Column("idempotency_key", String(MAX_IDEMPOTENCY_KEY_LENGTH), nullable=True, unique=True),
    Column("request_sha256", String(64), nullable=True),
)

decisions: Final = Table(
    "decisions",
    metadata,
    Column("decision_id", String(ID_LENGTH), primary_key=True),
    Column(
        "answer_id",
        String(ID_LENGTH),
        ForeignKey("answers.answer_id", ondelete="CASCADE"),
        nullable=False,
    ),
    # The row's place in its request (0 first); the time is the answer's.
    Column("position", Integer, nullable=False),
    Column("Loan_ID", String(64), nullable=True, index=True),
    Column("Loan_Status", String(1), nullable=False),
    Column("probability", Float, nullable=False),
    # A rejection's reason codes, most important first, joined by ";" (empty for
    # an approval), and the reasons with their texts as JSON ([{"code", "text"}]).
    Column("reason_codes", String(200), nullable=False),
    Column("reasons", Text, nullable=False),
    *(_application_column(name) for name in APPLICATION_COLUMNS),
    # The decision as answered: its JSON text, every field of it.
    Column("answer", Text, nullable=False),
    Index("decisions_answer_position", "answer_id", "position", unique=True),
)

# The challenger scored in shadow (LOAN_CHALLENGER_TAG): its decision beside each
# recorded one, never answered (records/challenger.py writes and reads it).
challenger_decisions: Final = Table(
    "challenger_decisions",
    metadata,
    Column(
        "decision_id",
        String(ID_LENGTH),
        ForeignKey("decisions.decision_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("model_tag", String(200), nullable=False),
    # None where the challenger could not score the application.
    Column("Loan_Status", String(1), nullable=True),
    Column("probability", Float, nullable=True),
    # Its rejection's reason codes joined by ";" (empty for an approval).
    Column("reason_codes", String(200), nullable=False),
)

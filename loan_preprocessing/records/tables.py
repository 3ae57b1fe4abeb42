"""The decision store's tables, declared once (SQLAlchemy Core); migrations/ holds
the Alembic revisions that create them.

One `answers` row per answer the service gave (a request, or a part of one when
the batcher split a large request: its parts share a request_id): when, on which
route, by which model, whether it reached the client, and the request's
Idempotency-Key (on its first part). One `decisions` row per application in it: what was received,
what was decided, and the decision exactly as it was answered (`answer`, its JSON
text), so a field added to the answers later is recorded without a new column.

After the decision: `outcomes` (what happened to the loan, one row per decision
and outcome), `overrides` (a person's change of the final decision, append-only;
the `decisions` row is never altered) and `promotions` (who made which version
the served one, when, on which report).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import (
    Boolean,
    Column,
    Date,
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

from loan_preprocessing.schema import (
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    MAX_PERSON_LENGTH,
    NUMERIC_COLUMNS,
)

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

# What happened to a decided application (records/outcomes.py): one row per
# decision and outcome, so reporting the same outcome again adds nothing.
outcomes: Final = Table(
    "outcomes",
    metadata,
    Column(
        "decision_id",
        String(ID_LENGTH),
        ForeignKey("decisions.decision_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    # One of schema.OUTCOMES.
    Column("outcome", String(16), primary_key=True),
    # The day the outcome was observed (as reported), and when it was recorded.
    Column("observed_on", Date, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
)

# A person's change of a decision's final status, with the reason: append-only
# (nothing updates or deletes a row but the retention purge of its decision).
overrides: Final = Table(
    "overrides",
    metadata,
    Column("override_id", String(ID_LENGTH), primary_key=True),
    Column(
        "decision_id",
        String(ID_LENGTH),
        ForeignKey("decisions.decision_id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    # The caller's identifier of the person who decided (not checked here).
    Column("person", String(MAX_PERSON_LENGTH), nullable=False),
    # The status that stands after this override (Y/N), and why.
    Column("final_status", String(1), nullable=False),
    Column("rationale", Text, nullable=False),
    Column("overridden_at", DateTime(timezone=True), nullable=False),
)

# `make promote`: a version made the served one, by whom, when, on which report
# (its file name, sha256 and text, so the evidence outlives the file).
promotions: Final = Table(
    "promotions",
    metadata,
    Column("promotion_id", String(ID_LENGTH), primary_key=True),
    Column("model_tag", String(200), nullable=False),
    # The version served before (what loan_approval:latest named), if any.
    Column("previous_tag", String(200), nullable=True),
    Column("person", String(MAX_PERSON_LENGTH), nullable=False),
    Column("promoted_at", DateTime(timezone=True), nullable=False),
    Column("report_name", String(255), nullable=False),
    Column("report_sha256", String(64), nullable=False),
    Column("report", Text, nullable=False),
)

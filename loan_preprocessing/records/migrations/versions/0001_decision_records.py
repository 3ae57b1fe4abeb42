"""Decision records: the answers and decisions tables.

Revision ID: 0001
Revises:
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Written out rather than imported from tables.py: a revision must keep creating
# what it created when tables.py has moved on.
CATEGORICAL = ("Gender", "Married", "Dependents", "Education", "Self_Employed")
NUMERIC = (
    "ApplicantIncome",
    "CoapplicantIncome",
    "LoanAmount",
    "Loan_Amount_Term",
    "Credit_History",
)
APPLICATION = (*CATEGORICAL[:5], *NUMERIC, "Property_Area")


def _application_column(name: str) -> sa.Column:  # type: ignore[type-arg]
    if name in NUMERIC:
        return sa.Column(name, sa.Float, nullable=True)
    return sa.Column(name, sa.String(32), nullable=True)


def upgrade() -> None:
    op.create_table(
        "answers",
        sa.Column("answer_id", sa.String(32), primary_key=True),
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("first_position", sa.Integer, nullable=False),
        sa.Column("answered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("route", sa.String(64), nullable=False),
        sa.Column("model_tag", sa.String(200), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idempotency_key", sa.String(255), nullable=True, unique=True),
        sa.Column("request_sha256", sa.String(64), nullable=True),
    )
    op.create_index("ix_answers_answered_at", "answers", ["answered_at"])
    op.create_index("ix_answers_request_id", "answers", ["request_id"])
    op.create_table(
        "decisions",
        sa.Column("decision_id", sa.String(32), primary_key=True),
        sa.Column(
            "answer_id",
            sa.String(32),
            sa.ForeignKey("answers.answer_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("Loan_ID", sa.String(64), nullable=True),
        sa.Column("Loan_Status", sa.String(1), nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("reason_codes", sa.String(200), nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        *(_application_column(name) for name in APPLICATION),
        sa.Column("answer", sa.Text, nullable=False),
    )
    op.create_index("ix_decisions_Loan_ID", "decisions", ["Loan_ID"])
    op.create_index(
        "decisions_answer_position", "decisions", ["answer_id", "position"], unique=True
    )


def downgrade() -> None:
    op.drop_table("decisions")
    op.drop_table("answers")

"""Challenger decisions: what the version scored in shadow decided, beside each
recorded decision.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "challenger_decisions",
        sa.Column(
            "decision_id",
            sa.String(32),
            sa.ForeignKey("decisions.decision_id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("model_tag", sa.String(200), nullable=False),
        sa.Column("Loan_Status", sa.String(1), nullable=True),
        sa.Column("probability", sa.Float, nullable=True),
        sa.Column("reason_codes", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("challenger_decisions")

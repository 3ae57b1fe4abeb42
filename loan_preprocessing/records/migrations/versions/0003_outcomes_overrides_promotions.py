"""Outcomes, overrides and promotions: what happened to decided loans, people's
changes of the final decision (append-only), and versions made the served one.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _decision_id(nullable: bool = False, primary_key: bool = False) -> sa.Column:
    return sa.Column(
        "decision_id",
        sa.String(32),
        sa.ForeignKey("decisions.decision_id", ondelete="CASCADE"),
        nullable=nullable,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "outcomes",
        _decision_id(primary_key=True),
        sa.Column("outcome", sa.String(16), primary_key=True),
        sa.Column("observed_on", sa.Date, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "overrides",
        sa.Column("override_id", sa.String(32), primary_key=True),
        _decision_id(),
        sa.Column("person", sa.String(128), nullable=False),
        sa.Column("final_status", sa.String(1), nullable=False),
        sa.Column("rationale", sa.Text, nullable=False),
        sa.Column("overridden_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_overrides_decision_id", "overrides", ["decision_id"])
    op.create_table(
        "promotions",
        sa.Column("promotion_id", sa.String(32), primary_key=True),
        sa.Column("model_tag", sa.String(200), nullable=False),
        sa.Column("previous_tag", sa.String(200), nullable=True),
        sa.Column("person", sa.String(128), nullable=False),
        sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("report_name", sa.String(255), nullable=False),
        sa.Column("report_sha256", sa.String(64), nullable=False),
        sa.Column("report", sa.Text, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("promotions")
    op.drop_index("ix_overrides_decision_id", "overrides")
    op.drop_table("overrides")
    op.drop_table("outcomes")

"""Alembic's entry point: runs the revisions on the connection the caller gave
(records/migrations/__init__.py), inside the caller's transaction."""

from __future__ import annotations

from alembic import context

context.configure(connection=context.config.attributes["connection"], target_metadata=None)
with context.begin_transaction():
    context.run_migrations()

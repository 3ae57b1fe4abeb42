"""The store's schema migrations (Alembic revisions in versions/), run from code:
`prepare` at start, `upgrade` by `make decisions-migrate`."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, inspect, text

HERE: Final = Path(__file__).resolve().parent
MIGRATE_COMMAND: Final = "make decisions-migrate"
# Serialises concurrent migrations of one PostgreSQL database (servers starting
# together): an arbitrary constant of this project.
ADVISORY_LOCK: Final = 0x10A4_DEC1


class SchemaOutOfDate(RuntimeError):
    """The store was written by an older schema; the message is one line."""


def _config(connection: Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest schema revision this code writes."""
    revision = ScriptDirectory(str(HERE)).get_current_head()
    assert revision is not None
    return revision


def current(connection: Connection) -> str | None:
    """The revision the store is at (None: no schema yet)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade(connection: Connection) -> str:
    """Migrate to the newest revision (creating the tables in an empty store)."""
    with connection.begin():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK})
        command.upgrade(_config(connection), "head")
    return head()


def prepare(connection: Connection, where: str) -> None:
    """At start: create the schema in an empty store; refuse an older one with a
    line that names the migration command."""
    found = current(connection)
    empty = found is None and not inspect(connection).has_table("answers")
    connection.rollback()
    if found == head():
        return
    if empty:
        upgrade(connection)
        return
    raise SchemaOutOfDate(
        f"the decision store at {where} has schema revision {found or 'none'}, this "
        f"service writes {head()}: run `{MIGRATE_COMMAND}` (with the same "
        "LOAN_DECISION_STORE_URL) first"
    )


def touch(connection: Connection) -> None:
    """A write that changes nothing: proves the store can commit (readiness)."""
    connection.execute(text("UPDATE alembic_version SET version_num = version_num"))

"""A real PostgreSQL server for tests: Debian's PostgreSQL 15 binaries, a cluster
in a temporary folder, listening on a free 127.0.0.1 port, stopped by its own
pg_ctl at the end. PostgreSQL refuses to run as root, so under root the cluster
belongs to (and runs as) Debian's `postgres` user."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import pytest

from tests.support.server import free_port

PG_BIN: Final = Path(os.environ.get("LOAN_TEST_PG_BIN", "/usr/lib/postgresql/15/bin"))
RUN_AS: Final = "postgres"
_databases = itertools.count(1)


def _as_owner() -> list[str]:
    """The command prefix that runs PostgreSQL's programs as their owner."""
    return ["runuser", "-u", RUN_AS, "--"] if os.geteuid() == 0 else []


@dataclass
class PostgresServer:
    folder: Path
    port: int
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.folder / "postgres.log"

    @property
    def data(self) -> Path:
        return self.folder / "data"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{RUN_AS}@127.0.0.1:{self.port}/{database}"

    def _pg_ctl(self, *args: str) -> None:
        subprocess.run(
            [*_as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=60,
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._pg_ctl("-w", "-t", "30", "-l", str(self.log), "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("-w", "-t", "30", "-m", mode, "stop")

    def running(self) -> bool:
        done = subprocess.run(
            [*_as_owner(), str(PG_BIN / "pg_ctl"), "-D", str(self.data), "status"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        return done.returncode == 0

    def new_database(self) -> str:
        """A fresh, empty database; its URL."""
        import psycopg

        name = f"decisions_{os.getpid()}_{next(_databases)}"
        with psycopg.connect(self.url(), autocommit=True) as c:
            c.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def require_postgres() -> None:
    if not (PG_BIN / "initdb").is_file():
        pytest.skip(
            f"POSTGRESQL ABSENT: {PG_BIN}/initdb not found; install Debian's postgresql-15 "
            "(`make venv` does when run as root) to run the PostgreSQL tests"
        )
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("POSTGRESQL CANNOT RUN: root without runuser to become `postgres`")


@contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    """initdb a cluster in a new temporary folder, start it, and stop it at the end."""
    require_postgres()
    folder = Path(tempfile.mkdtemp(prefix="loan-tests-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, RUN_AS, RUN_AS)
    server = PostgresServer(folder, free_port())
    try:
        subprocess.run(
            [
                *_as_owner(),
                str(PG_BIN / "initdb"),
                "-D",
                str(server.data),
                "-U",
                RUN_AS,
                # Local test cluster on 127.0.0.1 only, thrown away at the end.
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
            timeout=120,
        )
        server.start()
        yield server
    finally:
        if server.running():
            server.stop("immediate")
        shutil.rmtree(folder, ignore_errors=True)

"""SQLite's writers take turns at the write gate, across processes."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from loan_preprocessing.records.store import DecisionStore
from tests.records.test_store import _answer

HOLD_SECONDS = 1.0


def test_a_commit_waits_while_another_process_holds_the_gate(tmp_path):
    database = tmp_path / "decisions.sqlite3"
    letting_go = tmp_path / "letting-go"
    store = DecisionStore(f"sqlite:///{database}")
    store.prepare()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import fcntl, os, sys, time
                descriptor = os.open({str(store.gate.path)!r}, os.O_RDWR | os.O_CREAT)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
                print("held", flush=True)
                time.sleep({HOLD_SECONDS})
                open({str(letting_go)!r}, "w").close()
                fcntl.flock(descriptor, fcntl.LOCK_UN)
                time.sleep(5)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        assert store.record([_answer(2)]) == []
        # The commit went in only once the other process had let go.
        assert letting_go.exists()
        assert store.count() == 2
    finally:
        holder.kill()
        holder.wait()
        store.close()


def test_a_store_in_memory_or_on_postgresql_has_no_gate():
    assert DecisionStore("sqlite:///:memory:").gate is None

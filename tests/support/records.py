"""Decisions put into a real decision store with the service's own code, for
tests of the tools that read the store (drift, fairness, export)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from loan_preprocessing.records import __main__ as records_cli
from loan_preprocessing.records.rows import object_columns
from loan_preprocessing.records.store import Answer, DecisionStore, new_ids
from loan_preprocessing.schema import Decision, LoanApplication


def record_delivered(
    url: str, model_tag: str, applications: Sequence[LoanApplication], decisions: Sequence[Decision]
) -> list[str]:
    """Record one delivered /predict answer of these decisions; their ids."""
    ids = new_ids(len(decisions) + 1)
    for decision, decision_id in zip(decisions, ids[1:], strict=True):
        decision.decision_id = decision_id
    store = DecisionStore(url)
    try:
        store.prepare()
        answer = Answer(
            ids[0], "/predict", model_tag, "0" * 64, object_columns(applications, decisions)
        )
        store.record([answer])
        store.mark_delivered([ids[0]])
    finally:
        store.close()
    return ids[1:]


def export_json_lines(url: str, path: Path) -> Path:
    assert records_cli.main(["--url", url, "export", "--out", str(path)]) == 0
    return path

"""Each decision route's answers as they are recorded, and as a replayed
Idempotency-Key gives them back: from the recorded rows, in the route's own form."""

from __future__ import annotations

import json
from typing import Any, Final

from loan_preprocessing.csv_output import column_csv_rows, csv_text
from loan_preprocessing.decide import ColumnDecisions
from loan_preprocessing.records.rows import json_rows
from loan_preprocessing.records.store import StoredAnswer
from loan_preprocessing.serving import open_inference

PREDICT_PATH: Final = "/predict"
CSV_PATH: Final = "/predict_csv"
JSON: Final = b"application/json"
CSV_MEDIA_TYPE: Final = b"text/csv; charset=utf-8"
CSV_CELLS: Final = ("Loan_ID", "Loan_Status", "probability", "reasons")


def csv_rows(decided: ColumnDecisions, decision_ids: list[str]) -> list[str]:
    """Each CSV row's answer as recorded: its cells by column, and its decision id."""
    if not decided:
        return []
    cells = list(zip(*column_csv_rows(decided), strict=True))
    values: dict[str, list[Any]] = {"decision_id": decision_ids}
    values.update({name: list(column) for name, column in zip(CSV_CELLS, cells, strict=True)})
    return json_rows(values)


def _answers(stored: StoredAnswer) -> list[dict[str, Any]]:
    return [json.loads(row["answer"]) for row in stored.decisions]


def replay_predict(body: bytes, stored: StoredAnswer) -> tuple[bytes, bytes]:
    """/predict's answer: the recorded decisions' JSON, in order."""
    payload = "[" + ",".join(row["answer"] for row in stored.decisions) + "]"
    return JSON, payload.encode()


def replay_v2(body: bytes, stored: StoredAnswer) -> tuple[bytes, bytes]:
    """The V2 answer, with the outputs the (same) request asked for."""
    request = open_inference.InferenceRequest.model_validate_json(body)
    answers = _answers(stored)
    names = list(answers[0]) if answers else []
    values = {name: [a[name] for a in answers] for name in names}
    with_ids = any(i.name == open_inference.ID_COLUMN for i in request.inputs)
    version = stored.answer["model_tag"].partition(":")[2]
    response = open_inference.response_body(values, version, request, with_ids)
    return JSON, json.dumps(response).encode()


def replay_csv(body: bytes, stored: StoredAnswer) -> tuple[bytes, bytes]:
    """The CSV answer, cell for cell as it was first written."""
    rows = [tuple(a[name] for name in (*CSV_CELLS, "decision_id")) for a in _answers(stored)]
    return CSV_MEDIA_TYPE, csv_text(rows).encode()


REPLAYERS: Final = {
    PREDICT_PATH: replay_predict,
    open_inference.INFER_PATH: replay_v2,
    CSV_PATH: replay_csv,
}

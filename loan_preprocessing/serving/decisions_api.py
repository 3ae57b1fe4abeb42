"""The read side of the decision records, behind the service's API key:

    GET /decisions/{decision_id}      one decision, as recorded
    GET /decisions?loan_id=LP001015   the decisions on that Loan_ID, newest first

Each record holds exactly what the applicant was told (`answer`), by which model
(`model_tag`, `model_sha256`), on which application, and whether it was
delivered. Mounted by service.py at /decisions; the handlers reach the worker's
recorder through `bentoml.get_current_service()`.
"""

from __future__ import annotations

from typing import Any, Final

import bentoml
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loan_preprocessing.records.store import StoreUnavailable
from loan_preprocessing.records.tables import ID_LENGTH
from loan_preprocessing.schema import ID_COLUMN
from loan_preprocessing.serving.recording import RETRY_AFTER_SECONDS, DecisionRecorder

MOUNT: Final = "/decisions"
# At most this many decisions per Loan_ID answer (newest first).
MAX_LISTED: Final = 100
MAX_LOAN_ID_LENGTH: Final = 64


def _recorder() -> DecisionRecorder | None:
    recorder: DecisionRecorder | None = getattr(bentoml.get_current_service(), "recorder", None)
    return recorder if recorder is not None and recorder.recording else None


def _off() -> JSONResponse:
    return JSONResponse(
        {"error": "decision records are turned off on this service (LOAN_DECISION_RECORDS)"},
        status_code=404,
    )


def _unavailable(exc: StoreUnavailable) -> JSONResponse:
    return JSONResponse(
        {"error": str(exc)},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


async def one_decision(request: Request) -> JSONResponse:
    recorder = _recorder()
    if recorder is None:
        return _off()
    decision_id = request.path_params["decision_id"]
    if len(decision_id) != ID_LENGTH or not all(c in "0123456789abcdef" for c in decision_id):
        return JSONResponse(
            {"error": f"decision_id: {ID_LENGTH} lowercase hex digits, as answered"},
            status_code=400,
        )
    try:
        found = await recorder.read(lambda store: store.find(decision_id))
    except StoreUnavailable as exc:
        return _unavailable(exc)
    if found is None:
        return JSONResponse({"error": f"no decision {decision_id} is recorded"}, status_code=404)
    return JSONResponse(found)


async def by_loan_id(request: Request) -> JSONResponse:
    recorder = _recorder()
    if recorder is None:
        return _off()
    loan_id = request.query_params.get("loan_id")
    if not loan_id or len(loan_id) > MAX_LOAN_ID_LENGTH:
        return JSONResponse(
            {"error": f"loan_id: give the {ID_COLUMN} (1-{MAX_LOAN_ID_LENGTH} characters)"},
            status_code=400,
        )
    try:
        found = await recorder.read(lambda store: store.find_by_loan_id(loan_id, MAX_LISTED))
    except StoreUnavailable as exc:
        return _unavailable(exc)
    return JSONResponse({"loan_id": loan_id, "decisions": found, "limit": MAX_LISTED})


class BarePath:
    """Routes `/decisions?loan_id=...` (no trailing slash) to the list, where the
    mount alone would redirect it."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == MOUNT:
            scope = {**scope, "path": MOUNT + "/", "raw_path": (MOUNT + "/").encode()}
        await self.app(scope, receive, send)


app: Final = Starlette(
    routes=[
        Route("/", by_loan_id, methods=["GET"]),
        Route("/{decision_id}", one_decision, methods=["GET"]),
    ]
)

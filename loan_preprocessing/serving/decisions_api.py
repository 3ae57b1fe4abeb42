"""The read side of the decision records, behind the service's API key:

    GET /decisions/{decision_id}            one decision, as recorded
    GET /decisions/{decision_id}/notice     its adverse-action notice (HTML; ?format=text)
    GET /decisions?loan_id=LP001015         the decisions on that Loan_ID, newest first
    POST /decisions/{decision_id}/override  a person changes its final status

Each record holds exactly what the applicant was told (`answer`), by which model
(`model_tag`, `model_sha256`), on which application, and whether it was
delivered; beside it, its `outcomes`, its `overrides` and the `final_status`
that stands after them (the model's `Loan_Status` is never changed). Mounted by
service.py at /decisions; the handlers reach the worker's recorder through
`bentoml.get_current_service()`.
"""

from __future__ import annotations

from typing import Any, Final

import bentoml
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from loan_preprocessing.notices.adverse_action import NoticeError, NoticeSettings, render_notice
from loan_preprocessing.records.outcomes import OverrideRefused, record_override, with_follow_up
from loan_preprocessing.records.store import DecisionStore, StoreUnavailable
from loan_preprocessing.records.tables import ID_LENGTH
from loan_preprocessing.schema import ID_COLUMN, MAX_LISTED_ERRORS, OverrideRequest
from loan_preprocessing.serving.recording import RETRY_AFTER_SECONDS, DecisionRecorder

MOUNT: Final = "/decisions"
# At most this many decisions per Loan_ID answer (newest first).
MAX_LISTED: Final = 100
MAX_LOAN_ID_LENGTH: Final = 64


def recorder_or_none() -> DecisionRecorder | None:
    recorder: DecisionRecorder | None = getattr(bentoml.get_current_service(), "recorder", None)
    return recorder if recorder is not None and recorder.recording else None


def off() -> JSONResponse:
    return JSONResponse(
        {"error": "decision records are turned off on this service (LOAN_DECISION_RECORDS)"},
        status_code=404,
    )


def unavailable(exc: StoreUnavailable) -> JSONResponse:
    return JSONResponse(
        {"error": str(exc)},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def _bad_id(decision_id: str) -> JSONResponse | None:
    if len(decision_id) != ID_LENGTH or not all(c in "0123456789abcdef" for c in decision_id):
        return JSONResponse(
            {"error": f"decision_id: {ID_LENGTH} lowercase hex digits, as answered"},
            status_code=400,
        )
    return None


def _not_recorded(decision_id: str) -> JSONResponse:
    return JSONResponse({"error": f"no decision {decision_id} is recorded"}, status_code=404)


async def _recorded(request: Request, follow_up: bool = False) -> dict[str, Any] | JSONResponse:
    """The record the path names (with its outcomes and overrides when
    `follow_up`), or the answer that says why there is none."""
    recorder = recorder_or_none()
    if recorder is None:
        return off()
    decision_id = request.path_params["decision_id"]
    if (bad := _bad_id(decision_id)) is not None:
        return bad

    def read(store: DecisionStore) -> dict[str, Any] | None:
        found = store.find(decision_id)
        return with_follow_up(store, [found])[0] if found is not None and follow_up else found

    try:
        found: dict[str, Any] | None = await recorder.read(read)
    except StoreUnavailable as exc:
        return unavailable(exc)
    if found is None:
        return _not_recorded(decision_id)
    return found


async def one_decision(request: Request) -> JSONResponse:
    found = await _recorded(request, follow_up=True)
    return found if isinstance(found, JSONResponse) else JSONResponse(found)


async def override(request: Request) -> JSONResponse:
    """Append a person's override of the decision's final status (201), the
    model's decision kept as it was."""
    recorder = recorder_or_none()
    if recorder is None:
        return off()
    decision_id = request.path_params["decision_id"]
    if (bad := _bad_id(decision_id)) is not None:
        return bad
    media_type = request.headers.get("content-type", "application/json").partition(";")[0]
    if media_type.strip().lower() != "application/json":
        return JSONResponse(
            {
                "error": f"Content-Type {media_type[:80]!r} is not accepted here; "
                "send application/json"
            },
            status_code=415,
        )
    try:
        asked = OverrideRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        first = detail[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        return JSONResponse(
            {
                "error": f"{field}: {first['msg']}",
                "detail": detail[:MAX_LISTED_ERRORS],
                "total": len(detail),
            },
            status_code=400,
        )
    try:
        made = await recorder.read(
            lambda store: record_override(
                store, decision_id, asked.person, asked.final_status, asked.rationale
            )
        )
    except OverrideRefused as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    except StoreUnavailable as exc:
        return unavailable(exc)
    if made is None:
        return _not_recorded(decision_id)
    return JSONResponse({"decision_id": decision_id, **made}, status_code=201)


NOTICE_SETTINGS_NEEDED: Final = (
    "LOAN_NOTICE_CREDITOR_NAME, LOAN_NOTICE_CREDITOR_ADDRESS, LOAN_NOTICE_AGENCY_NAME "
    "and LOAN_NOTICE_AGENCY_ADDRESS"
)


async def notice(request: Request) -> Response:
    """The notice of action taken on a recorded denial, from the record alone
    (the reasons and counteroffer exactly as the applicant was told them)."""
    settings: NoticeSettings | None = getattr(
        bentoml.get_current_service(), "notice_settings", None
    )
    if settings is None:
        return JSONResponse(
            {"error": f"notices are not configured on this service: set {NOTICE_SETTINGS_NEEDED}"},
            status_code=404,
        )
    found = await _recorded(request)
    if isinstance(found, JSONResponse):
        return found
    try:
        rendered = render_notice(found, settings)
    except NoticeError as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    if request.query_params.get("format") == "text":
        return PlainTextResponse(rendered.text)
    return HTMLResponse(rendered.html)


async def by_loan_id(request: Request) -> JSONResponse:
    recorder = recorder_or_none()
    if recorder is None:
        return off()
    loan_id = request.query_params.get("loan_id")
    if not loan_id or len(loan_id) > MAX_LOAN_ID_LENGTH:
        return JSONResponse(
            {"error": f"loan_id: give the {ID_COLUMN} (1-{MAX_LOAN_ID_LENGTH} characters)"},
            status_code=400,
        )
    try:
        found = await recorder.read(
            lambda store: with_follow_up(store, store.find_by_loan_id(loan_id, MAX_LISTED))
        )
    except StoreUnavailable as exc:
        return unavailable(exc)
    return JSONResponse({"loan_id": loan_id, "decisions": found, "limit": MAX_LISTED})


class BarePath:
    """Routes a mount's bare path (`/decisions?loan_id=...`, `POST /outcomes`: no
    trailing slash) to the mount's root route, where the mount alone would
    redirect it."""

    def __init__(self, app: Any, mounts: tuple[str, ...] = (MOUNT,)) -> None:
        self.app = app
        self.mounts = frozenset(mounts)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] in self.mounts:
            path = scope["path"] + "/"
            scope = {**scope, "path": path, "raw_path": path.encode()}
        await self.app(scope, receive, send)


app: Final = Starlette(
    routes=[
        Route("/", by_loan_id, methods=["GET"]),
        Route("/{decision_id}", one_decision, methods=["GET"]),
        Route("/{decision_id}/notice", notice, methods=["GET"]),
        Route("/{decision_id}/override", override, methods=["POST"]),
    ]
)

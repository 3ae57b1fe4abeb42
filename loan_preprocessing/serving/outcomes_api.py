"""POST /outcomes: what happened to decided applications, behind the API key.

A JSON list of outcomes, or a CSV file (the multipart field `file`, as
/predict_csv takes it, or a text/csv body) with the columns `decision_id`
and/or `Loan_ID`, `outcome` and `observed_on`. Every outcome of a request is
recorded, or none: a decision the store does not hold is a 404 naming it, a bad
field a 400 naming its row and field. Reporting an outcome again changes
nothing (records/outcomes.py says which decision a Loan_ID names).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any, Final

import bentoml
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loan_preprocessing.records.outcomes import OutcomeReport, UnknownDecisions, record_outcomes
from loan_preprocessing.records.store import StoreUnavailable
from loan_preprocessing.schema import MAX_LISTED_ERRORS, ReportedOutcome
from loan_preprocessing.serving.decisions_api import off, recorder_or_none, unavailable
from loan_preprocessing.serving.guards import (
    CSV_FIELD,
    JSON_MEDIA_TYPE,
    MULTIPART_MEDIA_TYPE,
    UPLOAD_HINT,
    upload_problem,
)

MOUNT: Final = "/outcomes"
CSV_MEDIA_TYPE: Final = "text/csv"
CSV_COLUMNS: Final = tuple(ReportedOutcome.model_fields)
REQUIRED_CSV_COLUMNS: Final = ("outcome", "observed_on")
# Used when the service sets no max_rows (an app built without the service).
DEFAULT_MAX_ROWS: Final = 5_000
_REPORTS: Final = TypeAdapter(list[ReportedOutcome])


class Problems(ValueError):
    """What is wrong with the request's outcomes: the 400 answer's body."""

    def __init__(self, error: str, detail: list[dict[str, Any]], total: int) -> None:
        super().__init__(error)
        self.body = {"error": error, "detail": detail[:MAX_LISTED_ERRORS], "total": total}


def _problem(message: str, loc: list[Any]) -> Problems:
    return Problems(message, [{"loc": loc, "msg": message, "type": "value_error"}], 1)


def _max_rows() -> int:
    rows = getattr(bentoml.get_current_service(), "max_rows", None)
    return int(rows) if rows else DEFAULT_MAX_ROWS


def _validated(body: bytes, lines: list[int] | None) -> list[ReportedOutcome]:
    """The outcomes of a JSON list (`lines` None) or of CSV rows turned into one
    (`lines`: each row's line in the file, for the errors)."""
    try:
        return _REPORTS.validate_json(body)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_input=False, include_context=False)
        detail: list[dict[str, Any]] = []
        for error in errors:
            index, *field = error["loc"] or ("",)
            shown: dict[str, Any] = {
                "loc": [index, *field],
                "msg": error["msg"],
                "type": error["type"],
            }
            if lines is not None and isinstance(index, int):
                shown = {**shown, "loc": list(field), "line": lines[index]}
                shown["column"] = field[0] if field else None
            detail.append(shown)
        first = detail[0]
        where = (
            f"line {first['line']}" if "line" in first else f"outcome {first['loc'][0]}"
        ) + "".join(f", field {name}" for name in first["loc"][1 if lines is None else 0 :])
        raise Problems(f"{where}: {first['msg']}", detail, len(errors)) from None


def _from_json(body: bytes, max_rows: int) -> list[ReportedOutcome]:
    try:
        parsed = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _problem(f"the body is not valid JSON: {str(exc)[:120]}", []) from None
    if not isinstance(parsed, list):
        raise _problem("the body must be a JSON list of outcomes", [])
    if not 1 <= len(parsed) <= max_rows:
        raise _problem(f"send 1 to {max_rows} outcomes per request, not {len(parsed)}", [])
    return _validated(body, None)


def _from_csv(data: bytes, max_rows: int) -> list[ReportedOutcome]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise _problem(f"the file is not UTF-8 text (byte {exc.start})", [CSV_FIELD]) from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise _problem("the file is empty: it needs a header line", [CSV_FIELD])
        names = [name.strip() for name in header]
        unknown = [name for name in names if name not in CSV_COLUMNS]
        if unknown:
            raise _problem(
                f"unknown column {unknown[0][:40]!r}; the columns are {', '.join(CSV_COLUMNS)}",
                [unknown[0][:40]],
            )
        missing = [name for name in REQUIRED_CSV_COLUMNS if name not in names]
        if missing or not {"decision_id", "Loan_ID"} & set(names):
            needed = missing or ["decision_id or Loan_ID"]
            raise _problem(f"the file has no column {needed[0]}", [needed[0]])
        rows: list[dict[str, str | None]] = []
        lines: list[int] = []
        for cells in reader:
            if not any(cell.strip() for cell in cells):
                continue
            if len(rows) == max_rows:
                raise _problem(f"the file has more than {max_rows} outcomes", [CSV_FIELD])
            if len(cells) != len(names):
                raise _problem(
                    f"line {reader.line_num}: {len(cells)} cells, the header has {len(names)}",
                    [CSV_FIELD],
                )
            rows.append(
                {name: (cell.strip() or None) for name, cell in zip(names, cells, strict=True)}
            )
            lines.append(reader.line_num)
    except csv.Error as exc:
        raise _problem(f"line {reader.line_num}: not valid CSV ({exc})", [CSV_FIELD]) from None
    if not rows:
        raise _problem("the file has no outcomes after its header", [CSV_FIELD])
    return _validated(json.dumps(rows).encode(), lines)


async def _reported(request: Request, max_rows: int) -> list[ReportedOutcome] | JSONResponse:
    raw = request.headers.get("content-type", JSON_MEDIA_TYPE)
    media_type = raw.partition(";")[0].strip().lower()
    body = await request.body()
    if media_type == JSON_MEDIA_TYPE:
        return _from_json(body, max_rows)
    if media_type == CSV_MEDIA_TYPE:
        return _from_csv(body, max_rows)
    if media_type == MULTIPART_MEDIA_TYPE:
        boundary = next(
            (
                part.partition("=")[2].strip().strip('"')
                for part in raw.split(";")[1:]
                if part.strip().lower().startswith("boundary=")
            ),
            None,
        )
        problem = upload_problem(body, boundary)
        if problem is not None:
            raise _problem(problem, [CSV_FIELD])
        form = await request.form(max_files=1, max_fields=1)
        upload = form.get(CSV_FIELD)
        assert upload is not None and not isinstance(upload, str)  # upload_problem checked
        try:
            return _from_csv(await upload.read(), max_rows)
        finally:
            await form.close()
    return JSONResponse(
        {
            "error": f"Content-Type {media_type[:80]!r} is not accepted here; send "
            f"{JSON_MEDIA_TYPE} (a list of outcomes), {CSV_MEDIA_TYPE}, or {UPLOAD_HINT}"
        },
        status_code=415,
    )


async def post_outcomes(request: Request) -> JSONResponse:
    recorder = recorder_or_none()
    if recorder is None:
        return off()
    try:
        reported = await _reported(request, _max_rows())
    except Problems as exc:
        return JSONResponse(exc.body, status_code=400)
    if isinstance(reported, JSONResponse):
        return reported
    reports = [
        OutcomeReport(r.outcome, r.observed_on, decision_id=r.decision_id, loan_id=r.Loan_ID)
        for r in reported
    ]
    try:
        results = await recorder.read(lambda store: record_outcomes(store, reports))
    except UnknownDecisions as exc:
        return JSONResponse(
            {
                "error": str(exc),
                "unknown": exc.unknown[:MAX_LISTED_ERRORS],
                "total": len(exc.unknown),
            },
            status_code=404,
        )
    except StoreUnavailable as exc:
        return unavailable(exc)
    new = sum(r["recorded"] for r in results)
    return JSONResponse(
        {"recorded": new, "already_recorded": len(results) - new, "outcomes": results}
    )


app: Final = Starlette(routes=[Route("/", post_outcomes, methods=["POST"])])

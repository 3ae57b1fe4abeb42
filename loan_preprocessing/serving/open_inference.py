"""The Open Inference Protocol (V2, HTTP/JSON) beside /predict.

KServe, MLServer and Triton clients send a batch as one input per column (the
pandas-codec convention: `{"name": "ApplicantIncome", "datatype": "FP64",
"shape": [n, 1], "data": [...]}`). Columns go straight into the columnar
validation and the model, with no object per row; the answer is one output per
column: `Loan_ID` (when given), `Loan_Status`, `probability` and `reasons`.

Mounted by service.py at /v2; the handlers reach the worker's service instance
through `bentoml.get_current_service()`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, Literal, get_args, get_origin

import bentoml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from loan_preprocessing.decide import ColumnDecisions, UnscoredRowError
from loan_preprocessing.inputs.columns import RULES, ColumnsValidationError, validate_columns
from loan_preprocessing.model.store import MODEL_NAME
from loan_preprocessing.records.rows import json_rows
from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN

MOUNT: Final = "/v2"
INFER_PATH: Final = f"{MOUNT}/models/{MODEL_NAME}/infer"
# Probes: open even when an API key is set, like /readyz.
HEALTH_PATHS: Final = frozenset({f"{MOUNT}/health/live", f"{MOUNT}/health/ready"})
DATATYPES: Final = (
    "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
    "FP16", "FP32", "FP64", "BYTES",
)  # fmt: skip
PROBABILITY_OUTPUT: Final = "probability"
# The id under which each decision is recorded (GET /decisions/{id}).
DECISION_ID_OUTPUT: Final = "decision_id"
# A rejection's reason codes, most important first, joined by REASON_SEPARATOR
# (empty for an approval), as in the CSV answers; the texts are in the README.
REASONS_OUTPUT: Final = "reasons"
OUTPUT_DATATYPES: Final = {
    DECISION_ID_OUTPUT: "BYTES",
    ID_COLUMN: "BYTES",
    TARGET_COLUMN: "BYTES",
    PROBABILITY_OUTPUT: "FP64",
    REASONS_OUTPUT: "BYTES",
}


def _datatype(name: str) -> str:
    """The V2 datatype of a schema field, read from its annotation."""
    rule = RULES[name]
    if rule.numeric:
        return "FP64"
    members = [m for m in get_args(rule.info.annotation) or (rule.info.annotation,)]
    literals = [v for m in members if get_origin(m) is Literal for v in get_args(m)]
    return "INT64" if literals and all(type(v) is int for v in literals) else "BYTES"


INPUT_DATATYPES: Final = {name: _datatype(name) for name in RULES}


class InferenceInput(BaseModel):
    """One column of the batch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    shape: list[int] = Field(min_length=1, max_length=2)
    datatype: Literal[DATATYPES]  # type: ignore[valid-type]
    parameters: dict[str, Any] | None = None
    data: list[Any]


class InferenceRequest(BaseModel):
    """A V2 inference request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=128)
    parameters: dict[str, Any] | None = None
    inputs: list[InferenceInput] = Field(min_length=1, max_length=len(INPUT_DATATYPES) + 1)
    outputs: list[dict[str, Any]] | None = Field(default=None, max_length=len(OUTPUT_DATATYPES))


# Every object key a V2 request may hold: the protocol's, and the parameters that
# KServe, MLServer and Triton clients send.
KNOWN_KEYS: Final = frozenset(
    {
        *InferenceRequest.model_fields,
        *InferenceInput.model_fields,
        "content_type",
        "binary_data",
        "binary_data_output",
        "binary_data_size",
    }
)


class RequestError(ValueError):
    """The request is not a batch this model can take: a 400 with this message."""


def columns_of(request: InferenceRequest, max_rows: int) -> tuple[dict[str, list[Any]], int]:
    """The request's columns by name, and how many rows they hold. A column is flat
    (`shape [n]`) or one value per row (`shape [n, 1]`, flat or nested data)."""
    columns: dict[str, list[Any]] = {}
    rows: int | None = None
    for column in request.inputs:
        if column.name in columns:
            raise RequestError(f"input {column.name!r} appears more than once")
        if len(column.shape) == 2 and column.shape[1] != 1:
            raise RequestError(f"input {column.name!r}: shape must be [n] or [n, 1]")
        n = column.shape[0]
        data = column.data
        if data and all(isinstance(v, list) and len(v) == 1 for v in data):
            data = [v[0] for v in data]
        # A tensor has no null: for a missing value clients send NaN (a number) or
        # an empty string (text), or null (MLServer); each means missing here, as
        # an empty cell does in a CSV file.
        if column.datatype.startswith("FP"):
            data = [None if type(v) is float and v != v else v for v in data]
        elif column.datatype == "BYTES":
            data = [None if v == "" else v for v in data]
        if len(data) != n:
            raise RequestError(
                f"input {column.name!r}: shape says {n} values, data has {len(data)}"
            )
        if rows is not None and n != rows:
            raise RequestError(f"input {column.name!r} has {n} rows, the others {rows}")
        rows = n
        columns[column.name] = data
    if not rows:
        raise RequestError("the inputs hold no rows")
    if rows > max_rows:
        raise RequestError(f"at most {max_rows} rows in one request, got {rows}")
    # A labelled export carries its target: ignored, as /predict_csv ignores it.
    columns.pop(TARGET_COLUMN, None)
    return columns, rows


def output_values(decided: ColumnDecisions, decision_ids: list[str] | None) -> dict[str, list[Any]]:
    """Every output's values, one per row (decision_id only when recorded)."""
    values: dict[str, list[Any]] = {}
    if decision_ids is not None:
        values[DECISION_ID_OUTPUT] = decision_ids
    values[ID_COLUMN] = decided.loan_ids
    values[TARGET_COLUMN] = decided.statuses
    values[PROBABILITY_OUTPUT] = decided.probabilities
    values[REASONS_OUTPUT] = decided.reason_codes()
    return values


def check_outputs(request: InferenceRequest) -> None:
    """Refuse an unknown output name before anything is decided."""
    for output in request.outputs or []:
        name = output.get("name")
        if name not in OUTPUT_DATATYPES:
            raise RequestError(f"unknown output {name!r}; outputs: {', '.join(OUTPUT_DATATYPES)}")


def response_body(
    values: dict[str, list[Any]], model_version: str, request: InferenceRequest, with_ids: bool
) -> dict[str, Any]:
    """The V2 response: one output per column, in the pandas codec's [n, 1] shape."""
    wanted = [o.get("name") for o in request.outputs or []] or [
        name for name in values if with_ids or name != ID_COLUMN
    ]
    count = len(values[TARGET_COLUMN])
    outputs = []
    for name in wanted:
        if name not in values:
            raise RequestError(f"output {name!r} is not available; outputs: {', '.join(values)}")
        outputs.append(
            {
                "name": name,
                "datatype": OUTPUT_DATATYPES[name],
                "shape": [count, 1],
                "data": values[name],
            }
        )
    return {
        "model_name": MODEL_NAME,
        "model_version": model_version,
        "id": request.id,
        "parameters": {"content_type": "pd"},
        "outputs": outputs,
    }


def row_answers(decided: ColumnDecisions, decision_ids: list[str]) -> list[str]:
    """Each row's answer as recorded: every output of the row (a request names
    the ones it wants; a replay of it picks the same ones)."""
    return json_rows(output_values(decided, decision_ids))


def _bad_request(message: str, detail: list[dict[str, Any]] | None = None) -> JSONResponse:
    return JSONResponse({"error": message, "detail": detail or []}, status_code=400)


def _validation_answer(exc: ColumnsValidationError) -> JSONResponse:
    detail = [
        {"loc": ["inputs", p.field, p.row], "msg": p.message, "type": "value_error"}
        for p in exc.problems
    ]
    body = {"error": str(exc), "detail": detail, "total": exc.total}
    return JSONResponse(body, status_code=400)


async def infer(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    try:
        parsed = InferenceRequest.model_validate_json(await request.body())
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:20]]
        return _bad_request(f"not a V2 inference request: {errors[0]['msg']}", detail)
    try:
        check_outputs(parsed)
        columns, count = columns_of(parsed, service.max_rows)
        validated = validate_columns(columns, count)
        # In a thread: recording waits for the store's commit, which must not
        # hold up the worker's other requests.
        decided, decision_ids = await run_in_threadpool(
            service.decide_columns, validated, row_answers
        )
        values = output_values(decided, decision_ids)
        body = response_body(values, service.model_version, parsed, ID_COLUMN in columns)
    except ColumnsValidationError as exc:
        return _validation_answer(exc)
    except RequestError as exc:
        return _bad_request(str(exc))
    except UnscoredRowError:
        return JSONResponse(
            {"error": "the model could not score every row; see the server log"}, status_code=500
        )
    return JSONResponse(body)


async def model_metadata(request: Request) -> JSONResponse:
    service = bentoml.get_current_service()
    return JSONResponse(
        {
            "name": MODEL_NAME,
            "versions": [service.model_version],
            "platform": "scikit-learn",
            "inputs": [
                {"name": name, "datatype": datatype, "shape": [-1, 1]}
                for name, datatype in INPUT_DATATYPES.items()
            ],
            "outputs": [
                {"name": name, "datatype": datatype, "shape": [-1, 1]}
                for name, datatype in OUTPUT_DATATYPES.items()
            ],
        }
    )


async def live(request: Request) -> JSONResponse:
    return JSONResponse({"live": True})


async def ready(request: Request) -> JSONResponse:
    try:
        bentoml.get_current_service()
    except bentoml.exceptions.BentoMLException:
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


def _route(path: str, endpoint: Callable[..., Any], method: str) -> Route:
    return Route(path.removeprefix(MOUNT), endpoint, methods=[method])


app: Final = Starlette(
    routes=[
        _route(INFER_PATH, infer, "POST"),
        _route(f"{MOUNT}/models/{MODEL_NAME}", model_metadata, "GET"),
        _route(f"{MOUNT}/models/{MODEL_NAME}/ready", ready, "GET"),
        _route(f"{MOUNT}/health/live", live, "GET"),
        _route(f"{MOUNT}/health/ready", ready, "GET"),
    ]
)

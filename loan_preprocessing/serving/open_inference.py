"""The Open Inference Protocol (V2, HTTP/JSON) beside /predict.

KServe, MLServer and Triton clients send a batch as one input per column (the
pandas-codec convention: `{"name": "ApplicantIncome", "datatype": "FP64",
"shape": [n, 1], "data": [...]}`). Columns go straight into the columnar
validation and the model, with no object per row; the answer is one output per
column: `Loan_ID` (when given), `Loan_Status`, `probability`, `reasons`,
`counteroffer_amount` and `counteroffer_term` (null where there is no offer).

Mounted by service.py at /v2; the handlers reach the worker's service instance
through `bentoml.get_current_service()`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import NoneType
from typing import Annotated, Any, Final, Literal, get_args, get_origin

import bentoml
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StrictInt, ValidationError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

from loan_preprocessing import deadline
from loan_preprocessing.decide import ColumnDecisions, UnscoredRowError
from loan_preprocessing.inputs.columns import (
    RULES,
    CodedColumn,
    Column,
    ColumnsValidationError,
    validate_columns,
)
from loan_preprocessing.model.store import MODEL_NAME
from loan_preprocessing.records.rows import json_rows
from loan_preprocessing.schema import BATCH_COLUMNS, ID_COLUMN, TARGET_COLUMN
from loan_preprocessing.serving import binary_tensors
from loan_preprocessing.serving.binary_tensors import BinaryTensorError, Strings, Tensor

MOUNT: Final = "/v2"
MODEL_PATH: Final = f"{MOUNT}/models/{MODEL_NAME}"
INFER_PATH: Final = f"{MODEL_PATH}/infer"
# The same model, named with its version: .../versions/<version>[/infer|/ready].
VERSIONS_PATH: Final = f"{MODEL_PATH}/versions/"
SERVER_NAME: Final = "loan-approval"
EXTENSIONS: Final = ("binary_tensor_data",)
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
# A rejection's counteroffer (schema.Counteroffer): null for an approval and
# where there is no offer of the kind.
COUNTEROFFER_AMOUNT_OUTPUT: Final = "counteroffer_amount"
COUNTEROFFER_TERM_OUTPUT: Final = "counteroffer_term"
OUTPUT_DATATYPES: Final = {
    DECISION_ID_OUTPUT: "BYTES",
    ID_COLUMN: "BYTES",
    TARGET_COLUMN: "BYTES",
    PROBABILITY_OUTPUT: "FP64",
    REASONS_OUTPUT: "BYTES",
    COUNTEROFFER_AMOUNT_OUTPUT: "FP64",
    COUNTEROFFER_TERM_OUTPUT: "FP64",
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
# What a tensor of each datatype holds in JSON, besides null (a missing value in
# any tensor, as MLServer sends it), and the range of the integer types.
_FLOAT_TYPES: Final = frozenset({float, int, NoneType})
_INT_TYPES: Final = frozenset({int, NoneType})
_INT_RANGES: Final = {
    **{f"INT{bits}": (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) for bits in (8, 16, 32, 64)},
    **{f"UINT{bits}": (0, 2**bits - 1) for bits in (8, 16, 32, 64)},
}
_HELD_TYPES: Final = {
    "BOOL": frozenset({bool, NoneType}),
    "BYTES": frozenset({str, NoneType}),
    **{name: _INT_TYPES for name in _INT_RANGES},
    **{f"FP{bits}": _FLOAT_TYPES for bits in (16, 32, 64)},
}
_HELD_WORDS: Final = {
    "BOOL": "true or false",
    "BYTES": "strings",
    **{name: "whole numbers" for name in _INT_RANGES},
    **{f"FP{bits}": "numbers" for bits in (16, 32, 64)},
}
# A whole-number tensor has no NaN: a missing value there is null.
MISSING_INTEGER_HINT: Final = (
    "a missing value in an integer tensor is null (or send the column as FP64, where NaN is "
    "missing too)"
)


class InferenceInput(BaseModel):
    """One column of the batch."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    # Strict: the protocol's shape is integers; "1" or true is a malformed request.
    shape: list[Annotated[StrictInt, Field(ge=0)]] = Field(min_length=1, max_length=2)
    datatype: Literal[DATATYPES]  # type: ignore[valid-type]
    parameters: dict[str, Any] | None = None
    data: list[Any]
    # The input's values when they came in binary (`data` is then empty).
    _binary: Tensor | None = PrivateAttr(default=None)

    @property
    def binary(self) -> Tensor | None:
        return self._binary

    def attach(self, tensor: Tensor) -> None:
        """Give the input its values decoded from the binary part of the request."""
        self._binary = tensor


class RequestedOutput(BaseModel):
    """One output the client asks for, by name (binary_data and the like are
    parameters)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(max_length=64)
    parameters: dict[str, Any] | None = None


class InferenceRequest(BaseModel):
    """A V2 inference request."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=128)
    parameters: dict[str, Any] | None = None
    inputs: list[InferenceInput] = Field(min_length=1, max_length=len(INPUT_DATATYPES) + 1)
    outputs: list[RequestedOutput] | None = Field(default=None, max_length=len(OUTPUT_DATATYPES))


# Every object key a V2 request may hold: the protocol's, and the parameters that
# KServe, MLServer and Triton clients send.
KNOWN_KEYS: Final = frozenset(
    {
        *InferenceRequest.model_fields,
        *InferenceInput.model_fields,
        *RequestedOutput.model_fields,
        "content_type",
        "binary_data",
        "binary_data_output",
        "binary_data_size",
    }
)


class RequestError(ValueError):
    """The request is not a batch this model can take: a 400 with this message."""


def columns_of(request: InferenceRequest, max_rows: int) -> tuple[dict[str, Column], int]:
    """The request's columns by name, and how many rows they hold. A column is flat
    (`shape [n]`) or one value per row (`shape [n, 1]`, flat or nested data).
    Each pass over a column's values starts with a check of the request's
    deadline (loan_preprocessing/deadline.py): a column holds as many values as
    the body limit allows, whatever the row limit."""
    columns: dict[str, Column] = {}
    rows: int | None = None
    for column in request.inputs:
        deadline.check()
        if column.name in columns:
            raise RequestError(f"input {column.name!r} appears more than once")
        if len(column.shape) == 2 and column.shape[1] != 1:
            raise RequestError(f"input {column.name!r}: shape must be [n] or [n, 1]")
        n = column.shape[0]
        data: Column = (
            _json_values(column.name, column.datatype, column.data)
            if column.binary is None
            else _binary_values(column.binary)
        )
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
    missing = [name for name in BATCH_COLUMNS if name not in columns]
    if missing:
        raise RequestError(
            f"the inputs lack {', '.join(map(repr, missing))}, which the model reads: an absent "
            'column is refused rather than read as unknown; send it with null (or NaN, or "") '
            "values to say every value is unknown"
        )
    return columns, rows


def _json_values(name: str, datatype: str, data: list[Any]) -> list[Any]:
    """A JSON input's values, checked against its datatype, missing ones as None."""
    if data and all(isinstance(v, list) and len(v) == 1 for v in data):
        deadline.check()
        data = [v[0] for v in data]
    deadline.check()
    check_tensor_values(name, datatype, data)
    deadline.check()
    # A tensor has no null: for a missing value clients send NaN (a number) or
    # an empty string (text), or null (MLServer); each means missing here, as
    # an empty cell does in a CSV file. An integer tensor has no NaN.
    if datatype.startswith("FP"):
        return [None if type(v) is float and v != v else v for v in data]
    if datatype == "BYTES":
        return [None if v == "" else v for v in data]
    return data


def _binary_values(tensor: Tensor) -> Column:
    """A binary input's values as the columnar validation takes them, with the
    JSON values' meaning: NaN (in a float array) and "" are missing. A binary
    tensor holds only values of its datatype, so there is nothing to check."""
    if not isinstance(tensor, Strings):
        return tensor.astype(np.float64, copy=False) if tensor.dtype.kind == "f" else tensor
    if "" not in tensor.distinct:
        return CodedColumn(tensor.codes, list(tensor.distinct))
    empty = tensor.distinct.index("")
    codes = tensor.codes - (tensor.codes > empty)
    codes[tensor.codes == empty] = -1
    return CodedColumn(codes, [v for v in tensor.distinct if v])


def output_values(decided: ColumnDecisions, decision_ids: list[str] | None) -> dict[str, list[Any]]:
    """Every output's values, one per row (decision_id only when recorded)."""
    values: dict[str, list[Any]] = {}
    if decision_ids is not None:
        values[DECISION_ID_OUTPUT] = decision_ids
    values[ID_COLUMN] = decided.loan_ids
    values[TARGET_COLUMN] = decided.statuses
    values[PROBABILITY_OUTPUT] = decided.probabilities
    values[REASONS_OUTPUT] = decided.reason_codes()
    values[COUNTEROFFER_AMOUNT_OUTPUT] = decided.counteroffer_amounts
    values[COUNTEROFFER_TERM_OUTPUT] = decided.counteroffer_terms
    return values


def check_tensor_values(name: str, datatype: str, data: list[Any]) -> None:
    """Refuse values a tensor of `datatype` cannot hold (a number in BYTES, NaN or
    1.5 in INT64, a list anywhere), naming the input, the row and the value."""
    held = _HELD_TYPES[datatype]
    if not set(map(type, data)) <= held:
        row, value = next((i, v) for i, v in enumerate(data) if type(v) not in held)
        hint = f"; {MISSING_INTEGER_HINT}" if datatype in _INT_RANGES else ""
        raise RequestError(
            f"input {name!r}: a {datatype} tensor holds {_HELD_WORDS[datatype]}, got "
            f"{_shown(value)} at row {row}{hint}"
        )
    if datatype in _INT_RANGES:
        low, high = _INT_RANGES[datatype]
        numbers = [v for v in data if v is not None]
        if numbers and (min(numbers) < low or max(numbers) > high):
            value = next(v for v in numbers if not low <= v <= high)
            raise RequestError(f"input {name!r}: {value} is out of the range of {datatype}")


def _shown(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:40] + "..."


def wanted_outputs(request: InferenceRequest) -> list[str]:
    """The outputs to answer with, in order: those asked for, or all that were
    decided (Loan_ID only when the inputs had it; decision_id when recorded): an
    empty list. An unknown name is refused before anything is decided."""
    if not request.outputs:
        return []
    wanted = [output.name for output in request.outputs]
    for name in wanted:
        if name not in OUTPUT_DATATYPES:
            raise RequestError(f"unknown output {name!r}; outputs: {', '.join(OUTPUT_DATATYPES)}")
    return wanted


def response_body(
    values: dict[str, list[Any]],
    model_version: str,
    request: InferenceRequest,
    wanted: list[str],
    with_ids: bool,
) -> dict[str, Any]:
    """The V2 response: one output per column (the `wanted` ones, already checked,
    or every one decided), in the pandas codec's [n, 1] shape."""
    wanted = wanted or [name for name in values if with_ids or name != ID_COLUMN]
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


def parse_request(body: bytes, header_length: str | None) -> InferenceRequest:
    """The V2 request in `body`: all JSON, or (with the binary extension's
    Inference-Header-Content-Length) a JSON header and its inputs' binary data."""
    length = binary_tensors.json_length(header_length, len(body))
    if length is None:
        return InferenceRequest.model_validate_json(body)
    try:
        header = json.loads(body[:length])
    except (ValueError, UnicodeDecodeError):
        raise BinaryTensorError(
            f"the first {length} bytes (Inference-Header-Content-Length) are not JSON"
        ) from None
    if not isinstance(header, dict):
        raise BinaryTensorError("the JSON header is not an object")
    tensors = binary_tensors.attach_inputs(header, memoryview(body)[length:])
    deadline.check()
    parsed = InferenceRequest.model_validate(header)
    for index, tensor in tensors.items():
        parsed.inputs[index].attach(tensor)
    return parsed


def _answer(body: dict[str, Any], request: InferenceRequest) -> Response:
    """JSON, or with the outputs asked for in binary after the JSON."""
    asked = {o.name: o.model_dump() for o in request.outputs or []}
    binary = {
        o["name"]
        for o in body["outputs"]
        if binary_tensors.wants_binary(asked.get(o["name"]), request.parameters)
    }
    packed = binary_tensors.binary_answer(body, binary)
    if packed is None:
        return JSONResponse(body)
    content, length = packed
    return Response(
        content,
        media_type=binary_tensors.BINARY_MEDIA_TYPE,
        headers={"Inference-Header-Content-Length": str(length)},
    )


async def infer(request: Request) -> Response:
    service = bentoml.get_current_service()
    try:
        parsed = parse_request(
            await request.body(), request.headers.get(binary_tensors.HEADER_LENGTH)
        )
    except BinaryTensorError as exc:
        return _bad_request(str(exc))
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        detail = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:20]]
        return _bad_request(f"not a V2 inference request: {errors[0]['msg']}", detail)
    try:
        # The whole request is checked before anything is decided (or recorded),
        # each step stopping at the request's deadline.
        columns, count = columns_of(parsed, service.max_rows)
        wanted = wanted_outputs(parsed)
        validated = validate_columns(columns, count)
        deadline.check()
        # In a thread: recording waits for the store's commit, which must not
        # hold up the worker's other requests.
        decided, decision_ids = await run_in_threadpool(
            service.decide_columns, validated, row_answers
        )
        values = output_values(decided, decision_ids)
        body = response_body(values, service.model_version, parsed, wanted, ID_COLUMN in columns)
    except ColumnsValidationError as exc:
        return _validation_answer(exc)
    except RequestError as exc:
        return _bad_request(str(exc))
    except UnscoredRowError:
        return JSONResponse(
            {"error": "the model could not score every row; see the server log"}, status_code=500
        )
    return _answer(body, parsed)


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
        service = bentoml.get_current_service()
    except bentoml.exceptions.BentoMLException:
        return JSONResponse({"ready": False}, status_code=503)
    # As /readyz: not ready once a worker of this server failed to start.
    is_ready = getattr(service, "__is_ready__", None)
    if is_ready is not None and not await is_ready():
        return JSONResponse({"ready": False}, status_code=503)
    return JSONResponse({"ready": True})


async def _error(request: Request, exc: Exception) -> JSONResponse:
    """A 404 or 405 under /v2 as V2 clients read errors: JSON {"error": ...}."""
    assert isinstance(exc, HTTPException)
    path = request.url.path
    shown = path if len(path) <= 80 else path[:80] + "..."  # the client chooses its length
    return JSONResponse(
        {"error": f"{exc.detail}: {request.method} {shown}"},
        status_code=exc.status_code,
        headers=exc.headers,
    )


async def _unrouted(request: Request) -> JSONResponse:
    """Any other path under /v2. BentoML mounts this app passively: a path none of
    its routes matches would fall through to BentoML's plain-text 404, so this
    last route takes it, answering 405 when another route has the path."""
    allowed = sorted(
        {
            method
            for route in app.routes
            if isinstance(route, Route) and route.endpoint is not _unrouted
            if route.matches(request.scope)[0] is Match.PARTIAL
            for method in route.methods or ()
        }
    )
    if allowed:
        raise HTTPException(405, headers={"Allow": ", ".join(allowed)})
    raise HTTPException(404)


async def server_metadata(request: Request) -> JSONResponse:
    return JSONResponse(
        {"name": SERVER_NAME, "version": bentoml.__version__, "extensions": list(EXTENSIONS)}
    )


def _served_version_only(endpoint: Callable[[Request], Any]) -> Callable[[Request], Any]:
    """`endpoint` under .../versions/<version>: for the served version (which
    OpenInferencePaths already sends to the unversioned route), else a 404 that
    names the version served."""

    async def versioned(request: Request) -> Response:
        served = bentoml.get_current_service().model_version
        asked = request.path_params["version"]
        if asked != served:
            return JSONResponse(
                {
                    "error": f"model {MODEL_NAME!r} has no version {asked[:64]!r} here; "
                    f"this server serves version {served!r}"
                },
                status_code=404,
            )
        response: Response = await endpoint(request)
        return response

    return versioned


class OpenInferencePaths:
    """ASGI middleware, outermost: a request for the served version's
    .../versions/<version> routes takes the unversioned route (so every guard,
    limit and key on that route applies to it), and `/v2` takes `/v2/` (the
    server's metadata, which the mount cannot route itself). A binary-extension
    request sent as application/octet-stream is let through the JSON media
    type check: its header part is JSON, which is checked."""

    def __init__(self, app: Any, model_tag: Callable[[], str]) -> None:
        self.app = app
        self.model_tag = model_tag

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"].startswith(MOUNT):
            scope = self._rewritten(scope)
        await self.app(scope, receive, send)

    def _rewritten(self, scope: dict[str, Any]) -> dict[str, Any]:
        path: str = scope["path"]
        if path == MOUNT:
            return {**scope, "path": f"{MOUNT}/"}
        if path.startswith(VERSIONS_PATH):
            version, _, rest = path.removeprefix(VERSIONS_PATH).partition("/")
            if version == self.model_tag().partition(":")[2]:
                path = f"{MODEL_PATH}/{rest}".removesuffix("/")
                scope = {**scope, "path": path}
        if path == INFER_PATH:
            headers = scope["headers"]
            binary = any(k == binary_tensors.HEADER_LENGTH.encode() for k, _ in headers)
            octets = binary_tensors.BINARY_MEDIA_TYPE.encode()
            if binary and any(k == b"content-type" and v.lower() == octets for k, v in headers):
                scope = {
                    **scope,
                    "headers": [
                        (k, b"application/json" if k == b"content-type" else v) for k, v in headers
                    ],
                }
        return scope


def _route(path: str, endpoint: Callable[..., Any], method: str) -> Route:
    return Route(path.removeprefix(MOUNT), endpoint, methods=[method])


app: Final = Starlette(
    routes=[
        _route(f"{MOUNT}/", server_metadata, "GET"),
        _route(f"{VERSIONS_PATH}{{version}}/infer", _served_version_only(infer), "POST"),
        _route(f"{VERSIONS_PATH}{{version}}", _served_version_only(model_metadata), "GET"),
        _route(f"{VERSIONS_PATH}{{version}}/ready", _served_version_only(ready), "GET"),
        _route(INFER_PATH, infer, "POST"),
        _route(f"{MOUNT}/models/{MODEL_NAME}", model_metadata, "GET"),
        _route(f"{MOUNT}/models/{MODEL_NAME}/ready", ready, "GET"),
        _route(f"{MOUNT}/health/live", live, "GET"),
        _route(f"{MOUNT}/health/ready", ready, "GET"),
        # Last: every path the routes above do not take.
        Route("/{path:path}", _unrouted),
    ],
    exception_handlers={404: _error, 405: _error},
)

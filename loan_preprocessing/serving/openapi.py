"""The API page and its OpenAPI document, as the service really behaves.

BentoML publishes a 3.0.2 document titled after the class, with version "None",
its own description, no 401/408/413/415/429/503/504 answers and no security
scheme, and serves a Swagger page that loads Google Tag Manager. These
middleware correct the document and serve a page of our own that loads nothing
but BentoML's packaged Swagger UI assets.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Final

from loan_preprocessing.schema import OverrideRequest, ReportedOutcome
from loan_preprocessing.serving.middleware import Receive, Scope, Send
from loan_preprocessing.serving.open_inference import HEALTH_PATHS, INFER_PATH, InferenceRequest

API_TITLE: Final = "Loan approval API"
API_DESCRIPTION: Final = """\
Decides loan applications with the stored scikit-learn model named in the version
above (and in each answer's `X-Model-Tag` header).

- `POST /predict` takes JSON applications, `POST /predict_csv` a CSV file in the
  Loan Prediction data set's format, `POST /v2/models/loan_approval/infer` the
  Open Inference Protocol (V2) that KServe, MLServer and Triton clients send.
- Each answers in the applications' order with `Loan_Status` (Y/N), the approval
  probability and, for a rejection, its principal reasons (at most four codes,
  the fields they are about and a text the applicant can read).
- The model never reads `Gender` or `Married`: they are accepted for fairness
  monitoring only.
- A 400 lists the first problems, naming row and field, and how many there were in all.

"Try it out" on an operation sends a realistic application."""
BEARER_SCHEME: Final = "bearerAuth"
# BentoML documents a 400 body's "detail" as a string, but sends a list of
# problems there; the published contract must describe what clients receive.
VALIDATION_DETAIL_SCHEMA: Final = {
    "title": "Error Detail",
    "anyOf": [
        {"type": "string"},
        {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "loc": {
                        "type": "array",
                        "items": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
                    },
                    "msg": {"type": "string"},
                    "type": {"type": "string"},
                    "line": {"type": "integer"},
                    "column": {"type": ["string", "null"]},
                },
            },
        },
    ],
}
TOTAL_SCHEMA: Final = {"type": "integer", "description": "How many problems there were in all."}
OPENAPI_VERSION: Final = "3.1.0"
EXTRA_RESPONSES: Final = {
    "401": "Missing or wrong API key (only when LOAN_API_KEY is set).",
    "408": "No part of the body arrived for LOAN_BODY_IDLE_SECONDS.",
    "413": "Request body larger than LOAN_MAX_BODY_BYTES.",
    "415": "Content-Type is not the one this route takes.",
    "429": "Too many requests in flight; retry after a short, jittered backoff.",
    "503": (
        "Nothing was decided: the service is at capacity (not decided within "
        "LOAN_MAX_LATENCY_MS) or cannot record decisions now; retry after Retry-After."
    ),
    "504": "Not answered within LOAN_TIMEOUT_SECONDS; retry with backoff.",
}


V2_TAG: Final = "Open Inference Protocol (V2)"
RECORDS_TAG: Final = "Decision records"
TAGS: Final = [
    {"name": "Service APIs", "description": "Decide applications: JSON records or a CSV file."},
    {
        "name": RECORDS_TAG,
        "description": "The recorded decisions, what happened to the loans (outcomes) and "
        "people's changes of the final decision (overrides).",
    },
    {
        "name": V2_TAG,
        "description": "The same decisions for KServe, MLServer and Triton clients: one "
        "input per column, the request fields as names.",
    },
    {
        "name": "Infrastructure",
        "description": "Probes and Prometheus metrics; open even when an API key is set.",
    },
]
V2_ERROR_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "error": {"type": "string"},
        "detail": {"type": "array", "items": {"type": "object"}},
        "total": TOTAL_SCHEMA,
    },
    "required": ["error"],
}
V2_TENSOR_SCHEMA: Final = {
    "type": "object",
    "properties": {
        "name": {"type": "string"},
        "datatype": {"type": "string"},
        "shape": {"type": "array", "items": {"type": "integer"}},
        "data": {"type": "array"},
    },
    "required": ["name", "datatype", "shape"],
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _get(summary: str, answer: str, tag: str = V2_TAG) -> dict[str, Any]:
    return {
        "get": {"tags": [tag], "summary": summary, "responses": {"200": {"description": answer}}}
    }


def open_inference_schemas() -> dict[str, Any]:
    """The V2 request's JSON Schema (from the model the handler validates with) and
    the answer's, as OpenAPI components."""
    request = InferenceRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    definitions = request.pop("$defs", {})
    return {
        **definitions,
        "InferenceRequest": request,
        "InferenceResponse": {
            "type": "object",
            "properties": {
                "model_name": {"type": "string"},
                "model_version": {"type": "string"},
                "id": {"type": ["string", "null"]},
                "parameters": {"type": "object"},
                "outputs": {"type": "array", "items": V2_TENSOR_SCHEMA},
            },
            "required": ["model_name", "model_version", "outputs"],
        },
        "InferenceError": V2_ERROR_SCHEMA,
    }


def open_inference_paths() -> dict[str, Any]:
    """The V2 routes, which BentoML leaves out of the document (they are a mounted
    ASGI app, not BentoML APIs)."""
    model_path = INFER_PATH.removesuffix("/infer")
    live_path, ready_path = sorted(HEALTH_PATHS)
    return {
        INFER_PATH: {
            "post": {
                "tags": [V2_TAG],
                "summary": "Decide a batch sent as one input per column",
                "description": "Inputs are the request fields of /predict (Loan_ID "
                "optional), each a column of shape [n] or [n, 1]; outputs Loan_ID (when "
                "sent), Loan_Status, probability and reasons (a rejection's codes joined "
                "by ';'), each [n, 1]. A request may name the outputs it wants.",
                "requestBody": {
                    "required": True,
                    "content": {"application/json": {"schema": _ref("InferenceRequest")}},
                },
                "responses": {
                    "200": _json(
                        _ref("InferenceResponse"), "The decisions, one output per column."
                    ),
                    "400": _json(
                        _ref("InferenceError"),
                        'Not a V2 request, or a bad value; detail names ["inputs", field, row].',
                    ),
                },
            }
        },
        model_path: _get("The model's inputs, outputs and served version", "Model metadata."),
        f"{model_path}/ready": _get("Whether the model is ready", "Ready."),
        live_path: _get("Liveness probe (open)", "Live.", "Infrastructure"),
        ready_path: _get("Readiness probe (open)", "Ready.", "Infrastructure"),
    }


# The record routes' errors have V2's body: `error`, and `detail` and `total` for a list.
ERROR_BODY: Final = V2_ERROR_SCHEMA
RECORD_RESPONSES: Final = {
    "400": "A field or the body is not valid; `error` names the row and field.",
    "401": EXTRA_RESPONSES["401"],
    "404": "No such decision is recorded (named), or records are turned off.",
    "413": EXTRA_RESPONSES["413"],
    "415": EXTRA_RESPONSES["415"],
    "503": "The decision store cannot be read or written now; retry after Retry-After.",
}
_DECISION_ID_PARAMETER: Final = {
    "name": "decision_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
    "description": "The decision's id, as answered.",
}


def _record_operation(
    summary: str, answer: str, body: dict[str, Any] | None = None, **extra: str
) -> dict[str, Any]:
    responses: dict[str, Any] = {"200": {"description": answer}}
    for status, description in {**RECORD_RESPONSES, **extra}.items():
        responses[status] = _json(ERROR_BODY, description)
    operation: dict[str, Any] = {"tags": [RECORDS_TAG], "summary": summary, "responses": responses}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": body}
    return operation


def record_schemas() -> dict[str, Any]:
    """The request models of the record routes, as components."""
    template = "#/components/schemas/{model}"
    return {
        "ReportedOutcome": ReportedOutcome.model_json_schema(ref_template=template),
        "OverrideRequest": OverrideRequest.model_json_schema(ref_template=template),
    }


def record_paths() -> dict[str, Any]:
    """The decision records' routes (serving/decisions_api.py, outcomes_api.py)."""
    csv_file = {
        "type": "object",
        "properties": {"file": {"type": "string", "format": "binary"}},
        "required": ["file"],
    }
    outcomes = _record_operation(
        "Record what happened to decided applications (all or none; the same outcome again is one)",
        "`recorded` (new), `already_recorded`, and each outcome's decision_id.",
        {
            "application/json": {"schema": {"type": "array", "items": _ref("ReportedOutcome")}},
            "text/csv": {"schema": {"type": "string"}},
            "multipart/form-data": {"schema": csv_file},
        },
    )
    override = _record_operation(
        "Change a decision's final status (append-only; the model's decision is kept)",
        "Not used: a recorded override answers 201.",
        {"application/json": {"schema": _ref("OverrideRequest")}},
        **{
            "409": "The override would restate the standing status, or the decision has "
            "the most overrides recorded."
        },
    )
    override["responses"].pop("200")
    override["responses"]["201"] = {
        "description": "The override as recorded, with the status it replaced (`from_status`)."
    }
    one = _record_operation(
        "One recorded decision, with its outcomes, overrides and final_status",
        "The record: the answer as given, the application, the model, outcomes, overrides.",
    )
    one["parameters"] = [_DECISION_ID_PARAMETER]
    override["parameters"] = [_DECISION_ID_PARAMETER]
    listed = _record_operation(
        "The decisions on one Loan_ID, newest first", "`decisions`: the records, newest first."
    )
    listed["parameters"] = [
        {"name": "loan_id", "in": "query", "required": True, "schema": {"type": "string"}}
    ]
    return {
        "/outcomes": {"post": outcomes},
        "/decisions": {"get": listed},
        "/decisions/{decision_id}": {"get": one},
        "/decisions/{decision_id}/override": {"post": override},
    }


class OpenApiCorrections:
    """Rewrites /docs.json so it matches the service: title, description and the
    served model tag as version, the real shape of 400 bodies, the answers the
    middleware and BentoML give, and the bearer scheme when a key is required."""

    def __init__(
        self,
        app: Any,
        api_paths: frozenset[str],
        model_tag: Callable[[], str],
        key_required: bool,
    ) -> None:
        self.app = app
        self.api_paths = api_paths
        self.model_tag = model_tag
        self.key_required = key_required

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/docs.json":
            return await self.app(scope, receive, send)
        start: dict[str, Any] = {}
        body = bytearray()

        async def capture(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            payload = self.corrected(bytes(body)) if start.get("status") == 200 else bytes(body)
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            await send(
                {**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]}
            )
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, capture)

    def corrected(self, body: bytes) -> bytes:
        spec = json.loads(body)
        # The schemas are pydantic's JSON Schema 2020-12 ("type": "null", numeric
        # exclusiveMinimum, "examples"): that is OpenAPI 3.1, not the 3.0.2 BentoML
        # declares, and tools that trust 3.0.2 misread them. Swagger UI reads 3.1.
        spec["openapi"] = OPENAPI_VERSION
        # BentoML's info names the class, version "None" and BentoML's team.
        spec["info"] = {
            "title": API_TITLE,
            "description": API_DESCRIPTION,
            "version": self.model_tag(),
        }
        components = spec.setdefault("components", {})
        invalid = components.get("schemas", {}).get("InvalidArgument")
        if invalid is not None:
            properties = invalid.setdefault("properties", {})
            properties["detail"] = VALIDATION_DETAIL_SCHEMA
            properties["total"] = TOTAL_SCHEMA
        if self.key_required:
            components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
                "type": "http",
                "scheme": "bearer",
                "description": "The value of LOAN_API_KEY.",
            }
        spec["tags"] = TAGS
        spec.setdefault("paths", {}).update(open_inference_paths())
        components.setdefault("schemas", {}).update(open_inference_schemas())
        spec["paths"].update(record_paths())
        components["schemas"].update(record_schemas())
        if self.key_required:
            for path in record_paths():
                for operation in spec["paths"][path].values():
                    operation["security"] = [{BEARER_SCHEME: []}]
        for path in self.api_paths | {INFER_PATH}:
            for operation in spec.get("paths", {}).get(path, {}).values():
                responses = operation.setdefault("responses", {})
                for status, description in EXTRA_RESPONSES.items():
                    responses.setdefault(status, {"description": description})
                if self.key_required:
                    operation["security"] = [{BEARER_SCHEME: []}]
        return json.dumps(spec).encode()


# BentoML's Swagger page without its Google Tag Manager snippet and with the
# API's own title; the assets are BentoML's, served by the service itself.
DOCS_PAGE: Final = f"""<!DOCTYPE html>
<html lang="en">
  <head>
    <meta charset="UTF-8">
    <title>{API_TITLE}</title>
    <link rel="stylesheet" type="text/css" href="./static_content/swagger-ui.css" />
    <link rel="stylesheet" type="text/css" href="./static_content/index.css" />
    <link rel="icon" type="image/png" href="./static_content/favicon-light-32x32.png" />
    <style>
      /* BentoML's index.css hides the title (it shows its own logo there), and
         the one server, ".", needs no selector. */
      .swagger-ui .info .main .title {{ visibility: visible; }}
      .swagger-ui .info .main .title span {{ position: static; }}
      .swagger-ui .scheme-container {{ display: none; }}
    </style>
  </head>
  <body>
    <div id="swagger-ui"></div>
    <script src="./static_content/swagger-ui-bundle.js" charset="UTF-8"> </script>
    <script src="./static_content/swagger-ui-standalone-preset.js" charset="UTF-8"> </script>
    <script src="./static_content/swagger-initializer.js" charset="UTF-8"> </script>
  </body>
</html>
""".encode()


class DocsPage:
    """GET / answers DOCS_PAGE: no third-party script runs in a reader's browser."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != "/"
            or scope["method"] not in ("GET", "HEAD")
        ):
            return await self.app(scope, receive, send)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(DOCS_PAGE)).encode()),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else DOCS_PAGE}
        )

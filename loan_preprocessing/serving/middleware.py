"""ASGI middleware in front of the BentoML app: body-size limit, API key, and
the X-Model-Tag response header. Plain ASGI so they work on any server."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Sequence
from typing import Any, Final

from loan_preprocessing.serving.open_inference import HEALTH_PATHS as V2_HEALTH_PATHS

MODEL_TAG_HEADER: Final = "X-Model-Tag"
# Probes and metrics stay open even when an API key is set.
OPEN_PATHS: Final = frozenset(
    {"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/", *V2_HEALTH_PATHS}
)

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class BodySizeLimit:
    """Answer 413 to bodies over `max_bytes`: at once when Content-Length says so;
    a body without one (chunked) is read up to the limit first, and refused as soon
    as it passes it, so an endless stream never reaches memory or the app."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None:
            if not declared.isdigit() or int(declared) > self.max_bytes:
                return await self._refuse(send)
            return await self.app(scope, receive, send)
        messages, size = [], 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                return await self._refuse(send)
            if not message.get("more_body", False):
                break

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        await _send_json(
            send,
            413,
            {"error": f"request body is larger than the limit of {self.max_bytes} bytes"},
            [(b"connection", b"close")],
        )


class BearerAuth:
    """When `api_key` is set, every path but the open ones needs it as a Bearer token."""

    def __init__(self, app: Any, api_key: str | None) -> None:
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith("/docs")
        ):
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        # compare_digest: the time taken must not reveal how much of the key matched.
        if not hmac.compare_digest(given, self.expected):
            return await _send_json(
                send,
                401,
                {"error": "missing or wrong API key: send 'Authorization: Bearer <key>'"},
                [(b"www-authenticate", b"Bearer")],
            )
        await self.app(scope, receive, send)


class ModelTagHeader:
    """Adds X-Model-Tag (the tag of the model that decided) to every API response."""

    def __init__(self, app: Any, model_tag: Callable[[], str | None]) -> None:
        self.app = app
        self.model_tag = model_tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_tag(message: dict[str, Any]) -> None:
            tag = self.model_tag()
            if message["type"] == "http.response.start" and tag:
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (MODEL_TAG_HEADER.lower().encode(), tag.encode()),
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_with_tag)


class ValidationFailureCounter:
    """Reports the fields named by each 400 answer of the API paths (to count
    validation failures by field), without changing or delaying the answer."""

    def __init__(
        self, app: Any, paths: frozenset[str], on_failure: Callable[[list[dict[str, Any]]], None]
    ) -> None:
        self.app = app
        self.paths = paths
        self.on_failure = on_failure

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        status = 0
        body = bytearray()

        async def watching_send(message: dict[str, Any]) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and status == 400:
                body.extend(message.get("body", b""))
                if not message.get("more_body", False):
                    self._report(bytes(body))
            await send(message)

        await self.app(scope, receive, watching_send)

    def _report(self, body: bytes) -> None:
        try:
            detail = json.loads(body).get("detail")
        except (ValueError, AttributeError):
            return
        if isinstance(detail, list):
            self.on_failure(detail)


# BentoML documents a 400 body's "detail" as a string, but sends pydantic's list
# of errors there; the published contract must describe what clients receive.
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
OPENAPI_VERSION: Final = "3.1.0"
EXTRA_RESPONSES: Final = {
    "401": "Missing or wrong API key (only when LOAN_API_KEY is set).",
    "413": "Request body larger than LOAN_MAX_BODY_BYTES.",
    "429": "Too many requests in flight; retry after a short, jittered backoff.",
    "504": "Not answered within LOAN_TIMEOUT_SECONDS; retry with backoff.",
}


class OpenApiCorrections:
    """Rewrites /docs.json so it matches the service: the real shape of 400
    bodies, and the 401/413/429/504 answers the middleware and BentoML give."""

    def __init__(self, app: Any, api_paths: frozenset[str]) -> None:
        self.app = app
        self.api_paths = api_paths

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
            payload = self._corrected(bytes(body)) if start.get("status") == 200 else bytes(body)
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            await send(
                {**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]}
            )
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, capture)

    def _corrected(self, body: bytes) -> bytes:
        spec = json.loads(body)
        # The schemas are pydantic's JSON Schema 2020-12 ("type": "null", numeric
        # exclusiveMinimum, "examples"): that is OpenAPI 3.1, not the 3.0.2 BentoML
        # declares, and tools that trust 3.0.2 misread them. Swagger UI reads 3.1.
        spec["openapi"] = OPENAPI_VERSION
        invalid = spec.get("components", {}).get("schemas", {}).get("InvalidArgument")
        if invalid is not None:
            invalid.setdefault("properties", {})["detail"] = VALIDATION_DETAIL_SCHEMA
        for path in self.api_paths:
            for operation in spec.get("paths", {}).get(path, {}).values():
                responses = operation.setdefault("responses", {})
                for status, description in EXTRA_RESPONSES.items():
                    responses.setdefault(status, {"description": description})
        return json.dumps(spec).encode()


class ContentTypeGuard:
    """Refuse, with 415 or 400, what BentoML would otherwise turn into a 500: a
    body in a media type the API does not take, or multipart data that does not
    parse. `accepted` maps each API path to its one media type."""

    def __init__(self, app: Any, accepted: dict[str, str]) -> None:
        self.app = app
        self.accepted = accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self.accepted.get(scope["path"]) if scope["type"] == "http" else None
        if expected is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1")
        media_type, _, params = header.partition(";")
        media_type = media_type.strip().lower() or "application/json"
        if media_type != expected:
            return await _send_json(
                send,
                415,
                {"error": f"Content-Type {media_type!r} is not accepted here; send {expected}"},
            )
        if expected != "multipart/form-data":
            return await self.app(scope, receive, send)
        boundary = _parameter(params, "boundary")
        messages = await _read_body(receive)
        body = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.request")
        if not boundary or not _multipart_parses(body, boundary):
            return await _send_json(
                send,
                400,
                {
                    "error": "the body is not valid multipart/form-data; upload the CSV file as "
                    "the form field 'file' (curl -F file=@applications.csv)"
                },
            )

        async def replay() -> dict[str, Any]:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)


def _parameter(params: str, name: str) -> str | None:
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"') or None
    return None


async def _read_body(receive: Receive) -> list[dict[str, Any]]:
    """Every message of the request body (the size limit has already applied)."""
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request" or not message.get("more_body", False):
            return messages


def _multipart_parses(body: bytes, boundary: str) -> bool:
    from python_multipart.multipart import MultipartParser

    try:
        parser = MultipartParser(boundary.encode("latin-1"), callbacks={})
        parser.write(body)
        parser.finalize()
    except Exception:  # any parse error means the same thing to the caller
        return False
    return True

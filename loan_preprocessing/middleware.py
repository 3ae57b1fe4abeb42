"""ASGI middleware in front of the BentoML app: body-size limit, API key, and
the X-Model-Tag response header. Plain ASGI so they work on any server."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from typing import Any, Final

MODEL_TAG_HEADER: Final = "X-Model-Tag"
# Probes and metrics stay open even when an API key is set.
OPEN_PATHS: Final = frozenset({"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/"})

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: list[tuple[bytes, bytes]] = ()
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

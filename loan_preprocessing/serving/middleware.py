"""The front of the service: body-size limit, API key, body reception and the
concurrency limit, in that order (serving/wiring.py), before anything else reads
a byte of the body. Plain ASGI, so they work on any server.

A request holds one of the worker's concurrency slots only once its whole body
has arrived: a client that sends its headers and then stalls costs a socket and
the bytes it sent, never a slot, and is cut off after LOAN_BODY_IDLE_SECONDS.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

from loan_preprocessing.serving.open_inference import HEALTH_PATHS as V2_HEALTH_PATHS

logger = logging.getLogger(__name__)

MODEL_TAG_HEADER: Final = "X-Model-Tag"
_MODEL_TAG_KEY: Final = MODEL_TAG_HEADER.lower().encode()
# Probes (the V2 ones too), metrics and the API page stay open even when an API key is set.
OPEN_PATHS: Final = frozenset(
    {"/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/", *V2_HEALTH_PATHS}
)
OPEN_PREFIXES: Final = ("/docs", "/static_content/")
# Methods whose body the service never reads.
BODILESS_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
CLOSE: Final = (b"connection", b"close")

Scope = dict[str, Any]
Receive = Callable[[], Any]
Send = Callable[[dict[str, Any]], Any]


async def send_json(
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


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of header `name` (lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def body_too_large(max_bytes: int) -> dict[str, str]:
    return {"error": f"request body is larger than the limit of {max_bytes} bytes"}


class AmbiguousFraming:
    """400 at once, before a byte of the body is read, for a request that gives both
    Content-Length and Transfer-Encoding (or either twice with different values).
    RFC 9112 section 6.3: such a message is a request-smuggling vector behind a
    proxy that frames it the other way; h11 (uvicorn's parser here) lets it
    through, with both headers in the ASGI scope, and reads the body as chunked."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            lengths = {v for k, v in scope["headers"] if k == b"content-length"}
            encodings = [v for k, v in scope["headers"] if k == b"transfer-encoding"]
            if (lengths and encodings) or len(lengths) > 1:
                return await send_json(
                    send,
                    400,
                    {
                        "error": "a request must not give both Content-Length and "
                        "Transfer-Encoding, nor two different Content-Lengths "
                        "(RFC 9112 section 6.3)"
                    },
                    [CLOSE],
                )
        await self.app(scope, receive, send)


class UnroutablePath:
    """A JSON 404 for a path holding a control character (a line break, NUL...).
    No route of the service has one, and Starlette's mounts (/decisions, /v2)
    cannot even match such a path (their pattern stops at a line break), so it
    would reach the router's plain-text "Not Found" where every other unknown
    path of those routes answers JSON."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and _CONTROL_CHARACTER.search(scope["path"]):
            shown = ascii(scope["path"][:80])
            return await send_json(
                send, 404, {"error": f"Not Found: {scope['method']} {shown} (a control character)"}
            )
        await self.app(scope, receive, send)


# C0 controls and DEL: never part of a route.
_CONTROL_CHARACTER: Final = re.compile(r"[\x00-\x1f\x7f]")


class BodySizeLimit:
    """413 at once, before a byte is read, when Content-Length is over `max_bytes`
    (or is not a number). A body without a length is counted as it arrives, by
    BodyReader."""

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] not in BODILESS_METHODS:
            declared = header(scope, b"content-length")
            if declared is not None and (not declared.isdigit() or int(declared) > self.max_bytes):
                return await send_json(send, 413, body_too_large(self.max_bytes), [CLOSE])
        await self.app(scope, receive, send)


class BearerAuth:
    """When `api_key` is set, every path but the open ones needs it as a bearer
    token; the scheme's name is case-insensitive (RFC 7235), the key is not."""

    def __init__(self, app: Any, api_key: str | None) -> None:
        self.app = app
        self.expected = api_key.encode() if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.expected is None
            or scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
        ):
            return await self.app(scope, receive, send)
        scheme, _, token = (header(scope, b"authorization") or b"").partition(b" ")
        # compare_digest: the time taken must not reveal how much of the key matched.
        valid = scheme.lower() == b"bearer" and hmac.compare_digest(token.strip(), self.expected)
        if not valid:
            # Connection: close, so an unread body is dropped, not read to its end.
            return await send_json(
                send,
                401,
                {"error": "missing or wrong API key: send 'Authorization: Bearer <key>'"},
                [(b"www-authenticate", b"Bearer"), CLOSE],
            )
        await self.app(scope, receive, send)


class BodyReader:
    """Receive the whole body before the request goes further, then replay it.

    408 when `idle_seconds` pass without a byte (a slow but steady upload is
    fine); 413 as soon as a body without Content-Length passes `max_bytes`; 429
    when the bodies held by this worker would pass `budget_bytes`, so receiving
    bodies outside the concurrency slots cannot exhaust memory. A client that
    goes away mid-body is one log line, not a traceback.
    """

    def __init__(self, app: Any, max_bytes: int, idle_seconds: float, budget_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.idle_seconds = idle_seconds
        self.budget_bytes = budget_bytes
        self.held_bytes = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in BODILESS_METHODS:
            return await self.app(scope, receive, send)
        chunks: list[bytes] = []
        size = 0
        try:
            while True:
                try:
                    message = await asyncio.wait_for(receive(), self.idle_seconds)
                except TimeoutError:
                    return await send_json(
                        send,
                        408,
                        {
                            "error": f"no part of the request body arrived for "
                            f"{self.idle_seconds:g} seconds"
                        },
                        [CLOSE],
                    )
                if message["type"] == "http.disconnect":
                    logger.info("%s %s: the client left before sending its body", *_where(scope))
                    return
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > self.max_bytes:
                    return await send_json(send, 413, body_too_large(self.max_bytes), [CLOSE])
                if self.held_bytes + len(chunk) > self.budget_bytes:
                    # A declared body is bounded: the server may drain it, so the
                    # client reads the 429; an undeclared one may never end.
                    declared = header(scope, b"content-length") is not None
                    return await send_json(
                        send,
                        429,
                        {"error": "Too many requests: too many request bodies in flight"},
                        [] if declared else [CLOSE],
                    )
                self.held_bytes += len(chunk)
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            replayed = False

            async def replay() -> dict[str, Any]:
                nonlocal replayed
                if replayed:
                    # After the body, only a disconnect can come.
                    return dict(await receive())
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

            await self.app(scope, replay, send)
        finally:
            self.held_bytes -= sum(len(chunk) for chunk in chunks)


def _where(scope: Scope) -> tuple[str, str]:
    return scope["method"], scope["path"]


class ConcurrencyLimit:
    """429 at once to an API request that finds every slot of this worker taken.
    It stands after BodyReader, so a slot is held only by a request whose body
    has arrived (BentoML's own limit, which would hold slots from the first
    header, is not used)."""

    def __init__(self, app: Any, paths: frozenset[str], slots: int) -> None:
        self.app = app
        self.paths = paths
        self.semaphore = asyncio.Semaphore(slots)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        if self.semaphore.locked():
            return await send_json(send, 429, {"error": "Too many requests"})
        async with self.semaphore:
            await self.app(scope, receive, send)


class ModelTagHeader:
    """Adds X-Model-Tag (the tag of the model that decided) to every API response
    that does not name one already (a replayed answer names the model that made it)."""

    def __init__(self, app: Any, model_tag: Callable[[], str | None]) -> None:
        self.app = app
        self.model_tag = model_tag

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)

        async def send_with_tag(message: dict[str, Any]) -> None:
            tag = self.model_tag()
            if (
                message["type"] == "http.response.start"
                and tag
                and not any(k == _MODEL_TAG_KEY for k, _ in message.get("headers", []))
            ):
                message = {
                    **message,
                    "headers": [
                        *message.get("headers", []),
                        (_MODEL_TAG_KEY, tag.encode()),
                    ],
                }
            await send(message)

        await self.app(scope, receive, send_with_tag)

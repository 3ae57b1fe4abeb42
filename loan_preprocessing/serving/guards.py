"""Checks of a request's body that BentoML does not make, and 400 answers in the
API's own words.

They run after serving/middleware.py's front has received the whole body, so
each reads it from memory. BentoML would otherwise turn a wrong media type or a
broken form into a 500, download a URL given as a form value, keep the last of
two duplicate JSON keys, refuse a byte-order mark, and answer a 400 as long as the
request with its internal class names in it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from loan_preprocessing import deadline
from loan_preprocessing.schema import MAX_LISTED_ERRORS, MORE_ERRORS_TYPE
from loan_preprocessing.serving import binary_tensors, json_screen
from loan_preprocessing.serving.middleware import Receive, Scope, Send, header, send_json

JSON_MEDIA_TYPE: Final = "application/json"
MULTIPART_MEDIA_TYPE: Final = "multipart/form-data"
CSV_FIELD: Final = "file"
# The longest header line of one part (its Content-Disposition holds the file
# name): python-multipart's own default, stated here so the error can say it.
MAX_PART_HEADER_BYTES: Final = 4096 + 128
UPLOAD_HINT: Final = (
    f"upload the CSV file as the form field '{CSV_FIELD}' (curl -F file=@applications.csv)"
)
UTF8_BOM: Final = b"\xef\xbb\xbf"
# A 400 lists at most this many problems, in order, and says how many there were.
MAX_LISTED_PROBLEMS: Final = MAX_LISTED_ERRORS
# Keys of a listed problem that clients get; pydantic's "url", "input" and "ctx" are not.
PROBLEM_KEYS: Final = ("loc", "line", "column", "msg", "type")
_SHOWN_NAME_CHARS: Final = 40
# What a request shed by the batcher is asked to wait: about one adaptive
# batch window's worth of backlog to drain.
SHED_RETRY_AFTER_SECONDS: Final = 1


def shed_error(max_latency_ms: int) -> str:
    """The one line a request shed by BentoML's batcher gets."""
    return (
        "the service is at capacity: it could not decide this request within "
        f"LOAN_MAX_LATENCY_MS ({max_latency_ms} ms), so nothing was decided or "
        f"recorded; retry after {SHED_RETRY_AFTER_SECONDS} s"
    )


async def read_body(receive: Receive) -> bytes:
    """The whole request body (BodyReader has received it already)."""
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replaying(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return dict(await receive())
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


def with_header(scope: Scope, name: bytes, value: bytes) -> Scope:
    headers = [(k, v) for k, v in scope["headers"] if k != name]
    return {**scope, "headers": [*headers, (name, value)]}


def _shown(name: str) -> str:
    return repr(name if len(name) <= _SHOWN_NAME_CHARS else name[:_SHOWN_NAME_CHARS] + "...")


class ContentTypeGuard:
    """415 for a body in a media type the API does not take (compared without
    regard to case, then passed on in lower case, as BentoML compares it); for
    the CSV upload, 400 unless the form is exactly one uploaded file in the field
    `file`: a plain form value would be fetched by BentoML as a URL."""

    def __init__(self, app: Any, accepted: Mapping[str, str]) -> None:
        self.app = app
        self.accepted = accepted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        expected = self.accepted.get(scope["path"]) if scope["type"] == "http" else None
        if expected is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        raw = header(scope, b"content-type")
        if raw is None and expected == JSON_MEDIA_TYPE:
            return await self.app(scope, receive, send)  # JSON is the default
        if raw is None:
            return await send_json(
                send,
                415,
                {"error": f"the request has no Content-Type; send {expected}: {UPLOAD_HINT}"},
            )
        media_type, semicolon, params = raw.decode("latin-1").partition(";")
        media_type = media_type.strip().lower()
        if media_type != expected:
            return await send_json(
                send,
                415,
                {
                    "error": f"Content-Type {media_type[:80]!r} is not accepted here; "
                    f"send {expected}"
                },
            )
        scope = with_header(
            scope, b"content-type", f"{expected}{semicolon}{params}".encode("latin-1")
        )
        if expected != MULTIPART_MEDIA_TYPE:
            return await self.app(scope, receive, send)
        body = await read_body(receive)
        problem = upload_problem(body, _parameter(params, "boundary"))
        if problem is not None:
            detail = [{"loc": [CSV_FIELD], "msg": problem, "type": "upload"}]
            return await send_json(send, 400, {"error": problem, "detail": detail, "total": 1})
        await self.app(scope, replaying(body, receive), send)


def _parameter(params: str, name: str) -> str | None:
    for part in params.split(";"):
        key, _, value = part.partition("=")
        if key.strip().lower() == name:
            return value.strip().strip('"') or None
    return None


def upload_problem(body: bytes, boundary: str | None) -> str | None:
    """What is wrong with a multipart body that should hold one uploaded CSV file
    in the field `file`, or None when nothing is."""
    if not boundary:
        return f"the body is not valid multipart/form-data (no boundary); {UPLOAD_HINT}"
    from python_multipart.exceptions import MultipartParseError

    try:
        parts = _form_parts(body, boundary)
    except MultipartParseError as exc:
        if "header size" in str(exc):
            return (
                f"a part's header is longer than {MAX_PART_HEADER_BYTES} bytes (a file name that "
                "long?); send the file under a shorter name"
            )
        return f"the body is not valid multipart/form-data ({exc}); {UPLOAD_HINT}"
    except Exception:  # any other parse error means the same thing to the caller
        return f"the body is not valid multipart/form-data; {UPLOAD_HINT}"
    others = [name for name, _ in parts if name != CSV_FIELD]
    if others:
        return f"unexpected form field {_shown(others[0])}; {UPLOAD_HINT}, and nothing else"
    if not parts:
        return f"the form has no field '{CSV_FIELD}'; {UPLOAD_HINT}"
    if len(parts) > 1:
        return f"the form has {len(parts)} fields '{CSV_FIELD}'; send one file per request"
    [(_, filename)] = parts
    if filename is None:
        return (
            f"the field '{CSV_FIELD}' is a form value, not an uploaded file: {UPLOAD_HINT}; "
            "the service does not fetch URLs or read paths"
        )
    return None


def _form_parts(body: bytes, boundary: str) -> list[tuple[str, str | None]]:
    """(field name, file name or None) of each part of a multipart body."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    parts: list[tuple[str, str | None]] = []
    field: list[bytes] = []
    value: list[bytes] = []

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.append(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.append(data[start:end])

    def on_header_end() -> None:
        if b"".join(field).lower() == b"content-disposition":
            _, options = parse_options_header(b"".join(value))
            name = options.get(b"name", b"").decode("utf-8", "replace")
            filename = options.get(b"filename")
            parts.append((name, None if filename is None else filename.decode("utf-8", "replace")))
        field.clear()
        value.clear()

    parser = MultipartParser(
        boundary.encode("latin-1"),
        max_header_size=MAX_PART_HEADER_BYTES,
        callbacks={  # type: ignore[arg-type]
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
        },
    )
    parser.write(body)
    parser.finalize()
    return parts


class DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _KeyCheck:
    """An object_pairs_hook for json.loads: raises DuplicateKey at the first key
    repeated within one object, and counts the keys outside `known` (the first
    MAX_LISTED_PROBLEMS of them kept, in the order they end). Stops at the
    request's deadline (loan_preprocessing/deadline.py)."""

    def __init__(self, known: frozenset[str]) -> None:
        self.known = known
        self.unknown: list[str] = []
        self.unknown_count = 0
        self.objects = 0

    def __call__(self, pairs: list[tuple[str, Any]]) -> None:
        self.objects += 1
        if not self.objects % deadline.CHECK_EVERY:
            deadline.check()
        keys = {key for key, _ in pairs}
        if len(keys) != len(pairs):
            seen: set[str] = set()
            for key, _ in pairs:
                if key in seen:
                    raise DuplicateKey(key)
                seen.add(key)
        if not keys <= self.known:
            for key, _ in pairs:
                if key not in self.known:
                    self.unknown_count += 1
                    if len(self.unknown) < MAX_LISTED_PROBLEMS:
                        self.unknown.append(key)
        # The parsed value is not kept: None is cheaper than building the dict.


def json_problem(body: bytes, known_keys: frozenset[str]) -> dict[str, Any] | None:
    """A 400 answer for a body that is not JSON, repeats a key within one object
    (JSON parsers disagree on which one wins), or holds more unknown keys than a
    400 lists (validating them would cost the worker ~1 kB each), or None.
    The usual body is cleared by json_screen at a third of the exact check's cost;
    the answer is always the exact check's."""
    if json_screen.passes(body, known_keys):
        return None
    deadline.check()
    return exact_json_problem(body, known_keys)


def exact_json_problem(body: bytes, known_keys: frozenset[str]) -> dict[str, Any] | None:
    """json_problem's answer, from the standard library's parser with a Python call
    per object (2.6 ms for 1000 applications): the first repeated key in the order
    objects end, and the unknown keys in that order."""
    check = _KeyCheck(known_keys)
    try:
        json.loads(body, object_pairs_hook=check)
    except DuplicateKey as exc:
        message = "the key appears more than once in one object"
        return {
            "error": f"key {_shown(exc.key)}: {message}",
            "detail": [
                {
                    "loc": ["body", exc.key[:_SHOWN_NAME_CHARS]],
                    "msg": message,
                    "type": "duplicate_key",
                }
            ],
            "total": 1,
        }
    except RecursionError:
        message = "JSON nested too deeply"
    except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError
        message = f"not valid JSON: {str(exc)[:200]}"
    else:
        if check.unknown_count <= MAX_LISTED_PROBLEMS:
            return None  # the schema names each one, with its row
        message = "unknown field; allowed: " + ", ".join(sorted(known_keys))
        return {
            "error": f"{check.unknown_count} unknown fields, the first {_shown(check.unknown[0])}",
            "detail": [
                {
                    "loc": ["body", key[:_SHOWN_NAME_CHARS]],
                    "msg": message,
                    "type": "extra_forbidden",
                }
                for key in check.unknown
            ],
            "total": check.unknown_count,
        }
    return {
        "error": f"the body is {message}" if message.startswith("not") else message,
        "detail": [{"loc": ["body"], "msg": message, "type": "json_invalid"}],
        "total": 1,
    }


class JsonBodyGuard:
    """On the JSON API paths: drop a leading UTF-8 byte-order mark (RFC 8259 lets
    a parser ignore it) and refuse, with 400, what `json_problem` finds.
    `known_keys` maps each JSON path to the object keys its bodies may hold."""

    def __init__(self, app: Any, known_keys: Mapping[str, frozenset[str]]) -> None:
        self.app = app
        self.known_keys = known_keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        known = self.known_keys.get(scope["path"]) if scope["type"] == "http" else None
        if known is None or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        body = await read_body(receive)
        if body.startswith(UTF8_BOM):
            body = body[len(UTF8_BOM) :]
            scope = with_header(scope, b"content-length", str(len(body)).encode())
        problem = json_problem(_json_part(scope, body), known)
        if problem is not None:
            return await send_json(send, 400, problem)
        await self.app(scope, replaying(body, receive), send)


def _json_part(scope: Scope, body: bytes) -> bytes:
    """The body's JSON: all of it, or the header part of a binary tensor request
    (a bad length is left for the endpoint to refuse, naming the header)."""
    raw = header(scope, binary_tensors.HEADER_LENGTH.encode())
    if raw is None:
        return body
    try:
        length = binary_tensors.json_length(raw.decode("latin-1"), len(body))
    except binary_tensors.BinaryTensorError:
        return b"{}"
    return body[:length]


def bounded_error(answer: dict[str, Any]) -> dict[str, Any]:
    """A 400 answer with at most MAX_LISTED_PROBLEMS problems, in order, its
    `total`, and no pydantic links or internal class names."""
    detail = answer.get("detail")
    if not isinstance(detail, list):
        return answer
    total = answer.get("total", len(detail))
    if detail and isinstance(detail[-1], dict) and detail[-1].get("type") == MORE_ERRORS_TYPE:
        # The schema listed the first errors and counted the rest in this one.
        unlisted = re.match(r"\d+", str(detail[-1].get("msg", "")))
        detail = detail[:-1]
        total = len(detail) + (int(unlisted.group()) if unlisted else 0)
    listed = [
        {key: problem[key] for key in PROBLEM_KEYS if key in problem}
        for problem in detail[:MAX_LISTED_PROBLEMS]
        if isinstance(problem, dict)
    ]
    error = answer.get("error", "")
    if "validation error" in str(error) and listed:
        # BentoML's "N validation error for PredictRequestIODescriptor".
        first = listed[0]
        where = ".".join(str(part) for part in first.get("loc", [])) or "body"
        more = f" (and {total - 1} more)" if total > 1 else ""
        error = f"{where}: {first.get('msg', 'invalid')}{more}"
    return {"error": error, "detail": listed, "total": total}


class ErrorBodies:
    """Rewrites every 400 answer of the API paths with `bounded_error`, and
    reports its listed problems (to count validation failures by field). A 503
    from inside is BentoML's batcher shedding the request (the only 503 BentoML
    gives there); it said "An unexpected error has occurred": it becomes
    `shed_error` with a Retry-After."""

    def __init__(
        self,
        app: Any,
        paths: frozenset[str],
        on_failure: Callable[[list[dict[str, Any]]], None],
        shed_error: str,
    ) -> None:
        self.app = app
        self.paths = paths
        self.on_failure = on_failure
        self.shed_error = shed_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            return await self.app(scope, receive, send)
        start: dict[str, Any] = {}
        body = bytearray()

        async def rewriting_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] in (400, 503):
                start.update(message)
                return
            if not start or message["type"] != "http.response.body":
                return await send(message)
            body.extend(message.get("body", b""))
            if message.get("more_body", False):
                return
            if start["status"] == 503:
                return await send_json(
                    send,
                    503,
                    {"error": self.shed_error},
                    [(b"retry-after", str(SHED_RETRY_AFTER_SECONDS).encode())],
                )
            payload = self._rewritten(bytes(body))
            headers = [
                (k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"
            ]
            await send(
                {**start, "headers": [*headers, (b"content-length", str(len(payload)).encode())]}
            )
            await send({"type": "http.response.body", "body": payload})

        await self.app(scope, receive, rewriting_send)

    def _rewritten(self, body: bytes) -> bytes:
        try:
            answer = json.loads(body)
        except ValueError:
            return body
        if not isinstance(answer, dict):
            return body
        answer = bounded_error(answer)
        if answer.get("detail"):
            self.on_failure(answer["detail"])
        return json.dumps(answer).encode()

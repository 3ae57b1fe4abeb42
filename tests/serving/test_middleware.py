"""BodyReader as plain ASGI: the whole body or a clear refusal, never a held slot."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from loan_preprocessing.serving.middleware import BodyReader

Message = dict[str, Any]


def run(reader_options: dict[str, Any], messages: list[Message]):
    """Call a BodyReader in front of an app that records what it receives; the
    client sends `messages`, then nothing ever again."""
    seen: list[bytes] = []
    sent: list[Message] = []

    async def app(scope, receive, send):
        seen.append((await receive())["body"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def main():
        queue = list(messages)

        async def receive():
            if queue:
                return queue.pop(0)
            await asyncio.sleep(3600)  # a stalled client

        async def send(message):
            sent.append(message)

        reader = BodyReader(app, **reader_options)
        scope = {"type": "http", "method": "POST", "path": "/predict", "headers": []}
        await asyncio.wait_for(reader(scope, receive, send), 5)
        return reader

    reader = asyncio.run(main())
    status = sent[0]["status"] if sent else None
    return status, seen, sent, reader


OPTIONS = {"max_bytes": 100, "idle_seconds": 0.05, "budget_bytes": 1000}


def chunk(body: bytes, more: bool) -> Message:
    return {"type": "http.request", "body": body, "more_body": more}


def test_the_app_gets_the_whole_body_at_once():
    status, seen, _, reader = run(OPTIONS, [chunk(b"ab", True), chunk(b"cd", False)])
    assert (status, seen) == (200, [b"abcd"])
    assert reader.held_bytes == 0  # released when the request is done


def test_a_stalled_body_gets_408_and_never_reaches_the_app():
    status, seen, sent, _ = run(OPTIONS, [chunk(b"{", True)])
    assert (status, seen) == (408, [])
    assert "0.05 seconds" in json.loads(sent[1]["body"])["error"]


def test_a_body_past_the_limit_gets_413_as_it_arrives():
    status, seen, _, _ = run(OPTIONS, [chunk(b"x" * 60, True), chunk(b"x" * 60, True)])
    assert (status, seen) == (413, [])


def test_bodies_past_the_worker_budget_get_429():
    status, seen, _, _ = run({**OPTIONS, "budget_bytes": 50}, [chunk(b"x" * 60, False)])
    assert (status, seen) == (429, [])


def test_a_client_that_leaves_mid_body_gets_nothing_and_reaches_no_app():
    status, seen, sent, _ = run(OPTIONS, [chunk(b"{", True), {"type": "http.disconnect"}])
    assert (status, seen, sent) == (None, [], [])

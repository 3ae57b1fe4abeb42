"""The request timeout keeps the 504, no longer keeps finished requests alive, and
stops the work of a request it answered."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import time
import weakref

import anyio.to_thread
from bentoml._internal.server.http import traffic

from loan_preprocessing import deadline
from loan_preprocessing.serving.timeout import RequestTimeout

REQUEST_STATE: contextvars.ContextVar[object] = contextvars.ContextVar("request_state")


class RequestState:
    """Stands for what BentoML keeps in a request's context (span, request, response)."""


async def _answer(scope, receive, send) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"{}"})


async def _slow(scope, receive, send) -> None:
    await asyncio.sleep(10)


async def _receive() -> dict:
    return {"type": "http.request", "body": b""}


def _request_state_outlives_request(middleware_class: type) -> bool:
    """Serve one request in its own task, as uvicorn does, then look whether its
    context's contents are still reachable once the request is over."""

    async def main() -> bool:
        sent = []

        async def send(message):
            sent.append(message)

        async def one_request() -> weakref.ref:
            state = RequestState()
            REQUEST_STATE.set(state)
            await middleware_class(_answer, timeout=30)({"type": "http"}, _receive, send)
            return weakref.ref(state)

        request = asyncio.create_task(one_request())
        state = await request
        del request
        for _ in range(3):  # let the loop drop its own references to the finished task
            await asyncio.sleep(0)
        gc.collect()
        assert sent[0]["status"] == 200
        return state() is not None

    return asyncio.run(main())


def test_bentoml_own_timeout_keeps_finished_requests_alive():
    """The problem this module exists for; when this fails, BentoML fixed it and
    bentoml_timeout can go."""
    [bentoml_middleware] = RequestTimeout.__bases__
    assert bentoml_middleware.__module__ == traffic.__name__
    assert _request_state_outlives_request(bentoml_middleware)


def test_request_timeout_lets_finished_requests_go():
    assert not _request_state_outlives_request(RequestTimeout)


def test_request_timeout_still_answers_504():
    async def main() -> list[dict]:
        sent = []

        async def send(message):
            sent.append(message)

        await RequestTimeout(_slow, timeout=0.01)({"type": "http"}, _receive, send)
        return sent

    sent = asyncio.run(main())
    assert sent[0]["status"] == 504
    assert b"0.01 seconds" in sent[1]["body"]


def test_the_service_app_is_built_with_it(asgi_app):
    """service.py installs it before BentoML builds the app."""
    classes = [m.cls for m in asgi_app.user_middleware]
    assert RequestTimeout in classes
    assert not [c for c in classes if c.__name__ == "TimeoutMiddleware"]


def _busy_until_deadline(stopped: threading.Event, limit_seconds: float = 30.0) -> None:
    """Work that checks the request's deadline, as the parsers do; gives up by
    itself after `limit_seconds` (so a failing test cannot spin forever)."""
    ends = time.monotonic() + limit_seconds
    try:
        while time.monotonic() < ends:
            deadline.check()
    finally:
        stopped.set()


def test_work_on_the_event_loop_stops_at_the_deadline_with_the_504():
    """Work that holds the event loop keeps the timer from firing; its own check
    ends it at the deadline, and the answer is the timeout's 504, not a 500."""
    stopped = threading.Event()

    async def blocking(scope, receive, send) -> None:
        _busy_until_deadline(stopped)
        await _answer(scope, receive, send)

    async def main() -> list[dict]:
        sent = []

        async def send(message):
            sent.append(message)

        await RequestTimeout(blocking, timeout=0.05)({"type": "http"}, _receive, send)
        return sent

    sent = asyncio.run(main())
    assert stopped.is_set()
    assert [m.get("status") for m in sent if m["type"] == "http.response.start"] == [504]
    assert b"0.05 seconds" in sent[1]["body"]


def test_work_in_a_thread_stops_at_the_deadline_after_the_504():
    """A cancelled request's thread runs on (the task's cancel cannot reach it):
    the deadline it inherits stops it."""
    stopped = threading.Event()

    async def threaded(scope, receive, send) -> None:
        await anyio.to_thread.run_sync(_busy_until_deadline, stopped)
        await _answer(scope, receive, send)

    async def main() -> list[dict]:
        sent = []

        async def send(message):
            sent.append(message)

        await RequestTimeout(threaded, timeout=0.05)({"type": "http"}, _receive, send)
        return sent

    sent = asyncio.run(main())
    assert sent[0]["status"] == 504
    # Far less than the 30 s the work would take without its deadline.
    assert stopped.wait(10)


def test_the_deadline_ends_with_its_request():
    """A task started during a request keeps a copy of its context (BentoML's
    batching loop does): once the request is over, its deadline binds nothing."""
    leaked: list[contextvars.Context] = []

    async def starts_a_task(scope, receive, send) -> None:
        leaked.append(contextvars.copy_context())
        await _answer(scope, receive, send)

    async def main() -> None:
        async def send(message):
            pass

        await RequestTimeout(starts_a_task, timeout=0.01)({"type": "http"}, _receive, send)
        await asyncio.sleep(0.05)  # past the request's deadline

    asyncio.run(main())
    leaked[0].run(deadline.check)  # does not raise

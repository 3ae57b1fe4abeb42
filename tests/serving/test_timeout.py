"""The request timeout keeps the 504, and no longer keeps finished requests alive."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import weakref

from bentoml._internal.server.http import traffic

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

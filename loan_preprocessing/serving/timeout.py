"""BentoML's request timeout, without keeping every request alive for `timeout` seconds.

BentoML 1.4's TimeoutMiddleware schedules `loop.call_later(timeout, ...)` for
each request and never cancels it. The timer holds a copy of the request's
context (its OpenTelemetry span, BentoML's request and response context), so
with a 10 s timeout at 700 requests/s a worker keeps about 7,000 finished
requests, some 100,000 objects, reachable. They age into the collector's oldest
generation, whose collections then take 150-280 ms each and stall every request
in flight: this was most of our p99 (measured with a gc callback in a worker).

`RequestTimeout` is the same middleware, with the same 504 answer, except that its
timer runs in an empty context and is cancelled as soon as the request is done.
`install()` puts it where BentoML looks the middleware up when it builds a
worker's app.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse


class RequestTimeout(traffic.TimeoutMiddleware):
    """TimeoutMiddleware whose timer neither holds nor outlives the request. The
    body is BentoML 1.4.40's, except for the timer's context and the `finally`."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        # An empty context: the timer only touches `waiter`, and must not hold
        # the request's context (call_later copies the current one by default).
        timer = loop.call_later(
            self.timeout, self._set_timer_out, waiter, context=contextvars.Context()
        )

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        request = asyncio.ensure_future(self.app(scope, receive, _send), loop=loop)
        try:
            await waiter
        except TimeoutError:
            if request.cancel():
                answer = JSONResponse(
                    {"error": f"Not able to process the request in {self.timeout} seconds"},
                    status_code=504,
                )
                await answer(scope, receive, send)
        else:
            await request
        finally:
            timer.cancel()


def install() -> None:
    """Make BentoML build its apps with RequestTimeout; before the app is built."""
    # A deliberate replacement of BentoML's class, which mypy cannot type.
    traffic.TimeoutMiddleware = RequestTimeout  # type: ignore[misc]

"""BentoML's request timeout, without keeping every request alive for `timeout` seconds.

BentoML 1.4's TimeoutMiddleware schedules `loop.call_later(timeout, ...)` for
each request and never cancels it. The timer holds a copy of the request's
context (its OpenTelemetry span, BentoML's request and response context), so
with a 10 s timeout at 700 requests/s a worker keeps about 7,000 finished
requests, some 100,000 objects, reachable. They age into the collector's oldest
generation, whose collections then take 150-280 ms each and stall every request
in flight: this was most of our p99 (measured with a gc callback in a worker).

`RequestTimeout` is the same middleware, with the same 504 answer, except that its
timer runs in an empty context and is cancelled as soon as the request is done,
and that the request's work stops at the timeout instead of running on unseen:
BentoML cancels the request's task, which neither stops a worker thread nor
interrupts work on the event loop (its timer cannot even fire until that work
yields). So the request's task gets its deadline (loan_preprocessing/deadline.py),
the long loops check it, and one that finds it passed raises DeadlinePassed,
answered here with the same 504. `install()` puts it where BentoML looks the
middleware up when it builds a worker's app.
"""

from __future__ import annotations

import asyncio
import contextvars
from typing import Any

from bentoml._internal.server.http import traffic
from starlette.responses import JSONResponse

from loan_preprocessing import deadline


class RequestTimeout(traffic.TimeoutMiddleware):
    """TimeoutMiddleware whose timer neither holds nor outlives the request, and
    whose request stops its work at the deadline. The body is BentoML 1.4.40's,
    except for the timer's context, the deadline and the `finally`."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        expires = loop.time() + self.timeout
        # An empty context: the timer only touches `waiter`, and must not hold
        # the request's context (call_later copies the current one by default).
        timer = loop.call_at(expires, self._set_timer_out, waiter, context=contextvars.Context())

        async def _send(message: Any) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        stopped = False

        async def run() -> None:
            # In the request's own task: its context, and so every thread it
            # starts, carries the deadline.
            try:
                with deadline.deadline_at(expires):
                    await self.app(scope, receive, _send)
            except deadline.DeadlinePassed:
                # The work stopped at the deadline, maybe before the timer could
                # fire (work on the event loop holds it up): answer now.
                nonlocal stopped
                stopped = True
                if not waiter.done():
                    waiter.set_exception(TimeoutError())

        request = asyncio.ensure_future(run(), loop=loop)
        try:
            await waiter
        except TimeoutError:
            # Nothing was sent yet (sending resolves the waiter). The work still
            # running is cancelled; a thread of it stops at its next check.
            if request.cancel() or stopped:
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

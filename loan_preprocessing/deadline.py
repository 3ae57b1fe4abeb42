"""A request's deadline, which long work checks so that it stops once its answer
can only be the 504.

The service's request timeout (serving/timeout.py) answers 504 when a request
has run for LOAN_TIMEOUT_SECONDS, but it cannot stop the work itself: a CSV
parsed in a worker thread, or a V2 body decoded on the event loop, would run on
to its end, taking the worker's CPU (and its one thread) from the requests
behind it. So the timeout sets the request's deadline here, in a context
variable (which the request's task and the threads it starts inherit), and the
loops whose length a client chooses call `check()` every so often: past the
deadline it raises DeadlinePassed, which the timeout answers with its 504.

Outside a request (offline scoring, the Spark job, tests) there is no deadline
and `check()` does nothing. A check costs a context-variable read and a clock
read (about 0.1 us), so loops check every CHECK_EVERY items, not every one.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Final, TypeVar

# Items (rows, values, objects) between two checks in a loop: at most a few
# milliseconds of work, so a passed deadline stops the work within that.
CHECK_EVERY: Final = 1024

T = TypeVar("T")


class DeadlinePassed(BaseException):
    """The request's deadline has passed: stop, the answer is the timeout's 504.

    A BaseException, as asyncio.CancelledError is and for its reason: it must
    travel through every `except Exception` between the work and the timeout
    (BentoML's API handler turns any Exception into a 500) to where it is answered.
    """


class _Deadline:
    """A request's deadline (time.monotonic()), None once the request is over."""

    __slots__ = ("at",)

    def __init__(self, at: float) -> None:
        self.at: float | None = at


_CURRENT: ContextVar[_Deadline | None] = ContextVar("loan_request_deadline", default=None)


@contextmanager
def deadline_at(at: float) -> Iterator[None]:
    """Work in this block (and in the tasks and threads it starts) stops at `at`,
    on the time.monotonic() clock (asyncio's loop.time())."""
    current = _Deadline(at)
    token = _CURRENT.set(current)
    try:
        yield
    finally:
        # A long-lived task started during the request (BentoML's batching
        # loop is one) keeps a copy of this context: the deadline ends here.
        current.at = None
        _CURRENT.reset(token)


def check() -> None:
    """Raise DeadlinePassed when the current request's deadline has passed."""
    current = _CURRENT.get()
    if current is not None and current.at is not None and time.monotonic() >= current.at:
        raise DeadlinePassed


def checked(items: Iterable[T], every: int = CHECK_EVERY) -> Iterator[T]:
    """`items`, with a `check()` before the first and every `every` after it."""
    if _CURRENT.get() is None:
        yield from items
        return
    for index, item in enumerate(items):
        if not index % every:
            check()
        yield item

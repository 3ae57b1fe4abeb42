"""Client connections spread evenly over the server's workers, every time.

BentoML 1.4's workers (circus) share one listening socket, and asyncio accepts
every connection queued when a worker wakes. A client that opens a few keep-alive
connections at once (a back-office client, a load generator) therefore often had
all of them on one worker for as long as they lived, the other worker idle:
measured, 4 connections all on one worker in 3 runs of 4. A listening socket per
worker with SO_REUSEPORT would not fix it for a few connections: the kernel hashes
each connection to a socket, so 4 connections all land on one of 2 workers one
time in 8.

Here the workers of one server share a small table (a file mapped by each): each
worker's open connections and a heartbeat. A worker holding more connections than
the least loaded live worker stops accepting, and looks again every
POLL_SECONDS, so new connections go to the others: with 2 workers, 4 connections
are 2 and 2. A worker whose heartbeat is older than STALE_SECONDS (blocked, or
gone) is not waited for; the others then accept as before. `install()` wraps the
listening socket BentoML hands uvicorn in each worker; LOAN_BALANCE_CONNECTIONS
turns it off.
"""

from __future__ import annotations

import asyncio
import logging
import mmap
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from loan_preprocessing.serving.metrics import server_alive

logger = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.002
HEARTBEAT_SECONDS: Final = 0.05
STALE_SECONDS: Final = 0.5
# Per worker: open connections, heartbeat (time.monotonic(), the same clock in
# every process of the machine); float64 each.
_FIELDS: Final = 2
_PREFIX: Final = "loan-approval-connections."


class ConnectionTable:
    """The workers' open connections, one slot per worker, in a file every worker
    of the server maps; each worker writes only its own slot."""

    def __init__(self, path: Path, workers: int, slot: int) -> None:
        self.slot = slot
        self.workers = workers
        size = workers * _FIELDS * 8
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self._values = memoryview(self._map).cast("d")
        self.connections = 0
        self.alive = True
        self.publish()

    def publish(self) -> None:
        base = self.slot * _FIELDS
        self._values[base] = self.connections
        self._values[base + 1] = time.monotonic() if self.alive else 0.0

    def changed(self, by: int) -> None:
        self.connections += by
        self.publish()

    def should_wait(self) -> bool:
        """True when a live worker holds fewer connections than this one."""
        now = time.monotonic()
        for other in range(self.workers):
            if other == self.slot:
                continue
            count, beat = self._values[other * _FIELDS], self._values[other * _FIELDS + 1]
            if now - beat < STALE_SECONDS and count < self.connections:
                return True
        return False


class _CountedConnection(socket.socket):
    """An accepted connection that tells the table when it closes."""

    table: ConnectionTable | None = None

    def close(self) -> None:
        table, self.table = self.table, None
        if table is not None:
            table.changed(-1)
        super().close()


class BalancedListener(socket.socket):
    """The shared listening socket, accepting only while this worker is not ahead."""

    table: ConnectionTable

    def accept(self) -> tuple[socket.socket, Any]:
        if self.table.should_wait():
            self._pause()
            raise BlockingIOError  # asyncio's accept loop stops here for now
        fd, address = self._accept()  # type: ignore[attr-defined]
        conn = _CountedConnection(self.family, self.type, self.proto, fileno=fd)
        conn.table = self.table
        self.table.changed(+1)
        return conn, address

    def _pause(self) -> None:
        """Stop the event loop watching this socket, and look again in POLL_SECONDS."""
        loop = asyncio.get_running_loop()
        fd = self.fileno()
        # asyncio keeps the accept callback in the selector's key; taken to put
        # it back as it was (no public API pauses a server's accepting).
        # (removing the reader cancels the handle, which clears both: read first).
        handle = loop._selector.get_key(fd).data[0]  # type: ignore[attr-defined]
        accept = (handle._callback, *handle._args)
        loop.remove_reader(fd)
        loop.call_later(POLL_SECONDS, self._resume_when_due, loop, fd, accept)

    def _resume_when_due(
        self, loop: asyncio.AbstractEventLoop, fd: int, accept: tuple[Any, ...]
    ) -> None:
        if self.fileno() != fd:  # closed: the server is shutting down
            return
        if self.table.should_wait():
            loop.call_later(POLL_SECONDS, self._resume_when_due, loop, fd, accept)
            return
        loop.add_reader(fd, *accept)


def table_path(server_pid: int) -> Path:
    """The table of the server whose main process is `server_pid` (its start time
    in the name: a pid is reused); tables of servers that have stopped are removed."""
    import psutil

    directory = Path(tempfile.gettempdir())
    own = directory / f"{_PREFIX}{server_pid}-{int(psutil.Process(server_pid).create_time())}"
    for stale in directory.glob(f"{_PREFIX}*"):
        if stale != own and not server_alive(stale.name.removeprefix(_PREFIX)):
            stale.unlink(missing_ok=True)
    return own


def _balanced(sockets: list[socket.socket], table: ConnectionTable) -> list[socket.socket]:
    wrapped: list[socket.socket] = []
    for sock in sockets:
        listener = BalancedListener(sock.family, sock.type, sock.proto, fileno=sock.detach())
        listener.table = table
        wrapped.append(listener)
    return wrapped


def install(workers: int) -> None:
    """In a BentoML worker of a server with several workers: uvicorn gets the
    listening socket wrapped in a BalancedListener (nothing happens elsewhere)."""
    from bentoml._internal.context import server_context

    worker = server_context.worker_index  # 1-based; None outside a worker
    if workers < 2 or worker is None or not 1 <= worker <= workers:
        return
    import uvicorn

    startup: Callable[..., Any] = uvicorn.Server.startup
    shutdown: Callable[..., Any] = uvicorn.Server.shutdown
    table = ConnectionTable(table_path(os.getppid()), workers, worker - 1)

    async def balanced_startup(server: uvicorn.Server, sockets: Any = None) -> None:
        loop = asyncio.get_running_loop()
        if sockets is None or not hasattr(loop, "_selector"):
            logger.warning("connections are not balanced over the workers on this loop")
            return await startup(server, sockets=sockets)
        sockets[:] = _balanced(sockets, table)  # uvicorn closes the same list at shutdown
        await startup(server, sockets=sockets)
        _heartbeat(loop, table)

    async def marked_shutdown(server: uvicorn.Server, sockets: Any = None) -> None:
        table.alive = False  # the others stop waiting for this worker
        table.publish()
        await shutdown(server, sockets=sockets)

    uvicorn.Server.startup = balanced_startup  # type: ignore[method-assign,assignment]
    uvicorn.Server.shutdown = marked_shutdown  # type: ignore[method-assign,assignment]


def _heartbeat(loop: asyncio.AbstractEventLoop, table: ConnectionTable) -> None:
    if table.alive:
        table.publish()
        loop.call_later(HEARTBEAT_SECONDS, _heartbeat, loop, table)

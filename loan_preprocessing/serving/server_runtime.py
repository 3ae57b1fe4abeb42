"""What the workers of one `bentoml serve` share with its main process: the model
version they all serve, and whether one of them failed to start.

**One model version per server.** BentoML restarts a worker that dies (an OOM
kill, say), and a restarted worker that resolved `loan_approval:latest` itself
would serve whatever was trained meanwhile, beside workers serving the old one.
So the main process resolves the version once, before any worker starts
(`@bentoml.on_deployment`), and hands the concrete tag to its workers in the
environment, which circus copies into every worker it ever starts.

**A worker that cannot start stops the server.** circus restarts a worker that
exits, forever; one whose start fails (a model file changed since the server
verified it, a path it cannot open) crash-loops, and while no worker runs, every
client waits in the listening socket's backlog, probes included. So the first
worker that fails writes its one-line reason into the server's runtime folder
(the other workers' /readyz then answer 503), prints it, and asks the main
process to stop (SIGTERM: what Ctrl-C does, graceful for the healthy workers);
the main process then exits with status 1.

Both values are keyed to the main process's pid: a worker of another server
that inherited the variable (a server started from inside a worker) ignores it.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

RUNTIME_ENV: Final = "LOAN_SERVER_RUNTIME"
FAILED_FILE: Final = "worker-failed"
# The status the main process ends with after a worker failed to start.
WORKER_FAILED_STATUS: Final = 1

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServerRuntime:
    """The served tag and the runtime folder of the server this process belongs to."""

    model_tag: str
    folder: Path

    def failure(self) -> str | None:
        """The reason a worker of this server gave for failing to start, if one did."""
        try:
            return (self.folder / FAILED_FILE).read_text(encoding="utf-8")
        except OSError:
            return None


def start_server_runtime(model_tag: str, environ: MutableMapping[str, str] = os.environ) -> None:
    """In the main process, before workers start: pin `model_tag` for every worker
    of this server, and make the folder they report a failed start in (removed
    when the main process exits, which then exits with WORKER_FAILED_STATUS if a
    worker failed)."""
    folder = Path(tempfile.mkdtemp(prefix="loan-server-"))
    environ[RUNTIME_ENV] = f"{os.getpid()} {folder} {model_tag}"
    runtime = ServerRuntime(model_tag, folder)
    atexit.register(_finish, runtime)


def server_runtime(environ: MutableMapping[str, str] = os.environ) -> ServerRuntime | None:
    """In a worker: its server's runtime, or None when this process was not started
    by a server that set one (an in-process app, a test client)."""
    pid, _, rest = environ.get(RUNTIME_ENV, "").partition(" ")
    folder, _, tag = rest.partition(" ")
    if not tag or pid != str(os.getppid()):
        return None
    return ServerRuntime(tag, Path(folder))


def stop_server(runtime: ServerRuntime | None, reason: str) -> None:
    """A worker could not start: record `reason` (one line) for the other workers'
    readiness, print it, and ask the main process to stop. Only the first failure
    is recorded; later ones (a second worker failing the same way) only exit."""
    line = " ".join(reason.split())
    if runtime is None:
        return
    try:
        # O_EXCL: the first worker to fail writes the reason, the others see it.
        descriptor = os.open(runtime.folder / FAILED_FILE, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    except FileExistsError:
        return
    except OSError:
        descriptor = None
    if descriptor is not None:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(line)
    print(f"error: a worker could not start, stopping the server: {line}", file=sys.stderr)
    os.kill(os.getppid(), signal.SIGTERM)


def _finish(runtime: ServerRuntime) -> None:
    failed = runtime.failure() is not None
    shutil.rmtree(runtime.folder, ignore_errors=True)
    if failed:
        # atexit cannot change the exit status otherwise. Handlers run last
        # registered first, so those registered after this one (BentoML's,
        # circus's) have run; logging's, registered at its import, is called here.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(WORKER_FAILED_STATUS)

"""`make serve`: check the port, run `bentoml serve`, and say when it is ready.

    python -m loan_preprocessing.serving.launch --host 127.0.0.1 --port 3000

BentoML's own start-up ends with "listening on ...", before the model is loaded,
and a port already in use gives some forty lines with "Could not bind" twice.
This runs the same server as a child process, refuses a busy port in one line
that names the make variable, and once `/readyz` answers prints the address,
the API page and the model version the server serves. Ctrl-C (or SIGTERM) is
passed on to the server, whose exit status becomes this one's.
"""

from __future__ import annotations

import argparse
import errno
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType
from typing import Final

SERVICE: Final = "service:LoanApproval"
READY_POLL_SECONDS: Final = 0.25


class PortInUseError(RuntimeError):
    """HOST:PORT is taken; the message is one line naming PORT=."""


def check_port_free(host: str, port: int) -> None:
    """Raise PortInUseError when `host:port` cannot be bound, as the server would
    (SO_REUSEADDR like uvicorn, so a port in TIME_WAIT still counts as free)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                raise
            raise PortInUseError(
                f"port {port} on {host} is already in use (another server?): stop it, or "
                f"serve on another port with `make serve PORT={port + 1}`"
            ) from None


def served_model_tag() -> str:
    """The model version a server started now would serve (LOAN_MODEL_TAG, or the
    newest stored one), resolved as the service resolves it."""
    from loan_preprocessing.model.store import get_model
    from loan_preprocessing.serving.settings import ServiceSettings

    return str(get_model(ServiceSettings.from_env_or_exit().model_tag).tag)


def wait_until_ready(server: subprocess.Popen[bytes], base_url: str) -> bool:
    """Poll /readyz until it answers 200 (True) or the server exits (False)."""
    while server.poll() is None:
        try:
            with urllib.request.urlopen(f"{base_url}/readyz", timeout=2) as answer:
                if answer.status == 200:
                    return True
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(READY_POLL_SECONDS)
    return False


def serve(host: str, port: int) -> int:
    check_port_free(host, port)
    tag = served_model_tag()
    shown_host = f"[{host}]" if ":" in host else host
    base_url = f"http://{shown_host}:{port}"
    print(f"make: starting the server on {base_url} with model {tag}", flush=True)
    bentoml = str(Path(sys.executable).with_name("bentoml"))
    server = subprocess.Popen([bentoml, "serve", SERVICE, "--host", host, "--port", str(port)])

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        server.send_signal(signum)

    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGINT, pass_on)
    if wait_until_ready(server, base_url):
        print(
            f"make: ready at {base_url} (API page {base_url}/ , model {tag}); Ctrl-C stops it",
            flush=True,
        )
    return server.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Serve the loan-approval service.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args(argv)
    from bentoml.exceptions import BentoMLException

    try:
        return serve(args.host, args.port)
    except (PortInUseError, BentoMLException) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

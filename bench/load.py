"""Driving a server with wrk and reading back its figures."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

LUA_SCRIPT: Final = Path(__file__).resolve().parent / "wrk" / "post_bodies.lua"
RESULT_MARKER: Final = "BENCH_JSON "
INSTALL_HINT: Final = (
    "wrk is not installed: `apt-get install wrk` (Debian/Ubuntu; `make bench` does it "
    "when run as root)"
)


@dataclass(frozen=True)
class LoadResult:
    """What one wrk run measured."""

    requests: int
    seconds: float
    errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    max_ms: float
    # Client connections per server worker, sampled halfway through the run.
    connections_per_worker: list[int] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds


def find_wrk() -> str:
    path = shutil.which("wrk")
    if path is None:
        raise SystemExit(INSTALL_HINT)
    return path


def run_wrk(
    url: str,
    bodies: Path,
    *,
    connections: int,
    seconds: float,
    threads: int = 2,
    midway: Callable[[], list[int]] | None = None,
    path: str = "/predict",
    binary: bool = False,
) -> LoadResult:
    """POST the bodies to url + path from `connections` clients for `seconds`;
    `midway()` is called halfway through and its answer kept as the
    connections per worker. `binary`: the bodies are binary-extension V2
    requests framed by bodies.v2_binary_body."""
    threads = min(threads, connections)
    command = [
        find_wrk(),
        f"-t{threads}",
        f"-c{connections}",
        f"-d{seconds:g}s",
        "--timeout",
        "20s",
        "--latency",
        "-s",
        str(LUA_SCRIPT),
        url,
        "--",
        str(bodies),
        path,
        *(["binary"] if binary else []),
    ]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        split: list[int] = []
        if midway is not None:
            time.sleep(seconds / 2)
            split = midway()
        try:
            stdout, stderr = process.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    lines = [ln for ln in stdout.splitlines() if ln.startswith(RESULT_MARKER)]
    if process.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({process.returncode}): {stderr}{stdout}")
    figures = json.loads(lines[-1][len(RESULT_MARKER) :])
    latency = figures["latency_us"]
    return LoadResult(
        requests=figures["requests"],
        seconds=figures["duration_us"] / 1e6,
        # Non-2xx answers and socket errors both count: a fast error is not a result.
        errors=sum(figures["errors"].values()),
        p50_ms=latency["p50"] / 1e3,
        p90_ms=latency["p90"] / 1e3,
        p99_ms=latency["p99"] / 1e3,
        max_ms=latency["max"] / 1e3,
        connections_per_worker=split,
    )

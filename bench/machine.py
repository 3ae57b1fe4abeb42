"""What the numbers were measured on: machine, load, code version, process memory."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import psutil

from loan_preprocessing.environment import PROJECT_ROOT

WORKER_MODULE = "_bentoml_impl.worker.service"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def machine_info() -> dict[str, Any]:
    return {
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "cpu_model": cpu_model(),
        "memory_gb": round(psutil.virtual_memory().total / 1e9, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True
        ).stdout.strip()

    return {
        "commit": git("rev-parse", "HEAD"),
        "dirty": bool(git("status", "--porcelain", "--untracked-files=no")),
    }


def worker_processes(server_pid: int) -> list[psutil.Process]:
    return [
        p
        for p in psutil.Process(server_pid).children(recursive=True)
        if WORKER_MODULE in " ".join(p.cmdline())
    ]


def connections_per_worker(server_pid: int, port: int) -> list[int]:
    """Established client connections on `port` held by each worker, largest first.

    The workers share one listening socket and each accepts whatever is queued
    when it wakes, so a burst of new connections (wrk opens all of them at once)
    often lands on one worker: 32/0 instead of 16/16, and that round measures
    one worker, not two. Recorded with every round so a table can be read."""
    counts = []
    for worker in worker_processes(server_pid):
        try:
            connections = worker.net_connections(kind="tcp")
        except psutil.Error:
            continue
        counts.append(
            sum(
                c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
                for c in connections
            )
        )
    return sorted(counts, reverse=True)


def worker_memory(server_pid: int) -> dict[str, float]:
    """Resident memory of a `bentoml serve` process tree's workers: the sum over the
    workers divided by their number (RSS counts shared pages in each process, so
    this is pessimistic), plus the unique memory per worker for comparison."""
    workers = worker_processes(server_pid)
    if not workers:
        return {"workers": 0, "rss_mb_per_worker": float("nan"), "uss_mb_per_worker": float("nan")}
    rss = sum(p.memory_info().rss for p in workers)
    uss = sum(p.memory_full_info().uss for p in workers)
    return {
        "workers": len(workers),
        "rss_mb_per_worker": rss / len(workers) / 1e6,
        "uss_mb_per_worker": uss / len(workers) / 1e6,
        # What the model's thread pools were given (settings.worker_envs).
        "worker_omp_num_threads": workers[0].environ().get("OMP_NUM_THREADS"),
    }

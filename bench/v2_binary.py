"""V2 binary tensors against V2 JSON on 1000-row requests, in one run.

    python -m bench.v2_binary [--repeats 30] [--http-rounds 3] [--seconds 5] [--home DIR]

In this process, timed as CPU time (the machine is shared; the process's CPU time
counts the worker threads, the decision store's included, and not the other
users): the BYTES decoder on each text column of the bench's 1000-row body (as
served, as a list, and its walk of the length prefixes beside a numpy walk:
every byte's next start, then doubling), and whole requests through the service's ASGI app, JSON
and binary taking turns. With --http-rounds, the same bodies are also sent by
wrk (4 clients) to a real `bentoml serve`, JSON and binary taking turns. Decision
records are on (SQLite in a temporary folder) unless --no-records. Prints JSON.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any, Final

import numpy as np

from bench.bodies import BATCH_ROWS, application_rows, write_bodies
from bench.load import run_wrk
from bench.machine import load_average
from bench.model import REAL_TEST_CSV, default_home, ensure_model, training_data

INFER_PATH: Final = "/v2/models/loan_approval/infer"
KINDS: Final = ("v2_batch", "v2_binary")
CLIENTS: Final = 4


def numpy_walk(data: bytes) -> np.ndarray:
    """Where each BYTES value's length prefix starts, without a Python loop: every
    byte's next start if a value started there, then pointer doubling from 0."""
    size = len(data)
    padded = np.frombuffer(data + b"\0\0\0", np.uint8)
    lengths = np.lib.stride_tricks.as_strided(padded, shape=(size, 4), strides=(1, 1))
    following = np.empty(size + 1, np.int64)
    np.minimum(
        np.arange(4, size + 4) + lengths.copy().view("<u4").ravel(), size, out=following[:size]
    )
    following[size] = size
    found, jump = np.zeros(1, np.int64), following
    while True:
        ahead = jump[found]
        if ahead[-1] >= size:
            return np.concatenate([found, ahead[ahead < size]])
        found, jump = np.concatenate([found, ahead]), jump[jump]


def loop_walk(data: bytes) -> list[int]:
    """The same starts found by a Python loop, as the served decoder walks them."""
    starts, offset, unpack = [], 0, struct.Struct("<I").unpack_from
    while offset < len(data):
        starts.append(offset)
        offset += 4 + unpack(data, offset)[0]
    return starts


def cpu_us(call: Callable[[], object], repeats: int) -> float:
    """Median CPU microseconds of `call` (one call first, not counted)."""
    call()
    times = []
    for _ in range(repeats):
        started = time.process_time()
        call()
        times.append(time.process_time() - started)
    return statistics.median(times) * 1e6


def decoder_figures(body: bytes, repeats: int) -> dict[str, dict[str, float]]:
    """Per text column of one binary body: microseconds to decode it as served,
    to a list, and the numpy walk alone."""
    from loan_preprocessing.serving import binary_tensors

    header_length = int(body.split(b"\n", 1)[0].split()[0])
    framed = body.split(b"\n", 1)[1]
    header = json.loads(framed[:header_length])
    offset, figures = header_length, {}
    for column in header["inputs"]:
        size = column["parameters"]["binary_data_size"]
        raw = memoryview(framed)[offset : offset + size]
        offset += size
        if column["datatype"] != "BYTES":
            continue
        name = column["name"]
        served = getattr(binary_tensors, "decode_tensor", binary_tensors.decode)
        figures[name] = {
            "served_us": cpu_us(partial(served, name, "BYTES", raw), repeats),
            "as_list_us": cpu_us(partial(binary_tensors.decode, name, "BYTES", raw), repeats),
            "loop_walk_only_us": cpu_us(partial(loop_walk, raw.tobytes()), repeats),
            "numpy_walk_only_us": cpu_us(partial(numpy_walk, raw.tobytes()), repeats),
        }
    return figures


def asgi_figures(bodies: dict[str, Path], repeats: int) -> dict[str, Any]:
    """Median CPU milliseconds per whole request through the service's ASGI app
    (middleware, validation, model, record, answer), JSON and binary in turns."""
    import service

    # mypy cannot follow class decorators: LoanApproval is a bentoml.Service here.
    app = service.LoanApproval.to_asgi()  # type: ignore[attr-defined]
    json_body = bodies["v2_batch"].read_bytes().split(b"\n", 1)[0]
    framing, rest = bodies["v2_binary"].read_bytes().split(b"\n", 1)
    header_length, body_length = (int(v) for v in framing.split())
    requests = {
        "v2_batch": (json_body, [(b"content-type", b"application/json")]),
        "v2_binary": (
            rest[:body_length],
            [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(header_length).encode()),
            ],
        ),
    }

    async def call(body: bytes, headers: list[tuple[bytes, bytes]]) -> int:
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": INFER_PATH,
            "raw_path": INFER_PATH.encode(),
            "query_string": b"",
            "root_path": "",
            "headers": [(b"host", b"127.0.0.1"), (b"content-length", b"%d" % len(body)), *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 3000),
        }
        messages = [{"type": "http.request", "body": body, "more_body": False}]
        status = []

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            await asyncio.Event().wait()  # no disconnect while answering
            raise AssertionError

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])

        await app(scope, receive, send)
        return status[0]

    async def run() -> dict[str, Any]:
        inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        await inbox.put({"type": "lifespan.startup"})
        lifespan = asyncio.create_task(
            app(
                {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, inbox.get, outbox.put
            )
        )
        started = await outbox.get()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"the service did not start: {started}")
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for kind in KINDS:  # warm-up
            if await call(*requests[kind]) != 200:
                raise RuntimeError(f"{kind}: not a 200")
        for _ in range(repeats):
            for kind in KINDS:
                began = time.process_time()
                await call(*requests[kind])
                times[kind].append(time.process_time() - began)
        await inbox.put({"type": "lifespan.shutdown"})
        await outbox.get()
        await lifespan
        medians = {kind: statistics.median(t) * 1e3 for kind, t in times.items()}
        return {
            "cpu_ms_per_request": medians,
            "binary_speedup": medians["v2_batch"] / medians["v2_binary"],
        }

    return asyncio.run(run())


def http_figures(
    bodies: dict[str, Path], env: dict[str, str], rounds: int, seconds: float, logs: Path
) -> dict[str, Any]:
    """Rows per second from wrk (4 clients) against `bentoml serve`, in turns."""
    from tests.support.server import bentoml_serve

    per_round: dict[str, list[float]] = {kind: [] for kind in KINDS}
    loads = []
    with bentoml_serve(env=env, log_path=logs / "serve.log", ready_timeout=240.0) as server:

        def load(kind: str, duration: float) -> float:
            result = run_wrk(
                server.url,
                bodies[kind],
                connections=CLIENTS,
                seconds=duration,
                path=INFER_PATH,
                binary=kind == "v2_binary",
            )
            if result.errors:
                raise RuntimeError(f"{kind}: {result.errors} errors")
            return result.requests_per_second * BATCH_ROWS

        for kind in KINDS:
            load(kind, 2.0)
        for n in range(rounds):
            loads.append(load_average())
            for kind in KINDS[n % 2 :] + KINDS[: n % 2]:
                per_round[kind].append(load(kind, seconds))
    medians = {kind: statistics.median(v) for kind, v in per_round.items()}
    return {
        "rows_per_s_rounds": per_round,
        "rows_per_s_median": medians,
        "binary_over_json_median": medians["v2_binary"] / medians["v2_batch"],
        "binary_over_json_rounds": [
            b / j for b, j in zip(per_round["v2_binary"], per_round["v2_batch"], strict=True)
        ],
        "load_average_at_rounds": loads,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=30, help="timed calls of each kind")
    parser.add_argument("--http-rounds", type=int, default=0, help="wrk rounds (0: none)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each wrk run")
    parser.add_argument("--home", type=Path, help="BENTOML_HOME for the model")
    parser.add_argument("--no-records", action="store_true", help="decision records off")
    args = parser.parse_args(argv)
    data, real = training_data()
    home = args.home or default_home(data)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="loan-bench-v2-binary-") as scratch:
        folder = Path(scratch)
        tag, _ = ensure_model(home, data, folder / "train.log")
        env = {
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "LOAN_MODEL_TAG": tag,
            "LOAN_DECISION_STORE_URL": f"sqlite:///{folder / 'decisions.sqlite3'}",
            "LOAN_DECISION_RECORDS": "false" if args.no_records else "true",
            "OMP_NUM_THREADS": "1",
        }
        os.environ.update(env)
        bodies = write_bodies(application_rows([REAL_TEST_CSV, data] if real else [data]), folder)
        result: dict[str, Any] = {
            "model": tag,
            "data": "real" if real else "synthetic",
            "records": not args.no_records,
            "load_average_before": load_before,
            "decoder": decoder_figures(bodies["v2_binary"].read_bytes(), args.repeats * 10),
            "asgi": asgi_figures(bodies, args.repeats),
        }
        if args.http_rounds:
            env["LOAN_DECISION_STORE_URL"] = f"sqlite:///{folder / 'served.sqlite3'}"
            result["http"] = http_figures(bodies, env, args.http_rounds, args.seconds, folder)
        result["load_average_after"] = load_average()
    json.dump(result, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())

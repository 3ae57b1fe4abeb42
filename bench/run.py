"""`make bench`: the served model against the framework's ceiling, on this machine.

    python -m bench.run [--seconds 6] [--rounds 2] [--home DIR]

Trains (or reuses) a model in a BentoML store of its own, serves it with
`bentoml serve service:LoanApproval` on 127.0.0.1, drives it with wrk, then does
the same for a no-model service with the same schema, settings and middleware
(bench/baseline_service.py), and times the pipeline in-process. Prints a table;
writes every figure, with the machine, its load and the git commit, to
bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final

import httpx

from bench.bodies import BATCH_ROWS, application_rows, write_bodies
from bench.load import LoadResult, find_wrk, run_wrk
from bench.machine import (
    connections_per_worker,
    git_commit,
    load_average,
    machine_info,
    worker_memory,
)
from bench.mlserver import INFER_PATH as V2_INFER_PATH
from bench.mlserver import mlserver_serve
from bench.model import REAL_TEST_CSV, default_home, ensure_model, training_data
from bench.report import inprocess_table, peers_table, rounds_summary, table, write_json
from loan_preprocessing.environment import PROJECT_ROOT
from loan_preprocessing.serving.settings import ServiceSettings, worker_envs
from tests.support.server import bentoml_serve

RESULTS_PATH: Final = PROJECT_ROOT / "bench" / "results" / "latest.json"
TARGETS: Final = {
    "service": "service:LoanApproval",
    "ceiling": "bench.baseline_service:NoModelBaseline",
}
SINGLE_ROW_CLIENTS: Final = 32
BATCH_CLIENTS: Final = 4
# What each load sends: bodies (by write_bodies' key) -> (path, clients).
LOADS: Final = {
    "single": ("/predict", SINGLE_ROW_CLIENTS),
    "batch": ("/predict", BATCH_CLIENTS),
    "v2_batch": (V2_INFER_PATH, BATCH_CLIENTS),
}
SERVER_LOADS: Final = {
    "service": ("single", "batch", "v2_batch"),
    "ceiling": ("single", "batch"),
    "mlserver": ("v2_batch",),
}
WARM_UP_SECONDS: Final = 2.0


def check_answers(url: str, bodies: dict[str, Path]) -> None:
    probe = json.loads(bodies["single"].read_text().splitlines()[0])
    answer = httpx.post(f"{url}/predict", json=probe, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:500]}")


def measure_servers(
    env: dict[str, str],
    bodies: dict[str, Path],
    seconds: float,
    rounds: int,
    logs: Path,
    with_mlserver: bool,
) -> dict[str, dict[str, Any]]:
    """Start the service, then the ceiling, then MLServer (one at a time, so each
    start is timed alone), then load them in turn, ROUNDS times: single-row at 32
    clients, 1000-row at 4, 1000-row V2 at 4. Taking turns spreads the other users
    of the machine fairly over all of them; each figure is the best round (the one
    least disturbed)."""
    runs: dict[str, dict[str, list[LoadResult]]] = {}
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        servers = {}
        for name, target in TARGETS.items():
            print(f"starting {name} ({target}) ...", flush=True)
            server = stack.enter_context(
                bentoml_serve(target, env=env, log_path=logs / f"{name}.log")
            )
            check_answers(server.url, bodies)
            servers[name] = server
        if with_mlserver:
            print("starting mlserver (MLServer 1.7.1, sklearn runtime) ...", flush=True)
            servers["mlserver"] = stack.enter_context(
                mlserver_serve(
                    env["LOAN_MODEL_TAG"], logs / "mlserver-model", logs / "mlserver.log", env
                )
            )
        for name in servers:
            runs[name] = {kind: [] for kind in SERVER_LOADS[name]}
        for kind, (path, clients) in LOADS.items():
            for name, server in servers.items():  # a warm-up each, not measured
                if kind in SERVER_LOADS[name]:
                    run_wrk(
                        server.url,
                        bodies[kind],
                        connections=clients,
                        seconds=WARM_UP_SECONDS,
                        path=path,
                    )
        for n in range(rounds):
            print(f"round {n + 1}/{rounds} ...", flush=True)
            for kind, (path, clients) in LOADS.items():
                for name, server in servers.items():
                    if kind not in SERVER_LOADS[name]:
                        continue
                    result = run_wrk(
                        server.url,
                        bodies[kind],
                        connections=clients,
                        seconds=seconds,
                        path=path,
                        midway=functools.partial(
                            connections_per_worker, server.process.pid, server.port
                        ),
                    )
                    runs[name][kind].append(result)
        for name, server in servers.items():
            best = {k: max(v, key=lambda r: r.requests_per_second) for k, v in runs[name].items()}
            figures: dict[str, Any] = {
                "ready_s": server.ready_seconds,
                **worker_memory(server.process.pid),
                "rounds": {k: [asdict(r) for r in v] for k, v in runs[name].items()},
            }
            if "single" in best:
                figures |= {
                    "single_connections_per_worker": best["single"].connections_per_worker,
                    "single_rps": best["single"].requests_per_second,
                    "single_p50_ms": best["single"].p50_ms,
                    "single_p99_ms": best["single"].p99_ms,
                    "single_errors": best["single"].errors,
                }
            if "batch" in best:
                figures |= {
                    "batch_connections_per_worker": best["batch"].connections_per_worker,
                    "batch_rows_per_s": best["batch"].requests_per_second * BATCH_ROWS,
                    "batch_errors": best["batch"].errors,
                }
            if "v2_batch" in best:
                figures |= {
                    "v2_rows_per_s": best["v2_batch"].requests_per_second * BATCH_ROWS,
                    "v2_errors": best["v2_batch"].errors,
                }
            results[name] = figures
    return results


def measure_inprocess(env: dict[str, str], tag: str, rows_path: Path) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "bench.inprocess", tag, str(rows_path)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise RuntimeError(f"in-process benchmark failed: {result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="each measured wrk run")
    parser.add_argument(
        "--home", type=Path, help="BENTOML_HOME for the model (default: a cache in the temp dir)"
    )
    parser.add_argument("--rounds", type=int, default=3, help="turns each server is loaded")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    parser.add_argument(
        "--no-mlserver", action="store_true", help="skip the MLServer peer (and its venv)"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    find_wrk()  # fail before training or serving anything
    started = time.monotonic()
    data, real = training_data()
    home = args.home or default_home(data)
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="loan-bench-") as scratch_dir:
        scratch = Path(scratch_dir)
        print(f"model store {home} (training data: {'real' if real else 'synthetic'} {data.name})")
        tag, trained = ensure_model(home, data, scratch / "train.log")
        print(f"{'trained' if trained else 'reusing'} {tag}")
        rows = application_rows([REAL_TEST_CSV, data] if real else [data])
        bodies = write_bodies(rows, scratch)
        rows_path = scratch / "rows.json"
        rows_path.write_text(json.dumps(rows))
        env = {
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "LOAN_MODEL_TAG": tag,
        }
        try:
            servers = measure_servers(
                env, bodies, args.seconds, args.rounds, scratch, not args.no_mlserver
            )
        finally:  # the servers' logs, for the 503s and tracebacks a table does not show
            for log in scratch.glob("*.log"):
                (args.out.parent / "logs").mkdir(parents=True, exist_ok=True)
                shutil.copy(log, args.out.parent / "logs" / log.name)
        print("measuring the pipeline in-process ...", flush=True)
        # With the workers' thread settings, so the figures are a worker's.
        threads = {e["name"]: e["value"] for e in worker_envs(ServiceSettings.from_env())}
        inprocess = measure_inprocess({**threads, **env}, tag, rows_path)
    result: dict[str, Any] = {
        "servers": servers,
        "inprocess_ms": inprocess,
        "model": {
            "tag": tag,
            "training_data": "real" if real else "synthetic",
            "rows_in_bodies": len(rows),
        },
        "settings": ServiceSettings.from_env().model_dump(),
        "load_generator": {
            "tool": "wrk",
            "seconds": args.seconds,
            "rounds": args.rounds,
            "single_row_clients": SINGLE_ROW_CLIENTS,
            "batch_clients": BATCH_CLIENTS,
            "batch_rows": BATCH_ROWS,
        },
        "machine": {
            **machine_info(),
            "load_average_before": load_before,
            "load_average_after": load_average(),
        },
        "git": git_commit(),
        "wall_seconds": round(time.monotonic() - started, 1),
    }
    result["settings"].pop("api_key", None)
    write_json(args.out, result)
    print()
    print(table(servers["service"], servers["ceiling"]))
    print()
    print(peers_table(servers))
    for name, figures in servers.items():
        failed = {k: v for k, v in figures.items() if k.endswith("_errors") and v}
        if failed:
            print(f"WARNING {name}: requests failed or timed out: {failed}")
    print()
    print(rounds_summary(servers))
    print()
    print(inprocess_table(inprocess))
    m = result["machine"]
    print(
        f"\n{m['logical_cores']} cores ({m['cpu_model']}), load average before "
        f"{load_before}, after {m['load_average_after']}; commit {result['git']['commit'][:10]}"
        f"{' (dirty)' if result['git']['dirty'] else ''}; {result['wall_seconds']} s; "
        f"figures in {args.out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

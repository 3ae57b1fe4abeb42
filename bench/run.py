"""`make bench`: the served model against the framework's ceiling, on this machine.

    python -m bench.run [--seconds 6] [--rounds 2] [--home DIR] [--before REV]

Trains (or reuses) a model in a BentoML store of its own, serves it with
`bentoml serve service:LoanApproval` on 127.0.0.1, drives it with wrk, then does
the same for a no-model service with the same schema, settings and middleware
(bench/baseline_service.py), and times the pipeline in-process. With --before,
the service as it was at commit REV (`git archive`, served from a temporary
directory with the same packages and model) takes its turns too, so a change is
measured against its predecessor in the same run. Single-row requests are also
sent as rejected-only and approved-only streams (rejections carry reasons). The
service also gets 1000-row Open Inference (V2) requests, and so does MLServer
1.7.1's sklearn runtime serving the same fitted pipeline (bench/mlserver.py;
--no-mlserver skips it).
Prints tables; writes every figure, with the machine, its load and the git
commit, to bench/results/latest.json.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import httpx

from bench.bodies import BATCH_ROWS, application_rows, write_bodies, write_single_bodies
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
from bench.report import (
    inprocess_table,
    peers_table,
    reasons_table,
    record_costs_table,
    records_table,
    rounds_summary,
    table,
    write_json,
)
from loan_preprocessing.environment import PROJECT_ROOT
from loan_preprocessing.serving.settings import ServiceSettings, worker_envs
from tests.support.postgres import postgres_server
from tests.support.server import bentoml_serve

RESULTS_PATH: Final = PROJECT_ROOT / "bench" / "results" / "latest.json"
SERVICE: Final = "service:LoanApproval"
CEILING: Final = "bench.baseline_service:NoModelBaseline"
SINGLE_ROW_CLIENTS: Final = 32
BATCH_CLIENTS: Final = 4
WARM_UP_SECONDS: Final = 2.0
# What each server is loaded with, and by how many clients: every server gets
# the first two; the servers with a model also get the single-row requests split
# by the model's decision (the ceiling has no decisions to split by).
KINDS: Final = {"single": SINGLE_ROW_CLIENTS, "batch": BATCH_CLIENTS}
DECISION_KINDS: Final = {
    "single_rejected": SINGLE_ROW_CLIENTS,
    "single_approved": SINGLE_ROW_CLIENTS,
}
# 1000-row Open Inference requests: the service and its peer, MLServer.
V2_KINDS: Final = {"v2_batch": BATCH_CLIENTS}
ALL_KINDS: Final = {**KINDS, **DECISION_KINDS, **V2_KINDS}
PATHS: Final = {"v2_batch": V2_INFER_PATH}  # every other kind posts to /predict


@dataclass(frozen=True)
class Target:
    service: str
    cwd: Path = PROJECT_ROOT
    has_model: bool = True
    open_inference: bool = False
    # Settings of this server only (decision records off, or on PostgreSQL).
    env: tuple[tuple[str, str], ...] = ()

    @property
    def kinds(self) -> dict[str, int]:
        kinds = {**KINDS, **DECISION_KINDS} if self.has_model else dict(KINDS)
        return {**kinds, **V2_KINDS} if self.open_inference else kinds


def check_answers(url: str, bodies: dict[str, Path]) -> None:
    probe = json.loads(bodies["single"].read_text().splitlines()[0])
    answer = httpx.post(f"{url}/predict", json=probe, timeout=30)
    if answer.status_code != 200:
        raise RuntimeError(f"{url} answered {answer.status_code}: {answer.text[:500]}")


def split_by_decision(url: str, rows: list[dict], scratch: Path) -> dict[str, Path]:
    """Single-row bodies of the rows the served model rejects, and of those it approves."""
    answer = httpx.post(f"{url}/predict", json={"applications": rows}, timeout=60)
    answer.raise_for_status()
    statuses = [d["Loan_Status"] for d in answer.json()]
    return {
        kind: write_single_bodies(
            [r for r, s in zip(rows, statuses, strict=True) if s == status],
            scratch / f"{kind}_bodies.jsonl",
        )
        for kind, status in (("single_rejected", "N"), ("single_approved", "Y"))
    }


def measure_servers(
    env: dict[str, str],
    bodies: dict[str, Path],
    targets: dict[str, Target],
    seconds: float,
    rounds: int,
    logs: Path,
    with_mlserver: bool,
) -> dict[str, dict[str, Any]]:
    """Start the servers one at a time (so each start is timed alone), then load
    them in turn, ROUNDS times, with each kind of request (single-row at 32
    clients, 1000-row at 4, ...). Taking turns spreads the other users of the
    machine fairly over them; each figure is the best round (the one least
    disturbed)."""
    runs: dict[str, dict[str, list[LoadResult]]] = {}
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        servers = {}
        for name, target in targets.items():
            print(f"starting {name} ({target.service} in {target.cwd}) ...", flush=True)
            server = stack.enter_context(
                bentoml_serve(
                    target.service,
                    env={**env, **dict(target.env)},
                    log_path=logs / f"{name}.log",
                    cwd=target.cwd,
                    # Generous: on a machine shared with other jobs a start can
                    # take minutes; the start time is reported as measured.
                    ready_timeout=240.0,
                )
            )
            check_answers(server.url, bodies)
            servers[name] = server
            runs[name] = {kind: [] for kind in target.kinds}
        clients = {name: target.kinds for name, target in targets.items()}
        if with_mlserver:
            print("starting mlserver (MLServer 1.7.1, sklearn runtime) ...", flush=True)
            servers["mlserver"] = stack.enter_context(
                mlserver_serve(
                    env["LOAN_MODEL_TAG"], logs / "mlserver-model", logs / "mlserver.log", env
                )
            )
            runs["mlserver"] = {kind: [] for kind in V2_KINDS}
            clients["mlserver"] = dict(V2_KINDS)
        first = next(name for name, t in targets.items() if t.has_model)
        rows = json.loads(bodies["rows"].read_text())
        bodies = {**bodies, **split_by_decision(servers[first].url, rows, logs)}
        for kind in ALL_KINDS:
            for name, server in servers.items():  # a warm-up each, not measured
                if kind in runs[name]:
                    run_wrk(
                        server.url,
                        bodies[kind],
                        connections=clients[name][kind],
                        seconds=WARM_UP_SECONDS,
                        path=PATHS.get(kind, "/predict"),
                    )
        names = list(servers)
        for n in range(rounds):
            print(f"round {n + 1}/{rounds} ...", flush=True)
            # The servers take turns in a rotating order: in some runs the server
            # loaded first in a round had all 32 connections land on one of its
            # workers round after round (new connections bursting on a shared
            # socket); rotating spreads that across the servers.
            order = names[n % len(names) :] + names[: n % len(names)]
            for kind in ALL_KINDS:
                for name, server in ((name, servers[name]) for name in order):
                    if kind not in runs[name]:
                        continue
                    result = run_wrk(
                        server.url,
                        bodies[kind],
                        connections=clients[name][kind],
                        seconds=seconds,
                        path=PATHS.get(kind, "/predict"),
                        midway=functools.partial(
                            connections_per_worker, server.process.pid, server.port
                        ),
                    )
                    runs[name][kind].append(result)
        for name, server in servers.items():
            best = {
                kind: max(results_, key=lambda r: r.requests_per_second)
                for kind, results_ in runs[name].items()
            }
            figures: dict[str, Any] = {}
            if "single" in best:
                single, batch = best["single"], best["batch"]
                figures = {
                    "single_connections_per_worker": single.connections_per_worker,
                    "batch_connections_per_worker": batch.connections_per_worker,
                    "single_rps": single.requests_per_second,
                    "single_p50_ms": single.p50_ms,
                    "single_p99_ms": single.p99_ms,
                    "single_errors": single.errors,
                    "batch_rows_per_s": batch.requests_per_second * BATCH_ROWS,
                    "batch_errors": batch.errors,
                }
            if "v2_batch" in best:
                figures["v2_rows_per_s"] = best["v2_batch"].requests_per_second * BATCH_ROWS
                figures["v2_errors"] = best["v2_batch"].errors
            results[name] = {
                **figures,
                **{
                    f"{kind}_rps": best[kind].requests_per_second
                    for kind in DECISION_KINDS
                    if kind in best
                },
                **{f"{kind}_p99_ms": best[kind].p99_ms for kind in DECISION_KINDS if kind in best},
                "ready_s": server.ready_seconds,
                **worker_memory(server.process.pid),
                "rounds": {k: [asdict(r) for r in v] for k, v in runs[name].items()},
            }
    return results


def source_at(revision: str, directory: Path) -> Path:
    """The project's files at `revision`, unpacked into `directory` (git archive:
    the repository and its worktrees are left as they are)."""
    directory.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "archive", "--format=tar", revision],
        cwd=PROJECT_ROOT,
        capture_output=True,
        check=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(directory)], input=archive, check=True)
    return directory


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
        "--no-postgres",
        action="store_true",
        help="skip the service recording to PostgreSQL (needs Debian's postgresql-15)",
    )
    parser.add_argument(
        "--no-mlserver", action="store_true", help="skip the MLServer peer (and its venv)"
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also serve the service as it was at git revision REV, in the same rounds",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    find_wrk()  # fail before training or serving anything
    started = time.monotonic()
    data, real = training_data()
    home = args.home or default_home(data)
    load_before = load_average()
    with ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="loan-bench-")))
        print(f"model store {home} (training data: {'real' if real else 'synthetic'} {data.name})")
        tag, trained = ensure_model(home, data, scratch / "train.log")
        print(f"{'trained' if trained else 'reusing'} {tag}")
        rows = application_rows([REAL_TEST_CSV, data] if real else [data])
        bodies = write_bodies(rows, scratch)
        rows_path = scratch / "rows.json"
        rows_path.write_text(json.dumps(rows))
        bodies["rows"] = rows_path
        # The service records its decisions (SQLite, the default); records_off is
        # the same service with them turned off, records_pg records to a
        # PostgreSQL server started for the run.
        targets = {"service": Target(SERVICE, open_inference=True)}
        targets["records_off"] = Target(
            SERVICE, open_inference=True, env=(("LOAN_DECISION_RECORDS", "false"),)
        )
        postgres_url = None
        if not args.no_postgres:
            postgres = stack.enter_context(postgres_server())
            postgres_url = postgres.new_database()
            targets["records_pg"] = Target(
                SERVICE, open_inference=True, env=(("LOAN_DECISION_STORE_URL", postgres_url),)
            )
        if args.before:
            before = source_at(args.before, scratch / "before")
            targets["before"] = Target(SERVICE, cwd=before)
        targets["ceiling"] = Target(CEILING, has_model=False)
        env = {
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "LOAN_MODEL_TAG": tag,
        }
        try:
            servers = measure_servers(
                env, bodies, targets, args.seconds, args.rounds, scratch, not args.no_mlserver
            )
        finally:  # the servers' logs, for the 503s and tracebacks a table does not show
            for log in scratch.glob("*.log"):
                (args.out.parent / "logs").mkdir(parents=True, exist_ok=True)
                shutil.copy(log, args.out.parent / "logs" / log.name)
        print("measuring the pipeline in-process ...", flush=True)
        # With the workers' thread settings, so the figures are a worker's.
        threads = {e["name"]: e["value"] for e in worker_envs(ServiceSettings.from_env())}
        inprocess = measure_inprocess({**threads, **env}, tag, rows_path)
        print("timing the decision records in-process ...", flush=True)
        record_costs = json.loads(
            subprocess.run(
                [sys.executable, "-m", "bench.record_costs", tag, str(rows_path), str(scratch)]
                + ([postgres_url] if postgres_url else []),
                cwd=PROJECT_ROOT,
                env=env,
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
    result: dict[str, Any] = {
        "servers": servers,
        "inprocess_ms": inprocess,
        "record_costs_ms": record_costs,
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
        "before": args.before,
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
    print(reasons_table(servers, args.before))
    print()
    print(rounds_summary(servers))
    print()
    print(inprocess_table(inprocess))
    print()
    print(records_table(servers))
    print()
    print(record_costs_table(record_costs))
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

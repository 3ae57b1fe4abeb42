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
import struct
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
from bench.kserve_peer import V1_PREDICT_PATH, kserve_serve
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
from bench.model import (
    REAL_TEST_CSV,
    default_home,
    ensure_challenger,
    ensure_model,
    training_data,
)
from bench.report import (
    inprocess_table,
    peers_table,
    reasons_table,
    record_costs_table,
    records_table,
    rounds_summary,
    shadow_table,
    steadiness_table,
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
# 1000-row Open Inference requests, JSON and binary tensors, to the service.
V2_KINDS: Final = {"v2_batch": BATCH_CLIENTS, "v2_binary": BATCH_CLIENTS}
# What each peer is loaded with: 1000-row V2 JSON, single-row V2 (the yardstick of
# the single-row /predict), and for KServe its V1 `instances` (records, as /predict).
PEER_KINDS: Final = {
    "mlserver": {"v2_batch": BATCH_CLIENTS, "v2_single": SINGLE_ROW_CLIENTS},
    "kserve": {
        "v2_batch": BATCH_CLIENTS,
        "v1_batch": BATCH_CLIENTS,
        "v2_single": SINGLE_ROW_CLIENTS,
    },
}
ALL_KINDS: Final = {
    **KINDS,
    **DECISION_KINDS,
    **V2_KINDS,
    "v1_batch": BATCH_CLIENTS,
    "v2_single": SINGLE_ROW_CLIENTS,
}
SINGLE_ROW_KINDS: Final = frozenset({"single", "v2_single", *DECISION_KINDS})
BINARY_KINDS: Final = frozenset({"v2_binary"})
PATHS: Final = {  # every other kind posts to /predict
    "v2_batch": V2_INFER_PATH,
    "v2_binary": V2_INFER_PATH,
    "v2_single": V2_INFER_PATH,
    "v1_batch": V1_PREDICT_PATH,
}
# The JSON names of the rates, kept from the earlier results.
RATE_KEYS: Final = {
    "single": "single_rps",
    "batch": "batch_rows_per_s",
    "v2_batch": "v2_rows_per_s",
}
PEERS: Final = ("mlserver", "kserve")


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


def _approval_column(answer: dict[str, Any]) -> list[float]:
    """P(Y) from a peer's predict_proba answer: V2 `output-0` [n, 2], or V1
    `predictions` (classes in the pipeline's order, N then Y)."""
    if "predictions" in answer:
        return [pair[1] for pair in answer["predictions"]]
    [output] = answer["outputs"]
    return output["data"][1::2]


def compare_answers(servers: dict[str, Any], bodies: dict[str, Path]) -> dict[str, int]:
    """Before any timing: every server's P(Y) for the first 1000-row body, on every
    endpoint the bench loads, equal to this service's V2 answer as float64 bits
    (a peer that answered something else would be timed doing other work)."""
    v2 = bodies["v2_batch"].read_text().splitlines()[0]
    records = bodies["batch"].read_text().splitlines()[0]
    v1 = bodies["v1_batch"].read_text().splitlines()[0]
    framed = bodies["v2_binary"].read_bytes()
    head, _, rest = framed.partition(b"\n")
    json_length, body_length = map(int, head.split())
    binary = rest[:body_length]

    def post(url: str, path: str, content: bytes | str, **headers: str) -> httpx.Response:
        answer = httpx.post(
            f"{url}{path}",
            content=content,
            headers={"Content-Type": "application/json", **headers},
            timeout=120,
        )
        if answer.status_code != 200:
            raise RuntimeError(f"{url}{path} answered {answer.status_code}: {answer.text[:500]}")
        return answer

    service = servers["service"].url
    ours = next(
        o["data"]
        for o in post(service, V2_INFER_PATH, v2).json()["outputs"]
        if o["name"] == "probability"
    )
    got: dict[str, list[float]] = {
        "service /predict": [d["probability"] for d in post(service, "/predict", records).json()],
    }
    answer = post(
        service,
        V2_INFER_PATH,
        binary,
        **{"Inference-Header-Content-Length": str(json_length)},
    )
    header_length = int(answer.headers["Inference-Header-Content-Length"])
    offset = header_length
    for output in json.loads(answer.content[:header_length])["outputs"]:
        size = output["parameters"]["binary_data_size"]
        if output["name"] == "probability":
            got["service V2 binary"] = list(
                struct.unpack(f"<{size // 8}d", answer.content[offset : offset + size])
            )
        offset += size
    if "mlserver" in servers:
        got["mlserver V2"] = _approval_column(
            post(servers["mlserver"].url, V2_INFER_PATH, v2).json()
        )
    if "kserve" in servers:
        url = servers["kserve"].url
        got["kserve V2"] = _approval_column(post(url, V2_INFER_PATH, v2).json())
        got["kserve V1"] = _approval_column(post(url, V1_PREDICT_PATH, v1).json())
    expected = struct.pack(f"<{len(ours)}d", *ours)
    for name, values in got.items():
        if struct.pack(f"<{len(values)}d", *values) != expected:
            differ = sum(a != b for a, b in zip(values, ours, strict=False))
            raise RuntimeError(
                f"{name} does not answer as this service's V2 endpoint: "
                f"{differ} of {len(ours)} probabilities differ"
            )
    return {name: len(values) for name, values in got.items()}


def median_and_worst(rounds: list[LoadResult]) -> tuple[LoadResult, LoadResult]:
    """The median round by rate (the lower of the two middle ones for an even
    count: no round is invented) and the slowest round."""
    ordered = sorted(rounds, key=lambda r: r.requests_per_second)
    return ordered[(len(ordered) - 1) // 2], ordered[0]


def figures_of(runs: dict[str, list[LoadResult]]) -> dict[str, Any]:
    """A server's figures: each the median round's, the slowest round's beside it
    (`_worst`), every round kept in `rounds`."""
    picked = {kind: median_and_worst(results) for kind, results in runs.items()}
    figures: dict[str, Any] = {"headline": "median round"}
    for kind, (median, worst) in picked.items():
        scale = 1 if kind in SINGLE_ROW_KINDS else BATCH_ROWS
        key = RATE_KEYS.get(kind, f"{kind}_rows_per_s" if scale > 1 else f"{kind}_rps")
        figures[key] = median.requests_per_second * scale
        figures[f"{key}_worst"] = worst.requests_per_second * scale
        figures[f"{kind}_errors"] = sum(r.errors for r in runs[kind])
        figures[f"{kind}_connections_per_worker"] = median.connections_per_worker
        if scale == 1:
            figures[f"{kind}_p50_ms"] = median.p50_ms
            figures[f"{kind}_p99_ms"] = median.p99_ms
            figures[f"{kind}_p99_ms_worst"] = max(r.p99_ms for r in runs[kind])
    return figures


def measure_servers(
    env: dict[str, str],
    bodies: dict[str, Path],
    targets: dict[str, Target],
    seconds: float,
    rounds: int,
    logs: Path,
    peers: tuple[str, ...],
    service_env: dict[str, str],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Start the servers one at a time (so each start is timed alone), check that
    every endpoint answers what this service's V2 endpoint answers, then load them
    in turn, ROUNDS times, with each kind of request (single-row at 32 clients,
    1000-row at 4, ...). Taking turns spreads the other users of the machine
    fairly over them; each figure is the median round, with the worst beside it."""
    runs: dict[str, dict[str, list[LoadResult]]] = {}
    results: dict[str, dict[str, Any]] = {}
    with ExitStack() as stack:
        servers: dict[str, Any] = {}
        clients: dict[str, dict[str, int]] = {}
        for name, target in targets.items():
            print(f"starting {name} ({target.service} in {target.cwd}) ...", flush=True)
            own = {**env, **dict(target.env)}
            server_env = {**own, **service_env} if target.has_model else own
            server = stack.enter_context(
                bentoml_serve(
                    target.service,
                    env=server_env,
                    log_path=logs / f"{name}.log",
                    cwd=target.cwd,
                    # Generous: on a machine shared with other jobs a start can
                    # take minutes; the start time is reported as measured.
                    ready_timeout=240.0,
                )
            )
            check_answers(server.url, bodies)
            servers[name] = server
            clients[name] = target.kinds
        if "mlserver" in peers:
            print("starting mlserver (MLServer 1.7.1, sklearn runtime) ...", flush=True)
            servers["mlserver"] = stack.enter_context(
                mlserver_serve(
                    env["LOAN_MODEL_TAG"], logs / "mlserver-model", logs / "mlserver.log", env
                )
            )
            clients["mlserver"] = dict(PEER_KINDS["mlserver"])
        if "kserve" in peers:
            print("starting kserve (KServe 0.21 model server, 2 workers) ...", flush=True)
            servers["kserve"] = stack.enter_context(
                kserve_serve(env["LOAN_MODEL_TAG"], logs / "kserve-model", logs / "kserve.log", env)
            )
            clients["kserve"] = dict(PEER_KINDS["kserve"])
        compared = compare_answers(servers, bodies)
        print(f"answers equal to the last bit: {compared}", flush=True)
        runs = {name: {kind: [] for kind in kinds} for name, kinds in clients.items()}
        first = next(name for name, t in targets.items() if t.has_model)
        rows = json.loads(bodies["rows"].read_text())
        bodies = {**bodies, **split_by_decision(servers[first].url, rows, logs)}

        def load(name: str, kind: str, duration: float, midway: Any = None) -> LoadResult:
            server = servers[name]
            return run_wrk(
                server.url,
                bodies[kind],
                connections=clients[name][kind],
                seconds=duration,
                path=PATHS.get(kind, "/predict"),
                binary=kind in BINARY_KINDS,
                midway=midway,
            )

        for kind in ALL_KINDS:
            for name in servers:  # a warm-up each, not measured
                if kind in runs[name]:
                    load(name, kind, WARM_UP_SECONDS)
        names = list(servers)
        round_loads: list[list[float]] = []
        for n in range(rounds):
            round_loads.append(load_average())
            print(f"round {n + 1}/{rounds} (load average {round_loads[-1]}) ...", flush=True)
            # The servers take turns in a rotating order, so that no server is
            # always the one measured first after another's run.
            order = names[n % len(names) :] + names[: n % len(names)]
            for kind in ALL_KINDS:
                for name in order:
                    if kind not in runs[name]:
                        continue
                    server = servers[name]
                    midway = functools.partial(
                        connections_per_worker, server.process.pid, server.port
                    )
                    runs[name][kind].append(load(name, kind, seconds, midway))
        for name, server in servers.items():
            results[name] = {
                **figures_of(runs[name]),
                "ready_s": server.ready_seconds,
                **worker_memory(server.process.pid),
                "rounds": {k: [asdict(r) for r in v] for k, v in runs[name].items()},
            }
    return results, {"answers": compared, "load_average_at_each_round": round_loads}


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
        "--no-kserve", action="store_true", help="skip the KServe peer (and its venv)"
    )
    parser.add_argument(
        "--no-challenger",
        action="store_true",
        help="skip the service with a challenger in shadow (and training the challenger)",
    )
    parser.add_argument(
        "--service-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a variable for the services with a model only (e.g. a LOAN_* setting "
        "that turns on a decision store); repeatable",
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
        if not args.no_challenger:
            # The service as recorded (SQLite) with a second version in shadow:
            # compared with "service", which differs from it only by the challenger.
            challenger, trained_now = ensure_challenger(home, data, scratch / "challenger.log")
            print(f"{'trained' if trained_now else 'reusing'} challenger {challenger}")
            targets["shadow"] = Target(
                SERVICE, open_inference=True, env=(("LOAN_CHALLENGER_TAG", challenger),)
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
        peers = tuple(p for p in PEERS if not getattr(args, f"no_{p}"))
        service_env = dict(item.split("=", 1) for item in args.service_env)
        try:
            servers, compared = measure_servers(
                env, bodies, targets, args.seconds, args.rounds, scratch, peers, service_env
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
        "settings": ServiceSettings.from_env({**os.environ, **service_env}).model_dump(),
        "service_env": service_env,
        **compared,
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
    print(steadiness_table(servers["service"]))
    print()
    print(reasons_table(servers, args.before))
    print()
    print(rounds_summary(servers))
    print()
    print(inprocess_table(inprocess))
    print()
    print(records_table(servers))
    print()
    print(shadow_table(servers))
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

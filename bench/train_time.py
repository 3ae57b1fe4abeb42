"""Training time on the real data: this checkout against a baseline revision, in one run.

    python -m bench.train_time [--baseline main] [--rounds 2] [--out bench/measured/X.json]

The baseline's files come from `git archive` into a temporary folder; both run
train.py with this checkout's interpreter, OMP_NUM_THREADS=1 (bench/model.py says
why) and a BentoML store of their own, taking turns round by round so that a change
in the machine's load falls on both. Reported: wall-clock and CPU seconds of each
run, their medians, the ratio of the medians, and the load average before and after.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.model import REAL_TRAINING_CSV, TRAINING_ENV
from loan_preprocessing.environment import PROJECT_ROOT


def checkout(revision: str, folder: Path) -> Path:
    """The files of `revision` in `folder` (no .git)."""
    archive = subprocess.run(
        ["git", "archive", revision], cwd=PROJECT_ROOT, capture_output=True, check=True
    ).stdout
    archive_path = folder / "baseline.tar"
    archive_path.write_bytes(archive)
    target = folder / "baseline"
    with tarfile.open(archive_path) as tar:
        tar.extractall(target, filter="data")
    return target


def timed_training(root: Path, home: Path, data: Path) -> dict[str, float]:
    """One train.py run in `root`: wall and CPU seconds (the child's user + system)."""
    env = {**os.environ, **TRAINING_ENV, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "train.py", "--data", str(data), "--quiet"]
    command += ["--report-dir", str(home / "reports")]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"training in {root} failed:\n{result.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="main", help="git revision (default: main)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, help="write the measurement as JSON here")
    args = parser.parse_args(argv)
    if not REAL_TRAINING_CSV.is_file():
        print(f"error: the real data is not at {REAL_TRAINING_CSV}", file=sys.stderr)
        return 1
    runs: dict[str, list[dict[str, float]]] = {"baseline": [], "this checkout": []}
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="train-time-") as scratch:
        folder = Path(scratch)
        roots = {"baseline": checkout(args.baseline, folder), "this checkout": PROJECT_ROOT}
        for round_number in range(args.rounds):
            # Alternate who goes first, so neither is always measured on a fresher machine.
            order = list(roots) if round_number % 2 == 0 else list(reversed(roots))
            for name in order:
                home = folder / f"home-{name.replace(' ', '-')}-{round_number}"
                runs[name].append(timed_training(roots[name], home, REAL_TRAINING_CSV))
                print(name, runs[name][-1], f"load {os.getloadavg()}", flush=True)
    load_after = os.getloadavg()
    medians = {
        name: {k: statistics.median(r[k] for r in measured) for k in ("wall_s", "cpu_s")}
        for name, measured in runs.items()
    }
    summary: dict[str, Any] = {
        "what": "train.py on the real Loan Prediction training data (614 rows), OMP_NUM_THREADS=1",
        "baseline": args.baseline,
        "baseline_commit": subprocess.run(
            ["git", "rev-parse", args.baseline], cwd=PROJECT_ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "rounds": args.rounds,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "runs": runs,
        "median": medians,
        "ratio_of_medians": {
            k: round(medians["this checkout"][k] / medians["baseline"][k], 2)
            for k in ("wall_s", "cpu_s")
        },
    }
    print(json.dumps(summary, indent=1))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

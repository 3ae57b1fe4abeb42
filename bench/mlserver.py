"""MLServer's scikit-learn runtime serving the same fitted pipeline: the peer the
V2 endpoint is measured against, built and run the way its users would.

Its own virtual environment (bench/results/mlserver-venv, built once): MLServer
1.7.1 and its sklearn runtime, uvloop 0.21 (0.22 and later break its parallel
workers), and the project's pins of the packages the pipeline needs to unpickle
(the pickle imports loan_preprocessing, found through PYTHONPATH).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

import joblib

from loan_preprocessing.environment import PROJECT_ROOT
from loan_preprocessing.model.store import MODEL_NAME, get_model, load_pipeline
from tests.support.server import RunningServer, free_port, stop, wait_ready

VENV: Final = PROJECT_ROOT / "bench" / "results" / "mlserver-venv"
PACKAGES: Final = ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", "uvloop==0.21.0")
# What unpickling the pipeline imports, at the versions that trained it.
PINNED_FROM_SERVICE: Final = ("scikit-learn", "numpy", "pandas", "scipy", "pydantic", "skops")
PARALLEL_WORKERS: Final = 2
INFER_PATH: Final = f"/v2/models/{MODEL_NAME}/infer"
READY_TIMEOUT_SECONDS: Final = 120


def project_pins() -> list[str]:
    lines = (PROJECT_ROOT / "requirements" / "service.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.split("==")[0].strip() in PINNED_FROM_SERVICE]


def ensure_venv(log_path: Path) -> Path:
    """MLServer's interpreter; the venv is built on first use (a few minutes)."""
    mlserver = VENV / "bin" / "mlserver"
    marker = VENV / ".installed"
    wanted = "\n".join([*PACKAGES, *project_pins()])
    if mlserver.exists() and marker.is_file() and marker.read_text() == wanted:
        return mlserver
    print(f"building MLServer's venv in {VENV} (once) ...", flush=True)
    with open(log_path, "w") as log:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [str(VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *PACKAGES, *project_pins()], check=True, stdout=log, stderr=log)
    marker.write_text(wanted)
    return mlserver


def export_pipeline(tag: str, target: Path) -> None:
    """The verified stored pipeline as a joblib pickle, what MLServer's sklearn
    runtime loads (run with the bench's BENTOML_HOME: see write_model_folder)."""
    joblib.dump(load_pipeline(get_model(tag)), target)


def write_model_folder(folder: Path, tag: str, port: int, env: dict[str, str]) -> None:
    """The pipeline, its model settings, and the server's settings (parallel
    workers, 127.0.0.1, no debug)."""
    folder.mkdir(parents=True, exist_ok=True)
    # In a child process: the bench's own process has BentoML's default store.
    subprocess.run(
        [sys.executable, "-m", "bench.mlserver", tag, str(folder / "model.joblib")],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    (folder / "model-settings.json").write_text(
        json.dumps(
            {
                "name": MODEL_NAME,
                "implementation": "mlserver_sklearn.SKLearnModel",
                "parameters": {"uri": "./model.joblib", "extra": {"predict_fn": "predict_proba"}},
            }
        )
    )
    (folder / "settings.json").write_text(
        json.dumps(
            {
                "debug": False,
                "host": "127.0.0.1",
                "http_port": port,
                "grpc_port": free_port(),
                "metrics_port": free_port(),
                "parallel_workers": PARALLEL_WORKERS,
            }
        )
    )


@contextmanager
def mlserver_serve(
    tag: str, folder: Path, log_path: Path, env: dict[str, str]
) -> Iterator[RunningServer]:
    """`mlserver start` on the model folder, on a free 127.0.0.1 port, until ready."""
    mlserver = ensure_venv(log_path.with_suffix(".pip.log"))
    port = free_port()
    write_model_folder(folder, tag, port, env)
    env = {
        **env,
        "PYTHONPATH": str(PROJECT_ROOT),
        "OMP_NUM_THREADS": "1",  # as our workers
    }
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(mlserver), "start", str(folder)],
            cwd=folder,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        ready = wait_ready(
            url, process, READY_TIMEOUT_SECONDS, path=f"/v2/models/{MODEL_NAME}/ready"
        )
        if ready is None:
            raise RuntimeError(
                f"mlserver not ready in {READY_TIMEOUT_SECONDS} s "
                f"(exit code {process.poll()}):\n{log_path.read_text()[-3000:]}"
            )
        yield RunningServer(url, process, log_path, ready - started)
    finally:
        stop(process)


if __name__ == "__main__":
    export_pipeline(sys.argv[1], Path(sys.argv[2]))

"""KServe 0.21's model server serving the same fitted pipeline: a second peer for
the V2 endpoint (and its V1 `instances` endpoint for /predict's records), built
and run the way its users would (bench/kserve_model.py is the model).

Its own virtual environment (bench/results/kserve-venv, built once): KServe 0.21
and the project's pins of the packages the pipeline needs to unpickle, except
pandas, which KServe 0.21 holds below 3 (the pipeline takes its frame either way;
the answers are compared with ours before any timing).
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final

from bench.mlserver import project_pins
from loan_preprocessing.environment import PROJECT_ROOT
from loan_preprocessing.model.store import MODEL_NAME
from tests.support.server import RunningServer, free_port, stop, wait_ready

VENV: Final = PROJECT_ROOT / "bench" / "results" / "kserve-venv"
PACKAGES: Final = ("kserve==0.21.0",)
NOT_PINNED: Final = ("pandas",)  # KServe 0.21 requires pandas < 3
WORKERS: Final = 2
V2_INFER_PATH: Final = f"/v2/models/{MODEL_NAME}/infer"
V1_PREDICT_PATH: Final = f"/v1/models/{MODEL_NAME}:predict"
READY_TIMEOUT_SECONDS: Final = 180
MODEL_SCRIPT: Final = PROJECT_ROOT / "bench" / "kserve_model.py"


def pins() -> list[str]:
    return [p for p in project_pins() if p.split("==")[0] not in NOT_PINNED]


def ensure_venv(log_path: Path) -> Path:
    """KServe's interpreter; the venv is built on first use (a few minutes)."""
    python = VENV / "bin" / "python"
    marker = VENV / ".installed"
    wanted = "\n".join([*PACKAGES, *pins()])
    if python.exists() and marker.is_file() and marker.read_text() == wanted:
        return python
    print(f"building KServe's venv in {VENV} (once) ...", flush=True)
    with open(log_path, "w") as log:
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *PACKAGES, *pins()], check=True, stdout=log, stderr=log)
    marker.write_text(wanted)
    return python


@contextmanager
def kserve_serve(
    tag: str, folder: Path, log_path: Path, env: dict[str, str]
) -> Iterator[RunningServer]:
    """KServe's model server with WORKERS workers on a free 127.0.0.1 port, the
    pipeline exported as MLServer's is, until the model is ready."""
    python = ensure_venv(log_path.with_suffix(".pip.log"))
    folder.mkdir(parents=True, exist_ok=True)
    model = folder / "model.joblib"
    subprocess.run(  # in a child process: the bench's BENTOML_HOME is in `env`
        [sys.executable, "-m", "bench.mlserver", tag, str(model)],
        cwd=PROJECT_ROOT,
        env=env,
        check=True,
        timeout=120,
    )
    port = free_port()
    command = [
        str(python),
        str(MODEL_SCRIPT),
        "--model_name",
        MODEL_NAME,
        "--model_path",
        str(model),
        "--http_port",
        str(port),
        "--workers",
        str(WORKERS),
        "--enable_grpc",
        "false",
        "--enable_latency_logging",
        "false",
    ]
    child_env = {**env, "PYTHONPATH": str(PROJECT_ROOT), "OMP_NUM_THREADS": "1"}
    started = time.monotonic()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command,
            cwd=folder,
            env=child_env,
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
                f"kserve not ready in {READY_TIMEOUT_SECONDS} s "
                f"(exit code {process.poll()}):\n{log_path.read_text()[-3000:]}"
            )
        yield RunningServer(url, process, log_path, ready - started)
    finally:
        stop(process)

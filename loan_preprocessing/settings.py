"""Service settings, read once from the environment (names start with LOAN_)."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Final

from loan_preprocessing.model_store import MODEL_NAME

ENV_PREFIX: Final = "LOAN_"


@dataclass(frozen=True)
class ServiceSettings:
    """Every knob of the running service; `LOAN_<FIELD NAME>` overrides each one."""

    model_tag: str = f"{MODEL_NAME}:latest"
    # Bodies above this are refused with 413 before they are read into memory.
    max_body_bytes: int = 4_000_000
    max_applications: int = 5_000
    # When set, /predict needs "Authorization: Bearer <api_key>".
    api_key: str | None = None
    # The key read from this file instead, once at start (a mounted Kubernetes
    # Secret: unlike an environment variable, a file is not inherited by every
    # child process nor readable in /proc/<pid>/environ). A file that does not
    # exist leaves the API open, as an absent optional Secret does.
    api_key_file: str | None = None
    workers: int = 2
    threads: int = 1
    # A request still waiting after this many seconds gets 504.
    timeout_seconds: float = 10.0
    # Requests in flight above this get 429 at once. BentoML divides it evenly
    # over the workers (each of 2 workers refuses its 65th).
    max_concurrency: int = 128
    max_batch_size: int = 1_000
    max_latency_ms: int = 500
    access_log: bool = False
    # OpenMP threads per worker for the model, given to workers as OMP_NUM_THREADS
    # (an OMP_NUM_THREADS already in the environment wins). One: the workers
    # already share the cores, and the booster opens a parallel region per tree,
    # whose synchronisation costs far more than it saves on small batches
    # (measured: 7x slower per call with 2 threads on 2 busy cores).
    model_threads: int = 1
    # When set, each decided application is appended to this JSON-lines file.
    prediction_log: str | None = None
    # Loan_ID goes into the prediction log only when this is true.
    prediction_log_loan_id: bool = False

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServiceSettings:
        environ = dict(os.environ if environ is None else environ)
        values: dict[str, object] = {}
        for field in fields(cls):
            raw = environ.get(ENV_PREFIX + field.name.upper())
            if raw is None or raw == "":
                continue
            kind = field.type if isinstance(field.type, str) else field.type.__name__
            try:
                values[field.name] = _parse(kind, raw)
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{field.name.upper()}={raw!r}: {exc}") from None
        if values.get("api_key_file"):
            if "api_key" in values:
                raise ValueError(f"set {ENV_PREFIX}API_KEY or {ENV_PREFIX}API_KEY_FILE, not both")
            values["api_key"] = _read_api_key(str(values["api_key_file"]))
        return cls(**values)


def worker_envs(settings: ServiceSettings) -> list[dict[str, str]]:
    """Environment variables for every worker, in @bentoml.service(envs=...) form."""
    return [{"name": "OMP_NUM_THREADS", "value": str(settings.model_threads)}]


def _read_api_key(path: str) -> str | None:
    """The key in `path` without its trailing newline; None when there is no file."""
    try:
        key = Path(path).read_text(encoding="utf-8").rstrip("\r\n")
    except FileNotFoundError:
        return None
    if not key:
        raise ValueError(f"{ENV_PREFIX}API_KEY_FILE={path!r}: the file is empty")
    return key


def _parse(kind: str, raw: str) -> object:
    if kind == "int":
        value = int(raw)
        if value <= 0:
            raise ValueError("must be a positive whole number")
        return value
    if kind == "float":
        value = float(raw)
        if not value > 0:
            raise ValueError("must be a positive number")
        return value
    if kind == "bool":
        if raw.lower() not in {"1", "0", "true", "false", "yes", "no"}:
            raise ValueError("must be true or false")
        return raw.lower() in {"1", "true", "yes"}
    return raw

"""Shared fixtures. Every test session gets a model store of its own (a temporary
BENTOML_HOME), so tests never see or change the user's models."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA_DIR = ROOT.parent / "shared" / "data" / "loan-prediction"
REAL_TRAINING_CSV = REAL_DATA_DIR / "training.csv"
REAL_TEST_CSV = REAL_DATA_DIR / "test.csv"
SAMPLE_CSV = ROOT / "data" / "loan_sample.csv"

# Before anything imports BentoML's store: this session's own, thrown away at the end.
_SESSION_HOME = Path(tempfile.mkdtemp(prefix="loan-tests-bentoml-"))
os.environ["BENTOML_HOME"] = str(_SESSION_HOME)
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
# One OpenMP thread per process: the tests run servers, Spark and training side by
# side on few cores, and OpenMP's spinning threads slow everything when oversubscribed.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Spark's Python workers must be this interpreter, not the first python3 on PATH.
os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
os.environ.pop("LOAN_MODEL_TAG", None)
os.environ.pop("LOAN_API_KEY", None)


# Training reports of test runs go to the throw-away store, not the project's reports/.
TEST_REPORTS = _SESSION_HOME / "reports"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    shutil.rmtree(_SESSION_HOME, ignore_errors=True)


def require_real_data() -> None:
    """Skip, loudly, when the real data set is not next to the project."""
    if not REAL_TRAINING_CSV.is_file() or not REAL_TEST_CSV.is_file():
        pytest.skip(
            f"REAL DATA ABSENT: {REAL_DATA_DIR} not found; this test checks the model "
            "on the real Loan Prediction data and cannot run without it"
        )


@pytest.fixture(scope="session")
def bentoml_home() -> Path:
    return _SESSION_HOME


@pytest.fixture(scope="session")
def real_model_tag() -> str:
    """A model trained by train.py on the real training data, in the session store.
    Trained before any other model, so it is also `loan_approval:latest` until a
    test trains another."""
    require_real_data()
    import train

    assert (
        train.main(["--data", str(REAL_TRAINING_CSV), "--quiet", "--report-dir", str(TEST_REPORTS)])
        == 0
    )
    import bentoml

    return str(bentoml.models.get("loan_approval:latest").tag)


@pytest.fixture(scope="session")
def real_test_rows() -> list[dict]:
    """The 367 unlabelled real applications as JSON records, exactly as pandas exports them."""
    require_real_data()
    import json

    frame = pd.read_csv(REAL_TEST_CSV, encoding="utf-8-sig")
    return json.loads(frame.to_json(orient="records"))


@pytest.fixture(scope="session")
def real_model(real_model_tag: str):
    from loan_preprocessing.model.store import get_model, load_pipeline

    stored = get_model(real_model_tag)
    return stored, load_pipeline(stored)


@pytest.fixture(scope="session")
def real_model_tag_or_none(request: pytest.FixtureRequest) -> str | None:
    """Train the real-data model first when the data is there, so the order of
    models in the store does not depend on which tests run."""
    if REAL_TRAINING_CSV.is_file():
        return request.getfixturevalue("real_model_tag")
    return None


@pytest.fixture(scope="session")
def service_module(real_model_tag_or_none):
    """service.py, imported once a model is in the store (the sample's when the
    real data is absent)."""
    if real_model_tag_or_none is None:
        import train

        assert (
            train.main(["--data", str(SAMPLE_CSV), "--quiet", "--report-dir", str(TEST_REPORTS)])
            == 0
        )
    import service

    return service


@pytest.fixture(scope="session")
def asgi_app(service_module):
    """The service's ASGI app. BentoML registers its Prometheus metrics when an app
    is built, and refuses a second app in the same process: one per session."""
    return service_module.LoanApproval.to_asgi()


@pytest.fixture(scope="session")
def asgi_client(asgi_app):
    from starlette.testclient import TestClient

    with TestClient(asgi_app) as client:
        yield client


@pytest.fixture(scope="session")
def built_bento(real_model) -> str:
    """`bentoml build` of the working tree, packaging the real-data model; its tag."""
    import re
    import subprocess

    from tests.support.server import BENTOML

    stored, _ = real_model
    result = subprocess.run(
        [BENTOML, "build", "--output", "tag"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "LOAN_MODEL_TAG": str(stored.tag)},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    match = re.search(r"loan_approval_service:\w+", result.stdout)
    assert match, result.stdout
    return match.group(0)


@pytest.fixture(scope="session")
def postgres():
    """A real PostgreSQL 15 server for the session (tests/support/postgres.py)."""
    from tests.support.postgres import postgres_server

    with postgres_server() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request, tmp_path) -> str:
    """An empty decision store of each kind: a SQLite file, a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'decisions.sqlite3'}"
    return request.getfixturevalue("postgres").new_database()

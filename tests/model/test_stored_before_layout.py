"""A model stored by the code as it was before the package layout (the feature
functions in loan_preprocessing/features.py) is served by today's code.

The old code is taken from git at the last commit before the layout, trains on
the synthetic sample into a store of its own, and today's `bentoml serve` then
serves that store: the answer's probabilities are the stored pipeline's own."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import ROOT, SAMPLE_CSV
from tests.support.server import bentoml_serve

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The last commit whose loan_preprocessing/ kept every module at its top level.
BEFORE_LAYOUT: Final = "031e739bbd9b2b89b22a7c23d80d234d7a34268c"
# How the skops schema of such a model names its feature functions' module.
LEGACY_MODULE: Final = b'"loan_preprocessing.features"'


def checkout_of(commit: str, into: Path) -> Path:
    """The tree of `commit`, written into `into` (no worktree bookkeeping left behind)."""
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", "--format=tar", commit],
            check=True,
            capture_output=True,
        ).stdout
    except subprocess.CalledProcessError as exc:
        pytest.skip(
            f"OLD COMMIT ABSENT: git cannot read {commit[:12]} ({exc.stderr.decode().strip()}); "
            "this test needs the project's history (a shallow clone lacks it)"
        )
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


@pytest.fixture(scope="module")
def old_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A BentoML store holding one model trained by the pre-layout code."""
    old_tree = checkout_of(BEFORE_LAYOUT, tmp_path_factory.mktemp("before-layout"))
    assert (old_tree / "loan_preprocessing" / "features.py").is_file()
    store = tmp_path_factory.mktemp("before-layout-store")
    env = {**os.environ, "BENTOML_HOME": str(store), "PYTHONPATH": str(old_tree)}
    trained = subprocess.run(
        [sys.executable, "train.py", "--data", str(SAMPLE_CSV), "--quiet"],
        cwd=old_tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]
    return store


def test_the_old_model_names_the_old_module(old_store: Path):
    (pipeline_file,) = old_store.glob("models/loan_approval/*/pipeline.skops")
    payload = pipeline_file.read_bytes()
    # skops files are zip archives whose schema names types by module path.
    import zipfile

    with zipfile.ZipFile(io.BytesIO(payload)) as archive:
        schema = archive.read("schema.json")
    assert LEGACY_MODULE in schema
    assert b"add_loan_features" in schema


# Today's loader, in a process of its own on the old store, prints what the
# stored pipeline itself gives for the rows on stdin.
PIPELINE_PROBABILITIES: Final = """
import json, sys
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.model.store import get_model, load_pipeline
rows = json.load(sys.stdin)
model = get_model("loan_approval:latest")
print(json.dumps({"tag": str(model.tag),
    "p": load_pipeline(model).predict_proba(to_feature_frame(rows))[:, 1].tolist()}))
"""


def test_todays_server_serves_the_old_model(old_store: Path, tmp_path: Path):
    import json

    import httpx
    import pandas as pd

    rows = json.loads(
        pd.read_csv(SAMPLE_CSV).head(40).drop(columns="Loan_Status").to_json(orient="records")
    )
    env = {"BENTOML_HOME": str(old_store)}
    expected = json.loads(
        subprocess.run(
            [sys.executable, "-c", PIPELINE_PROBABILITIES],
            cwd=ROOT,
            env={**os.environ, **env},
            input=json.dumps(rows),
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
    )
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        answer = httpx.post(f"{server.url}/predict", json={"applications": rows}, timeout=60)
    assert answer.status_code == 200, answer.text
    assert answer.headers["X-Model-Tag"] == expected["tag"]
    assert [d["probability"] for d in answer.json()] == expected["p"]

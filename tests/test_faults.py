"""Faults at start: each broken model stops `bentoml serve` with one clear line
(no traceback), before any worker answers /readyz.

Every case gets a model store of its own, copied from one trained model."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import skops.io
import yaml
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer

from loan_preprocessing.explanations.reasons import REFERENCE_FILE
from loan_preprocessing.model.store import MODEL_INPUTS_KEY, PIPELINE_FILE
from tests.conftest import SAMPLE_CSV
from tests.support.server import BENTOML, ROOT, free_port

pytestmark = pytest.mark.e2e
START_TIMEOUT = 120.0


@pytest.fixture(scope="module")
def pristine_home(tmp_path_factory) -> Path:
    """A store holding one model trained on the sample, by train.py in its own process."""
    home = tmp_path_factory.mktemp("pristine-home")
    subprocess.run(
        [
            sys.executable,
            "train.py",
            "--data",
            str(SAMPLE_CSV),
            "--quiet",
            "--report-dir",
            str(home / "reports"),
        ],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(home)},
        check=True,
        timeout=600,
    )
    return home


def model_dir(home: Path) -> Path:
    [directory] = [p for p in (home / "models" / "loan_approval").iterdir() if p.is_dir()]
    return directory


def edit_metadata(home: Path, change: Callable[[dict], None]) -> None:
    path = model_dir(home) / "model.yaml"
    info = yaml.safe_load(path.read_text())
    change(info["metadata"])
    path.write_text(yaml.safe_dump(info, sort_keys=False))


def replace_artifact(home: Path, payload: bytes) -> None:
    """Swap the artifact and record its hash, as an attacker with write access could."""
    import hashlib

    (model_dir(home) / PIPELINE_FILE).write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    edit_metadata(home, lambda meta: meta["artifact"].__setitem__("sha256", digest))


def tamper(home: Path) -> None:
    with open(model_dir(home) / PIPELINE_FILE, "ab") as artifact:
        artifact.write(b"\0")


def untrusted_type(home: Path) -> None:
    # A pipeline whose function is os.system: loading it would run commands.
    replace_artifact(home, skops.io.dumps(Pipeline([("run", FunctionTransformer(os.system))])))


def garbled(home: Path) -> None:
    replace_artifact(home, b"PK\x03\x04 this is not a skops file")


def other_sklearn(home: Path) -> None:
    edit_metadata(home, lambda meta: meta["versions"].__setitem__("scikit-learn", "0.24.2"))


def reads_married(home: Path) -> None:
    # What the metadata of a model that read marital status says.
    edit_metadata(home, lambda meta: meta[MODEL_INPUTS_KEY]["fields"].append("Married"))


def inputs_not_recorded(home: Path) -> None:
    # A model stored before inputs were recorded (it still read Married).
    edit_metadata(home, lambda meta: meta.pop(MODEL_INPUTS_KEY))


def no_reference(home: Path) -> None:
    (model_dir(home) / REFERENCE_FILE).unlink()


def tampered_reference(home: Path) -> None:
    with open(model_dir(home) / REFERENCE_FILE, "ab") as reference:
        reference.write(b" ")


def no_model(home: Path) -> None:
    shutil.rmtree(home / "models" / "loan_approval")


@pytest.mark.parametrize(
    ("break_model", "expected"),
    [
        (tamper, "does not match the recorded"),
        (untrusted_type, "not trusted: posix.system"),
        (garbled, "not a readable skops file"),
        (other_sklearn, "trained with scikit-learn 0.24.2"),
        (reads_married, "uses the protected attribute(s) Married (marital status) as input"),
        (inputs_not_recorded, "does not record the application fields it uses"),
        (no_reference, f"has no {REFERENCE_FILE} to explain its rejections with"),
        (tampered_reference, f"{REFERENCE_FILE} does not match the sha256 recorded"),
        (no_model, "no model 'loan_approval:latest'"),
    ],
    ids=[
        "tampered",
        "untrusted-type",
        "garbled",
        "other-sklearn",
        "reads-married",
        "inputs-not-recorded",
        "no-reason-reference",
        "tampered-reason-reference",
        "no-model",
    ],
)
def test_broken_model_stops_the_server_with_one_line(
    pristine_home, tmp_path, break_model, expected
):
    home = tmp_path / "home"
    shutil.copytree(pristine_home, home)
    break_model(home)
    port = free_port()
    started = time.monotonic()
    result = subprocess.run(
        [BENTOML, "serve", "service:LoanApproval", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
        env={
            **os.environ,
            "BENTOML_HOME": str(home),
            "BENTOML_DO_NOT_TRACK": "true",
            "LOAN_MODEL_TAG": "",
        },
    )
    output = (result.stdout + result.stderr).strip()
    assert result.returncode != 0
    assert time.monotonic() - started < START_TIMEOUT
    assert expected in output
    assert "Traceback" not in output
    assert len(output.splitlines()) == 1, output

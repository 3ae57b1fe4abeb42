"""A second model version, trained once per test session and shared by the tests of
versions and of the training report (training takes minutes on a shared machine)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from tests.conftest import SAMPLE_CSV

SAMPLE_SEED = 5


@functools.cache
def sample_model_with_report() -> tuple[str, Path]:
    """(tag, its report directory) of a model trained on the synthetic sample with
    --report-dir inside the session's throw-away BENTOML_HOME."""
    import bentoml

    import train

    report_root = Path(os.environ["BENTOML_HOME"]) / "reports"
    argv = ["--data", str(SAMPLE_CSV), "--quiet", "--seed", str(SAMPLE_SEED)]
    assert train.main([*argv, "--report-dir", str(report_root)]) == 0
    model = bentoml.models.get("loan_approval:latest")
    return str(model.tag), report_root / str(model.tag.version)

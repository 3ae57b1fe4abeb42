"""API fuzzing with schemathesis against the service's own OpenAPI document:
no 5xx, and every answer conforms to the documented schema and content type.
Bounded in examples and time; traffic only to 127.0.0.1."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import ROOT, bentoml_serve

pytestmark = pytest.mark.e2e
SCHEMATHESIS = str(Path(sys.executable).with_name("st"))
CHECKS = "not_a_server_error,response_schema_conformance,content_type_conformance"


def test_fuzzing_finds_no_server_error_and_no_schema_violation(real_model_tag_or_none, tmp_path):
    env = {"LOAN_MODEL_TAG": "", "LOAN_WORKERS": "1"}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log") as server:
        result = subprocess.run(
            [
                SCHEMATHESIS,
                "run",
                f"{server.url}/docs.json",
                "--checks",
                CHECKS,
                "--max-examples",
                "40",
                "--max-time",
                "180",
                "--workers",
                "1",
                "--request-timeout",
                "30",
                "--generation-deterministic",
                "--report-dir",
                str(tmp_path / "schemathesis"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        server_log = server.log()
    summary = result.stdout[-4000:]
    assert result.returncode == 0, summary
    assert "/predict" in result.stdout and "/predict_csv" in result.stdout
    assert "Traceback" not in server_log.split("Application startup complete")[-1], server_log[
        -3000:
    ]

"""A newcomer's usual mistakes each stop with one line that says what went wrong
and what to do, and `make serve` says when it is ready and with which model.
Every test runs the real command (make, train.py, the launcher, bentoml serve)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.server import BENTOML, ROOT, free_port

PYTHON = sys.executable
START_TIMEOUT = 600  # a start-up that fails may take minutes on a loaded machine


def run(args: list[str], env: dict[str, str] | None = None, cwd: Path = ROOT, timeout: float = 120):
    return subprocess.run(
        args,
        cwd=cwd,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def error_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


def test_a_port_in_use_names_the_port_and_the_make_variable():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run([PYTHON, "-m", "loan_preprocessing.serving.launch", "--port", str(port)])
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert f"port {port} on 127.0.0.1 is already in use" in line
    assert f"PORT={port + 1}" in line


@pytest.mark.parametrize("kind", ["missing", "a directory"])
def test_unreadable_training_data_is_one_line_naming_data(tmp_path, kind):
    data = tmp_path / "nowhere.csv" if kind == "missing" else tmp_path
    result = run([PYTHON, "train.py", "--data", str(data), "--quiet"])
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert line.startswith(f"error: cannot read the training data {data}")
    assert "DATA=" in line


def test_training_data_without_the_columns_is_one_line_naming_them(tmp_path):
    data = tmp_path / "short.csv"
    data.write_text("Loan_ID,Gender,Loan_Status\nLP1,Male,Y\n")
    result = run([PYTHON, "train.py", "--data", str(data), "--quiet"])
    assert result.returncode == 2
    [line] = error_lines(result.stderr)
    assert "missing columns Married, Dependents, Education" in line
    assert "Loan_Status label" in line


def test_no_python_names_the_make_variable(tmp_path):
    """In a copy of the Makefile and requirements, so the project's .venv is not involved."""
    shutil.copy(ROOT / "Makefile", tmp_path)
    shutil.copytree(ROOT / "requirements", tmp_path / "requirements")
    result = run(
        ["make", "--no-print-directory", ".venv/bin/.installed-train", "PYTHON=python3.11-absent"],
        cwd=tmp_path,
    )
    assert result.returncode != 0
    [line] = error_lines(result.stderr)
    assert "python3.11-absent not found" in line and "PYTHON=/path/to/python3.11" in line
    assert not (tmp_path / ".venv").exists()


@pytest.mark.e2e
def test_bentoml_serve_without_bentoml_home_names_the_export_line(tmp_path):
    """As a user who runs `bentoml serve` in a fresh shell: no BENTOML_HOME, an
    empty ~/bentoml."""
    env = {key: value for key, value in os.environ.items() if key != "BENTOML_HOME"}
    env.update(HOME=str(tmp_path), BENTOML_DO_NOT_TRACK="true")
    port = str(free_port())
    result = subprocess.run(
        [BENTOML, "serve", "service:LoanApproval", "--host", "127.0.0.1", "--port", port],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert result.returncode != 0
    last = error_lines(result.stdout + result.stderr)[-1]
    assert "BENTOML_HOME is not set" in last
    assert "export BENTOML_HOME=$PWD/.bentoml BENTOML_DO_NOT_TRACK=true" in last
    assert "remote" not in result.stdout + result.stderr


@pytest.mark.e2e
def test_an_unknown_model_tag_lists_the_stored_versions(service_module):
    from loan_preprocessing.model.store import stored_versions

    stored = stored_versions()
    port = str(free_port())
    result = run(
        [BENTOML, "serve", "service:LoanApproval", "--host", "127.0.0.1", "--port", port],
        env={"LOAN_MODEL_TAG": "loan_approval:nosuchversion"},
        timeout=START_TIMEOUT,
    )
    assert result.returncode != 0
    last = error_lines(result.stdout + result.stderr)[-1]
    assert "no model 'loan_approval:nosuchversion' in the BentoML store" in last
    assert f"stored versions, newest first: {', '.join(stored)}" in last


def test_get_model_names_the_stored_versions(service_module):
    from loan_preprocessing.model.store import ModelLoadError, get_model, stored_versions

    with pytest.raises(ModelLoadError, match="stored versions, newest first") as raised:
        get_model("loan_approval:nosuchversion")
    assert stored_versions()[0] in str(raised.value)


@pytest.mark.e2e
def test_the_launcher_says_when_it_is_ready_and_with_which_model(service_module, tmp_path):
    """`make serve`'s last step: the address, the API page and the served version,
    once /readyz answers; SIGTERM stops the server it started."""
    from loan_preprocessing.model.store import stored_versions

    newest = stored_versions()[0]
    port = free_port()
    output = tmp_path / "launch.log"
    with open(output, "wb") as log:
        launcher = subprocess.Popen(
            [PYTHON, "-m", "loan_preprocessing.serving.launch", "--port", str(port)],
            cwd=ROOT,
            env={**os.environ, "BENTOML_DO_NOT_TRACK": "true", "LOAN_WORKERS": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while "make: ready at" not in output.read_text() and launcher.poll() is None:
            assert time.monotonic() < deadline, output.read_text()[-3000:]
            time.sleep(0.5)
        text = output.read_text()
        url = f"http://127.0.0.1:{port}"
        assert f"make: starting the server on {url} with model {newest}" in text
        assert f"make: ready at {url} (API page {url}/ , model {newest})" in text
    finally:
        launcher.send_signal(signal.SIGTERM)
        exit_code = launcher.wait(timeout=60)
    assert exit_code == 0, output.read_text()[-3000:]


def test_first_model_leaves_a_store_with_a_model_alone(service_module):
    result = run([PYTHON, "-m", "loan_preprocessing.operations.first_model"])
    assert result.returncode == 0
    assert result.stdout == ""


def test_first_model_says_the_sample_is_synthetic():
    from loan_preprocessing.operations.first_model import describe_data

    assert "synthetic sample" in describe_data(Path("data/loan_sample.csv"))
    assert "DATA=" in describe_data(Path("data/loan_sample.csv"))
    assert describe_data(Path("/data/real.csv")) == "/data/real.csv"


@pytest.mark.e2e
def test_a_first_model_comes_from_the_reduced_search_and_says_so(tmp_path):
    """What `make serve` runs on an empty store: a real training run, in a store of
    its own, with the reduced search; the stored model passes the floors (it is
    saved) and its metadata, label, card and the output say what it is."""
    import yaml

    from loan_preprocessing.model.search import FIRST_MODEL_SEARCH
    from loan_preprocessing.operations.model_card import CARD_FILE

    store = tmp_path / "store"
    result = run(
        [PYTHON, "-m", "loan_preprocessing.operations.first_model"],
        env={"BENTOML_HOME": str(store)},
        timeout=START_TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "training a first model from a reduced search" in result.stdout
    assert "the synthetic sample" in result.stdout
    [info] = list((store / "models" / "loan_approval").glob("*/model.yaml"))
    model = yaml.safe_load(info.read_text())
    search = model["metadata"]["search"]
    assert search["name"] == FIRST_MODEL_SEARCH.name
    assert search["purpose"].startswith("a first model from a reduced search")
    assert "synthetic sample" in search["purpose"]
    assert search["candidates"] == {c.name: list(c.features) for c in FIRST_MODEL_SEARCH.candidates}
    assert model["labels"]["search"] == FIRST_MODEL_SEARCH.name
    assert search["purpose"] in result.stdout
    card = (info.parent / CARD_FILE).read_text()
    assert f"This is {search['purpose']}." in card

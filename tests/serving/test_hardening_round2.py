"""A second adversarial trial of the running service: each class of finding over
real HTTP or real sockets against a real `bentoml serve`, or through the real
offline command. Every exchange is bounded in size and time."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import psutil
import pytest

from loan_preprocessing.model.store import PIPELINE_FILE
from loan_preprocessing.schema import EXAMPLE_APPLICATION, FEATURE_COLUMNS, ID_COLUMN
from loan_preprocessing.serving.middleware import MODEL_TAG_HEADER
from loan_preprocessing.serving.open_inference import INFER_PATH, INPUT_DATATYPES
from loan_preprocessing.serving.server_runtime import FAILED_FILE, RUNTIME_ENV
from tests.conftest import REAL_TEST_CSV, SAMPLE_CSV, require_real_data
from tests.support.server import ROOT, RunningServer, bentoml_serve

pytestmark = pytest.mark.e2e
EXAMPLE = EXAMPLE_APPLICATION.model_dump()
# How long a stopping server may take to exit, and one probe to answer, on a
# loaded 2-core machine (a worker's start alone takes 10 s there).
STOP_SECONDS: Final = 90.0
PROBE_SECONDS: Final = 10.0
CSV_HEADER: Final = ",".join((ID_COLUMN, *FEATURE_COLUMNS))


def train_into(home: Path, seed: int) -> str:
    """A model trained by train.py in its own process into the store `home`; its tag."""
    result = subprocess.run(
        [
            sys.executable,
            "train.py",
            "--data",
            str(SAMPLE_CSV),
            "--seed",
            str(seed),
            "--quiet",
            "--report-dir",
            str(home / "reports"),
        ],
        cwd=ROOT,
        env={**os.environ, "BENTOML_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    [tag] = re.findall(r"saved (loan_approval:\w+)", result.stdout + result.stderr)
    return tag


@pytest.fixture(scope="module")
def pristine_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("round2-home")
    train_into(home, seed=0)
    return home


@pytest.fixture
def own_home(pristine_home, tmp_path) -> Path:
    """A store of this test's own, holding the one model of `pristine_home`."""
    home = tmp_path / "home"
    shutil.copytree(pristine_home, home)
    return home


@pytest.fixture
def two_workers(own_home, tmp_path) -> Iterator[RunningServer]:
    """Two workers serving `loan_approval:latest` (the default) from `own_home`."""
    env = {"BENTOML_HOME": str(own_home), "LOAN_WORKERS": "2", "LOAN_MODEL_TAG": ""}
    with bentoml_serve(env=env, log_path=tmp_path / "serve.log", ready_timeout=120) as server:
        yield server


def workers(server: RunningServer) -> list[psutil.Process]:
    return psutil.Process(server.process.pid).children()


def kill_workers(server: RunningServer, count: int) -> set[int]:
    """SIGKILL `count` workers (as the kernel's OOM killer does); their pids."""
    killed = set()
    for worker in workers(server)[:count]:
        worker.send_signal(signal.SIGKILL)
        killed.add(worker.pid)
    return killed


def served_tags(server: RunningServer) -> set[str]:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return set(re.findall(r'^loan_model_info\{model_tag="([^"]*)"\} 1\.0$', text, flags=re.M))


def initialized(server: RunningServer) -> int:
    return server.log().count("Service LoanApproval initialized")


# 1. One model version per server, for the server's whole life.


def test_restarted_workers_serve_the_version_the_server_started_with(two_workers, own_home):
    [first] = [p.name for p in (own_home / "models" / "loan_approval").iterdir() if p.is_dir()]
    newer = train_into(own_home, seed=1)
    assert newer != f"loan_approval:{first}"
    before = initialized(two_workers)
    killed = kill_workers(two_workers, 2)
    deadline = time.monotonic() + STOP_SECONDS
    while initialized(two_workers) < before + 2 and time.monotonic() < deadline:
        time.sleep(0.5)
    assert initialized(two_workers) == before + 2, two_workers.log()[-3000:]
    assert not killed & {w.pid for w in workers(two_workers)}
    answers = []
    for _ in range(40):  # a new connection each: both workers answer
        response = httpx.post(
            f"{two_workers.url}/predict", json={"applications": [EXAMPLE]}, timeout=30
        )
        assert response.status_code == 200, response.text
        answers.append((response.headers[MODEL_TAG_HEADER], response.json()[0]["probability"]))
    assert {tag for tag, _ in answers} == {f"loan_approval:{first}"}
    assert len({p for _, p in answers}) == 1
    assert served_tags(two_workers) == {f"loan_approval:{first}"}


# 2. A worker that cannot start stops the server; no client is left hanging.


def probe(server: RunningServer, path: str, timeout: float) -> int | None:
    """The status of one probe; None when the server refused or reset the
    connection (it is stopping). Raises httpx.TimeoutException when it does not
    answer within `timeout`."""
    try:
        return httpx.get(f"{server.url}{path}", timeout=timeout).status_code
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
        return None


def test_readiness_says_no_once_any_worker_failed_to_start(two_workers):
    """What a worker that cannot start records, written here as it would: the
    running workers' probes say not ready (the server then stops)."""
    # A worker's environment: the main process set the variable after it started.
    _, folder, _ = workers(two_workers)[0].environ()[RUNTIME_ENV].split(" ", 2)
    assert httpx.get(f"{two_workers.url}/readyz", timeout=30).status_code == 200
    (Path(folder) / FAILED_FILE).write_text("ModelLoadError: written by the test")
    for _ in range(10):  # a new connection each: both workers answer
        assert httpx.get(f"{two_workers.url}/readyz", timeout=30).status_code == 503
        assert httpx.get(f"{two_workers.url}/v2/health/ready", timeout=30).status_code == 503
        assert httpx.get(f"{two_workers.url}/livez", timeout=30).status_code == 200


@pytest.mark.parametrize(
    ("killed", "probe_seconds"),
    # With one worker left it answers every probe. With none, a connection waits in
    # the listening socket's backlog until a worker has started (BentoML's workers
    # share the socket; nothing else accepts), and is closed when the server stops.
    [(1, PROBE_SECONDS), (2, STOP_SECONDS)],
    ids=["one-worker", "both-workers"],
)
def test_a_worker_that_cannot_start_stops_the_server(two_workers, own_home, killed, probe_seconds):
    [model] = [p for p in (own_home / "models" / "loan_approval").iterdir() if p.is_dir()]
    with open(model / PIPELINE_FILE, "ab") as artifact:
        artifact.write(b"\0")  # the file changed after the server verified it
    kill_workers(two_workers, killed)
    statuses = []
    deadline = time.monotonic() + STOP_SECONDS
    while two_workers.process.poll() is None and time.monotonic() < deadline:
        for path in ("/livez", "/readyz"):
            try:
                statuses.append(probe(two_workers, path, probe_seconds))
            except httpx.TimeoutException:
                pytest.fail(f"{path} gave no answer in {probe_seconds} s: {statuses}")
        time.sleep(0.2)
    assert two_workers.process.poll() == 1, f"still running after {STOP_SECONDS} s"
    output = two_workers.log()
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, errors
    assert "does not match the recorded" in errors[0]
    assert set(statuses) <= {200, 503, None}


# One server for the HTTP cases below: one worker, the session's model.


@pytest.fixture(scope="module")
def server(real_model_tag_or_none, tmp_path_factory) -> Iterator[RunningServer]:
    folder = tmp_path_factory.mktemp("round2-server")
    env = {"LOAN_WORKERS": "1", "LOAN_MODEL_TAG": ""}
    with bentoml_serve(env=env, log_path=folder / "serve.log", ready_timeout=120) as running:
        yield running


def decided_count(server: RunningServer) -> float:
    text = httpx.get(f"{server.url}/metrics", timeout=30).text
    return sum(float(v) for v in re.findall(r"^loan_decisions_total\{[^}]*\} (\S+)$", text, re.M))


def v2_body(rows: list[dict], **datatypes: str) -> dict:
    """A pandas-codec V2 request: one [n, 1] input per column of `rows`."""
    kinds = {**INPUT_DATATYPES, **datatypes}
    return {
        "inputs": [
            {
                "name": name,
                "shape": [len(rows), 1],
                "datatype": kinds[name],
                "data": [row[name] for row in rows],
            }
            for name in rows[0]
        ]
    }


def post_v2(server: RunningServer, body: dict) -> httpx.Response:
    # json.dumps, not httpx's json=: a client may send NaN, which Python writes as NaN.
    return httpx.post(
        f"{server.url}{INFER_PATH}",
        content=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        timeout=60,
    )


def post_csv(server: RunningServer, content: bytes | str, name: str = "x.csv") -> httpx.Response:
    return httpx.post(
        f"{server.url}/predict_csv", files={"file": (name, content, "text/csv")}, timeout=60
    )


# 3. V2 outputs are checked, with the rest of the request, before anything is decided.


@pytest.mark.parametrize(
    "outputs",
    [[{"name": ["probability"]}], [{"name": {"a": 1}}], [{"name": "no-such-output"}]],
    ids=["list-name", "object-name", "unknown-name"],
)
def test_v2_bad_outputs_are_a_400_and_nothing_is_decided(server, outputs):
    before = decided_count(server)
    response = post_v2(server, {**v2_body([EXAMPLE]), "outputs": outputs})
    assert response.status_code == 400, response.text
    assert "error" in response.json()
    assert decided_count(server) == before


# 4. V2 datatypes and shapes are the protocol's; a missing integer is null.


def changed(body: dict, name: str, **change: object) -> dict:
    [column] = [i for i in body["inputs"] if i["name"] == name]
    column.update(change)
    return body


@pytest.mark.parametrize(
    ("name", "change", "fragment"),
    [
        ("ApplicantIncome", {"datatype": "BYTES"}, "a BYTES tensor holds strings"),
        ("Education", {"datatype": "FP64"}, "a FP64 tensor holds numbers"),
        ("ApplicantIncome", {"shape": ["1", 1]}, "not a V2 inference request"),
        ("ApplicantIncome", {"shape": [True, 1]}, "not a V2 inference request"),
        ("Credit_History", {"data": [0.5]}, "INT64 tensor holds whole numbers"),
        ("Credit_History", {"data": [[1, 2]]}, "INT64 tensor holds whole numbers"),
    ],
    ids=["number-as-bytes", "text-as-fp64", "text-shape", "boolean-shape", "half", "nested"],
)
def test_v2_values_must_be_what_their_datatype_holds(server, name, change, fragment):
    body = changed(v2_body([EXAMPLE]), name, **change)
    before = decided_count(server)
    response = post_v2(server, body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]
    assert decided_count(server) == before


def test_v2_a_missing_integer_is_null_and_nan_says_so(server):
    rows = [EXAMPLE, {**EXAMPLE, "Credit_History": None}]
    assert post_v2(server, v2_body(rows)).status_code == 200
    # A float column (what pandas makes of an integer column with gaps) may use NaN.
    floats = v2_body([EXAMPLE, {**EXAMPLE, "Credit_History": math.nan}], Credit_History="FP64")
    assert post_v2(server, floats).status_code == 200
    nan = post_v2(server, v2_body([EXAMPLE, {**EXAMPLE, "Credit_History": math.nan}]))
    assert nan.status_code == 400
    error = nan.json()["error"]
    assert "Credit_History" in error and "null" in error and "FP64" in error


# 5. A batch lacking a column the model reads is refused, naming it; an empty
#    column means "unknown".


def real_test_csv(drop: str | None = None, empty: str | None = None) -> str:
    require_real_data()
    with open(REAL_TEST_CSV, encoding="utf-8-sig", newline="") as handle:
        rows = list(csv.DictReader(handle))
    for row in rows:
        if drop:
            del row[drop]
        if empty:
            row[empty] = ""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def test_predict_csv_refuses_a_file_lacking_a_column_the_model_reads(server):
    before = decided_count(server)
    response = post_csv(server, real_test_csv(drop="Credit_History"))
    assert response.status_code == 400, response.text[:500]
    assert [p["column"] for p in response.json()["detail"]] == ["Credit_History"]
    assert decided_count(server) == before
    empty = post_csv(server, real_test_csv(empty="Credit_History"))
    assert empty.status_code == 200, empty.text[:500]
    assert len(empty.text.splitlines()) == 368


def test_v2_refuses_a_request_lacking_a_column_the_model_reads(server):
    body = v2_body([{k: v for k, v in EXAMPLE.items() if k != "LoanAmount"}])
    response = post_v2(server, body)
    assert response.status_code == 400
    assert "'LoanAmount'" in response.json()["error"]
    # Not a column the model reads: may be absent.
    body = v2_body([{k: v for k, v in EXAMPLE.items() if k != "Gender"}])
    assert post_v2(server, body).status_code == 200


def score_csv(*args: str, umask: int = 0o022, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real offline command, in its own process, on the session's model store."""
    return subprocess.run(
        [sys.executable, "-m", "loan_preprocessing.batch.score_csv", *args, "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        umask=umask,
    )


def test_offline_scoring_refuses_a_file_lacking_a_column_the_model_reads(real_model, tmp_path):
    source = tmp_path / "no-credit-history.csv"
    source.write_text(real_test_csv(drop="Credit_History"))
    result = score_csv(str(source), "--output", str(tmp_path / "out.csv"))
    assert result.returncode == 1
    assert "column Credit_History: column is missing" in result.stderr
    assert not (tmp_path / "out.csv").exists()


# 6. A header of many names costs a glance, not seconds per name.


def test_a_very_wide_csv_header_is_refused_at_once(server):
    names = [f"made_up_{i}" for i in range(50_000)]
    content = ",".join([CSV_HEADER, *names]) + "\n"
    started = time.monotonic()
    response = post_csv(server, content)
    elapsed = time.monotonic() - started
    assert response.status_code == 400, (response.status_code, elapsed)
    assert "the header has 50012 columns" in response.json()["error"]
    # The worker is free again: the next request is answered as usual.
    answer = httpx.post(f"{server.url}/predict", json={"applications": [EXAMPLE]}, timeout=30)
    assert answer.status_code == 200


# 7. Identifiers hold no control characters; every CSV cell that needs quotes has them.


@pytest.mark.parametrize("loan_id", ["A\rB", "A\nB", "A\tB", "A\x00B", "A\u2028B"])
def test_control_characters_in_an_identifier_are_refused_in_every_path(
    server, real_model, tmp_path, loan_id
):
    row = {**EXAMPLE, "Loan_ID": loan_id}
    buffer = io.StringIO()
    # Every cell quoted: csv.writer would leave a bare CR unquoted.
    writer = csv.DictWriter(
        buffer, fieldnames=list(row), lineterminator="\n", quoting=csv.QUOTE_ALL
    )
    writer.writeheader()
    writer.writerow(row)
    upload = post_csv(server, buffer.getvalue())
    assert upload.status_code == 400, upload.text
    assert upload.json()["detail"][0]["column"] == "Loan_ID"
    assert "control characters" in upload.json()["error"]
    records = httpx.post(f"{server.url}/predict", json={"applications": [row]}, timeout=30)
    assert records.status_code == 400
    assert post_v2(server, v2_body([row])).status_code == 400
    source = tmp_path / "in.csv"
    source.write_text(buffer.getvalue(), newline="")
    offline = score_csv(str(source), "--output", str(tmp_path / "out.csv"))
    assert offline.returncode == 1
    assert "column Loan_ID" in offline.stderr and "control characters" in offline.stderr


def test_identifiers_with_quotes_and_separators_come_back_whole(server, real_model, tmp_path):
    ids = ['A"B', "A,B", 'say "hi", then', "plain"]
    rows = [{**EXAMPLE, "Loan_ID": loan_id} for loan_id in ids]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    response = post_csv(server, buffer.getvalue())
    assert response.status_code == 200
    assert [r["Loan_ID"] for r in csv.DictReader(io.StringIO(response.text))] == ids
    source = tmp_path / "in.csv"
    source.write_text(buffer.getvalue(), newline="")
    assert score_csv(str(source), "--output", str(tmp_path / "out.csv")).returncode == 0
    with open(tmp_path / "out.csv", newline="") as handle:
        assert [r["Loan_ID"] for r in csv.DictReader(handle)] == ids


# 8. An interrupted offline run leaves no temporary file behind.


def big_csv(path: Path, copies: int) -> Path:
    require_real_data()
    lines = REAL_TEST_CSV.read_text(encoding="utf-8-sig").splitlines()
    with open(path, "w") as handle:
        handle.write(lines[0] + "\n")
        body = "\n".join(lines[1:]) + "\n"
        for _ in range(copies):
            handle.write(body)
    return path


def parts(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*.part"))


def start_scoring(source: Path, output: Path) -> subprocess.Popen:
    command = [sys.executable, "-m", "loan_preprocessing.batch.score_csv", str(source)]
    process = subprocess.Popen(
        [*command, "--output", str(output), "--quiet"],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 120
    while not parts(output.parent) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before it could be interrupted"
    return process


def test_sigterm_removes_the_temporary_output_and_sigkill_leftovers_do_not_pile_up(
    real_model, tmp_path
):
    source = big_csv(tmp_path / "big.csv", copies=1500)  # 550,500 rows
    output = tmp_path / "out" / "scored.csv"
    output.parent.mkdir()
    terminated = start_scoring(source, output)
    terminated.send_signal(signal.SIGTERM)
    assert terminated.wait(60) == 128 + signal.SIGTERM
    assert parts(output.parent) == [] and not output.exists()
    killed = start_scoring(source, output)
    killed.send_signal(signal.SIGKILL)
    killed.wait(60)
    assert len(parts(output.parent)) == 1  # nothing can clean up after a SIGKILL...
    small = big_csv(tmp_path / "small.csv", copies=1)
    assert score_csv(str(small), "--output", str(output)).returncode == 0
    assert parts(output.parent) == []  # ...but the next run writing the same output does


# 9. Smaller defects.


def test_offline_output_respects_the_umask_and_an_existing_files_mode(real_model, tmp_path):
    small = big_csv(tmp_path / "small.csv", copies=1)
    fresh = tmp_path / "fresh.csv"
    assert score_csv(str(small), "--output", str(fresh), umask=0o022).returncode == 0
    assert fresh.stat().st_mode & 0o777 == 0o644
    existing = tmp_path / "existing.csv"
    existing.write_text("old")
    existing.chmod(0o640)
    assert score_csv(str(small), "--output", str(existing), umask=0o077).returncode == 0
    assert existing.stat().st_mode & 0o777 == 0o640


@pytest.mark.parametrize(
    "content", [CSV_HEADER + "\n", "", "\n\n"], ids=["header", "empty", "blank"]
)
def test_an_input_without_applications_is_refused_offline_as_over_http(
    server, real_model, tmp_path, content
):
    source = tmp_path / "none.csv"
    source.write_text(content)
    offline = score_csv(str(source), "--output", str(tmp_path / "out.csv"))
    upload = post_csv(server, content)
    assert upload.status_code == 400
    assert offline.returncode == 1, offline.stderr
    assert upload.json()["error"] in offline.stderr
    assert not (tmp_path / "out.csv").exists()


def test_a_non_utf8_input_names_its_file_and_line(real_model, tmp_path):
    source = tmp_path / "latin1.csv"
    source.write_bytes(
        f"{CSV_HEADER}\n".encode() + b"LP1,Male,No,0,Graduate,No,5720,0,110,360,1,Urban\n"
        b"LP2,Male,No,0,Graduate,No,5720,0,110,360,1,Urb\xe4n\n"
    )
    result = score_csv(str(source))
    assert result.returncode == 1
    assert f"error: {source}: line 3: not UTF-8 text" in result.stderr


def raw_exchange(server: RunningServer, request: bytes) -> bytes:
    """Send `request` on a new connection; what the server answers within 15 s,
    up to its closing the connection (a refusal says Connection: close)."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=15) as sock:
        sock.sendall(request)
        data = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    return data


def test_content_length_with_transfer_encoding_is_refused_before_the_body(server):
    body = json.dumps({"applications": [EXAMPLE]}).encode()
    head = (
        "POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    # No body is sent: a server that waited for one would answer only at its
    # body timeout (408), or never.
    answer = raw_exchange(server, head)
    assert answer.startswith(b"HTTP/1.1 400"), answer[:200]
    assert b"Transfer-Encoding" in answer


def test_a_very_long_file_name_is_named_as_the_problem(server):
    response = post_csv(server, CSV_HEADER + "\n", name="a" * 10_000 + ".csv")
    assert response.status_code == 400
    assert "file name" in response.json()["error"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v2/no-such-thing", 404),
        ("GET", INFER_PATH, 405),
        ("DELETE", "/v2/health/live", 405),
    ],
)
def test_v2_errors_are_json(server, method, path, status):
    response = httpx.request(method, f"{server.url}{path}", timeout=30)
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    assert "error" in response.json()


@pytest.mark.parametrize(
    "path",
    [
        # Found by the OpenAPI fuzzing: a decision id holding a line break.
        "/decisions/G%F1%BB%96%85%C3%B81%0AV",
        "/decisions/abc%0D/notice",
        "/v2/models/loan_approval%0A/ready",
        "/predict%00",
    ],
)
def test_a_path_with_a_control_character_is_a_json_404(server, path):
    """Starlette's mounts cannot match across a line break, so such a path fell
    through to the router's plain-text 404 where the route answers JSON."""
    response = httpx.get(f"{server.url}{path}", timeout=30)
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/json")
    assert "control character" in response.json()["error"]

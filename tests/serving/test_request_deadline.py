"""A request answered 504 stops its work: a real `bentoml serve` with a one-second
request timeout, sent bodies within its body limit that take many seconds of CPU
to read, answers each with the 504 at its deadline, and its worker's CPU time
(psutil, from /proc/<pid>/stat) shows the work did not go on after the answer.

Before the deadline existed (this test on the loaded 2-core development machine):
the CSV upload was answered 504, and its worker thread parsed on for 4.2 s of CPU
(the worker's one-thread limit was released with the cancelled task, so the next
requests ran beside it); the JSON and V2 bodies, checked on the event loop,
held the loop (and so the timer) until their work ended, then got a 400."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import suppress
from typing import Any, Final

import httpx
import psutil
import pytest

from loan_preprocessing.schema import EXAMPLE_APPLICATION, FEATURE_COLUMNS, ID_COLUMN
from loan_preprocessing.serving.open_inference import INFER_PATH, INPUT_DATATYPES
from tests.support.server import RunningServer, bentoml_serve

pytestmark = pytest.mark.e2e
TIMEOUT_SECONDS: Final = 1.0
MAX_BODY_BYTES: Final = 40_000_000
CSV_HEADER: Final = ",".join((ID_COLUMN, *FEATURE_COLUMNS))
CSV_ROW: Final = "LP001015,Male,Yes,0,Graduate,No,5720,0,110,360,1,Urban\n"
# CPU seconds the worker may spend after the 504 until it is idle (freeing the
# body included). Each body below costs it at least 4 s of CPU to read
# through on an idle core, about 8 s for the CSV (measured in-process).
MAX_CPU_AFTER_ANSWER: Final = 1.0
# The worker is idle once it uses less than this much CPU over SETTLE_SECONDS.
IDLE_CPU: Final = 0.05
SETTLE_SECONDS: Final = 1.0
# A bound on the wait for the worker to settle: far more than any body here costs.
SETTLE_LIMIT_SECONDS: Final = 90.0


@pytest.fixture(scope="module")
def server(real_model_tag_or_none, tmp_path_factory) -> Iterator[RunningServer]:
    """One worker, a one-second request timeout, a 40 MB body limit."""
    folder = tmp_path_factory.mktemp("deadline")
    env = {
        "LOAN_WORKERS": "1",
        "LOAN_TIMEOUT_SECONDS": str(TIMEOUT_SECONDS),
        "LOAN_MAX_BODY_BYTES": str(MAX_BODY_BYTES),
        "LOAN_MODEL_TAG": "",
        # The small requests' commits need not wait for the disk here.
        "LOAN_DECISION_STORE_SQLITE_SYNC": "NORMAL",
    }
    with bentoml_serve(env=env, log_path=folder / "serve.log") as running:
        yield running


def csv_upload(content: str) -> dict[str, Any]:
    return {"files": {"file": ("applications.csv", content.encode(), "text/csv")}}


def blank_lines_csv() -> dict[str, Any]:
    """16 MB of blank lines: not rows, so the row limit never stops their reading."""
    return csv_upload(CSV_HEADER + "\n" + "\n" * 16_000_000)


def unknown_keys_json() -> dict[str, Any]:
    """32 MB of objects with an unknown key: the JSON guard's exact check counts them."""
    objects = b",".join([b'{"zz":1}'] * 3_500_000)
    return {
        "content": b'{"applications":[' + objects + b"]}",
        "headers": {"Content-Type": "application/json"},
    }


def binary_strings_v2() -> dict[str, Any]:
    """A V2 binary BYTES tensor of 9 million empty strings (36 MB): each is
    decoded before the row limit can count them."""
    count = 9_000_000
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "Gender",
                    "shape": [count],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": 4 * count},
                }
            ]
        }
    ).encode()
    return {
        "content": header + b"\0\0\0\0" * count,
        "headers": {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(len(header)),
        },
    }


def v2_example() -> dict[str, Any]:
    """The example application as a V2 request, one input per field."""
    inputs = [
        {"name": name, "shape": [1], "datatype": INPUT_DATATYPES[name], "data": [value]}
        for name, value in EXAMPLE_APPLICATION.model_dump().items()
    ]
    return {"json": {"inputs": inputs}}


def small_csv() -> dict[str, Any]:
    return csv_upload(CSV_HEADER + "\n" + CSV_ROW)


def small_json() -> dict[str, Any]:
    return {"json": {"applications": [EXAMPLE_APPLICATION.model_dump()]}}


# path -> (the heavy body, a small valid request to the same path)
CASES: Final = {
    "csv upload": ("/predict_csv", blank_lines_csv, small_csv),
    "json body": ("/predict", unknown_keys_json, small_json),
    "v2 binary tensor": (INFER_PATH, binary_strings_v2, v2_example),
}


def worker_cpu_seconds(server: RunningServer) -> float:
    """User + system CPU time of the server's worker processes."""
    total = 0.0
    for child in psutil.Process(server.process.pid).children(recursive=True):
        with suppress(psutil.NoSuchProcess):
            times = child.cpu_times()
            total += times.user + times.system
    return total


def cpu_until_idle(server: RunningServer) -> float:
    """The workers' CPU seconds from now until they settle (or the limit passes)."""
    start = last = worker_cpu_seconds(server)
    ends = time.monotonic() + SETTLE_LIMIT_SECONDS
    while time.monotonic() < ends:
        time.sleep(SETTLE_SECONDS)
        now = worker_cpu_seconds(server)
        if now - last < IDLE_CPU:
            return now - start
        last = now
    return worker_cpu_seconds(server) - start


def answered(url: str, request: dict[str, Any]) -> int:
    """The status of a small request, tried up to three times: one may miss the
    one-second timeout on a loaded machine whatever the worker did before."""
    status = 0
    for _ in range(3):
        status = httpx.post(url, timeout=60, **request).status_code
        if status != 504:
            break
    return status


@pytest.mark.parametrize("case", list(CASES))
def test_a_request_answered_504_stops_its_work(server, case):
    path, heavy, small = CASES[case]
    url = f"{server.url}{path}"
    httpx.post(url, timeout=60, **small())  # warm the path (a first call imports)
    cpu_until_idle(server)
    body = heavy()
    answer = httpx.post(url, timeout=300, **body)
    after = cpu_until_idle(server)
    assert answer.status_code == 504, answer.text[:300]
    assert answer.json() == {
        "error": f"Not able to process the request in {TIMEOUT_SECONDS} seconds"
    }
    assert after < MAX_CPU_AFTER_ANSWER, f"the worker used {after:.1f} s of CPU after the 504"
    # And it serves the next request.
    assert answered(url, small()) == 200

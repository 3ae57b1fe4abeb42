"""A request's deadline (loan_preprocessing/deadline.py), and each long step of
the service that checks it: past the deadline it stops with DeadlinePassed;
without one (offline scoring, the Spark job) or before it, it runs as always."""

from __future__ import annotations

import contextlib
import contextvars
import json
import struct
import time
from collections.abc import Callable
from typing import Any, Final

import pytest

from loan_preprocessing import deadline
from loan_preprocessing.inputs.columns import validate_columns
from loan_preprocessing.inputs.csv_columns import parse_csv_columns
from loan_preprocessing.inputs.csv_rows import CsvValidationError, parse_csv_applications
from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN
from loan_preprocessing.serving import binary_tensors, guards, json_screen
from loan_preprocessing.serving.open_inference import InferenceRequest, columns_of, parse_request

CSV_HEADER: Final = ",".join((ID_COLUMN, *FEATURE_COLUMNS))
# More than CHECK_EVERY of each: every loop below reaches a check.
MANY: Final = 4 * deadline.CHECK_EVERY
KNOWN_KEYS: Final = frozenset({"applications", *FEATURE_COLUMNS, ID_COLUMN})


def passed() -> Any:
    return deadline.deadline_at(time.monotonic() - 1.0)


def far() -> Any:
    return deadline.deadline_at(time.monotonic() + 3600.0)


def test_no_deadline_and_a_future_one_never_stop_anything():
    deadline.check()
    with far():
        deadline.check()
        assert list(deadline.checked(range(MANY))) == list(range(MANY))


def test_a_passed_deadline_stops_at_the_first_check():
    with passed(), pytest.raises(deadline.DeadlinePassed):
        deadline.check()
    with passed(), pytest.raises(deadline.DeadlinePassed):
        next(deadline.checked(range(MANY)))


def test_it_gets_through_except_exception():
    """BentoML's API handler turns any Exception into a 500: the signal is not one."""
    assert not issubclass(deadline.DeadlinePassed, Exception)


def test_the_deadline_ends_with_its_block_even_in_a_copied_context():
    with deadline.deadline_at(time.monotonic() + 0.01):
        copied = contextvars.copy_context()
    time.sleep(0.02)
    copied.run(deadline.check)  # the request is over: nothing to stop
    deadline.check()


def blank_lines_csv() -> bytes:
    # Blank lines are not rows, so no row limit stops their reading.
    return (CSV_HEADER + "\n" + "\n" * MANY).encode()


def distinct_rows_csv() -> bytes:
    rows = "".join(
        f"LP{i},Male,No,0,Graduate,No,{5000 + i},0,110,360,1,Urban\n" for i in range(MANY)
    )
    return (CSV_HEADER + "\n" + rows).encode()


def unknown_keys_body() -> bytes:
    return b'{"applications":[' + b",".join([b'{"zz":1}'] * MANY) + b"]}"


def binary_strings(count: int) -> memoryview:
    return memoryview(b"".join(struct.pack("<I", 4) + b"Male" for _ in range(count)))


def v2_request() -> InferenceRequest:
    data = [["Male"]] * MANY
    return InferenceRequest.model_validate(
        {"inputs": [{"name": "Gender", "shape": [MANY, 1], "datatype": "BYTES", "data": data}]}
    )


# Each long step of a request: (what it is, the call).
STEPS: Final[dict[str, Callable[[], object]]] = {
    "csv rows": lambda: parse_csv_applications(blank_lines_csv()),
    "csv columns": lambda: parse_csv_columns(blank_lines_csv()),
    "csv distinct cells": lambda: parse_csv_columns(distinct_rows_csv()),
    "json screen": lambda: json_screen.passes(unknown_keys_body(), KNOWN_KEYS),
    "json exact check": lambda: guards.exact_json_problem(unknown_keys_body(), KNOWN_KEYS),
    "v2 binary strings": lambda: binary_tensors.decode("Gender", "BYTES", binary_strings(MANY)),
    "v2 binary request": lambda: parse_request(
        _binary_request_header() + bytes(binary_strings(MANY)), str(len(_binary_request_header()))
    ),
    "v2 columns": lambda: columns_of(v2_request(), max_rows=10 * MANY),
    "column checks": lambda: validate_columns({"Gender": ["Male", 1] * (MANY // 2)}, MANY),
}


def _binary_request_header() -> bytes:
    size = len(binary_strings(MANY))
    return json.dumps(
        {
            "inputs": [
                {
                    "name": "Gender",
                    "shape": [MANY],
                    "datatype": "BYTES",
                    "parameters": {"binary_data_size": size},
                }
            ]
        }
    ).encode()


@pytest.mark.parametrize("step", list(STEPS))
def test_each_long_step_stops_at_a_passed_deadline(step):
    with passed(), pytest.raises(deadline.DeadlinePassed):
        STEPS[step]()


@pytest.mark.parametrize("step", list(STEPS))
def test_each_long_step_runs_to_its_answer_before_the_deadline(step):
    """The same calls with time left: each ends as it always did (an answer, or
    the refusal its input deserves), never with DeadlinePassed."""
    with far(), contextlib.suppress(CsvValidationError, ValueError):
        STEPS[step]()

"""The batched histogram update gives exactly what one observe per value gives."""

from __future__ import annotations

import math

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loan_preprocessing.serving.metrics import (
    FIELD_LABELS,
    MULTIPROC_ENV,
    OTHER_FIELD,
    PROBABILITY_BUCKETS,
    failed_fields,
    observe_many,
    use_server_multiproc_dir,
)

probabilities = st.lists(
    st.one_of(
        st.floats(min_value=0.0, max_value=1.0),
        # Exactly on a bound goes into that bound's bucket (le means <=).
        st.sampled_from(PROBABILITY_BUCKETS),
        st.sampled_from([-0.5, 1.5, math.inf, math.nan]),
    ),
    max_size=300,
)


def exposition(observe) -> dict[str, float]:
    registry = prometheus_client.CollectorRegistry()
    histogram = prometheus_client.Histogram(
        "p", "probability", buckets=PROBABILITY_BUCKETS, registry=registry
    )
    observe(histogram)
    [family] = registry.collect()
    return {
        f"{s.name}{s.labels}": s.value for s in family.samples if not s.name.endswith("_created")
    }


@given(probabilities)
def test_observe_many_equals_one_observe_per_value(values):
    expected = exposition(lambda h: [h.observe(v) for v in values])
    got = exposition(lambda h: observe_many(h, values))
    sums = "p_sum{}"
    assert {k: v for k, v in got.items() if k != sums} == {
        k: v for k, v in expected.items() if k != sums
    }
    # One addition of the total instead of one per value: equal up to rounding.
    assert got[sums] == pytest.approx(expected[sums], nan_ok=True)


def test_observe_many_falls_back_to_observe_for_other_histograms():
    class Recorder:
        def __init__(self):
            self.seen = []

        def observe(self, value):
            self.seen.append(value)

    recorder = Recorder()
    observe_many(recorder, [0.25, 0.75])
    assert recorder.seen == [0.25, 0.75]


def test_field_labels_come_from_a_closed_set():
    detail = [
        {"loc": ["applications", 0, "ApplicantIncome"]},
        {"loc": ["applications", 1, "made_up_key_1"]},
        {"loc": []},
        {"line": 1, "column": "Gender"},
        {"line": 1, "column": "x" * 1000},
    ]
    assert failed_fields(detail) == ["ApplicantIncome", OTHER_FIELD, "body", "Gender", OTHER_FIELD]
    assert set(failed_fields(detail)) <= FIELD_LABELS


def test_each_server_gets_its_own_multiprocess_directory(tmp_path):
    """Two servers under one BENTOML_HOME: BentoML hands both the same directory
    and empties it at start; each moves to one named after its main process."""
    import os

    import psutil

    shared = tmp_path / "prometheus_multiproc_dir"
    shared.mkdir()
    stale = tmp_path / "prometheus_multiproc_dir.server-999999999-1"
    stale.mkdir()
    environ = {MULTIPROC_ENV: str(shared)}
    own = use_server_multiproc_dir(os.getpid(), environ)
    assert own is not None and own.is_dir() and own.parent == tmp_path
    assert environ[MULTIPROC_ENV] == str(own)
    assert str(int(psutil.Process().create_time())) in own.name
    assert not stale.exists()  # its server is gone
    # A worker started later by the same server finds the same directory.
    assert use_server_multiproc_dir(os.getpid(), {MULTIPROC_ENV: str(shared)}) == own
    # Outside a BentoML worker nothing changes.
    assert use_server_multiproc_dir(os.getpid(), {}) is None

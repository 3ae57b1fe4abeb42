"""The batched histogram update gives exactly what one observe per value gives."""

from __future__ import annotations

import math

import prometheus_client
import pytest
from hypothesis import given
from hypothesis import strategies as st

from loan_preprocessing.serving.metrics import PROBABILITY_BUCKETS, observe_many

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

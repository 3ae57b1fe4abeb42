"""The bench's figures: the median round is the headline, the worst is beside it,
and no round is dropped."""

from __future__ import annotations

from bench.load import LoadResult
from bench.report import steadiness_table
from bench.run import figures_of, median_and_worst


def result(requests: int, p99: float = 10.0, split: list[int] | None = None) -> LoadResult:
    return LoadResult(requests, 5.0, 0, 1.0, 2.0, p99, 30.0, split or [2, 2])


def test_the_median_round_is_a_measured_round_and_the_worst_the_slowest():
    rounds = [result(500), result(100), result(300)]
    median, worst = median_and_worst(rounds)
    assert (median.requests, worst.requests) == (300, 100)
    # An even count takes the lower middle round, not an average no round had.
    assert median_and_worst([result(100), result(400)])[0].requests == 100


def test_figures_are_the_median_with_the_worst_beside_it():
    figures = figures_of(
        {
            "single": [result(5000, 20.0, [16, 16]), result(4000, 30.0, [32, 0]), result(4500)],
            "v2_batch": [result(100), result(150), result(50)],
        }
    )
    assert figures["single_rps"] == 900 and figures["single_rps_worst"] == 800
    assert figures["single_p99_ms_worst"] == 30.0
    assert figures["v2_rows_per_s"] == 100 / 5 * 1000
    assert figures["v2_rows_per_s_worst"] == 50 / 5 * 1000
    table = steadiness_table(figures)
    assert "| v2_rows_per_s | 20,000 | 10,000 | 0.50 | MISS >= 0.80 |" in table

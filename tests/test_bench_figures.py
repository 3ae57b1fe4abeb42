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


def test_the_shadow_table_compares_with_the_same_service_without_a_challenger():
    from bench.report import shadow_table

    servers = {
        "service": {"single_rps": 200.0, "single_p99_ms": 100.0, "v2_rows_per_s": 10_000.0},
        "shadow": {"single_rps": 160.0, "single_p99_ms": 160.0, "v2_rows_per_s": 9_000.0},
    }
    lines = shadow_table(servers).splitlines()
    rows = {line.split("|")[1].strip(): line for line in lines[2:]}
    # 0.80x of requests/s misses 0.85x; p99 1.6x misses 1.5x; V2 0.9x meets 0.8x.
    assert "|  0.80 |" in rows["single-row requests/s, 32 clients"]
    assert "MISS >= 0.85x" in rows["single-row requests/s, 32 clients"]
    assert "MISS <= 1.5x" in rows["single-row p99 latency, ms"]
    assert "ok >= 0.8x" in rows["rows/s, 1000-row V2 requests, 4 clients"]
    assert shadow_table({"service": servers["service"]}).startswith("challenger in shadow: not")

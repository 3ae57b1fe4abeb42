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


def test_sqlite_floor_writes_the_answers_rows_into_the_stores_own_table(tmp_path):
    """The floor times real inserts: every commit's rows are in the table the store
    created (with fresh ids), the bare table has lost its two indexes, and the
    per-answer table holds one row per commit."""
    import sqlite3

    from bench.record_costs import RUNS, SECONDARY_INDEXES, measure_sqlite_floor
    from loan_preprocessing.records.store import Answer, new_ids
    from loan_preprocessing.records.tables import decisions

    rows = 3
    columns: dict[str, list[object]] = {
        c.name: [None] * rows for c in decisions.columns if c.name not in ("answer_id", "position")
    }
    columns.update(
        decision_id=new_ids(rows),
        Loan_Status=["Y", "N", "Y"],
        probability=[0.9, 0.2, 0.7],
        reason_codes=["", "CREDIT_HISTORY", ""],
        reasons=["[]", '[{"code": "CREDIT_HISTORY", "text": "..."}]', "[]"],
        answer=['{"Loan_Status": "Y"}', '{"Loan_Status": "N"}', '{"Loan_Status": "Y"}'],
    )
    costs = measure_sqlite_floor(Answer(new_ids(1)[0], "/bench", "t", "0" * 64, columns), tmp_path)
    assert len(costs) == 3 and all(ms > 0 for ms in costs.values())

    def one(name: str, sql: str) -> object:
        with sqlite3.connect(tmp_path / f"floor-{name}.sqlite3") as connection:
            return connection.execute(sql).fetchone()[0]

    for name in ("indexed", "bare"):
        assert one(name, "SELECT count(DISTINCT decision_id) FROM decisions") == rows * RUNS
        assert one(name, "SELECT count(DISTINCT answer_id) FROM answers") == RUNS
    indexes = "SELECT group_concat(name) FROM sqlite_master WHERE tbl_name = 'decisions'"
    assert all(index in str(one("indexed", indexes)) for index in SECONDARY_INDEXES)
    assert not any(index in str(one("bare", indexes)) for index in SECONDARY_INDEXES)
    assert one("body", "SELECT count(*) FROM answer_bodies") == RUNS

"""The benchmark's table (for people) and JSON (for comparing runs)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from bench.bodies import BATCH_ROWS

BATCH_CLIENTS: Final = 4

FLASK_SINGLE_ROW_RPS: Final = 76.0  # the classic Flask + gunicorn recipe, 32 clients


@dataclass(frozen=True)
class Figure:
    """One row of the table: how to read it from a server's results, how to show
    it, and the target the issue set (None: no target)."""

    key: str
    label: str
    fmt: str
    higher_is_better: bool
    target: str


FIGURES: Final = (
    Figure(
        "single_rps", "single-row requests/s, 32 clients", "{:,.0f}", True, ">= 0.9x and >= 456"
    ),
    Figure("single_p50_ms", "single-row p50 latency, ms", "{:,.1f}", False, ""),
    Figure("single_p99_ms", "single-row p99 latency, ms", "{:,.1f}", False, "<= 150"),
    Figure("batch_rows_per_s", "rows/s, 1000-row requests, 4 clients", "{:,.0f}", True, ">= 0.8x"),
    Figure("ready_s", "start to /readyz ready, s", "{:,.1f}", False, "<= 6"),
    Figure("rss_mb_per_worker", "resident memory per worker, MB", "{:,.0f}", False, "<= 300"),
)


def target_met(key: str, service: float, ceiling: float) -> bool | None:
    """The issue's targets; None when a figure has none."""
    if key == "single_rps":
        return service >= 0.9 * ceiling and service >= 6 * FLASK_SINGLE_ROW_RPS
    if key == "single_p99_ms":
        return service <= 150
    if key == "batch_rows_per_s":
        return service >= 0.8 * ceiling
    if key == "ready_s":
        return service <= 6
    if key == "rss_mb_per_worker":
        return service <= 300
    return None


def table(service: dict[str, float], ceiling: dict[str, float]) -> str:
    rows = [("figure", "service", "no-model ceiling", "ratio", "target")]
    for f in FIGURES:
        s, c = service[f.key], ceiling[f.key]
        ratio = s / c if c and not math.isnan(c) else float("nan")
        met = target_met(f.key, s, c)
        verdict = "" if met is None else ("ok " if met else "MISS ") + f.target
        rows.append((f.label, f.fmt.format(s), f.fmt.format(c), f"{ratio:.2f}", verdict))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)]
        lines.append("| " + " | ".join([*cells, r[4].ljust(widths[4])]) + " |")
        if n == 0:
            lines.append(
                "|"
                + "|".join("-" * (w + 2) for w in widths[:1])
                + "|"
                + "|".join("-" * (w + 1) + ":" for w in widths[1:4])
                + "|"
                + "-" * (widths[4] + 2)
                + "|"
            )
    return "\n".join(lines)


def reasons_table(servers: dict[str, dict[str, Any]], before: str | None) -> str:
    """The budgets of the reasons (issue 13): this service against the same service
    at commit `before` (same run, same model), and rejections (which carry
    reasons) against approvals."""
    now = servers["service"]
    was = servers.get("before")
    rows: list[tuple[str, ...]] = [
        ("figure", f"before ({before})" if was else "before: not run", "now", "ratio", "target")
    ]
    budgets: tuple[tuple[str, str, str, str, Callable[[float, float], bool] | None], ...] = (
        (
            "rows/s, 1000-row requests, 4 clients",
            "batch_rows_per_s",
            "{:,.0f}",
            ">= 0.85x",
            lambda n, b: n >= 0.85 * b,
        ),
        (
            "resident memory per worker, MB",
            "rss_mb_per_worker",
            "{:,.1f}",
            "<= +15 MB",
            lambda n, b: n <= b + 15,
        ),
        ("single-row requests/s, all rows", "single_rps", "{:,.0f}", "", None),
        ("single-row requests/s, rejected rows", "single_rejected_rps", "{:,.0f}", "", None),
        ("single-row requests/s, approved rows", "single_approved_rps", "{:,.0f}", "", None),
    )
    for label, key, fmt, target, ok in budgets:
        if was is None:
            rows.append((label, "-", fmt.format(now[key]), "", ""))
            continue
        ratio = now[key] / was[key]
        verdict = "" if ok is None else ("ok " if ok(now[key], was[key]) else "MISS ") + target
        rows.append((label, fmt.format(was[key]), fmt.format(now[key]), f"{ratio:.2f}", verdict))
    ratios = {
        name: figures["single_rejected_rps"] / figures["single_approved_rps"]
        for name, figures in (("before", was), ("now", now))
        if figures is not None
    }
    rows.append(
        (
            "single-row rejected / approved req/s",
            f"{ratios['before']:.2f}" if "before" in ratios else "-",
            f"{ratios['now']:.2f}",
            "",
            ("ok " if ratios["now"] >= 0.9 else "MISS ") + ">= 0.9",
        )
    )
    return _markdown(rows)


def _markdown(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, r in enumerate(rows):
        cells = [r[0].ljust(widths[0])] + [r[i].rjust(widths[i]) for i in (1, 2, 3)]
        lines.append("| " + " | ".join([*cells, r[4].ljust(widths[4])]) + " |")
        if n == 0:
            lines.append(
                "|"
                + "-" * (widths[0] + 2)
                + "|"
                + "|".join("-" * (w + 1) + ":" for w in widths[1:4])
                + "|"
                + "-" * (widths[4] + 2)
                + "|"
            )
    return "\n".join(lines)


def rounds_summary(servers: dict[str, dict[str, Any]]) -> str:
    """Every round, not only the best: rate, p99 and how the clients' connections
    fell on the workers (see bench.machine.connections_per_worker)."""
    lines = ["rounds (the table shows the best of each):"]
    kinds = (
        ("single", "req/s", 1),
        ("batch", "rows/s", BATCH_ROWS),
        ("v2_batch", "rows/s", BATCH_ROWS),
        ("single_rejected", "req/s", 1),
        ("single_approved", "req/s", 1),
    )
    for kind, unit, scale in kinds:
        for name, figures in servers.items():
            if kind not in figures["rounds"]:
                continue
            cells = [
                f"{r['requests'] / r['seconds'] * scale:,.0f} "
                f"(p99 {r['p99_ms']:.0f} ms, {'/'.join(map(str, r['connections_per_worker']))})"
                for r in figures["rounds"][kind]
            ]
            lines.append(f"  {kind:15s} {name:8s} {unit:6s} " + ", ".join(cells))
    return "\n".join(lines)


def peers_table(servers: dict[str, dict[str, Any]]) -> str:
    """1000-row requests against the peer, MLServer's V2 figure as the yardstick
    (targets: V2 >= 2x MLServer; /predict no slower than before, stretch >= MLServer)."""
    peer = servers.get("mlserver", {}).get("v2_rows_per_s", float("nan"))
    rows = [
        ("this service, V2 (columns)", servers["service"]["v2_rows_per_s"], ">= 2x"),
        ("this service, /predict (JSON records)", servers["service"]["batch_rows_per_s"], ""),
        ("MLServer 1.7.1 sklearn runtime, V2", peer, ""),
    ]
    lines = [
        f"| 1000-row requests, {BATCH_CLIENTS} clients | rows/s | vs MLServer | target |",
        "|---|---:|---:|---|",
    ]
    for label, rate, target in rows:
        ratio = rate / peer if peer and not math.isnan(peer) else float("nan")
        lines.append(f"| {label} | {rate:,.0f} | {ratio:.2f} | {target} |")
    return "\n".join(lines)


def inprocess_table(figures: dict[str, dict[str, float]]) -> str:
    lines = [
        "| rows | predict_proba(frame), ms | frame + predict_proba, ms | fast path, ms "
        "| fast path rows/s | decide with reasons, ms |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for size, f in figures.items():
        fast = f["fast_path_ms"]
        rate = int(size) / fast * 1e3
        lines.append(
            f"| {int(size):,} | {f['pipeline_predict_proba_ms']:.2f} "
            f"| {f['frame_and_predict_proba_ms']:.2f} | {fast:.2f} | {rate:,.0f} "
            f"| {f.get('decide_ms', float('nan')):.2f} |"
        )
    return "\n".join(lines)


def write_json(path: Path, result: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


# The decision store's budgets: (label, key, format, target, met(on, off)).
RECORDS_BUDGETS: Final = (
    ("single-row requests/s, 32 clients", "single_rps", "{:,.0f}", ">= 0.9x", 0.9),
    ("single-row p99 latency, ms", "single_p99_ms", "{:,.1f}", "<= 1.5x", 1.5),
    ("rows/s, 1000-row V2 requests, 4 clients", "v2_rows_per_s", "{:,.0f}", None, None),
)
# The V2 budget differs by store: 0.85x with SQLite, 0.8x with PostgreSQL.
V2_BUDGET: Final = {"service": 0.85, "records_pg": 0.8}


def records_table(servers: dict[str, dict[str, Any]]) -> str:
    """Decision records on (SQLite: the service; PostgreSQL: records_pg) against
    the same service with records off, measured in the same run."""
    off = servers.get("records_off")
    if off is None:
        return "decision records: not measured (no records_off server)"
    rows: list[tuple[str, ...]] = [("figure", "records off", "on", "ratio", "target")]
    for name, store in (("service", "SQLite"), ("records_pg", "PostgreSQL")):
        on = servers.get(name)
        if on is None:
            continue
        for label, key, fmt, target, bound in RECORDS_BUDGETS:
            if key == "v2_rows_per_s":
                bound = V2_BUDGET[name]
                target = f">= {bound}x"
            a, b = off.get(key, float("nan")), on.get(key, float("nan"))
            ratio = b / a if a else float("nan")
            lower_is_better = key.endswith("_ms")
            met = ratio <= bound if lower_is_better else ratio >= bound  # type: ignore[operator]
            rows.append(
                (
                    f"{label}, {store}",
                    fmt.format(a),
                    fmt.format(b),
                    f"{ratio:.2f}",
                    ("ok " if met else "MISS ") + str(target),
                )
            )
    return _markdown(rows)


def record_costs_table(costs: dict[str, float]) -> str:
    """Where a record's time goes, in-process (median ms)."""
    lines = ["| step, in-process (median of runs) | ms |", "|---|---:|"]
    lines += [f"| {step} | {ms:.2f} |" for step, ms in costs.items()]
    return "\n".join(lines)

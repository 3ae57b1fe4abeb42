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


ROUND_KINDS: Final = (
    ("single", "req/s", 1),
    ("v2_single", "req/s", 1),
    ("batch", "rows/s", BATCH_ROWS),
    ("v2_batch", "rows/s", BATCH_ROWS),
    ("v2_binary", "rows/s", BATCH_ROWS),
    ("v1_batch", "rows/s", BATCH_ROWS),
    ("single_rejected", "req/s", 1),
    ("single_approved", "req/s", 1),
)
PEER_LABELS: Final = {"mlserver": "MLServer 1.7.1 sklearn runtime", "kserve": "KServe 0.21"}


def rounds_summary(servers: dict[str, dict[str, Any]]) -> str:
    """Every round, in the order run: rate, p99 and how the clients' connections
    fell on the workers (see bench.machine.connections_per_worker); then the
    median (the tables' figure), the worst, and worst / median."""
    lines = ["rounds (the tables show the median round; worst/median >= 0.80 is the target):"]
    for kind, unit, scale in ROUND_KINDS:
        for name, figures in servers.items():
            rounds = figures["rounds"].get(kind)
            if not rounds:
                continue
            rates = [r["requests"] / r["seconds"] * scale for r in rounds]
            cells = [
                f"{rate:,.0f} (p99 {r['p99_ms']:.0f} ms, "
                f"{'/'.join(map(str, r['connections_per_worker']))})"
                for rate, r in zip(rates, rounds, strict=True)
            ]
            ordered = sorted(rates)
            median, worst = ordered[(len(ordered) - 1) // 2], ordered[0]
            lines.append(
                f"  {kind:15s} {name:8s} {unit:6s} "
                + ", ".join(cells)
                + f" | median {median:,.0f}, worst {worst:,.0f} ({worst / median:.2f})"
            )
    return "\n".join(lines)


def _ratio(a: float, b: float) -> float:
    return a / b if b and not math.isnan(b) and not math.isnan(a) else float("nan")


def best_peer(servers: dict[str, dict[str, Any]], key: str) -> tuple[str, float]:
    """The peer with the highest median `key`, and that figure."""
    found = [(n, servers[n][key]) for n in PEER_LABELS if n in servers and key in servers[n]]
    return max(found, key=lambda f: f[1]) if found else ("none", float("nan"))


def peers_table(servers: dict[str, dict[str, Any]]) -> str:
    """1000-row requests and single-row requests against the best peer (MLServer,
    KServe), medians of the rounds, with the worst round beside each figure."""
    me = servers["service"]
    peer_name, peer_v2 = best_peer(servers, "v2_rows_per_s")
    single_peer_name, peer_single = best_peer(servers, "v2_single_rps")
    rows: list[tuple[str, str, float, float, float, str]] = []

    def add(
        label: str, figures: dict[str, Any], key: str, unit: str, against: float, target: str
    ) -> None:
        if key in figures:
            rate = figures[key]
            rows.append(
                (
                    label,
                    unit,
                    rate,
                    figures.get(f"{key}_worst", float("nan")),
                    _ratio(rate, against),
                    target,
                )
            )

    v2 = me["v2_rows_per_s"]
    binary_ok = me.get("v2_binary_rows_per_s", float("nan")) >= 1.5 * v2
    add(
        "this service, V2 JSON (columns)",
        me,
        "v2_rows_per_s",
        "rows/s",
        peer_v2,
        ("ok" if v2 >= 2.5 * peer_v2 else "MISS") + " >= 2.5x best peer",
    )
    add(
        "this service, V2 binary tensors",
        me,
        "v2_binary_rows_per_s",
        "rows/s",
        peer_v2,
        ("ok" if binary_ok else "MISS")
        + f" >= 1.5x V2 JSON ({_ratio(me.get('v2_binary_rows_per_s', float('nan')), v2):.2f}x)",
    )
    add(
        "this service, /predict (JSON records)",
        me,
        "batch_rows_per_s",
        "rows/s",
        peer_v2,
        ("ok" if me["batch_rows_per_s"] >= peer_v2 else "MISS") + " >= 1.0x best peer V2",
    )
    for name, label in PEER_LABELS.items():
        if name in servers:
            add(f"{label}, V2", servers[name], "v2_rows_per_s", "rows/s", peer_v2, "")
            add(
                f"{label}, V1 instances (records)",
                servers[name],
                "v1_batch_rows_per_s",
                "rows/s",
                peer_v2,
                "",
            )
    single = me["single_rps"]
    single_ok = single >= 4 * peer_single and me["single_p99_ms"] <= 25
    add(
        "this service, single-row /predict",
        me,
        "single_rps",
        "req/s",
        peer_single,
        ("ok" if single_ok else "MISS")
        + f" >= 4x best peer, p99 <= 25 ms ({me['single_p99_ms']:.1f})",
    )
    for name, label in PEER_LABELS.items():
        if name in servers:
            add(f"{label}, single-row V2", servers[name], "v2_single_rps", "req/s", peer_single, "")
    lines = [
        f"| requests ({BATCH_CLIENTS} clients for 1000 rows, 32 for one) | unit | median | worst "
        f"| vs best peer ({peer_name}; single-row: {single_peer_name}) | target |",
        "|---|---|---:|---:|---:|---|",
    ]
    for label, unit, rate, worst, ratio, target in rows:
        lines.append(f"| {label} | {unit} | {rate:,.0f} | {worst:,.0f} | {ratio:.2f} | {target} |")
    return "\n".join(lines)


def steadiness_table(figures: dict[str, Any]) -> str:
    """Worst round / median round for every rate of this service (target >= 0.8)."""
    lines = [
        "| this service's rate | median | worst | worst / median | target |",
        "|---|---:|---:|---:|---|",
    ]
    for key in sorted(k for k in figures if k.endswith(("_rps", "_rows_per_s"))):
        worst = figures.get(f"{key}_worst")
        if worst is None:
            continue
        ratio = _ratio(worst, figures[key])
        lines.append(
            f"| {key} | {figures[key]:,.0f} | {worst:,.0f} | {ratio:.2f} "
            f"| {'ok' if ratio >= 0.8 else 'MISS'} >= 0.80 |"
        )
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


SHADOW_BUDGETS: Final = (
    ("single-row requests/s, 32 clients", "single_rps", "{:,.0f}", 0.85),
    ("single-row p99 latency, ms", "single_p99_ms", "{:,.1f}", 1.5),
    ("rows/s, 1000-row V2 requests, 4 clients", "v2_rows_per_s", "{:,.0f}", 0.8),
)


def shadow_table(servers: dict[str, dict[str, Any]]) -> str:
    """A challenger in shadow (the shadow server) against the same service
    without one (service: records on SQLite in both), measured in the same run."""
    without, with_shadow = servers.get("service"), servers.get("shadow")
    if without is None or with_shadow is None:
        return "challenger in shadow: not measured (no shadow server)"
    rows: list[tuple[str, ...]] = [("figure", "no challenger", "in shadow", "ratio", "target")]
    for label, key, fmt, bound in SHADOW_BUDGETS:
        a, b = without.get(key, float("nan")), with_shadow.get(key, float("nan"))
        ratio = b / a if a else float("nan")
        lower_is_better = key.endswith("_ms")
        met = ratio <= bound if lower_is_better else ratio >= bound
        target = ("ok " if met else "MISS ") + f"{'<=' if lower_is_better else '>='} {bound}x"
        rows.append((label, fmt.format(a), fmt.format(b), f"{ratio:.2f}", target))
    return _markdown(rows)


def record_costs_table(costs: dict[str, float]) -> str:
    """Where a record's time goes, in-process (median ms)."""
    lines = ["| step, in-process (median of runs) | ms |", "|---|---:|"]
    lines += [f"| {step} | {ms:.2f} |" for step, ms in costs.items()]
    return "\n".join(lines)

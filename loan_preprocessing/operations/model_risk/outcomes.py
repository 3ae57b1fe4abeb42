"""Outcomes analysis: what happened to approved applications, set against P(Y).

Per model version (and per time window of decisions): how many approved
applications have an outcome, the bad rate (delinquent or defaulted over those
with a repayment outcome), the ROC AUC of P(Y) for telling repaid from bad, the
calibration of P(Y) against repayment, by group with bootstrap intervals, and
the population stability (PSI) of the scores from window to window.

Outcomes exist only for approved applications: nobody learns whether a rejected
applicant would have repaid. Every figure here is over approved applications
alone (the selection bias of every credit model's back-test), and the report
says so, with how many decisions have no outcome yet.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from loan_preprocessing.operations.drift import band, population_stability_index
from loan_preprocessing.operations.model_risk.frames import (
    DECIDED_AT,
    DECISION_ID,
    GROUP_ATTRIBUTES,
    MODEL_TAG,
    OBSERVED_ON,
    OUTCOME,
    PROBABILITY,
    STATUS,
    final_statuses,
    is_bad,
    latest_overrides,
    number,
    rate_by_group,
)
from loan_preprocessing.schema import APPROVED, ID_COLUMN, NO_PERFORMANCE_OUTCOMES

# P(Y) bins of the calibration table and of the scores' PSI: tenths.
SCORE_BINS: Final = np.linspace(0.0, 1.0, 11)
# Overridden decisions listed by name in the report (all are counted).
MARKED_EXAMPLES: Final = 50
SELECTION_BIAS: Final = (
    "Outcomes exist only for approved applications: nobody observes whether a rejected "
    "applicant would have repaid. Bad rate, AUC and calibration below are measured on "
    "approved applications with an outcome alone and say nothing of the rejected ones."
)


def latest_outcomes(outcomes: pd.DataFrame) -> pd.DataFrame:
    """Each decision's most recently observed outcome."""
    if outcomes.empty:
        return outcomes
    ordered = outcomes.sort_values(OBSERVED_ON, kind="stable")
    return ordered.drop_duplicates(DECISION_ID, keep="last")


def joined(
    decisions: pd.DataFrame, outcomes: pd.DataFrame, overrides: pd.DataFrame
) -> pd.DataFrame:
    """Decisions with their final status, whether overridden, and latest outcome."""
    frame = decisions.copy()
    frame["final_status"] = final_statuses(decisions, overrides)
    frame["overridden"] = frame[DECISION_ID].isin(latest_overrides(overrides)[DECISION_ID])
    last = latest_outcomes(outcomes)
    if last.empty:
        frame[OUTCOME] = None
    else:
        frame[OUTCOME] = frame[DECISION_ID].map(last.set_index(DECISION_ID)[OUTCOME])
    return frame


def score_shares(probabilities: np.ndarray) -> np.ndarray:
    """Share of scores in each tenth of [0, 1]."""
    counts, _ = np.histogram(probabilities, bins=SCORE_BINS)
    return counts / max(len(probabilities), 1)


def roc_auc(good: np.ndarray, scores: np.ndarray) -> float | None:
    """AUC of `scores` for telling good (1) from bad (0); None with one class."""
    if len(np.unique(good)) < 2:
        return None
    return number(roc_auc_score(good, scores))


def calibration(good: np.ndarray, scores: np.ndarray) -> dict[str, Any]:
    """P(Y) against the observed repaid share, per tenth of P(Y); Brier score and
    the expected calibration error (count-weighted gap)."""
    bins = np.clip(np.digitize(scores, SCORE_BINS[1:-1]), 0, len(SCORE_BINS) - 2)
    table = []
    gap = 0.0
    for index in range(len(SCORE_BINS) - 1):
        members = bins == index
        count = int(members.sum())
        if not count:
            continue
        mean_score = float(scores[members].mean())
        observed = float(good[members].mean())
        gap += count * abs(mean_score - observed)
        table.append(
            {
                "bin": [number(SCORE_BINS[index]), number(SCORE_BINS[index + 1])],
                "count": count,
                "mean_probability": number(mean_score),
                "repaid_rate": number(observed),
            }
        )
    total = len(scores)
    return {
        "bins": table,
        "brier": number(np.mean((scores - good) ** 2)) if total else None,
        "expected_calibration_error": number(gap / total) if total else None,
    }


def performance(frame: pd.DataFrame, seed: int, groups: bool = True) -> dict[str, Any]:
    """The figures of approved decisions in `frame` (already joined)."""
    approved = frame[frame["final_status"] == APPROVED]
    with_outcome = approved[approved[OUTCOME].notna()]
    performing = with_outcome[~with_outcome[OUTCOME].isin(NO_PERFORMANCE_OUTCOMES)]
    bad = is_bad(performing[OUTCOME])
    good = (~bad).astype(np.int64)
    scores = performing[PROBABILITY].to_numpy(dtype=np.float64)
    result: dict[str, Any] = {
        "decisions": len(frame),
        "approved": len(approved),
        "rejected": int((frame["final_status"] != APPROVED).sum()),
        "overridden": int(frame["overridden"].sum()),
        "approved_with_outcome": len(with_outcome),
        "approved_without_outcome": len(approved) - len(with_outcome),
        "withdrawn": int(with_outcome[OUTCOME].isin(NO_PERFORMANCE_OUTCOMES).sum()),
        "with_repayment_outcome": len(performing),
        "overridden_with_outcome": int(performing["overridden"].sum()),
        # Bad rates apart: the loans approved as the model decided them, and
        # those approved by a person's override (N->Y) or kept after one.
        "bad_rate_not_overridden": _share(bad[~performing["overridden"].to_numpy()]),
        "bad_rate_overridden": _share(bad[performing["overridden"].to_numpy()]),
        "bad": int(bad.sum()),
        "bad_rate": number(bad.mean()) if len(performing) else None,
        "roc_auc": roc_auc(good, scores),
    }
    if groups:
        result["calibration"] = calibration(good.astype(np.float64), scores)
        result["by_group"] = {
            name: _group_figures(performing, name, bad, good, scores, seed)
            for name in GROUP_ATTRIBUTES
            if name in performing
        }
    return result


def _group_figures(
    performing: pd.DataFrame,
    name: str,
    bad: np.ndarray,
    good: np.ndarray,
    scores: np.ndarray,
    seed: int,
) -> dict[str, Any]:
    rates = rate_by_group(performing[name], bad, name, seed)
    column = performing[name].astype(str).to_numpy()
    for level, figures in rates.items():
        members = column == level
        figures["bad"] = figures.pop("flagged")
        figures["bad_rate"] = figures.pop("rate")
        figures["bad_rate_interval"] = figures.pop("interval")
        figures["roc_auc"] = roc_auc(good[members], scores[members])
    return rates


def outcomes_report(
    decisions: pd.DataFrame,
    outcomes: pd.DataFrame,
    overrides: pd.DataFrame,
    *,
    window: str = "M",
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
    seed: int = 0,
) -> dict[str, Any]:
    """The outcomes report over decisions made in [start, end), per model version
    and per `window` (a pandas period alias: "D", "W", "M", "Q") of decisions."""
    in_range = decisions
    if start is not None:
        in_range = in_range[in_range[DECIDED_AT] >= start]
    if end is not None:
        in_range = in_range[in_range[DECIDED_AT] < end]
    frame = joined(in_range, outcomes, overrides)
    periods = frame[DECIDED_AT].dt.tz_localize(None).dt.to_period(window).astype(str)
    versions: dict[str, Any] = {}
    for tag in sorted(frame[MODEL_TAG].unique()):
        mine = frame[MODEL_TAG] == tag
        figures = performance(frame[mine], seed)
        figures["windows"] = _windows(frame[mine], periods[mine], seed)
        versions[str(tag)] = figures
    return {
        "selection_bias": SELECTION_BIAS,
        "window": window,
        "start": None if start is None else str(start),
        "end": None if end is None else str(end),
        "decisions": len(frame),
        "decisions_without_outcome": int(frame[OUTCOME].isna().sum()),
        "approved_without_outcome": int(
            ((frame["final_status"] == APPROVED) & frame[OUTCOME].isna()).sum()
        ),
        "overridden": overridden_decisions(frame),
        "versions": versions,
    }


def _share(flags: np.ndarray) -> float | None:
    return number(flags.mean()) if len(flags) else None


def overridden_decisions(frame: pd.DataFrame) -> dict[str, Any]:
    """The overridden decisions, marked: how many, and the first
    MARKED_EXAMPLES (oldest first) with the model's status, the final one and
    the outcome."""
    marked = frame[frame["overridden"]].sort_values(DECIDED_AT, kind="stable")
    examples = [
        {
            DECISION_ID: str(row[DECISION_ID]),
            ID_COLUMN: None if pd.isna(row[ID_COLUMN]) else str(row[ID_COLUMN]),
            MODEL_TAG: str(row[MODEL_TAG]),
            "model_status": str(row[STATUS]),
            "final_status": str(row["final_status"]),
            OUTCOME: None if pd.isna(row[OUTCOME]) else str(row[OUTCOME]),
        }
        for _, row in marked.head(MARKED_EXAMPLES).iterrows()
    ]
    return {"count": len(marked), "examples": examples}


def _windows(frame: pd.DataFrame, periods: pd.Series, seed: int) -> list[dict[str, Any]]:
    """Per period of decisions: its figures and its scores' PSI against the
    version's first period (the baseline a shift is measured from)."""
    rows = []
    baseline: np.ndarray | None = None
    for period in sorted(periods.unique()):
        members = periods == period
        shares = score_shares(frame.loc[members, PROBABILITY].to_numpy(dtype=np.float64))
        if baseline is None:
            baseline = shares
        psi = population_stability_index(baseline.tolist(), shares.tolist())
        figures = performance(frame[members], seed, groups=False)
        rows.append(
            {"period": str(period), **figures, "score_psi": number(psi), "psi_band": band(psi)}
        )
    return rows


def format_outcomes(report: dict[str, Any]) -> str:
    """The report as text for a terminal."""
    lines = [
        report["selection_bias"],
        f"{report['decisions']} decisions; {report['decisions_without_outcome']} have no "
        f"outcome (of them {report['approved_without_outcome']} approved, awaiting one).",
    ]
    for tag, v in report["versions"].items():
        lines += [
            "",
            f"{tag}: {v['decisions']} decisions, {v['approved']} approved "
            f"({v['overridden']} overridden), {v['approved_with_outcome']} approved with an "
            f"outcome ({v['withdrawn']} withdrawn), bad rate {_pct(v['bad_rate'])}, "
            f"ROC AUC {v['roc_auc']}, Brier {v['calibration']['brier']}, "
            f"ECE {v['calibration']['expected_calibration_error']}; bad rate as the model "
            f"approved {_pct(v['bad_rate_not_overridden'])}, as overridden "
            f"{_pct(v['bad_rate_overridden'])}",
            f"  {'period':<10} {'decided':>8} {'approved':>8} {'outcome':>8} "
            f"{'bad rate':>8} {'AUC':>6} {'score PSI':>9}",
        ]
        for w in v["windows"]:
            lines.append(
                f"  {w['period']:<10} {w['decisions']:>8} {w['approved']:>8} "
                f"{w['approved_with_outcome']:>8} {_pct(w['bad_rate']):>8} "
                f"{_text(w['roc_auc']):>6} {w['score_psi']:>9} {w['psi_band']}"
            )
        lines.append("  calibration: P(Y) bin, count, mean P(Y), repaid rate")
        for b in v["calibration"]["bins"]:
            lines.append(
                f"    {b['bin'][0]:.1f}-{b['bin'][1]:.1f} {b['count']:>8} "
                f"{b['mean_probability']:>6} {b['repaid_rate']:>6}"
            )
        for name, groups in v["by_group"].items():
            cells = ", ".join(
                f"{level} {_pct(g['bad_rate'])} [{_pct(g['bad_rate_interval'][0])}, "
                f"{_pct(g['bad_rate_interval'][1])}] n={g['count']} AUC {_text(g['roc_auc'])}"
                for level, g in groups.items()
            )
            lines.append(f"  bad rate by {name}: {cells}")
    marked = report["overridden"]
    if marked["count"]:
        lines += ["", f"overridden decisions: {marked['count']} (model -> final, outcome)"]
        lines += [
            f"  {e['decision_id']} {e['Loan_ID'] or '-'} {e['model_status']} -> "
            f"{e['final_status']}, {e['outcome'] or 'no outcome yet'}"
            for e in marked["examples"]
        ]
        if marked["count"] > len(marked["examples"]):
            lines.append(f"  ... and {marked['count'] - len(marked['examples'])} more")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

"""The training report: metrics JSON and plots of the held-out predictions.

train.py writes one per model into `reports/<version>/` and into the model's own
folder in the store (`report/`), so the evidence travels with the model. The
quality figures are made from the held-out 20% of the rows, scored by the pipeline
that was searched on the other 80%; the fairness figure (approval rate by group)
from the out-of-fold decisions on every row (operations/fairness.py); the stored
model itself is refitted on every row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from sklearn.calibration import CalibrationDisplay, calibration_curve
from sklearn.inspection import permutation_importance
from sklearn.metrics import (
    ConfusionMatrixDisplay,
    RocCurveDisplay,
    confusion_matrix,
    precision_score,
    recall_score,
)
from sklearn.pipeline import Pipeline

from loan_preprocessing.model.search import SEARCH_SCORING
from loan_preprocessing.operations.alternatives import MIN_PROTECTED_AIR
from loan_preprocessing.operations.fairness import DEFAULT_MIN_ADVERSE_IMPACT_RATIO
from loan_preprocessing.schema import APPROVED, FEATURE_COLUMNS, REJECTED

# Folder of the report inside the model's folder in the store.
STORE_REPORT_DIR: Final = "report"
METRICS_FILE: Final = "metrics.json"
ROC_FILE: Final = "roc_curve.png"
CALIBRATION_FILE: Final = "calibration_curve.png"
CONFUSION_FILE: Final = "confusion_matrix.png"
IMPORTANCE_FILE: Final = "permutation_importance.png"
APPROVAL_BY_GROUP_FILE: Final = "approval_by_group.png"
FRONTIER_FILE: Final = "candidate_frontier.png"
CUTOFF_FILE: Final = "cutoff_tradeoff.png"
REPORT_FILES: Final = (
    METRICS_FILE,
    ROC_FILE,
    CALIBRATION_FILE,
    CONFUSION_FILE,
    IMPORTANCE_FILE,
    APPROVAL_BY_GROUP_FILE,
    FRONTIER_FILE,
    CUTOFF_FILE,
)
PERMUTATION_REPEATS: Final = 10
# Quantile bins: about 12 held-out rows per bin on the 614-row data set.
CALIBRATION_BINS: Final = 10
FIGURE_SIZE: Final = (6.4, 5.2)
FIGURE_DPI: Final = 110


@dataclass(frozen=True)
class Holdout:
    """The held-out rows and what the pipeline searched without them made of them."""

    pipeline: Pipeline
    features: pd.DataFrame
    labels: np.ndarray
    probabilities: np.ndarray


@dataclass(frozen=True)
class TrainingReport:
    """Everything the report shows, computed once and written as often as needed."""

    summary: dict[str, Any]
    labels: np.ndarray
    probabilities: np.ndarray
    threshold: float
    importance: pd.DataFrame  # index: input column; columns: mean, std
    fairness: dict[str, Any]  # the audit of operations/fairness.py
    selection: dict[str, Any]  # the frontier and the rule's choice (operations/alternatives.py)
    cutoff: dict[str, Any]  # the out-of-fold trade-off curve and the recorded cutoff


def build_report(
    holdout: Holdout,
    threshold: float,
    metrics: dict[str, float],
    seed: int,
    fairness: dict[str, Any],
    *,
    selection: dict[str, Any],
    cutoff: dict[str, Any],
) -> TrainingReport:
    """Compute the report's numbers; permutation importance shuffles the raw input
    columns (Credit_History, not the derived features), so it speaks the data's terms."""
    y, p = holdout.labels, holdout.probabilities
    decided = (p >= threshold).astype(np.int64)
    importance = permutation_importance(
        holdout.pipeline,
        holdout.features[list(FEATURE_COLUMNS)],
        y,
        scoring=SEARCH_SCORING,
        n_repeats=PERMUTATION_REPEATS,
        random_state=seed,
    )
    table = pd.DataFrame(
        {"mean": importance.importances_mean, "std": importance.importances_std},
        index=list(FEATURE_COLUMNS),
    ).sort_values("mean", ascending=False)
    (tn, fp), (fn, tp) = confusion_matrix(y, decided, labels=[0, 1])
    observed, predicted = calibration_curve(y, p, n_bins=CALIBRATION_BINS, strategy="quantile")
    summary = {
        "metrics": {k: round(v, 4) for k, v in metrics.items()},
        "threshold": threshold,
        "holdout": {
            "rows": len(y),
            "approved_share": round(float(y.mean()), 4),
            "predicted_approved_share": round(float(decided.mean()), 4),
            "precision": round(float(precision_score(y, decided, zero_division=0)), 4),
            "recall": round(float(recall_score(y, decided, zero_division=0)), 4),
            "confusion_matrix": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
            "calibration": {
                "mean_predicted": [round(float(v), 4) for v in predicted],
                "observed_approved": [round(float(v), 4) for v in observed],
            },
        },
        "permutation_importance": {
            "scoring": SEARCH_SCORING,
            "repeats": PERMUTATION_REPEATS,
            "mean": {k: round(float(v), 4) for k, v in table["mean"].items()},
            "std": {k: round(float(v), 4) for k, v in table["std"].items()},
        },
        "fairness": fairness,
        "selection": selection,
        "cutoff": cutoff,
    }
    return TrainingReport(summary, y, p, threshold, table, fairness, selection, cutoff)


def write_report(
    report: TrainingReport, directory: Path, title: str, model_tag: str | None = None
) -> list[Path]:
    """Write metrics JSON and the plots into `directory`; `title` (which names
    the model's tag when it is known) heads every plot."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / METRICS_FILE).write_text(
        json.dumps({"model_tag": model_tag, "title": title, **report.summary}, indent=2) + "\n"
    )
    for name, figure in draw_figures(report, title).items():
        figure.savefig(directory / name)
    return [directory / name for name in REPORT_FILES]


def draw_figures(report: TrainingReport, title: str) -> dict[str, Figure]:
    """The report's plots by file name, each headed by `title`."""
    painters = {
        ROC_FILE: _roc,
        CALIBRATION_FILE: _calibration,
        CONFUSION_FILE: _confusion,
        IMPORTANCE_FILE: _importance,
        APPROVAL_BY_GROUP_FILE: _approval_by_group,
        FRONTIER_FILE: _frontier,
        CUTOFF_FILE: _cutoff,
    }
    figures = {}
    for name, paint in painters.items():
        # A bare Figure, not pyplot: no global state, no display; PNGs come from Agg.
        figure = Figure(figsize=FIGURE_SIZE, dpi=FIGURE_DPI, layout="constrained")
        paint(figure, report)
        figure.suptitle(title, fontsize=9, color="0.3")
        figures[name] = figure
    return figures


def _subtitle(report: TrainingReport) -> str:
    return f"held-out {len(report.labels)} rows"


def _roc(figure: Figure, report: TrainingReport) -> None:
    ax = figure.subplots()
    RocCurveDisplay.from_predictions(
        report.labels, report.probabilities, ax=ax, name="model", plot_chance_level=True
    )
    ax.set_title(f"ROC curve ({_subtitle(report)})")
    ax.set_xlabel("false positive rate (rejected applicants approved)")
    ax.set_ylabel("true positive rate (approved applicants approved)")


def _calibration(figure: Figure, report: TrainingReport) -> None:
    ax = figure.subplots()
    CalibrationDisplay.from_predictions(
        report.labels,
        report.probabilities,
        n_bins=CALIBRATION_BINS,
        strategy="quantile",
        ax=ax,
        name="model",
    )
    ax.set_title(f"Calibration ({_subtitle(report)}, {CALIBRATION_BINS} quantile bins)")
    ax.set_xlabel("mean predicted probability of approval")
    ax.set_ylabel("observed share approved")


def _confusion(figure: Figure, report: TrainingReport) -> None:
    ax = figure.subplots()
    ConfusionMatrixDisplay.from_predictions(
        report.labels,
        (report.probabilities >= report.threshold).astype(np.int64),
        labels=[0, 1],
        display_labels=[REJECTED, APPROVED],
        ax=ax,
        colorbar=False,
    )
    ax.set_title(f"Confusion matrix at threshold {report.threshold:g} ({_subtitle(report)})")
    ax.set_xlabel("predicted Loan_Status")
    ax.set_ylabel("actual Loan_Status")


def _importance(figure: Figure, report: TrainingReport) -> None:
    ax = figure.subplots()
    table = report.importance.iloc[::-1]  # largest at the top
    ax.barh(table.index, table["mean"], xerr=table["std"], color="tab:blue", capsize=3)
    ax.axvline(0.0, color="0.5", linewidth=0.8)
    ax.set_title(f"Permutation importance ({_subtitle(report)}, {PERMUTATION_REPEATS} repeats)")
    ax.set_xlabel(f"drop in {SEARCH_SCORING} when the column is shuffled")
    ax.set_ylabel("input column")


def _approval_by_group(figure: Figure, report: TrainingReport) -> None:
    """One bar per group of each audited attribute, with its bootstrap interval and
    count, and each attribute's four-fifths line (0.8 x its highest rate)."""
    ax = figure.subplots()
    labels, rates, errors, colours = [], [], [], []
    attributes = report.fairness["attributes"]
    for index, (name, result) in enumerate(attributes.items()):
        for group, values in result["groups"].items():
            rate = values["approval_rate"]
            low, high = values.get("approval_rate_interval") or (rate, rate)
            labels.append(f"{name} = {group} (n={values['count']:.0f})")
            rates.append(rate)
            errors.append((rate - low, high - rate))
            colours.append(f"C{index}")
    positions = np.arange(len(labels))[::-1]  # the first attribute at the top
    ax.barh(positions, rates, xerr=np.array(errors).T, color=colours, capsize=3)
    start = 0
    for result in attributes.values():
        groups = list(result["groups"].values())
        if groups:
            floor = DEFAULT_MIN_ADVERSE_IMPACT_RATIO * max(g["approval_rate"] for g in groups)
            rows = positions[start : start + len(groups)]
            ax.vlines(floor, rows.min() - 0.4, rows.max() + 0.4, colors="0.3", linestyles="--")
        start += len(groups)
    ax.set_yticks(positions, labels, fontsize=8)
    ax.set_xlim(0.0, 1.0)
    ax.set_title(f"Approval rate by group ({report.fairness['rows']} rows, out of fold)")
    quantiles = report.fairness["bootstrap"]["quantiles"]
    ax.set_xlabel(
        f"share approved; bars: {quantiles[1] - quantiles[0]:.0%} bootstrap interval; "
        f"dashes: {DEFAULT_MIN_ADVERSE_IMPACT_RATIO} x highest",
        fontsize=8,
    )
    ax.set_ylabel("audited attribute and group")


def _frontier(figure: Figure, report: TrainingReport) -> None:
    """Every candidate as a point (out-of-fold ROC AUC against its minimum adverse
    impact ratio over the protected attributes), the tolerance band, the chosen one."""
    ax = figure.subplots()
    selection = report.selection
    frontier = selection["frontier"]
    best, tolerance = selection["best_roc_auc"], selection["auc_tolerance"]
    ax.axvspan(best - tolerance, best, color="tab:green", alpha=0.15, label="within tolerance")
    for name, point in frontier.items():
        air = point[MIN_PROTECTED_AIR]
        if air is None:
            continue
        chosen = name == selection["chosen"]
        ax.scatter(
            point["roc_auc"],
            air,
            s=90 if chosen else 30,
            marker="*" if chosen else "o",
            color="tab:red" if chosen else "tab:blue",
            zorder=3,
            label="chosen" if chosen else None,
        )
        ax.annotate(
            name, (point["roc_auc"], air), fontsize=7, xytext=(4, 3), textcoords="offset points"
        )
    ax.axhline(DEFAULT_MIN_ADVERSE_IMPACT_RATIO, color="0.3", linestyle="--", linewidth=0.8)
    how = "overridden" if selection["overridden"] else "chosen by the rule"
    ax.set_title(f"Candidates ({len(frontier)}, out of fold; {how})")
    ax.set_xlabel(f"ROC AUC (band: within {tolerance:g} of the best)")
    ax.set_ylabel("lowest adverse impact ratio over the protected attributes")
    ax.legend(fontsize=8, loc="lower left")


def _cutoff(figure: Figure, report: TrainingReport) -> None:
    """The out-of-fold trade-off against the cutoff, the recorded cutoff marked."""
    ax = figure.subplots()
    curve = report.cutoff["curve"]
    cutoffs = [p["cutoff"] for p in curve]
    approval = [p["approval_rate"] for p in curve]
    bad = [
        np.nan if p["approved_rejected_by_lender"] is None else p["approved_rejected_by_lender"]
        for p in curve
    ]
    ax.plot(cutoffs, approval, marker=".", label="share approved")
    ax.plot(cutoffs, bad, marker=".", label="of those approved: share the lender rejected")
    chosen = next(p for p in curve if p["cutoff"] == round(report.cutoff["value"], 4))
    ax.axvline(chosen["cutoff"], color="tab:red", linestyle="--", linewidth=0.8)
    ax.scatter(
        [chosen["cutoff"]] * 2,
        [chosen["approval_rate"], chosen["approved_rejected_by_lender"] or np.nan],
        color="tab:red",
        zorder=3,
        label=f"recorded cutoff {chosen['cutoff']:g}",
    )
    ax.set_ylim(0.0, 1.0)
    ax.set_title(f"Cutoff trade-off ({report.fairness['rows']} rows, out of fold)")
    ax.set_xlabel("cutoff: approve when P(Y) >= cutoff")
    ax.set_ylabel("share")
    ax.legend(fontsize=8, loc="center left")

"""Fairness audit: the model's approval rates by protected group, at training and in production.

    python -m loan_preprocessing.operations.fairness --log predictions.jsonl [--log more.jsonl]
        [--model-tag TAG] [--min-adverse-impact-ratio 0.8] [--fail-below-floor] [--json]

train.py audits every version on out-of-fold decisions that cover every training
row (the search's own folds, so no row is judged by a model that saw it) and
stores the audit in the model's metadata. For each audited attribute (the
protected ones, and `Property_Area` as a proxy) and each of its groups: count,
approval (selection) rate, true and false positive rate, computed with fairlearn's
MetricFrame; per attribute the adverse impact ratio (lowest approval rate over the
highest: the "four-fifths rule" flags < 0.8) and the equal-opportunity difference
(largest gap in true positive rate). The groups are small (112 women in 614 rows),
so every rate comes with a seeded bootstrap interval and its count.

Run on prediction logs, the same audit (approval rates only: production has
decisions, not outcomes) is set beside the model's training audit, so a shift in
who gets approved shows up before complaints do.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
from fairlearn.metrics import (
    MetricFrame,
    count,
    false_positive_rate,
    selection_rate,
    true_positive_rate,
)

from loan_preprocessing.model.store import ModelLoadError, get_model
from loan_preprocessing.operations.drift import read_source, single_model_tag
from loan_preprocessing.operations.group_rates import (
    ADVERSE_IMPACT_RATIO,
    APPROVAL_RATE,
    AUDITED_ATTRIBUTES,
    BOOTSTRAP_SAMPLES,
    EQUAL_OPPORTUNITY_DIFFERENCE,
    INTERVAL_QUANTILES,
    TRUE_POSITIVE_RATE,
    bootstrap_rates,
)
from loan_preprocessing.schema import CATEGORY_LEVELS, PROTECTED_ATTRIBUTES

# The model's metadata section holding its training audit.
FAIRNESS_KEY: Final = "fairness"
# The four-fifths rule of the US Uniform Guidelines, the usual screen for adverse impact.
DEFAULT_MIN_ADVERSE_IMPACT_RATIO: Final = 0.8
EXIT_BELOW_FLOOR: Final = 3
DIGITS: Final = 4
# Metric names, as stored (the rest in group_rates.py).
COUNT, FALSE_POSITIVE_RATE = "count", "false_positive_rate"
INTERVAL_SUFFIX = "_interval"


def audit_decisions(
    applications: pd.DataFrame,
    approved: np.ndarray,
    outcomes: np.ndarray | None,
    seed: int,
    source: str,
) -> dict[str, Any]:
    """The audit of `approved` (1 = approved) over the AUDITED_ATTRIBUTES columns of
    `applications`, as plain JSON data. With `outcomes` (1 = approved in the data)
    the error rates are audited too; without, only who gets approved."""
    decided = np.asarray(approved, dtype=np.int64)
    truth = None if outcomes is None else np.asarray(outcomes, dtype=np.int64)
    return {
        "source": source,
        "rows": len(decided),
        "bootstrap": {
            "samples": BOOTSTRAP_SAMPLES,
            "quantiles": list(INTERVAL_QUANTILES),
            "seed": seed,
        },
        "attributes": {
            name: audit_attribute(name, applications[name], decided, truth, seed)
            for name in AUDITED_ATTRIBUTES
        },
    }


def audit_attribute(
    name: str, column: pd.Series, approved: np.ndarray, outcomes: np.ndarray | None, seed: int
) -> dict[str, Any]:
    """One attribute's groups and gaps. Rows that do not state it are counted but
    not grouped: "not stated" is no group of people, and it is a handful of rows."""
    stated = column.notna().to_numpy()
    groups = pd.Series(column[stated].astype(str).to_numpy(), name=name)
    y_pred = approved[stated]
    # Approval rates do not look at outcomes; fairlearn still wants a y_true.
    y_true = y_pred if outcomes is None else outcomes[stated]
    metrics: dict[str, Any] = {COUNT: count, APPROVAL_RATE: selection_rate}
    if outcomes is not None:
        metrics |= {
            TRUE_POSITIVE_RATE: true_positive_rate,
            FALSE_POSITIVE_RATE: false_positive_rate,
        }
    result: dict[str, Any] = {
        "protected": name in PROTECTED_ATTRIBUTES,
        "stands_for": AUDITED_ATTRIBUTES[name],
        "not_stated": int((~stated).sum()),
        ADVERSE_IMPACT_RATIO: None,
        "groups": {},
    }
    if outcomes is not None:
        result[EQUAL_OPPORTUNITY_DIFFERENCE] = None
    if not len(groups):
        return result
    frame = MetricFrame(metrics=metrics, y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    by_group = frame.by_group
    levels = [g for g in CATEGORY_LEVELS.get(name, ()) if g in by_group.index]
    levels += sorted(set(by_group.index) - set(levels))
    result["groups"] = {
        level: {metric: _number(by_group.loc[level, metric]) for metric in metrics}
        for level in levels
    }
    if len(levels) < 2:
        return result  # one group alone has no one to be compared with
    result[ADVERSE_IMPACT_RATIO] = _number(frame.ratio()[APPROVAL_RATE])
    if outcomes is not None:
        result[EQUAL_OPPORTUNITY_DIFFERENCE] = _number(frame.difference()[TRUE_POSITIVE_RATE])
    codes = pd.Categorical(groups, categories=levels).codes
    rng = np.random.default_rng([seed, list(AUDITED_ATTRIBUTES).index(name)])
    resampled = bootstrap_rates(codes, len(levels), y_pred, y_true, rng)
    per_group = [APPROVAL_RATE] if outcomes is None else [APPROVAL_RATE, TRUE_POSITIVE_RATE]
    for metric in per_group:
        bounds = np.nanquantile(resampled[metric], INTERVAL_QUANTILES, axis=0)
        for index, level in enumerate(levels):
            interval = [_number(bounds[0, index]), _number(bounds[1, index])]
            result["groups"][level][metric + INTERVAL_SUFFIX] = interval
    for metric in (ADVERSE_IMPACT_RATIO, EQUAL_OPPORTUNITY_DIFFERENCE):
        if metric in result:
            bounds = np.nanquantile(resampled[metric], INTERVAL_QUANTILES)
            result[metric + INTERVAL_SUFFIX] = [_number(b) for b in bounds]
    return result


def below_floor(audit: Mapping[str, Any], floor: float) -> list[str]:
    """One line per protected attribute whose adverse impact ratio is below `floor`.
    The proxy is audited and reported but never blocks: where the property is may
    legitimately bear on a loan, and a human must judge whether it stands in for a
    protected group."""
    problems = []
    for name, result in audit["attributes"].items():
        ratio = result.get(ADVERSE_IMPACT_RATIO)
        if result["protected"] and ratio is not None and ratio < floor:
            rates = ", ".join(f"{g} {v[APPROVAL_RATE]:.3f}" for g, v in result["groups"].items())
            problems.append(
                f"{name} ({result['stands_for']}): adverse impact ratio {ratio:.3f} is below "
                f"{floor:.2f} (approval rates {rates})"
            )
    return problems


def _number(value: Any) -> float | None:
    """A rounded Python float, None for NaN (a rate of an empty set)."""
    number = float(value)
    return None if math.isnan(number) else round(number, DIGITS)


def format_audit(audit: Mapping[str, Any]) -> str:
    """The audit as an aligned table: one line per group, one per attribute's gaps."""
    lines = [
        f"{'attribute':14s} {'group':13s} {'n':>5s}  {'approval (95% CI)':24s} "
        f"{'TPR':>6s} {'FPR':>6s}"
    ]
    for name, result in audit["attributes"].items():
        for group, values in result["groups"].items():
            lines.append(
                f"{name:14s} {group:13s} {values[COUNT]:5.0f}  "
                f"{with_interval(values, APPROVAL_RATE):24s} "
                f"{rate_text(values.get(TRUE_POSITIVE_RATE)):>6s} "
                f"{rate_text(values.get(FALSE_POSITIVE_RATE)):>6s}"
            )
        lines.append(f"{'':14s} {_gaps(result)}")
    return "\n".join(lines)


def _gaps(result: Mapping[str, Any]) -> str:
    kind = "protected" if result["protected"] else "proxy, reported only"
    text = f"adverse impact ratio {with_interval(result, ADVERSE_IMPACT_RATIO)}"
    if EQUAL_OPPORTUNITY_DIFFERENCE in result:
        text += f"; TPR gap {with_interval(result, EQUAL_OPPORTUNITY_DIFFERENCE)}"
    return f"{text}; {result['not_stated']} not stated ({kind})"


def rate_text(value: float | None) -> str:
    """A rate to 3 decimals, "-" when there is none."""
    return "-" if value is None else f"{value:.3f}"


def with_interval(values: Mapping[str, Any], metric: str) -> str:
    """ "0.812 (0.741-0.885)": a figure and its interval, when it has one."""
    interval = values.get(metric + INTERVAL_SUFFIX)
    text = rate_text(values.get(metric))
    if interval and None not in interval:
        text += f" ({interval[0]:.3f}-{interval[1]:.3f})"
    return text


def compare_with_training(training: Mapping[str, Any], current: Mapping[str, Any]) -> str:
    """Approval rates by group: the model's training audit beside a log's."""
    lines = [
        f"{'attribute':14s} {'group':13s} {'training (95% CI)':24s} {'n':>5s}  "
        f"{'log (95% CI)':24s} {'n':>5s} {'change':>7s}"
    ]
    for name, now in current["attributes"].items():
        then = training["attributes"].get(name, {"groups": {}})
        for group in [*then["groups"], *(g for g in now["groups"] if g not in then["groups"])]:
            before, after = then["groups"].get(group, {}), now["groups"].get(group, {})
            change = (
                f"{after[APPROVAL_RATE] - before[APPROVAL_RATE]:+.3f}"
                if before.get(APPROVAL_RATE) is not None and after.get(APPROVAL_RATE) is not None
                else "-"
            )
            lines.append(
                f"{name:14s} {group:13s} {with_interval(before, APPROVAL_RATE):24s} "
                f"{before.get(COUNT, 0):5.0f}  {with_interval(after, APPROVAL_RATE):24s} "
                f"{after.get(COUNT, 0):5.0f} {change:>7s}"
            )
        lines.append(
            f"{'':14s} adverse impact ratio: training "
            f"{with_interval(then, ADVERSE_IMPACT_RATIO)}, log "
            f"{with_interval(now, ADVERSE_IMPACT_RATIO)}"
        )
    return "\n".join(lines)


def training_audit(tag: str) -> tuple[str, dict[str, Any]]:
    """(full tag, training audit) of a stored model."""
    model = get_model(tag)
    audit = model.info.metadata.get(FAIRNESS_KEY)
    if not isinstance(audit, Mapping):
        raise ValueError(f"model {model.tag} has no fairness audit (trained before audits)")
    return str(model.tag), dict(audit)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.operations.fairness",
        description="Approval rates by protected group in prediction logs, against the "
        "model's training audit.",
    )
    parser.add_argument(
        "--log",
        type=Path,
        action="append",
        help="a JSON-lines export of decision records (make decisions-export); repeatable. "
        "Default: the service's decision store (LOAN_DECISION_STORE_URL)",
    )
    parser.add_argument(
        "--model-tag",
        help="compare with this model's training audit (default: the model the logs name)",
    )
    parser.add_argument(
        "--min-adverse-impact-ratio",
        type=float,
        default=DEFAULT_MIN_ADVERSE_IMPACT_RATIO,
        help="flag a protected attribute whose ratio in the logs is below this "
        "(default %(default)s, the four-fifths rule)",
    )
    parser.add_argument(
        "--fail-below-floor",
        action="store_true",
        help=f"exit {EXIT_BELOW_FLOOR} when a protected attribute is flagged",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from loan_preprocessing.environment import apply_project_defaults

    apply_project_defaults()
    try:
        logged, source = read_source(args.log)
        tag, training = training_audit(args.model_tag or single_model_tag(logged.model_tags))
    except (OSError, ValueError, RuntimeError, ModelLoadError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    seed = int(training.get("bootstrap", {}).get("seed", 0))
    current = audit_decisions(
        logged.features, logged.approved, None, seed, f"decisions in {source}"
    )
    flagged = below_floor(current, args.min_adverse_impact_ratio)
    if args.json:
        print(
            json.dumps({"model_tag": tag, "training": training, "log": current, "flagged": flagged})
        )
    else:
        print(f"training: {tag}, {training['source']} ({training['rows']} rows)")
        print(
            f"log:      {current['rows']} decisions from {len(args.log)} log file(s), "
            f"{logged.first_time} to {logged.last_time}"
        )
        print(compare_with_training(training, current))
        for line in flagged:
            print(f"FLAG {line}")
        if not flagged:
            print(
                "no protected attribute's adverse impact ratio in the logs is below "
                f"{args.min_adverse_impact_ratio:.2f}"
            )
    return EXIT_BELOW_FLOOR if flagged and args.fail_below_floor else 0


if __name__ == "__main__":
    sys.exit(main())

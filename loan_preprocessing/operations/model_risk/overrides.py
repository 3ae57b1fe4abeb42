"""Overrides report: how often people change the model's decisions, which way,
for whom, and why.

An override is a person's final decision on an application the model decided;
the log is append-only and the model's decision is never altered, so the report
reads each decision's latest override. Rates are over the decisions the model
made in that direction: N->Y overrides per model rejection, Y->N per approval.
"""

from __future__ import annotations

from typing import Any, Final

import pandas as pd

from loan_preprocessing.operations.model_risk.frames import (
    DECISION_ID,
    DIRECTIONS,
    FINAL_STATUS,
    GROUP_ATTRIBUTES,
    MODEL_TAG,
    RATIONALE,
    STATUS,
    latest_overrides,
    number,
    rate_by_group,
)
from loan_preprocessing.schema import REJECTED

TOP_RATIONALES: Final = 10


def overridden_direction(decisions: pd.DataFrame, overrides: pd.DataFrame) -> pd.Series:
    """Per decision: "N->Y" or "Y->N" when its latest override changed it, else None.
    An override that restates the model's decision changes nothing."""
    last = latest_overrides(overrides)
    direction = pd.Series([None] * len(decisions), index=decisions.index, dtype=object)
    if last.empty:
        return direction
    final = decisions[DECISION_ID].map(last.set_index(DECISION_ID)[FINAL_STATUS])
    changed = final.notna() & (final != decisions[STATUS])
    direction[changed] = decisions.loc[changed, STATUS] + "->" + final[changed]
    return direction


def _direction_rates(decisions: pd.DataFrame, direction: pd.Series) -> dict[str, Any]:
    result = {}
    for name in DIRECTIONS:
        model_status = name.split("->")[0]
        eligible = int((decisions[STATUS] == model_status).sum())
        count = int((direction == name).sum())
        result[name] = {
            "overrides": count,
            "model_decisions": eligible,
            "rate": number(count / eligible) if eligible else None,
        }
    return result


def overrides_report(
    decisions: pd.DataFrame, overrides: pd.DataFrame, *, seed: int = 0, top: int = TOP_RATIONALES
) -> dict[str, Any]:
    """Override rates by direction, by model version and by group, and the most
    common rationales (exact texts, case and surrounding space ignored)."""
    direction = overridden_direction(decisions, overrides)
    versions = {
        str(tag): _direction_rates(
            decisions[decisions[MODEL_TAG] == tag], direction[decisions[MODEL_TAG] == tag]
        )
        for tag in sorted(decisions[MODEL_TAG].unique())
    }
    by_group: dict[str, Any] = {}
    for name in GROUP_ATTRIBUTES:
        if name not in decisions:
            continue
        by_group[name] = {}
        for label in DIRECTIONS:
            model_status = label.split("->")[0]
            eligible = (decisions[STATUS] == model_status).to_numpy()
            flags = (direction[eligible] == label).to_numpy()
            by_group[name][label] = rate_by_group(decisions.loc[eligible, name], flags, name, seed)
    known = decisions[DECISION_ID]
    rationales = (
        latest_overrides(overrides)
        .loc[lambda o: o[DECISION_ID].isin(known)]
        .assign(
            direction=lambda o: o[DECISION_ID].map(pd.Series(direction.to_numpy(), index=known))
        )
    )
    changed = rationales[rationales["direction"].notna()]
    texts = changed[RATIONALE].astype(str).str.strip().str.lower()
    common = texts.value_counts().head(top)
    by_text_direction = {
        label: changed.loc[changed["direction"] == label, RATIONALE]
        .astype(str)
        .str.strip()
        .str.lower()
        .value_counts()
        .head(top)
        .to_dict()
        for label in DIRECTIONS
    }
    return {
        "decisions": len(decisions),
        "overridden": int(direction.notna().sum()),
        "overrides_logged": len(overrides),
        "by_direction": _direction_rates(decisions, direction),
        "versions": versions,
        "by_group": by_group,
        "rationales": {str(text): int(n) for text, n in common.items()},
        "rationales_by_direction": {
            label: {str(t): int(n) for t, n in counts.items()}
            for label, counts in by_text_direction.items()
        },
    }


def format_overrides(report: dict[str, Any]) -> str:
    lines = [
        f"{report['decisions']} decisions, {report['overridden']} changed by an override "
        f"({report['overrides_logged']} overrides logged).",
    ]
    for label, figures in report["by_direction"].items():
        lines.append(
            f"  {label}: {figures['overrides']} of {figures['model_decisions']} model "
            f"{'rejections' if label.startswith(REJECTED) else 'approvals'} "
            f"({_pct(figures['rate'])})"
        )
    for tag, directions in report["versions"].items():
        cells = ", ".join(
            f"{label} {_pct(d['rate'])} ({d['overrides']})" for label, d in directions.items()
        )
        lines.append(f"{tag}: {cells}")
    for name, directions in report["by_group"].items():
        for label, groups in directions.items():
            cells = ", ".join(
                f"{level} {_pct(g['rate'])} [{_pct(g['interval'][0])}, "
                f"{_pct(g['interval'][1])}] n={g['count']}"
                for level, g in groups.items()
            )
            lines.append(f"  {label} by {name}: {cells}")
    lines.append("most common rationales:")
    for text, n in report["rationales"].items():
        lines.append(f"  {n:>6}  {text}")
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"

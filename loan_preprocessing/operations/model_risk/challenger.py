"""Challenger report: the served version (champion) and the one scored in shadow
(challenger), compared on the same applications.

Only decisions both versions scored are compared. Flips are the applications
the two decide differently (champion->challenger: N->Y, Y->N). Approval rates
and adverse impact ratios by group are given for both, with the change. Where
outcomes exist (approved applications only: see the outcomes report), both
versions' ROC AUC is computed on the same rows, and the bad rate of what each
would approve among them.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from loan_preprocessing.operations.model_risk.frames import (
    DECISION_ID,
    DIRECTIONS,
    GROUP_ATTRIBUTES,
    MODEL_TAG,
    OUTCOME,
    PROBABILITY,
    REASONS,
    STATUS,
    adverse_impact_ratio,
    is_bad,
    number,
    rate_by_group,
    reason_counts,
)
from loan_preprocessing.operations.model_risk.outcomes import joined, roc_auc
from loan_preprocessing.schema import APPROVED, NO_PERFORMANCE_OUTCOMES

EXAMPLES: Final = 5
CHAMPION, CHALLENGER = "champion", "challenger"
SUFFIX: Final = "_challenger"


def paired(decisions: pd.DataFrame, challenger: pd.DataFrame) -> pd.DataFrame:
    """Champion decisions with the challenger's beside them (columns suffixed
    SUFFIX), only where the challenger scored."""
    scored = challenger[challenger[STATUS].notna()]
    shadow = scored[[DECISION_ID, MODEL_TAG, STATUS, PROBABILITY, REASONS]].add_suffix(SUFFIX)
    return decisions.merge(
        shadow, left_on=DECISION_ID, right_on=DECISION_ID + SUFFIX, how="inner", validate="1:1"
    )


def challenger_report(
    decisions: pd.DataFrame,
    challenger: pd.DataFrame,
    outcomes: pd.DataFrame,
    overrides: pd.DataFrame,
    *,
    seed: int = 0,
    examples: int = EXAMPLES,
) -> dict[str, Any]:
    """The comparison, as plain JSON data."""
    both = paired(decisions, challenger)
    champion_ok = (both[STATUS] == APPROVED).to_numpy()
    challenger_ok = (both[STATUS + SUFFIX] == APPROVED).to_numpy()
    flip = both[STATUS] + "->" + both[STATUS + SUFFIX]
    flips = {}
    for label in DIRECTIONS:
        rows = both[flip == label]
        flips[label] = {
            "count": len(rows),
            "examples": [_example(row) for _, row in rows.head(examples).iterrows()],
        }
    groups: dict[str, Any] = {}
    for name in GROUP_ATTRIBUTES:
        if name not in both:
            continue
        ours = rate_by_group(both[name], champion_ok, name, seed)
        theirs = rate_by_group(both[name], challenger_ok, name, seed)
        groups[name] = {
            "champion": ours,
            "challenger": theirs,
            "change": {
                level: number(
                    (theirs[level]["flagged"] - ours[level]["flagged"]) / ours[level]["count"]
                )
                for level in ours
            },
            "adverse_impact_ratio": {
                CHAMPION: adverse_impact_ratio(ours),
                CHALLENGER: adverse_impact_ratio(theirs),
            },
        }
        air = groups[name]["adverse_impact_ratio"]
        air["change"] = (
            number(air[CHALLENGER] - air[CHAMPION])
            if air[CHAMPION] is not None and air[CHALLENGER] is not None
            else None
        )
    champion_tags = sorted(both[MODEL_TAG].unique().astype(str))
    challenger_tags = sorted(both[MODEL_TAG + SUFFIX].unique().astype(str))
    return {
        "champion_tags": champion_tags,
        "challenger_tags": challenger_tags,
        "decisions": len(decisions),
        "compared": len(both),
        "not_scored_by_challenger": len(decisions) - len(both),
        "approval_rate": {
            CHAMPION: number(champion_ok.mean()) if len(both) else None,
            CHALLENGER: number(challenger_ok.mean()) if len(both) else None,
            "change": number(challenger_ok.mean() - champion_ok.mean()) if len(both) else None,
        },
        "flips": flips,
        "by_group": groups,
        "reasons": {
            CHAMPION: reason_counts(both.loc[~champion_ok, REASONS]),
            CHALLENGER: reason_counts(both.loc[~challenger_ok, REASONS + SUFFIX]),
        },
        "outcomes": _on_outcomes(both, outcomes, overrides),
    }


def _example(row: pd.Series) -> dict[str, Any]:
    example = {
        DECISION_ID: str(row[DECISION_ID]),
        "champion_probability": number(row[PROBABILITY]),
        "challenger_probability": number(row[PROBABILITY + SUFFIX]),
        "champion_reasons": str(row[REASONS] or ""),
        "challenger_reasons": str(row[REASONS + SUFFIX] or ""),
    }
    if "Loan_ID" in row and isinstance(row["Loan_ID"], str):
        example["Loan_ID"] = row["Loan_ID"]
    return example


def _on_outcomes(
    both: pd.DataFrame, outcomes: pd.DataFrame, overrides: pd.DataFrame
) -> dict[str, Any]:
    """Both versions on the approved applications that have a repayment outcome."""
    frame = joined(both, outcomes, overrides)
    rows = frame[
        (frame["final_status"] == APPROVED)
        & frame[OUTCOME].notna()
        & ~frame[OUTCOME].isin(NO_PERFORMANCE_OUTCOMES)
    ]
    bad = is_bad(rows[OUTCOME])
    good = (~bad).astype(np.int64)
    champion_ok = (rows[STATUS] == APPROVED).to_numpy()
    challenger_ok = (rows[STATUS + SUFFIX] == APPROVED).to_numpy()
    return {
        "rows": len(rows),
        "bad": int(bad.sum()),
        CHAMPION: {
            "roc_auc": roc_auc(good, rows[PROBABILITY].to_numpy(dtype=np.float64)),
            "approves": int(champion_ok.sum()),
            "bad_rate_of_approved": number(bad[champion_ok].mean()) if champion_ok.any() else None,
        },
        CHALLENGER: {
            "roc_auc": roc_auc(good, rows[PROBABILITY + SUFFIX].to_numpy(dtype=np.float64)),
            "approves": int(challenger_ok.sum()),
            "bad_rate_of_approved": number(bad[challenger_ok].mean())
            if challenger_ok.any()
            else None,
        },
    }


def format_challenger(report: dict[str, Any]) -> str:
    rate = report["approval_rate"]
    lines = [
        f"champion {', '.join(report['champion_tags'])} vs challenger "
        f"{', '.join(report['challenger_tags'])}: {report['compared']} decisions compared "
        f"({report['not_scored_by_challenger']} not scored by the challenger)",
        f"approval rate {_pct(rate[CHAMPION])} -> {_pct(rate[CHALLENGER])} "
        f"(change {_signed(rate['change'])})",
    ]
    for label, flip in report["flips"].items():
        lines.append(f"flips {label}: {flip['count']}")
        for example in flip["examples"]:
            lines.append(
                f"    {example.get('Loan_ID', example[DECISION_ID])}: "
                f"P(Y) {example['champion_probability']} -> {example['challenger_probability']} "
                f"reasons [{example['champion_reasons']}] -> [{example['challenger_reasons']}]"
            )
    for name, figures in report["by_group"].items():
        air = figures["adverse_impact_ratio"]
        cells = ", ".join(
            f"{level} {_pct(figures['champion'][level]['rate'])} -> "
            f"{_pct(figures['challenger'][level]['rate'])} "
            f"(n={figures['champion'][level]['count']})"
            for level in figures["champion"]
        )
        lines.append(
            f"approval by {name}: {cells}; adverse impact ratio {air[CHAMPION]} -> "
            f"{air[CHALLENGER]}"
        )
    for who in (CHAMPION, CHALLENGER):
        counts = ", ".join(f"{code} {n}" for code, n in report["reasons"][who].items())
        lines.append(f"reasons given by the {who}: {counts or '-'}")
    seen = report["outcomes"]
    lines.append(
        f"on {seen['rows']} approved applications with a repayment outcome ({seen['bad']} bad):"
    )
    for who in (CHAMPION, CHALLENGER):
        lines.append(
            f"  {who}: ROC AUC {seen[who]['roc_auc']}, approves {seen[who]['approves']}, "
            f"bad rate of those {_pct(seen[who]['bad_rate_of_approved'])}"
        )
    return "\n".join(lines)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _signed(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:+.1f} points"

"""The tables the model-risk reports read, as pandas frames, and what they share.

Every report is a pure function of these frames, so it can be tested on frames
built by hand and run on whatever the decision store exports:

- decisions: one row per answered decision: DECISION_ID, MODEL_TAG, DECIDED_AT,
  STATUS (Y/N), PROBABILITY (P(Y)), REASONS (codes joined by ";"), and the
  application's GROUP_ATTRIBUTES columns (None/NaN where not stated).
- outcomes: DECISION_ID, OUTCOME (one of schema.OUTCOMES), OBSERVED_ON.
- overrides: DECISION_ID, PERSON, RATIONALE, FINAL_STATUS, OVERRIDDEN_AT;
  append-only, so the latest row of a decision is its final word.
- challenger: DECISION_ID, MODEL_TAG, STATUS, PROBABILITY, REASONS (the shadow
  decision beside the champion's; STATUS None where it could not score).
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np
import pandas as pd

from loan_preprocessing.operations.group_rates import (
    APPROVAL_RATE,
    AUDITED_ATTRIBUTES,
    INTERVAL_QUANTILES,
    bootstrap_rates,
)
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import APPROVED, BAD_OUTCOMES, CATEGORY_LEVELS, REJECTED

DECISION_ID: Final = "decision_id"
MODEL_TAG: Final = "model_tag"
DECIDED_AT: Final = "decided_at"
STATUS: Final = "Loan_Status"
PROBABILITY: Final = "probability"
REASONS: Final = "reasons"
OUTCOME: Final = "outcome"
OBSERVED_ON: Final = "observed_on"
PERSON: Final = "person"
RATIONALE: Final = "rationale"
FINAL_STATUS: Final = "final_status"
OVERRIDDEN_AT: Final = "overridden_at"
# The groups every report breaks its figures down by (protected and proxy).
GROUP_ATTRIBUTES: Final = tuple(AUDITED_ATTRIBUTES)
DIRECTIONS: Final = (f"{REJECTED}->{APPROVED}", f"{APPROVED}->{REJECTED}")
DIGITS: Final = 4


def number(value: Any) -> float | None:
    """A JSON-safe rounded float (None for NaN or None)."""
    if value is None:
        return None
    value = float(value)
    return None if np.isnan(value) else round(value, DIGITS)


def latest_overrides(overrides: pd.DataFrame) -> pd.DataFrame:
    """Each overridden decision's last override (the append-only log's final word)."""
    if overrides.empty:
        return overrides
    ordered = overrides.sort_values(OVERRIDDEN_AT, kind="stable")
    return ordered.drop_duplicates(DECISION_ID, keep="last")


def final_statuses(decisions: pd.DataFrame, overrides: pd.DataFrame) -> pd.Series:
    """The decision that stands for each row of `decisions`: an override's final
    status where one exists, the model's otherwise (index as `decisions`)."""
    final = decisions[STATUS].copy()
    last = latest_overrides(overrides)
    if last.empty:
        return final
    by_id = last.set_index(DECISION_ID)[FINAL_STATUS]
    overridden = decisions[DECISION_ID].map(by_id)
    return overridden.where(overridden.notna(), final)


def is_bad(outcomes: pd.Series) -> np.ndarray:
    return outcomes.isin(BAD_OUTCOMES).to_numpy()


def group_levels(name: str, column: pd.Series) -> list[str]:
    """The stated levels of `column`, in the schema's order, then any others."""
    present = set(column.dropna().astype(str).unique())
    levels = [level for level in CATEGORY_LEVELS.get(name, ()) if level in present]
    return levels + sorted(present - set(levels))


def rate_by_group(
    column: pd.Series, flags: np.ndarray, name: str, seed: int
) -> dict[str, dict[str, Any]]:
    """Per stated level of `column`: count, how many have `flags` set ("flagged"),
    their share ("rate") and its bootstrap interval (fairness.py's multinomial
    row bootstrap, seeded).
    Rows that do not state the attribute are left out, as in the fairness audit."""
    stated = column.notna().to_numpy()
    levels = group_levels(name, column)
    if not levels:
        return {}
    groups = column[stated].astype(str)
    codes = pd.Categorical(groups, categories=levels).codes.astype(np.int64)
    hits = np.asarray(flags, dtype=np.int64)[stated]
    rng = np.random.default_rng([seed, GROUP_ATTRIBUTES.index(name)])
    resampled = bootstrap_rates(codes, len(levels), hits, np.zeros_like(hits), rng)[APPROVAL_RATE]
    bounds = np.nanquantile(resampled, INTERVAL_QUANTILES, axis=0)
    result = {}
    for index, level in enumerate(levels):
        members = codes == index
        result[level] = {
            "count": int(members.sum()),
            "flagged": int(hits[members].sum()),
            "rate": number(hits[members].mean()) if members.any() else None,
            "interval": [number(bounds[0, index]), number(bounds[1, index])],
        }
    return result


def adverse_impact_ratio(rates: dict[str, dict[str, Any]]) -> float | None:
    """Lowest group rate over the highest (the four-fifths rule's ratio), from
    the counts (not the rounded rates)."""
    values = [g["flagged"] / g["count"] for g in rates.values() if g["count"]]
    if len(values) < 2 or max(values) == 0:
        return None
    return number(min(values) / max(values))


def reason_counts(reasons: pd.Series) -> dict[str, int]:
    """How often each reason code is given, most frequent first."""
    # Each distinct list of codes split once (a million decisions hold a few
    # hundred), weighted by how many decisions gave it.
    codes = reasons.dropna().astype(str)
    counts: dict[str, int] = {}
    for joined, n in codes[codes != ""].value_counts(sort=False).items():
        for code in str(joined).split(REASON_SEPARATOR):
            counts[code] = counts.get(code, 0) + int(n)
    return dict(sorted(counts.items(), key=lambda item: -item[1]))

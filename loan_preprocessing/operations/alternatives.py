"""The search for less discriminatory alternatives, the proxy test and the cutoff curve.

Every candidate of the declared search space (search.CANDIDATES) is scored on the
same out-of-fold predictions: ROC AUC, accuracy, Brier score, and the fairness
audit of its decisions at the model's cutoff (operations/fairness.py: approval
rate, adverse impact ratio and true-positive-rate gap per group, with bootstrap
intervals). The stated rule then picks one, in code:

    among the candidates whose ROC AUC is within `tolerance` of the best (business
    necessity), the one with the largest minimum adverse impact ratio over the
    protected attributes; ties by ROC AUC, then by the declared order.

The proxy test asks, for each field the model may read and for all of them
together, how well it predicts each protected attribute (cross-validated ROC AUC),
and reads the substitution analysis off the frontier: what leaving that field out
costs in AUC and does to each group's approval rate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict

from loan_preprocessing.model.features import DERIVED_FROM
from loan_preprocessing.model.search import ALL_INPUTS, CandidateResult, without
from loan_preprocessing.operations.fairness import (
    ADVERSE_IMPACT_RATIO,
    APPROVAL_RATE,
    EQUAL_OPPORTUNITY_DIFFERENCE,
    INTERVAL_SUFFIX,
    audit_decisions,
)
from loan_preprocessing.schema import CATEGORICAL_COLUMNS, CATEGORY_LEVELS, PROTECTED_ATTRIBUTES

# Metadata sections.
SELECTION_KEY: Final = "selection"
PROXY_TEST_KEY: Final = "proxy_test"
CUTOFF_KEY: Final = "cutoff"
DEFAULT_AUC_TOLERANCE: Final = 0.005
MIN_PROTECTED_AIR: Final = "min_protected_adverse_impact_ratio"
RULE: Final = (
    "among the candidates whose out-of-fold ROC AUC is within the tolerance of the best, "
    "the one with the largest minimum adverse impact ratio over the protected attributes "
    f"({', '.join(PROTECTED_ATTRIBUTES)}); ties by ROC AUC, then by the declared order"
)
# The proxy test's own small model: each attribute from each field, 5-fold CV.
PROXY_FOLDS: Final = 5
PROXY_TREES: Final = 100
# The cutoffs of the trade-off curve (besides the chosen one).
CURVE_CUTOFFS: Final = tuple(round(0.05 * k, 2) for k in range(1, 20))
DIGITS: Final = 4


def score_candidate(
    applications: pd.DataFrame,
    target: np.ndarray,
    result: CandidateResult,
    cutoff: float,
    seed: int,
) -> dict[str, Any]:
    """One point of the frontier: quality and the audit of its out-of-fold decisions."""
    p = result.out_of_fold
    audit = audit_decisions(applications, p >= cutoff, target, seed, "out of fold")
    attributes = {
        name: {
            "protected": value["protected"],
            ADVERSE_IMPACT_RATIO: value[ADVERSE_IMPACT_RATIO],
            ADVERSE_IMPACT_RATIO + INTERVAL_SUFFIX: value.get(
                ADVERSE_IMPACT_RATIO + INTERVAL_SUFFIX
            ),
            EQUAL_OPPORTUNITY_DIFFERENCE: value.get(EQUAL_OPPORTUNITY_DIFFERENCE),
            "approval_rates": {g: v[APPROVAL_RATE] for g, v in value["groups"].items()},
        }
        for name, value in audit["attributes"].items()
    }
    protected = [
        a[ADVERSE_IMPACT_RATIO]
        for a in attributes.values()
        if a["protected"] and a[ADVERSE_IMPACT_RATIO] is not None
    ]
    return {
        "features": list(result.candidate.features),
        "dropped": list(result.candidate.dropped),
        "hyperparameters": {k: _plain(v) for k, v in result.params.items()},
        "roc_auc": _round(roc_auc_score(target, p)),
        "accuracy": _round(accuracy_score(target, p >= cutoff)),
        "brier": _round(brier_score_loss(target, p)),
        APPROVAL_RATE: _round(np.mean(p >= cutoff)),
        MIN_PROTECTED_AIR: min(protected) if protected else None,
        "attributes": attributes,
    }


def score_frontier(
    applications: pd.DataFrame,
    target: np.ndarray,
    results: Sequence[CandidateResult],
    cutoff: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """Every candidate's point, by name, in the declared order."""
    return {
        r.candidate.name: score_candidate(applications, target, r, cutoff, seed) for r in results
    }


def select(
    frontier: Mapping[str, Mapping[str, Any]],
    tolerance: float = DEFAULT_AUC_TOLERANCE,
    override: str | None = None,
) -> dict[str, Any]:
    """The stated rule applied to the frontier; `override` keeps that candidate
    instead, and the record says by what margin it departs from the rule's choice."""
    if override is not None and override not in frontier:
        raise ValueError(f"no candidate {override!r}; the candidates are: {', '.join(frontier)}")
    names = list(frontier)
    best_auc = max(frontier[n]["roc_auc"] for n in names)
    eligible = [n for n in names if frontier[n]["roc_auc"] >= best_auc - tolerance]

    def preference(name: str) -> tuple[float, float, int]:
        air = frontier[name][MIN_PROTECTED_AIR]
        return (-np.inf if air is None else air, frontier[name]["roc_auc"], -names.index(name))

    by_rule = max(eligible, key=preference)
    chosen = override or by_rule
    record: dict[str, Any] = {
        "rule": RULE,
        "auc_tolerance": tolerance,
        "best_roc_auc": best_auc,
        "within_tolerance": eligible,
        "chosen_by_rule": by_rule,
        "chosen": chosen,
        "overridden": chosen != by_rule,
        "frontier": dict(frontier),
    }
    if chosen != by_rule:
        ours, rules = frontier[chosen], frontier[by_rule]
        record["override_margin"] = {
            "roc_auc": _round(ours["roc_auc"] - rules["roc_auc"]),
            MIN_PROTECTED_AIR: _difference(ours[MIN_PROTECTED_AIR], rules[MIN_PROTECTED_AIR]),
        }
    return record


def proxy_test(
    applications: pd.DataFrame, frontier: Mapping[str, Mapping[str, Any]], seed: int
) -> dict[str, Any]:
    """For each field the model may read, and for all together: the cross-validated
    ROC AUC of predicting each protected attribute from it (0.5: tells nothing), and
    the substitution analysis from the frontier (the candidate without the field)."""
    predictability = {
        attribute: {
            **{
                field: attribute_auc(applications, attribute, [field], seed)
                for field in DERIVED_FROM
            },
            ALL_INPUTS: attribute_auc(applications, attribute, list(DERIVED_FROM), seed),
        }
        for attribute in PROTECTED_ATTRIBUTES
    }
    full = frontier[ALL_INPUTS]
    substitution = {}
    for field in DERIVED_FROM:
        other = frontier.get(without(field))
        if other is None:
            continue
        substitution[field] = {
            "candidate": without(field),
            "roc_auc_change": _round(other["roc_auc"] - full["roc_auc"]),
            "accuracy_change": _round(other["accuracy"] - full["accuracy"]),
            "adverse_impact_ratio_change": {
                name: _difference(
                    value[ADVERSE_IMPACT_RATIO], full["attributes"][name][ADVERSE_IMPACT_RATIO]
                )
                for name, value in other["attributes"].items()
            },
            "approval_rate_change": {
                name: {
                    group: _difference(rate, full["attributes"][name]["approval_rates"].get(group))
                    for group, rate in value["approval_rates"].items()
                }
                for name, value in other["attributes"].items()
            },
        }
    return {
        "method": (
            f"ROC AUC of a {PROXY_TREES}-tree gradient-boosting classifier predicting the "
            f"attribute from the field(s), out of fold ({PROXY_FOLDS} stratified folds, rows "
            "that state the attribute); substitution: the candidate without the field against "
            f"'{ALL_INPUTS}', both out of fold on the search's folds at the model's cutoff"
        ),
        "predicts_protected_attribute": predictability,
        "substitution": substitution,
    }


def attribute_auc(
    applications: pd.DataFrame, attribute: str, fields: Sequence[str], seed: int
) -> float | None:
    """Cross-validated ROC AUC of predicting `attribute` (its first level against the
    rest) from `fields`; None when too few rows state it."""
    stated = applications[attribute].notna().to_numpy()
    labels = applications.loc[stated, attribute].astype(str) == CATEGORY_LEVELS[attribute][0]
    y = labels.to_numpy(dtype=np.int64)
    if min(y.sum(), len(y) - y.sum()) < PROXY_FOLDS:
        return None
    x = _encoded(applications.loc[stated, list(fields)])
    categorical = [f in CATEGORICAL_COLUMNS for f in fields]
    classifier = HistGradientBoostingClassifier(
        max_iter=PROXY_TREES,
        max_leaf_nodes=3,
        early_stopping=False,
        categorical_features=categorical if any(categorical) else None,
        random_state=seed,
    )
    folds = StratifiedKFold(PROXY_FOLDS, shuffle=True, random_state=seed)
    p = cross_val_predict(classifier, x, y, cv=folds, method="predict_proba")[:, 1]
    return _round(roc_auc_score(y, p))


def cutoff_curve(probabilities: np.ndarray, target: np.ndarray, cutoff: float) -> dict[str, Any]:
    """The out-of-fold trade-off: at each cutoff, the share approved and, of those
    approved, the share the lender had rejected (the data's bad-rate proxy)."""
    cutoffs = sorted({*CURVE_CUTOFFS, round(float(cutoff), DIGITS)})
    points = []
    for c in cutoffs:
        approved = probabilities >= c
        rejected_share = float(np.mean(target[approved] == 0)) if approved.any() else None
        points.append(
            {
                "cutoff": c,
                APPROVAL_RATE: _round(approved.mean()),
                "approved_rejected_by_lender": None
                if rejected_share is None
                else _round(rejected_share),
                "accuracy": _round(accuracy_score(target, approved)),
            }
        )
    return {
        "value": float(cutoff),
        "source": "out-of-fold predictions of the chosen candidate on the search's folds",
        "curve": points,
    }


def _encoded(frame: pd.DataFrame) -> np.ndarray:
    """Fields as numbers: categories as their level's index (NaN when missing)."""
    columns = []
    for name in frame.columns:
        if name in CATEGORICAL_COLUMNS:
            levels = {level: float(i) for i, level in enumerate(CATEGORY_LEVELS[name])}
            # Unknown and missing levels map to NaN (pandas' map of a dict).
            columns.append(frame[name].map(levels).to_numpy(dtype=np.float64))
        else:
            columns.append(frame[name].to_numpy(dtype=np.float64))
    return np.column_stack(columns)


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else _round(a - b)


def _round(value: Any) -> float:
    return round(float(value), DIGITS)


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def why_kept_or_dropped(selection: Mapping[str, Any], field: str) -> str:
    """In words: whether the chosen model reads `field`, and why the rule decided so."""
    frontier, chosen = selection["frontier"], selection["chosen"]
    reads = field not in frontier[chosen]["dropped"]
    alternative = without(field) if reads else ALL_INPUTS
    if alternative not in frontier:
        return f"{field} is {'read' if reads else 'not read'}; no candidate decides otherwise."
    kept = "kept" if reads else "left out"
    ours, other = frontier[chosen], frontier[alternative]
    if selection["overridden"]:
        reason = f"the rule's choice was overridden with --candidate ({chosen})"
    elif alternative not in selection["within_tolerance"]:
        reason = (
            f"'{alternative}' is outside the tolerance: its ROC AUC {other['roc_auc']:.3f} is more "
            f"than {selection['auc_tolerance']:g} below the best {selection['best_roc_auc']:.3f}"
        )
    else:
        reason = (
            f"'{alternative}' is within the tolerance (ROC AUC {other['roc_auc']:.3f}) but "
            f"its lowest protected adverse impact ratio {_text(other[MIN_PROTECTED_AIR])} is "
            f"not above the chosen '{chosen}' ({_text(ours[MIN_PROTECTED_AIR])})"
        )
    return f"{field} was {kept} by the stated rule: {reason}."


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"

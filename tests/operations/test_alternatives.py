"""The selection rule, the proxy test and the cutoff curve of operations/alternatives.py.

The rule is checked against an independent computation from the frontier a real
training run recorded: the minimum of the protected attributes' adverse impact
ratios, the tolerance band, the ties, all recomputed here from the recorded
per-attribute figures.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from loan_preprocessing.model.features import DERIVED_FROM
from loan_preprocessing.model.search import ALL_INPUTS
from loan_preprocessing.model.store import get_model, model_metadata
from loan_preprocessing.operations.alternatives import (
    DEFAULT_AUC_TOLERANCE,
    attribute_auc,
    cutoff_curve,
    select,
)
from loan_preprocessing.schema import PROTECTED_ATTRIBUTES
from tests.support.trained import sample_model_with_report


@pytest.fixture(scope="module")
def recorded(real_model_tag_or_none) -> dict:
    tag, _ = sample_model_with_report()
    return dict(model_metadata(get_model(tag))["selection"])


def _by_hand(frontier: dict, tolerance: float) -> str:
    """The stated rule, computed again from the per-attribute ratios."""
    best = max(p["roc_auc"] for p in frontier.values())
    names = [n for n, p in frontier.items() if p["roc_auc"] >= best - tolerance]

    def lowest(name: str) -> float:
        return min(
            frontier[name]["attributes"][a]["adverse_impact_ratio"] for a in PROTECTED_ATTRIBUTES
        )

    top = max(lowest(n) for n in names)
    tied = [n for n in names if lowest(n) == top]
    best_auc = max(frontier[n]["roc_auc"] for n in tied)
    return next(n for n in tied if frontier[n]["roc_auc"] == best_auc)


def test_the_recorded_choice_is_the_rules(recorded):
    assert recorded["auc_tolerance"] == DEFAULT_AUC_TOLERANCE
    assert not recorded["overridden"] and recorded["chosen"] == recorded["chosen_by_rule"]
    assert recorded["chosen"] == _by_hand(recorded["frontier"], DEFAULT_AUC_TOLERANCE)
    best = max(p["roc_auc"] for p in recorded["frontier"].values())
    assert recorded["best_roc_auc"] == best
    assert set(recorded["within_tolerance"]) == {
        n for n, p in recorded["frontier"].items() if p["roc_auc"] >= best - DEFAULT_AUC_TOLERANCE
    }


@pytest.mark.parametrize("tolerance", [0.0, 0.002, 0.01, 0.03, 1.0])
def test_the_rule_at_other_tolerances(recorded, tolerance):
    chosen = select(recorded["frontier"], tolerance)["chosen"]
    assert chosen == _by_hand(recorded["frontier"], tolerance)


def test_no_tolerance_is_the_best_auc_and_any_tolerance_is_the_fairest(recorded):
    frontier = recorded["frontier"]
    best = max(frontier, key=lambda n: frontier[n]["roc_auc"])
    assert frontier[select(frontier, 0.0)["chosen"]]["roc_auc"] == frontier[best]["roc_auc"]
    fairest = select(frontier, 1.0)["chosen"]
    lowest = {
        n: min(p["attributes"][a]["adverse_impact_ratio"] for a in PROTECTED_ATTRIBUTES)
        for n, p in frontier.items()
    }
    assert lowest[fairest] == max(lowest.values())


def test_an_override_is_recorded_with_its_margin(recorded):
    frontier = recorded["frontier"]
    rule = recorded["chosen_by_rule"]
    other = next(n for n in frontier if n != rule)
    record = select(frontier, DEFAULT_AUC_TOLERANCE, override=other)
    assert record["chosen"] == other and record["chosen_by_rule"] == rule and record["overridden"]
    margin = record["override_margin"]
    assert margin["roc_auc"] == pytest.approx(
        frontier[other]["roc_auc"] - frontier[rule]["roc_auc"], abs=1e-4
    )
    assert margin["min_protected_adverse_impact_ratio"] == pytest.approx(
        frontier[other]["min_protected_adverse_impact_ratio"]
        - frontier[rule]["min_protected_adverse_impact_ratio"],
        abs=1e-4,
    )
    with pytest.raises(ValueError, match="the candidates are"):
        select(frontier, override="without-Gender")


def test_a_field_that_gives_the_attribute_away_is_caught_by_the_proxy_test():
    rng = np.random.default_rng(0)
    gender = rng.choice(["Male", "Female"], size=400)
    frame = pd.DataFrame(
        {
            "Gender": gender,
            # Almost a copy of sex, and pure noise.
            "Property_Area": np.where(
                (gender == "Female") ^ (rng.random(400) < 0.05), "Rural", "Urban"
            ),
            "ApplicantIncome": rng.lognormal(8, 0.5, 400),
        }
    )
    assert attribute_auc(frame, "Gender", ["Property_Area"], seed=0) > 0.9
    assert abs(attribute_auc(frame, "Gender", ["ApplicantIncome"], seed=0) - 0.5) < 0.1


def test_the_recorded_proxy_test_covers_every_field_and_attribute(real_model_tag_or_none):
    tag, _ = sample_model_with_report()
    proxy = get_model(tag).info.metadata["proxy_test"]
    predicts = proxy["predicts_protected_attribute"]
    assert set(predicts) == set(PROTECTED_ATTRIBUTES)
    for values in predicts.values():
        assert list(values) == [*DERIVED_FROM, ALL_INPUTS]
        assert all(0.0 <= v <= 1.0 for v in values.values())
    assert list(proxy["substitution"]) == list(DERIVED_FROM)


def test_the_cutoff_curve():
    rng = np.random.default_rng(1)
    target = rng.integers(0, 2, 300)
    probabilities = np.clip(0.3 * target + rng.random(300) * 0.7, 0, 1)
    curve = cutoff_curve(probabilities, target, 0.42)
    assert curve["value"] == 0.42
    points = curve["curve"]
    assert 0.42 in [p["cutoff"] for p in points]
    rates = [p["approval_rate"] for p in points]
    assert rates == sorted(rates, reverse=True)  # a higher cutoff never approves more
    at = next(p for p in points if p["cutoff"] == 0.42)
    approved = probabilities >= 0.42
    assert at["approval_rate"] == pytest.approx(approved.mean(), abs=1e-4)
    assert at["approved_rejected_by_lender"] == pytest.approx(
        (target[approved] == 0).mean(), abs=1e-4
    )

"""Group rates with seeded bootstrap intervals, shared by the fairness audit
(fairness.py) and the model-risk reports: numpy only, so a report does not pay
for fairlearn and the model store at start (about 1.3 s of each)."""

from __future__ import annotations

import warnings
from typing import Any, Final

import numpy as np

from loan_preprocessing.schema import PROTECTED_ATTRIBUTES, PROXY_ATTRIBUTES

# Audited attribute -> what it stands for; only the protected ones can block training.
AUDITED_ATTRIBUTES: Final[dict[str, str]] = {**PROTECTED_ATTRIBUTES, **PROXY_ATTRIBUTES}
BOOTSTRAP_SAMPLES: Final = 2000
INTERVAL_QUANTILES: Final = (0.025, 0.975)
# Metric names, as stored.
APPROVAL_RATE: Final = "approval_rate"
TRUE_POSITIVE_RATE: Final = "true_positive_rate"
ADVERSE_IMPACT_RATIO: Final = "adverse_impact_ratio"
EQUAL_OPPORTUNITY_DIFFERENCE: Final = "equal_opportunity_difference"


def bootstrap_rates(
    codes: np.ndarray, n_groups: int, approved: np.ndarray, outcomes: np.ndarray, rng: Any
) -> dict[str, np.ndarray]:
    """BOOTSTRAP_SAMPLES resamples of the rows (with replacement) and, in each, every
    group's approval rate and true positive rate, the adverse impact ratio and the
    equal-opportunity difference.

    The rates depend on a resample only through how many rows of each cell (group x
    decision x outcome) it holds, so drawing those counts from the multinomial of
    the cells' shares is the row bootstrap exactly, in microseconds and for any
    number of rows. fairlearn's own (MetricFrame's n_boot) recomputes every group
    metric per resample: measured 10-40 ms per resample and attribute on the 614
    training rows, 20-30 s for this audit, twice the whole training."""
    cells = (codes * 2 + approved) * 2 + outcomes
    shares = np.bincount(cells, minlength=n_groups * 4) / len(cells)
    draws = rng.multinomial(len(cells), shares, size=BOOTSTRAP_SAMPLES)
    draws = draws.reshape(BOOTSTRAP_SAMPLES, n_groups, 2, 2).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # A group missing from a resample has no rate there (NaN), not a rate of 0;
        # a resample with no rate at all gives NaN, which the quantiles skip.
        warnings.simplefilter("ignore", RuntimeWarning)
        rate = draws[:, :, 1, :].sum(axis=2) / draws.sum(axis=(2, 3))
        tpr = draws[:, :, 1, 1] / draws[:, :, :, 1].sum(axis=2)
        ratio = np.nanmin(rate, axis=1) / np.nanmax(rate, axis=1)
        gap = np.nanmax(tpr, axis=1) - np.nanmin(tpr, axis=1)
    return {
        APPROVAL_RATE: rate,
        TRUE_POSITIVE_RATE: tpr,
        ADVERSE_IMPACT_RATIO: ratio,
        EQUAL_OPPORTUNITY_DIFFERENCE: gap,
    }

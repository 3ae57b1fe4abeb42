"""Counteroffers: the largest approved amount and the nearest approved standard term, exactly.

For a fixed application the model sees the loan amount only through
`LogLoanAmount` and `LogInstalmentToIncome`, and the term only through
`LogInstalmentToIncome` and `Loan_Amount_Term`. Every tree compares a feature
with one of its fitted thresholds (`x <= t` goes left), so P(Y) as a function
of the amount is a step function: it is constant between the amounts at which
one of those two features equals one of its thresholds (the step points), and
can change only there. The largest approved amount below the requested one is
therefore the top of one of the steps, and evaluating the top of every step
below the requested amount, in one call of the model, finds it: no search, no
approximation.

Offers are whole units of currency (LoanAmount is in thousands). The top
whole unit of a step is found from the step point (exp of the threshold, scaled
back through the feature's formula) and then checked against the feature as
`features.loan_feature_matrix` computes it, one unit either way, so float
rounding at a boundary cannot move an offer into the next step. The term is
simpler: the requested amount is scored at each standard term.

The same model inputs and probability function as the decision itself are used
(`Scorer`), so an offered amount is one the decision path approves, and the
tests check it against the scikit-learn pipeline's own predict_proba.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from loan_preprocessing.model.features import DEFAULT_TERM_MONTHS, DERIVED_FROM, MODEL_FEATURES
from loan_preprocessing.schema import (
    COUNTEROFFER_UNITS_PER_LOAN_AMOUNT,
    NO_COUNTEROFFER,
    STANDARD_TERMS_MONTHS,
    Counteroffer,
    Reason,
)

AMOUNT: Final = "LoanAmount"
TERM: Final = "Loan_Amount_Term"
LOG_AMOUNT: Final = MODEL_FEATURES.index("LogLoanAmount")
LOG_INSTALMENT: Final = MODEL_FEATURES.index("LogInstalmentToIncome")
# A step point computed within this relative distance above the requested amount
# may, after rounding, lie just below it: it is kept, and the candidate it gives
# is dropped later only if it is not below the requested amount.
_BOUND_SLACK: Final = 1e-9

# Model inputs (MODEL_FEATURES after imputation) of applications held as DERIVED_FROM columns.
ModelInputs = Callable[[Mapping[str, np.ndarray]], np.ndarray]
# P(Y) of model inputs.
Probabilities = Callable[[np.ndarray], np.ndarray]


def split_thresholds(classifier: Any, feature: int) -> np.ndarray:
    """The distinct thresholds the fitted HistGradientBoostingClassifier compares
    `feature` with, ascending."""
    predictors = getattr(classifier, "_predictors", None)
    if not predictors:
        raise ValueError("counteroffers need a fitted HistGradientBoostingClassifier")
    found = [
        nodes["num_threshold"][(nodes["is_leaf"] == 0) & (nodes["feature_idx"] == feature)]
        for nodes in (tree.nodes for iteration in predictors for tree in iteration)
    ]
    return np.unique(np.concatenate(found)).astype(np.float64)


@dataclass(frozen=True)
class Offers:
    """Per denied row: the offered amount and term (NaN: none)."""

    amounts: np.ndarray
    terms: np.ndarray


class CounterofferSearch:
    """The counteroffers of denied applications, for one fitted classifier and cutoff."""

    def __init__(
        self,
        classifier: Any,
        threshold: float,
        model_inputs: ModelInputs,
        probabilities: Probabilities,
        terms: Sequence[float] = STANDARD_TERMS_MONTHS,
    ) -> None:
        self.threshold = threshold
        self.model_inputs = model_inputs
        self.probabilities = probabilities
        self.terms = np.asarray(terms, dtype=np.float64)
        amount_thresholds = split_thresholds(classifier, LOG_AMOUNT)
        instalment_thresholds = split_thresholds(classifier, LOG_INSTALMENT)
        # Each step point: the feature it is on, the threshold, and exp(threshold)
        # (for the instalment, still to be scaled by each row's income and term).
        self._feature = np.array(
            [LOG_AMOUNT] * len(amount_thresholds) + [LOG_INSTALMENT] * len(instalment_thresholds),
            dtype=np.intp,
        )
        self._threshold = np.concatenate([amount_thresholds, instalment_thresholds])
        with np.errstate(over="ignore"):
            self._exp = np.exp(self._threshold)
        self._scaled = self._feature == LOG_INSTALMENT

    def offers(self, columns: Mapping[str, np.ndarray]) -> Offers:
        """The offers for denied applications given as DERIVED_FROM columns (numbers
        float64 with NaN where missing): every candidate of every row is scored
        in one call of the model."""
        rows = len(columns[AMOUNT])
        amount_rows, amounts = self._amount_candidates(columns)
        term_rows, terms = self._term_candidates(columns)
        candidates = {
            name: np.concatenate([columns[name][amount_rows], columns[name][term_rows]])
            for name in DERIVED_FROM
        }
        candidates[AMOUNT] = np.concatenate([amounts, columns[AMOUNT][term_rows]])
        candidates[TERM] = np.concatenate([columns[TERM][amount_rows], terms])
        approved = np.zeros(len(amounts) + len(terms), dtype=bool)
        if len(approved):
            scores = self.probabilities(self.model_inputs(candidates))
            # The decision rule itself: p >= threshold approves.
            approved = scores >= self.threshold
        return Offers(
            _largest_approved(rows, amount_rows, amounts, approved[: len(amounts)]),
            self._nearest_approved(columns, term_rows, terms, approved[len(amounts) :]),
        )

    def _amount_candidates(
        self, columns: Mapping[str, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(row, amount) of the top whole unit of every step below each row's amount."""
        requested = columns[AMOUNT]
        term = np.where(np.isnan(columns[TERM]), DEFAULT_TERM_MONTHS, columns[TERM])
        income = columns["ApplicantIncome"] + columns["CoapplicantIncome"]
        # The inverse of the features' formulas (features.loan_feature_matrix):
        # log(A) <= t iff A <= exp(t); log(A * 1000 / T / (income + 1)) <= t iff
        # A <= exp(t) * (income + 1) * T / 1000.
        scale = (income + 1.0) * term / 1000.0
        with np.errstate(over="ignore", invalid="ignore"):
            bounds = np.where(self._scaled, self._exp * scale[:, None], self._exp)
            units = np.floor(bounds * COUNTEROFFER_UNITS_PER_LOAN_AMOUNT)
            # A missing amount has no smaller amount to offer (the comparison is false).
            keep = (bounds < requested[:, None] * (1 + _BOUND_SLACK)) & (units >= 0)
        rows, which = np.nonzero(keep)
        units = units[rows, which]
        features = self._feature[which]
        thresholds = self._threshold[which]
        # Float rounding in the inverse can put the unit one off: the unit kept
        # is the largest whose feature, as the model computes it, is <= t.
        here = self._feature_values(columns, rows, units, features)
        units = np.where(here > thresholds, units - 1, units)
        above = self._feature_values(columns, rows, units + 1, features)
        units = np.where(above <= thresholds, units + 1, units)
        amounts = units / COUNTEROFFER_UNITS_PER_LOAN_AMOUNT
        valid = (units >= 1) & (amounts < requested[rows])
        return rows[valid], amounts[valid]

    def _feature_values(
        self,
        columns: Mapping[str, np.ndarray],
        rows: np.ndarray,
        units: np.ndarray,
        features: np.ndarray,
    ) -> np.ndarray:
        """Each candidate's value of its step's feature, at `units` whole units."""
        candidates = {name: columns[name][rows] for name in DERIVED_FROM}
        with np.errstate(divide="ignore"):
            candidates[AMOUNT] = units / COUNTEROFFER_UNITS_PER_LOAN_AMOUNT
            inputs = self.model_inputs(candidates)
        return inputs[np.arange(len(rows)), features]

    def _term_candidates(self, columns: Mapping[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(row, term): every standard term for every row (the requested term too,
        which is denied; it is scored to keep the arrays rectangular)."""
        rows = len(columns[TERM])
        return np.repeat(np.arange(rows), len(self.terms)), np.tile(self.terms, rows)

    def _nearest_approved(
        self,
        columns: Mapping[str, np.ndarray],
        rows: np.ndarray,
        terms: np.ndarray,
        approved: np.ndarray,
    ) -> np.ndarray:
        """The approved standard term nearest to each row's requested one (ties: the
        shorter); NaN where none is. A missing term is the one the instalment was
        computed with (DEFAULT_TERM_MONTHS)."""
        n = len(columns[TERM])
        requested = np.where(np.isnan(columns[TERM]), DEFAULT_TERM_MONTHS, columns[TERM])
        grid = approved.reshape(n, len(self.terms)) & (
            self.terms[None, :] != columns[TERM][:, None]
        )
        # Rank by distance, then by length: the standard terms are ascending, so
        # a stable sort on the distance alone puts the shorter of a tie first.
        order = np.argsort(np.abs(self.terms[None, :] - requested[:, None]), axis=1, kind="stable")
        ranked = np.take_along_axis(grid, order, axis=1)
        first = ranked.argmax(axis=1)
        chosen = self.terms[order[np.arange(n), first]]
        return np.where(ranked.any(axis=1), chosen, np.nan)


def _largest_approved(
    rows: int, candidate_rows: np.ndarray, amounts: np.ndarray, approved: np.ndarray
) -> np.ndarray:
    """Per row, the largest approved candidate amount (NaN: none)."""
    best = np.full(rows, -np.inf)
    np.maximum.at(best, candidate_rows[approved], amounts[approved])
    return np.where(np.isfinite(best), best, np.nan)


def counteroffer(
    amount: float | None, term: float | None, reasons: Sequence[Reason]
) -> Counteroffer:
    """A denial's counteroffer object, naming the reasons whose fields it changes."""
    if amount is None and term is None:
        return NO_COUNTEROFFER
    changed = {AMOUNT} if amount is not None else set()
    if term is not None:
        changed.add(TERM)
    addresses = tuple(r.code for r in reasons if changed.intersection(r.fields))
    return Counteroffer.model_construct(
        LoanAmount=amount, Loan_Amount_Term=term, addresses=addresses
    )

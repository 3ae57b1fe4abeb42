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

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import numpy as np

from loan_preprocessing.model.features import (
    DEFAULT_TERM_MONTHS,
    MODEL_FEATURES,
    loan_terms_features,
)
from loan_preprocessing.model.tree_ensemble import VectorizedBooster
from loan_preprocessing.schema import (
    COUNTEROFFER_UNITS_PER_LOAN_AMOUNT,
    NO_COUNTEROFFER,
    STANDARD_TERMS_MONTHS,
    Counteroffer,
    Reason,
)

AMOUNT: Final = "LoanAmount"
TERM: Final = "Loan_Amount_Term"
LOG_AMOUNT: Final = "LogLoanAmount"
LOG_INSTALMENT: Final = "LogInstalmentToIncome"
TERM_FEATURE: Final = "Loan_Amount_Term"
# The loan-terms features through which each kind of offer acts.
AMOUNT_FEATURES: Final = (LOG_AMOUNT, LOG_INSTALMENT)
TERM_FEATURES: Final = (LOG_INSTALMENT, TERM_FEATURE)
# A position no feature has (a feature the model does not read).
_ABSENT: Final = -1
# A step point computed within this relative distance above the requested amount
# may, after rounding, lie just below it: it is kept, and the candidate it gives
# is dropped later only if it is not below the requested amount.
_BOUND_SLACK: Final = 1e-9

# P(Y) of model inputs (the model's features after imputation).
Probabilities = Callable[[np.ndarray], np.ndarray]
_LINK_SLACK: Final = 1e-12


def split_thresholds(classifier: Any, feature: int) -> np.ndarray:
    """The distinct thresholds the fitted HistGradientBoostingClassifier compares
    `feature` with, ascending (none for _ABSENT)."""
    predictors = getattr(classifier, "_predictors", None)
    if not predictors:
        raise ValueError("counteroffers need a fitted HistGradientBoostingClassifier")
    if feature == _ABSENT:
        return np.empty(0, dtype=np.float64)
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


@dataclass(frozen=True)
class LoanTerms:
    """The denied rows' own terms as they applied (float64, NaN where missing)
    and their total income: what the candidates' features are computed from."""

    # The application fields they are read from.
    FIELDS: ClassVar = (AMOUNT, TERM, "ApplicantIncome", "CoapplicantIncome")

    amount: np.ndarray
    term: np.ndarray
    income: np.ndarray

    def take(self, rows: np.ndarray) -> LoanTerms:
        return LoanTerms(self.amount[rows], self.term[rows], self.income[rows])

    @classmethod
    def of(cls, columns: Mapping[str, Sequence[float | None] | np.ndarray]) -> LoanTerms:
        """From the FIELDS as columns (None or NaN where missing)."""
        number = functools.partial(np.asarray, dtype=np.float64)
        return cls(
            number(columns[AMOUNT]),
            number(columns[TERM]),
            number(columns["ApplicantIncome"]) + number(columns["CoapplicantIncome"]),
        )


class CounterofferSearch:
    """The counteroffers of denied applications, for one fitted pipeline of
    `features.build_pipeline` (its classifier and imputer) and cutoff.

    A candidate is the denied row's own model inputs with only the features of
    the loan's terms recomputed (features.loan_terms_features, the formulas the
    pipeline itself uses), so nothing else about the application is recomputed.
    `features` are the model's own, in its order: a model that does not read the
    amount (or the term) at all has no offer on it, since no change of it can
    change the decision."""

    def __init__(
        self,
        classifier: Any,
        medians: np.ndarray,
        threshold: float,
        probabilities: Probabilities,
        features: Sequence[str] = MODEL_FEATURES,
        booster: VectorizedBooster | None = None,
        terms: Sequence[float] = STANDARD_TERMS_MONTHS,
    ) -> None:
        position = {name: i for i, name in enumerate(features)}
        self._log_amount = position.get(LOG_AMOUNT, _ABSENT)
        self._log_instalment = position.get(LOG_INSTALMENT, _ABSENT)
        self._term_feature = position.get(TERM_FEATURE, _ABSENT)
        # Which kinds of offer the model's features allow at all.
        self._acts = (
            any(name in position for name in AMOUNT_FEATURES),
            any(name in position for name in TERM_FEATURES),
        )
        self.medians = np.asarray(medians, dtype=np.float64)
        self.threshold = threshold
        self.probabilities = probabilities
        self.terms = np.asarray(terms, dtype=np.float64)
        # Most denials cannot be turned by their own terms (a bad credit history):
        # a bound on P(Y) over every amount (or every term) rules them out with
        # one cheap pass, before any candidate is made.
        self._booster = booster
        free = [
            frozenset(position[name] for name in names if name in position)
            for names in (AMOUNT_FEATURES, TERM_FEATURES)
        ]
        self._bounds = (
            None if booster is None or not all(self._acts) else booster.upper_bounds(free)
        )
        amount_thresholds = split_thresholds(classifier, self._log_amount)
        instalment_thresholds = split_thresholds(classifier, self._log_instalment)
        # Each step point: the feature it is on, the threshold, and exp(threshold)
        # (for the instalment, still to be scaled by each row's income and term).
        self._feature = np.array(
            [self._log_amount] * len(amount_thresholds)
            + [self._log_instalment] * len(instalment_thresholds),
            dtype=np.intp,
        )
        self._threshold = np.concatenate([amount_thresholds, instalment_thresholds])
        with np.errstate(over="ignore"):
            self._exp = np.exp(self._threshold)
        self._scaled = self._feature == self._log_instalment

    def offers(self, inputs: np.ndarray, terms: LoanTerms) -> Offers:
        """The offers for denied rows, given their model inputs and their loan
        terms: every candidate of every row is scored in one call of the model."""
        n = len(inputs)
        may = self._may_approve(inputs)
        may_amount = np.flatnonzero(may[0])
        rows, which, amounts = self._amount_candidates(terms.take(may_amount))
        rows = may_amount[rows]
        amount_inputs = inputs[rows]
        features = self._features(amounts, terms.term[rows], terms.income[rows])
        self._put(amount_inputs, features, AMOUNT_FEATURES)
        may_term = np.flatnonzero(may[1])
        term_inputs = self._term_inputs(inputs[may_term], terms.take(may_term))
        candidates = np.concatenate([amount_inputs, term_inputs])
        approved = np.zeros(len(candidates), dtype=bool)
        if len(candidates):
            # The decision rule itself: p >= threshold approves.
            approved = self.probabilities(candidates) >= self.threshold
        best = np.full((n, len(self._threshold)), -np.inf)
        best[rows, which] = np.where(approved[: len(rows)], amounts, -np.inf)
        largest = best.max(axis=1, initial=-np.inf)
        at_terms = np.zeros((n, len(self.terms)), dtype=bool)
        at_terms[may_term] = approved[len(rows) :].reshape(len(may_term), len(self.terms))
        return Offers(
            np.where(np.isfinite(largest), largest, np.nan),
            self._nearest_approved(terms.term, at_terms),
        )

    def _may_approve(self, inputs: np.ndarray) -> np.ndarray:
        """(2 x rows) whether some amount, and some term, could approve each row:
        never false for a row that has an approved candidate."""
        acts = np.array(self._acts)[:, None]
        if self._bounds is None or self._booster is None or not len(inputs):
            return np.broadcast_to(acts, (2, len(inputs))).copy()
        raw = self._bounds(inputs)
        best = self._booster.loss.predict_proba(raw.ravel())[:, 1].reshape(raw.shape)
        # A hair of slack: the bound holds, the link's rounding need not be monotonic.
        return np.clip(best, 0.0, 1.0) >= self.threshold - _LINK_SLACK

    def _features(
        self, amount: np.ndarray, term: np.ndarray, income: np.ndarray
    ) -> dict[str, np.ndarray]:
        """The loan-terms features, imputed as the pipeline imputes them."""
        with np.errstate(divide="ignore", invalid="ignore"):
            features = loan_terms_features(amount, term, income)
        for name, at in ((LOG_AMOUNT, self._log_amount), (LOG_INSTALMENT, self._log_instalment)):
            if at != _ABSENT:
                features[name] = np.where(
                    np.isnan(features[name]), self.medians[at], features[name]
                )
        return features

    def _put(
        self, candidates: np.ndarray, features: dict[str, np.ndarray], names: tuple[str, ...]
    ) -> None:
        """Write the features `names` (those an offer of one kind changes) into the
        candidates' input columns, where the model reads them; every other input
        stays the row's own (imputed) value."""
        position = {
            LOG_AMOUNT: self._log_amount,
            LOG_INSTALMENT: self._log_instalment,
            TERM_FEATURE: self._term_feature,
        }
        for name in names:
            if position[name] != _ABSENT:
                candidates[:, position[name]] = features[name]

    def _amount_candidates(self, terms: LoanTerms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, step point, amount): the top whole unit of every step below each
        row's amount."""
        requested = terms.amount
        term = np.where(np.isnan(terms.term), DEFAULT_TERM_MONTHS, terms.term)
        # The inverse of the features' formulas (features.loan_terms_features):
        # log(A) <= t iff A <= exp(t); log(A * 1000 / T / (income + 1)) <= t iff
        # A <= exp(t) * (income + 1) * T / 1000.
        scale = (terms.income + 1.0) * term / 1000.0
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
        here = self._step_feature(units, rows, features, terms)
        units = np.where(here > thresholds, units - 1, units)
        above = self._step_feature(units + 1, rows, features, terms)
        units = np.where(above <= thresholds, units + 1, units)
        amounts = units / COUNTEROFFER_UNITS_PER_LOAN_AMOUNT
        valid = (units >= 1) & (amounts < requested[rows])
        return rows[valid], which[valid], amounts[valid]

    def _step_feature(
        self, units: np.ndarray, rows: np.ndarray, features: np.ndarray, terms: LoanTerms
    ) -> np.ndarray:
        """Each candidate's value of its step point's feature, at `units` whole units."""
        computed = self._features(
            units / COUNTEROFFER_UNITS_PER_LOAN_AMOUNT, terms.term[rows], terms.income[rows]
        )
        return np.where(
            features == self._log_amount,
            computed["LogLoanAmount"],
            computed["LogInstalmentToIncome"],
        )

    def _term_inputs(self, inputs: np.ndarray, terms: LoanTerms) -> np.ndarray:
        """Every row at every standard term (the requested one too, which is
        denied; it keeps the arrays rectangular)."""
        count = len(self.terms)
        candidates = np.repeat(inputs, count, axis=0)
        term = np.tile(self.terms, len(inputs))
        features = self._features(
            np.repeat(terms.amount, count), term, np.repeat(terms.income, count)
        )
        self._put(candidates, features, TERM_FEATURES)
        return candidates

    def _nearest_approved(self, asked: np.ndarray, approved: np.ndarray) -> np.ndarray:
        """The approved standard term nearest to each row's requested one (ties: the
        shorter); NaN where none is. A missing term is the one the instalment was
        computed with (DEFAULT_TERM_MONTHS)."""
        n = len(asked)
        requested = np.where(np.isnan(asked), DEFAULT_TERM_MONTHS, asked)
        grid = approved & (self.terms[None, :] != asked[:, None])
        # Rank by distance, then by length: the standard terms are ascending, so
        # a stable sort on the distance alone puts the shorter of a tie first.
        order = np.argsort(np.abs(self.terms[None, :] - requested[:, None]), axis=1, kind="stable")
        ranked = np.take_along_axis(grid, order, axis=1)
        first = ranked.argmax(axis=1)
        chosen = self.terms[order[np.arange(n), first]]
        return np.where(ranked.any(axis=1), chosen, np.nan)


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

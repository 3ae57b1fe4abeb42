"""Turning validated applications into decisions with a loaded pipeline.

One place for the decision rule (P(Y) against the model's threshold), for the
reasons of every rejection and for its counteroffer, so the HTTP APIs, offline
scoring and the Spark job cannot disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import bentoml
import numpy as np
from pydantic import model_serializer
from sklearn.pipeline import Pipeline

from loan_preprocessing.explanations.reasons import (
    ReasonExplainer,
    ReferencePopulation,
    load_reference,
)
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.model.counteroffers import CounterofferSearch, LoanTerms, counteroffer
from loan_preprocessing.model.features import (
    FastPredictor,
    columns_model_inputs_function,
    model_inputs_function,
    pipeline_features,
)
from loan_preprocessing.model.search import DECISION_THRESHOLD
from loan_preprocessing.model.store import load_pipeline, model_metadata
from loan_preprocessing.model.tree_ensemble import VectorizedBooster, unsupported_reason
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import (
    APPROVED,
    ID_COLUMN,
    REJECTED,
    Counteroffer,
    Decision,
    LoanApplication,
    Reason,
    decisions,
)

logger = logging.getLogger(__name__)


class UnscoredRowError(RuntimeError):
    """The model raised on a valid application."""


class Unscored(Decision):
    """Stands in for the decision on a row the model raised on.

    BentoML's adaptive batcher answers every request of a batch from one call, and
    only sees one list of rows; a row it cannot serialise fails the response of
    the one request that holds it (500), while the other requests of the batch
    are answered normally. The API's return type uses SerializeAsAny so that this
    serialiser runs.
    """

    @model_serializer
    def _refuse(self) -> dict:
        raise UnscoredRowError("the model could not score an application of this request")


@dataclass(frozen=True)
class ColumnDecisions:
    """Decisions on applications held as columns, in row order."""

    loan_ids: list[str | None]
    statuses: list[str]
    probabilities: list[float]
    reasons: list[Sequence[Reason]]
    # A rejection's counteroffer (None where there is none, and for approvals).
    counteroffer_amounts: list[float | None]
    counteroffer_terms: list[float | None]

    def __len__(self) -> int:
        return len(self.statuses)

    def reason_codes(self) -> list[str]:
        """Each row's reason codes, most important first, joined as in the CSV
        answers (empty for an approval)."""
        # Rows share their reasons' tuples (the explainer builds one per combination
        # of codes), so each is joined once: a join per row cost more than the model.
        joined: dict[int, str] = {}
        cells = []
        for named in self.reasons:
            cell = joined.get(id(named))
            if cell is None:
                cell = joined[id(named)] = REASON_SEPARATOR.join(r.code for r in named)
            cells.append(cell)
        return cells

    def decisions(self) -> list[Decision]:
        """The same decisions as objects (for the prediction log)."""
        return decisions(
            [
                {
                    "Loan_ID": i,
                    "Loan_Status": s,
                    "probability": p,
                    "reasons": r,
                    "counteroffer": None if s == APPROVED else counteroffer(a, t, r),
                }
                for i, s, p, r, a, t in zip(
                    self.loan_ids,
                    self.statuses,
                    self.probabilities,
                    self.reasons,
                    self.counteroffer_amounts,
                    self.counteroffer_terms,
                    strict=True,
                )
            ]
        )


# Which of the chosen rows left a field empty: what the explainer asks of the
# fields it names differently when they were not provided.
NotProvided = Callable[[str, np.ndarray], np.ndarray | list[bool]]
# The loan terms of the chosen rows (what counteroffers are computed from).
TermsOf = Callable[[np.ndarray], LoanTerms]


@dataclass(frozen=True)
class Rejections:
    """What a batch's rejected rows are told beyond the decision: each row's
    reasons (empty for an approval) and, per rejected row, the offers (NaN: none)."""

    rows: np.ndarray
    reasons: list[Sequence[Reason]]
    amounts: np.ndarray
    terms: np.ndarray

    def counteroffer_columns(self, n: int) -> tuple[list[float | None], list[float | None]]:
        """The offered amount and term of each of the batch's n rows (None: none)."""
        amounts: list[float | None] = [None] * n
        terms: list[float | None] = [None] * n
        for i, a, t in zip(
            self.rows.tolist(), self.amounts.tolist(), self.terms.tolist(), strict=True
        ):
            amounts[i] = None if a != a else a
            terms[i] = None if t != t else t
        return amounts, terms

    def counteroffers(self, n: int) -> list[Counteroffer | None]:
        """Each row's counteroffer object (None for an approval)."""
        offers: list[Counteroffer | None] = [None] * n
        for i, a, t in zip(
            self.rows.tolist(), self.amounts.tolist(), self.terms.tolist(), strict=True
        ):
            offers[i] = counteroffer(None if a != a else a, None if t != t else t, self.reasons[i])
        return offers


def _application_terms(applications: Sequence[LoanApplication]) -> TermsOf:
    def terms(rows: np.ndarray) -> LoanTerms:
        chosen = [applications[i] for i in rows.tolist()]
        return LoanTerms.of({name: [getattr(a, name) for a in chosen] for name in LoanTerms.FIELDS})

    return terms


def _column_terms(columns: ValidatedColumns) -> TermsOf:
    return lambda rows: LoanTerms.of(
        {name: columns.values[name][rows] for name in LoanTerms.FIELDS}
    )


def _unset_attributes(applications: Sequence[LoanApplication]) -> NotProvided:
    """Of validated applications, read per row (a rejected row's one field)."""
    return lambda name, rows: [getattr(applications[i], name) is None for i in rows.tolist()]


def _unset_cells(columns: ValidatedColumns) -> NotProvided:
    """Of validated columns (NaN or None where missing), as whole columns."""

    def not_provided(name: str, rows: np.ndarray) -> np.ndarray:
        values = columns.values[name][rows]
        if values.dtype.kind == "f":
            return np.isnan(values)
        return np.array([v is None or v != v for v in values.tolist()], dtype=bool)

    return not_provided


@dataclass(frozen=True)
class Scorer:
    """A loaded pipeline, the model tag it came from, its decision threshold and
    the reference population its rejections are explained against."""

    pipeline: Pipeline
    tag: str
    reference: ReferencePopulation
    threshold: float = DECISION_THRESHOLD
    _model_inputs: Callable[[Sequence[LoanApplication]], np.ndarray] = field(
        init=False, repr=False, compare=False
    )
    _columns_model_inputs: Callable[[Mapping[str, np.ndarray]], np.ndarray] = field(
        init=False, repr=False, compare=False
    )
    _classifier_proba: Callable[[np.ndarray], np.ndarray] = field(
        init=False, repr=False, compare=False
    )
    explainer: ReasonExplainer = field(init=False, repr=False, compare=False)
    counteroffers: CounterofferSearch = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Prepared once per loaded pipeline (the fast path compiles the trees,
        # the explainer its attribution tables).
        classifier = self.pipeline[-1]
        set_ = object.__setattr__
        set_(self, "_model_inputs", model_inputs_function(self.pipeline))
        set_(self, "_columns_model_inputs", columns_model_inputs_function(self.pipeline))
        booster = None if unsupported_reason(classifier) else VectorizedBooster(classifier)
        set_(
            self,
            "_classifier_proba",
            classifier.predict_proba if booster is None else booster.predict_proba,
        )
        set_(
            self,
            "explainer",
            ReasonExplainer(classifier, self.reference, self.reference.features),
        )
        if not FastPredictor.supports(self.pipeline):
            raise ValueError(
                "counteroffers need the pipeline features.build_pipeline makes (its imputer's "
                "medians and its features)"
            )
        # The candidates repeat the shapes of the batch's denials: each distinct
        # one is scored once (same numbers, VectorizedBooster.predict_proba_distinct).
        candidate_proba = (
            classifier.predict_proba if booster is None else booster.predict_proba_distinct
        )
        set_(
            self,
            "counteroffers",
            CounterofferSearch(
                classifier,
                self.pipeline.named_steps["impute"].statistics_,
                self.threshold,
                lambda X: np.clip(candidate_proba(X)[:, 1], 0.0, 1.0),
                pipeline_features(self.pipeline),
                booster,
            ),
        )

    @classmethod
    def from_model(cls, stored: bentoml.Model) -> Scorer:
        """The verified pipeline of a stored model, with the threshold it was trained
        for and its reference population."""
        threshold = float(model_metadata(stored).get("threshold", DECISION_THRESHOLD))
        return cls(load_pipeline(stored), str(stored.tag), load_reference(stored), threshold)

    def model_inputs(self, applications: Sequence[LoanApplication]) -> np.ndarray:
        """What the classifier is given: the model's features after imputation."""
        return self._model_inputs(applications)

    def probabilities(self, applications: Sequence[LoanApplication]) -> np.ndarray:
        # Same numbers as pipeline.predict_proba(to_feature_frame(rows)), faster.
        return self._probabilities(self.model_inputs(applications))

    def _probabilities(self, inputs: np.ndarray) -> np.ndarray:
        return np.clip(self._classifier_proba(inputs)[:, 1], 0.0, 1.0)

    def decide(self, applications: Sequence[LoanApplication]) -> list[Decision]:
        """A decision per application, in order, each rejection with its reasons.
        If the model raises on the batch, each row is retried alone, and only rows
        that still fail are Unscored."""
        try:
            inputs = self.model_inputs(applications)
            scores = self._probabilities(inputs)
            rejections = self._rejections(
                inputs,
                scores,
                _unset_attributes(applications),
                _application_terms(applications),
            )
        except Exception:
            logger.exception(
                "the model raised on a batch of %d; retrying row by row", len(applications)
            )
            return self._decide_one_by_one(applications)
        # Python floats: comparing and wrapping numpy scalars one by one costs
        # more than the model on a large batch.
        return self._decisions(
            applications,
            scores.tolist(),
            rejections.reasons,
            rejections.counteroffers(len(applications)),
        )

    def _rejections(
        self,
        inputs: np.ndarray,
        scores: np.ndarray,
        not_provided: NotProvided,
        terms_of: TermsOf,
    ) -> Rejections:
        """The reasons and counteroffers of the rejected rows."""
        # The complement of the rule in _decisions (p >= threshold approves).
        rejected = np.flatnonzero(~(scores >= self.threshold))
        reasons: list[Sequence[Reason]] = [()] * len(scores)
        if not len(rejected):
            empty = np.empty(0)
            return Rejections(rejected, reasons, empty, empty)
        explained = self.explainer.reasons(
            inputs[rejected],
            {name: not_provided(name, rejected) for name in self.explainer.fields_checked},
        )
        for i, named in zip(rejected.tolist(), explained, strict=True):
            reasons[i] = named
        offers = self.counteroffers.offers(inputs[rejected], terms_of(rejected))
        return Rejections(rejected, reasons, offers.amounts, offers.terms)

    def _decisions(
        self,
        applications: Sequence[LoanApplication],
        probabilities: Sequence[float | None],
        reasons: Sequence[Sequence[Reason]],
        counteroffers: Sequence[Counteroffer | None],
    ) -> list[Decision]:
        threshold = self.threshold
        decided = decisions(
            [
                {
                    "Loan_ID": a.Loan_ID,
                    "Loan_Status": APPROVED if p >= threshold else REJECTED,
                    "probability": p,
                    "reasons": r,
                    "counteroffer": c,
                }
                for a, p, r, c in zip(
                    applications, probabilities, reasons, counteroffers, strict=True
                )
                if p is not None
            ]
        )
        if len(decided) == len(applications):
            return decided
        in_order = iter(decided)
        return [
            Unscored(Loan_ID=a.Loan_ID, Loan_Status=REJECTED, probability=0.0, reasons=[])
            if p is None
            else next(in_order)
            for a, p in zip(applications, probabilities, strict=True)
        ]

    def decide_columns(self, columns: ValidatedColumns) -> ColumnDecisions:
        """A decision per row of validated columns, by the same rule and with the
        same reasons as `decide`, with no object per row. Raises UnscoredRowError
        if the model raises: a columnar request is answered whole or not at all."""
        try:
            inputs = self._columns_model_inputs(columns.values)
            scores = self._probabilities(inputs)
            rejections = self._rejections(
                inputs, scores, _unset_cells(columns), _column_terms(columns)
            )
        except Exception as exc:
            logger.exception("the model raised on a batch of %d columns", len(columns))
            raise UnscoredRowError("the model could not score every row") from exc
        statuses = np.where(scores >= self.threshold, APPROVED, REJECTED)
        amounts, terms = rejections.counteroffer_columns(len(columns))
        return ColumnDecisions(
            columns.values[ID_COLUMN].tolist(),
            statuses.tolist(),
            scores.tolist(),
            rejections.reasons,
            amounts,
            terms,
        )

    def _decide_one_by_one(self, applications: Sequence[LoanApplication]) -> list[Decision]:
        probabilities: list[float | None] = []
        reasons: list[Sequence[Reason]] = []
        counteroffers: list[Counteroffer | None] = []
        for application in applications:
            try:
                one = [application]
                inputs = self.model_inputs(one)
                scores = self._probabilities(inputs)
                rejections = self._rejections(
                    inputs, scores, _unset_attributes(one), _application_terms(one)
                )
                named, offer = rejections.reasons[0], rejections.counteroffers(1)[0]
                probability: float | None = float(scores[0])
            except Exception:
                logger.exception("the model raised on application %s", application.Loan_ID)
                probability, named, offer = None, (), None
            probabilities.append(probability)
            reasons.append(named)
            counteroffers.append(offer)
        return self._decisions(applications, probabilities, reasons, counteroffers)

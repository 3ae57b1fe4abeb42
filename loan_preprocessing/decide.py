"""Turning validated applications into decisions with a loaded pipeline.

One place for the decision rule (P(Y) against the model's threshold) so the
HTTP APIs, offline scoring and the Spark job cannot disagree.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import bentoml
import numpy as np
from pydantic import model_serializer
from sklearn.pipeline import Pipeline

from loan_preprocessing.columns import ValidatedColumns
from loan_preprocessing.features import applications_predictor, columns_predictor
from loan_preprocessing.model_store import load_pipeline, model_metadata
from loan_preprocessing.schema import (
    APPROVED,
    ID_COLUMN,
    REJECTED,
    Decision,
    LoanApplication,
    decisions,
)
from loan_preprocessing.search import DECISION_THRESHOLD

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

    def __len__(self) -> int:
        return len(self.statuses)

    def decisions(self) -> list[Decision]:
        """The same decisions as objects (for the prediction log)."""
        return decisions(
            [
                {"Loan_ID": i, "Loan_Status": s, "probability": p}
                for i, s, p in zip(self.loan_ids, self.statuses, self.probabilities, strict=True)
            ]
        )


@dataclass(frozen=True)
class Scorer:
    """A loaded pipeline, the model tag it came from, and its decision threshold."""

    pipeline: Pipeline
    tag: str
    threshold: float = DECISION_THRESHOLD
    _predict_proba: Callable[[Sequence[LoanApplication]], np.ndarray] = field(
        init=False, repr=False, compare=False
    )
    _predict_columns: Callable[[Mapping[str, np.ndarray]], np.ndarray] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # Prepared once per loaded pipeline (the fast path compiles the trees).
        object.__setattr__(self, "_predict_proba", applications_predictor(self.pipeline))
        object.__setattr__(self, "_predict_columns", columns_predictor(self.pipeline))

    @classmethod
    def from_model(cls, stored: bentoml.Model) -> Scorer:
        """The verified pipeline of a stored model, with the threshold it was trained for."""
        threshold = float(model_metadata(stored).get("threshold", DECISION_THRESHOLD))
        return cls(load_pipeline(stored), str(stored.tag), threshold)

    def probabilities(self, applications: Sequence[LoanApplication]) -> np.ndarray:
        # Same numbers as pipeline.predict_proba(to_feature_frame(rows)), faster.
        return np.clip(self._predict_proba(applications)[:, 1], 0.0, 1.0)

    def decide(self, applications: Sequence[LoanApplication]) -> list[Decision]:
        """A decision per application, in order. If the model raises on the batch,
        each row is retried alone, and only rows that still fail are Unscored."""
        try:
            # Python floats: comparing and wrapping numpy scalars one by one costs
            # more than the model on a large batch.
            probabilities: list[float | None] = self.probabilities(applications).tolist()
        except Exception:
            logger.exception(
                "the model raised on a batch of %d; retrying row by row", len(applications)
            )
            probabilities = [self._probability_or_none(a) for a in applications]
        threshold = self.threshold
        decided = decisions(
            [
                {
                    "Loan_ID": a.Loan_ID,
                    "Loan_Status": APPROVED if p >= threshold else REJECTED,
                    "probability": p,
                }
                for a, p in zip(applications, probabilities, strict=True)
                if p is not None
            ]
        )
        if len(decided) == len(applications):
            return decided
        in_order = iter(decided)
        return [
            Unscored(Loan_ID=a.Loan_ID, Loan_Status=REJECTED, probability=0.0)
            if p is None
            else next(in_order)
            for a, p in zip(applications, probabilities, strict=True)
        ]

    def decide_columns(self, columns: ValidatedColumns) -> ColumnDecisions:
        """A decision per row of validated columns, by the same rule as `decide`,
        with no object per row. Raises UnscoredRowError if the model raises: a
        columnar request is answered whole or not at all."""
        try:
            probabilities = np.clip(self._predict_columns(columns.values)[:, 1], 0.0, 1.0)
        except Exception as exc:
            logger.exception("the model raised on a batch of %d columns", len(columns))
            raise UnscoredRowError("the model could not score every row") from exc
        statuses = np.where(probabilities >= self.threshold, APPROVED, REJECTED)
        return ColumnDecisions(
            columns.values[ID_COLUMN].tolist(), statuses.tolist(), probabilities.tolist()
        )

    def _probability_or_none(self, application: LoanApplication) -> float | None:
        try:
            return float(self.probabilities([application])[0])
        except Exception:
            logger.exception("the model raised on application %s", application.Loan_ID)
            return None

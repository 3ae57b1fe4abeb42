"""A challenger version scored in shadow beside the served one (the champion).

The service decides a batch with the champion first; only then does the
challenger score the same applications, and its decisions go to the recording
seam (serving/recording.py) to be kept beside the champion's, never to the
client. A challenger that raises costs the champion nothing: its rows are
counted (loan_challenger_failures_total) and recorded as not scored.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from loan_preprocessing.decide import Scorer, Unscored
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.model.store import ModelLoadError, get_model
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import Decision, LoanApplication
from loan_preprocessing.serving.metrics import DomainMetrics

logger = logging.getLogger(__name__)

CHALLENGER_VARIABLE: Final = "LOAN_CHALLENGER_TAG"


@dataclass(frozen=True)
class ShadowDecisions:
    """The challenger's decisions on one batch, in the champion's row order; a row
    it could not score has status and probability None (and no reasons)."""

    model_tag: str
    statuses: list[str | None]
    probabilities: list[float | None]
    # Each row's reason codes joined by REASON_SEPARATOR (empty for an approval).
    reason_codes: list[str]

    def __len__(self) -> int:
        return len(self.statuses)

    @classmethod
    def unscored(cls, model_tag: str, rows: int) -> ShadowDecisions:
        return cls(model_tag, [None] * rows, [None] * rows, [""] * rows)


def resolve_challenger_tag(requested: str, champion_tag: str) -> str:
    """The concrete version `requested` names in the local store (never the
    network). ModelLoadError (one line, naming the variable) when it is not
    there or is the served version itself: a champion compared with itself
    would only hide a mistyped tag."""
    try:
        tag = str(get_model(requested).tag)
    except ModelLoadError as exc:
        raise ModelLoadError(f"{CHALLENGER_VARIABLE}={requested}: {exc}") from None
    if tag == champion_tag:
        raise ModelLoadError(
            f"{CHALLENGER_VARIABLE}={requested} is the served version {champion_tag}; "
            "name another version or unset the variable"
        )
    return tag


def load_challenger(tag: str) -> Scorer:
    """The challenger's Scorer, verified as the champion's is; a failure names the
    variable so that `bentoml serve` stops with one line that says which model."""
    try:
        return Scorer.from_model(get_model(tag))
    except ModelLoadError as exc:
        raise ModelLoadError(f"{CHALLENGER_VARIABLE}={tag}: {exc}") from None


class ChallengerShadow:
    """Scores what the champion decided, again, with the challenger's Scorer."""

    def __init__(self, scorer: Scorer, metrics: DomainMetrics) -> None:
        self.scorer = scorer
        self.metrics = metrics

    @property
    def model_tag(self) -> str:
        return self.scorer.tag

    def decide(self, applications: Sequence[LoanApplication]) -> ShadowDecisions:
        """The challenger's decisions on /predict's applications."""
        try:
            decided = self.scorer.decide(applications)
        except Exception:  # whatever it raises, the champion's answer stands
            return self._failed(len(applications))
        shadow = _from_objects(self.model_tag, decided)
        self._count_unscored(shadow)
        return shadow

    def decide_columns(self, columns: ValidatedColumns) -> ShadowDecisions:
        """The challenger's decisions on applications held as columns (V2, CSV)."""
        try:
            decided = self.scorer.decide_columns(columns)
        except Exception:  # as in decide()
            return self._failed(len(columns))
        return ShadowDecisions(
            self.model_tag,
            list(decided.statuses),
            list(decided.probabilities),
            decided.reason_codes(),
        )

    def _failed(self, rows: int) -> ShadowDecisions:
        logger.exception("challenger %s could not score a batch of %d", self.model_tag, rows)
        self.metrics.challenger_failures.inc(rows)
        return ShadowDecisions.unscored(self.model_tag, rows)

    def _count_unscored(self, shadow: ShadowDecisions) -> None:
        missed = sum(status is None for status in shadow.statuses)
        if missed:
            self.metrics.challenger_failures.inc(missed)


def _from_objects(model_tag: str, decided: Sequence[Decision]) -> ShadowDecisions:
    statuses: list[str | None] = []
    probabilities: list[float | None] = []
    codes: list[str] = []
    for decision in decided:
        if isinstance(decision, Unscored):
            statuses.append(None)
            probabilities.append(None)
            codes.append("")
            continue
        statuses.append(decision.Loan_Status)
        probabilities.append(decision.probability)
        codes.append(REASON_SEPARATOR.join(r.code for r in decision.reasons or ()))
    return ShadowDecisions(model_tag, statuses, probabilities, codes)

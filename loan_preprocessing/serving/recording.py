"""What the service keeps of each decision it gives: the domain metrics and,
when configured, the prediction log. The one place every API hands its
decisions to, so /predict, V2 and CSV uploads are counted and kept alike."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from loan_preprocessing.decide import ColumnDecisions, Unscored
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.schema import Decision, LoanApplication
from loan_preprocessing.serving.metrics import DomainMetrics
from loan_preprocessing.serving.prediction_log import PredictionLog
from loan_preprocessing.serving.settings import ServiceSettings
from loan_preprocessing.serving.shadow import ShadowDecisions

# Directions of a shadow decision unlike the served one (served->challenger).
FLIP_DIRECTIONS: Final = ("N->Y", "Y->N")


class DecisionRecorder:
    """Counts and keeps the decisions of one worker, given by model `model_tag`."""

    def __init__(self, settings: ServiceSettings, model_tag: str, metrics: DomainMetrics) -> None:
        self.model_tag = model_tag
        self.metrics = metrics
        self.log = (
            PredictionLog(settings.prediction_log, settings.prediction_log_loan_id)
            if settings.prediction_log
            else None
        )

    def record(
        self, applications: Sequence[LoanApplication], decisions: Sequence[Decision]
    ) -> None:
        """Decisions of /predict, in the applications' order; a row the model could
        not score (Unscored) is counted as such, never as a decision."""
        if any(isinstance(d, Unscored) for d in decisions):
            kept = [
                (a, d)
                for a, d in zip(applications, decisions, strict=True)
                if not isinstance(d, Unscored)
            ]
            self.metrics.unscored_rows.inc(len(decisions) - len(kept))
            applications = [a for a, _ in kept]
            decisions = [d for _, d in kept]
        self.metrics.record_decisions(
            [d.Loan_Status for d in decisions], [d.probability for d in decisions]
        )
        if self.log is not None and decisions:
            self.log.write(self.model_tag, applications, decisions)

    def record_challenger(self, champion: Sequence[str | None], shadow: ShadowDecisions) -> None:
        """The challenger's decisions on the same rows as the champion's statuses
        (None where the champion could not score), kept beside them: counted by
        status and by flip direction."""
        scored = [s for s in shadow.statuses if s is not None]
        for status in set(scored):
            self.metrics.challenger_decisions.labels(loan_status=status).inc(scored.count(status))
        flips = [
            f"{served}->{challenged}"
            for served, challenged in zip(champion, shadow.statuses, strict=True)
            if served is not None and challenged is not None and served != challenged
        ]
        for direction in FLIP_DIRECTIONS:
            if direction in flips:
                self.metrics.challenger_flips.labels(direction=direction).inc(
                    flips.count(direction)
                )

    def record_columns(self, columns: ValidatedColumns, decided: ColumnDecisions) -> None:
        """Decisions on applications held as columns (V2, CSV uploads)."""
        self.metrics.record_decisions(decided.statuses, decided.probabilities)
        if self.log is not None:
            self.log.write(self.model_tag, list(columns.applications()), decided.decisions())

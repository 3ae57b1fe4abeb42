"""Domain metrics exported on /metrics next to BentoML's own request metrics.

Created on first use, inside a worker: BentoML sets PROMETHEUS_MULTIPROC_DIR
when a worker starts, and metrics made before that would never reach /metrics.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from typing import Any, Final

PROBABILITY_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)


@dataclass(frozen=True)
class DomainMetrics:
    decisions: Any  # Counter, by Loan_Status
    approval_probability: Any  # Histogram of P(Y)
    validation_failures: Any  # Counter, by field
    model_info: Any  # Gauge, 1 for the serving model's tag
    unscored_rows: Any  # Counter of rows the model raised on

    def record_decisions(self, statuses: Iterable[str], probabilities: Iterable[float]) -> None:
        # One counter update per status, not per row: a 1000-row batch stays cheap.
        for status, count in Counter(statuses).items():
            self.decisions.labels(loan_status=status).inc(count)
        for probability in probabilities:
            self.approval_probability.observe(probability)


@cache
def domain_metrics() -> DomainMetrics:
    import prometheus_client as prom  # imported late: see the module docstring

    return DomainMetrics(
        decisions=prom.Counter(
            "loan_decisions", "Loan decisions made, by Loan_Status.", ["loan_status"]
        ),
        approval_probability=prom.Histogram(
            "loan_approval_probability",
            "Approval probability P(Y) of each decided application.",
            buckets=PROBABILITY_BUCKETS,
        ),
        validation_failures=prom.Counter(
            "loan_validation_failures", "Request validation errors, by the field named.", ["field"]
        ),
        model_info=prom.Gauge(
            "loan_model_info",
            "The model version this service decides with (value 1).",
            ["model_tag"],
            multiprocess_mode="max",
        ),
        unscored_rows=prom.Counter(
            "loan_unscored_rows", "Valid applications the model raised on (answered 500)."
        ),
    )


def failed_fields(error_detail: Iterable[dict[str, Any]]) -> list[str]:
    """The field each validation error names: the last string in its location
    (["applications", 3, "ApplicantIncome"] -> "ApplicantIncome"); "body" when
    the error is about the whole body (invalid JSON)."""
    fields = []
    for error in error_detail:
        names = [part for part in error.get("loc", []) if isinstance(part, str)]
        fields.append(names[-1] if names else "body")
    return fields

"""Domain metrics exported on /metrics next to BentoML's own request metrics.

Created on first use, inside a worker: BentoML sets PROMETHEUS_MULTIPROC_DIR
when a worker starts, and metrics made before that would never reach /metrics.
"""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final

import numpy as np

from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN, TARGET_COLUMN

PROBABILITY_BUCKETS: Final = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
# The `field` label of loan_validation_failures_total takes its values from this
# closed set: a name a client made up (an unknown JSON key or CSV column) counts
# as OTHER_FIELD, so no request can add a series.
OTHER_FIELD: Final = "other"
WHOLE_BODY: Final = "body"
FIELD_LABELS: Final = frozenset(
    {ID_COLUMN, *FEATURE_COLUMNS, TARGET_COLUMN, "applications", "file", WHOLE_BODY, OTHER_FIELD}
)
MULTIPROC_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
_MARK: Final = ".server-"


@dataclass(frozen=True)
class DomainMetrics:
    decisions: Any  # Counter, by Loan_Status
    approval_probability: Any  # Histogram of P(Y)
    validation_failures: Any  # Counter, by field
    model_info: Any  # Gauge, 1 for the serving model's tag
    unscored_rows: Any  # Counter of rows the model raised on
    challenger_decisions: Any  # Counter of shadow decisions, by Loan_Status
    challenger_flips: Any  # Counter of shadow decisions unlike the served one, by direction
    challenger_failures: Any  # Counter of rows the challenger could not score

    def record_decisions(self, statuses: Iterable[str], probabilities: Iterable[float]) -> None:
        # One counter update per status, not per row: a 1000-row batch stays cheap.
        for status, count in Counter(statuses).items():
            self.decisions.labels(loan_status=status).inc(count)
        observe_many(self.approval_probability, probabilities)


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
        challenger_decisions=prom.Counter(
            "loan_challenger_decisions",
            "Decisions of the challenger scored in shadow (never answered), by Loan_Status.",
            ["loan_status"],
        ),
        challenger_flips=prom.Counter(
            "loan_challenger_flips",
            "Shadow decisions that differ from the served one, by direction "
            "(served->challenger: N->Y or Y->N).",
            ["direction"],
        ),
        challenger_failures=prom.Counter(
            "loan_challenger_failures",
            "Applications the challenger could not score in shadow (the served answer stands).",
        ),
    )


def observe_many(histogram: Any, values: Iterable[float]) -> None:
    """`histogram.observe(v)` for every value, with one update per bucket.

    In BentoML's multiprocess mode each observe writes two memory-mapped values
    under a lock, about 1.6 ms per 1000 rows, as much as the rest of recording.
    prometheus_client has no public batch observe, so this fills the histogram's
    own per-bucket values the way observe does (a value goes to the first bucket
    whose upper bound it does not exceed); tests/serving/test_metrics.py checks the
    exposition equals one observe per value. Any other histogram (another
    prometheus_client version) gets the plain loop.
    """
    values = np.asarray(list(values), dtype=np.float64)
    bounds = getattr(histogram, "_upper_bounds", None)
    buckets = getattr(histogram, "_buckets", None)
    total = getattr(histogram, "_sum", None)
    if bounds is None or buckets is None or total is None or len(bounds) != len(buckets):
        for value in values.tolist():
            histogram.observe(value)
        return
    if values.size == 0:
        return
    # side="left": index of the first bound >= value. NaN sorts past the last
    # bound (+Inf): observe counts it in no bucket, and neither does this.
    indices = np.searchsorted(np.asarray(bounds, dtype=np.float64), values, side="left")
    counts = np.bincount(indices, minlength=len(bounds) + 1)
    total.inc(float(values.sum()))
    for bucket, count in zip(buckets, counts[: len(bounds)].tolist(), strict=True):
        if count:
            bucket.inc(count)


def failed_fields(error_detail: Iterable[dict[str, Any]]) -> list[str]:
    """The label of the field each problem of a 400 answer names: the last string
    in its location (["applications", 3, "ApplicantIncome"] -> "ApplicantIncome")
    or its CSV column; "body" when it is about the whole body (invalid JSON);
    OTHER_FIELD for any name outside FIELD_LABELS."""
    fields = []
    for error in error_detail:
        names = [part for part in error.get("loc", []) if isinstance(part, str)]
        if error.get("column"):
            names.append(str(error["column"]))
        field = names[-1] if names else WHOLE_BODY
        fields.append(field if field in FIELD_LABELS else OTHER_FIELD)
    return fields


def count_validation_failures(error_detail: Iterable[dict[str, Any]]) -> None:
    """Count a refused request's problems by the field each names."""
    for field in failed_fields(error_detail):
        domain_metrics().validation_failures.labels(field=field).inc()


def use_server_multiproc_dir(server_pid: int, environ: Any = os.environ) -> Path | None:
    """In a BentoML worker, move prometheus_client's multiprocess directory to one
    of this server's own, `<BentoML's directory>.<server pid>-<its start time>`,
    and return it (None outside a worker).

    BentoML gives every server under one BENTOML_HOME the same directory and
    empties it when a server starts, so a second server in the same checkout
    wiped the first one's metrics and mixed in its own. The workers of one server
    share its main process, whose pid and start time name the directory; one
    left by a server that has stopped is removed. Must run before the first
    metric is made in the worker (prometheus_client reads the variable then).
    """
    import psutil

    shared = environ.get(MULTIPROC_ENV)
    if not shared or _MARK in Path(shared).name:
        return None
    started = int(psutil.Process(server_pid).create_time())
    own = Path(f"{shared}{_MARK}{server_pid}-{started}")
    own.mkdir(exist_ok=True)
    for stale in Path(shared).parent.glob(f"{Path(shared).name}{_MARK}*"):
        if stale != own and not server_alive(stale.name.rpartition(_MARK)[2]):
            shutil.rmtree(stale, ignore_errors=True)
    environ[MULTIPROC_ENV] = str(own)
    return own


def server_alive(name: str) -> bool:
    """Whether `<pid>-<start time>` names a process that is still running (and not
    a later one that reused the pid): how a server's own folders are told from
    the stale ones of servers gone."""
    import psutil

    pid, _, started = name.partition("-")
    try:
        return int(psutil.Process(int(pid)).create_time()) == int(started)
    except (ValueError, psutil.Error):
        return False

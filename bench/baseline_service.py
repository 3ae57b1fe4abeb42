"""The framework's ceiling: the loan service's schema, settings and middleware,
with NO model. Every application gets the same constant decision.

    BENTOML_DO_NOT_TRACK=true bentoml serve bench.baseline_service:NoModelBaseline

`make bench` serves this next to the real service, under the same traffic, so
the ratio of the two says what the model and its preprocessing cost on top of
BentoML itself (validation, batching, serialization, HTTP).
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Final

import bentoml
from bentoml.validators import ContentType

from loan_preprocessing.schema import (
    APPROVED,
    Decision,
    LoanApplication,
    decisions,
    predict_request_model,
)
from loan_preprocessing.serving import request_metrics
from loan_preprocessing.serving import timeout as request_timeout
from loan_preprocessing.serving.heap import freeze_startup_heap
from loan_preprocessing.serving.metrics import use_server_multiproc_dir
from loan_preprocessing.serving.settings import ServiceSettings, worker_envs
from loan_preprocessing.serving.wiring import add_middleware, traffic

SETTINGS = ServiceSettings.from_env_or_exit()
# Before BentoML builds the app: its own request timeout keeps finished
# requests alive for the whole timeout (see the module).
request_timeout.install()
request_metrics.install()  # as the service does
# The bench serves this next to the service: each keeps its own metrics.
use_server_multiproc_dir(os.getppid())
BASELINE_TAG: Final = "no_model:baseline"
# A typical probability: the response has the same size as a real one.
CONSTANT_PROBABILITY: Final = 0.8312345678901234


@bentoml.service(
    name="loan_approval_no_model_baseline",
    workers=SETTINGS.workers,
    threads=SETTINGS.threads,
    traffic=traffic(SETTINGS),
    logging={"access": {"enabled": SETTINGS.access_log}},
    envs=worker_envs(SETTINGS),
)
class NoModelBaseline:  # the service's API declaration, media type included
    def __init__(self) -> None:
        freeze_startup_heap()  # as the service does

    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
        input_spec=predict_request_model(SETTINGS.max_applications),
    )
    async def predict(
        self, applications: list[LoanApplication]
    ) -> Annotated[list[Decision], ContentType("application/json")]:
        """The same answer for everyone: the cost of the framework alone."""
        # Built the way the service builds its decisions.
        return decisions(
            [
                {
                    "Loan_ID": a.Loan_ID,
                    "Loan_Status": APPROVED,
                    "probability": CONSTANT_PROBABILITY,
                    "reasons": [],
                }
                for a in applications
            ]
        )


def _ignore_validation_failures(detail: list[dict[str, Any]]) -> None:
    """The service counts them in a metric; the ceiling only pays for watching."""


# The service's middleware, in the service's order (mypy cannot follow class
# decorators: NoModelBaseline is a bentoml.Service here).
add_middleware(
    NoModelBaseline,  # type: ignore[arg-type]
    SETTINGS,
    media_types={"/predict": "application/json"},
    model_tag=lambda: BASELINE_TAG,
    on_validation_failure=_ignore_validation_failures,
)

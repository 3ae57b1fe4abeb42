"""The loan-approval HTTP service: an adaptively batched /predict and a CSV upload.

    BENTOML_DO_NOT_TRACK=true bentoml serve service:LoanApproval --host 127.0.0.1

The model is the whole scikit-learn pipeline saved by train.py; it is declared
here so `bentoml build` packages it, verified once before any worker starts, and
loaded once per worker.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated

import bentoml
from bentoml.validators import ContentType
from pydantic import SerializeAsAny

from loan_preprocessing import deadline
from loan_preprocessing.decide import ColumnDecisions, Scorer, Unscored
from loan_preprocessing.inputs.columns import ValidatedColumns
from loan_preprocessing.model.store import LocalBentoModel, get_model, model_metadata, tag_to_serve
from loan_preprocessing.schema import Decision, LoanApplication, predict_request_model
from loan_preprocessing.serving import (
    connection_balance,
    decisions_api,
    open_inference,
    outcomes_api,
    recorded_answers,
    recording,
    request_metrics,
)
from loan_preprocessing.serving import timeout as request_timeout
from loan_preprocessing.serving.csv_upload import answer_csv_upload
from loan_preprocessing.serving.heap import freeze_startup_heap
from loan_preprocessing.serving.log_filter import quiet_expected_errors
from loan_preprocessing.serving.metrics import (
    count_validation_failures,
    domain_metrics,
    use_server_multiproc_dir,
)
from loan_preprocessing.serving.recording import (
    DecisionRecorder,
    prepare_store,
    recorded_request_model,
)
from loan_preprocessing.serving.server_runtime import (
    server_runtime,
    start_server_runtime,
    stop_server,
)
from loan_preprocessing.serving.settings import ServiceSettings, worker_envs
from loan_preprocessing.serving.shadow import (
    ChallengerShadow,
    load_challenger,
    resolve_challenger_tag,
)
from loan_preprocessing.serving.wiring import add_middleware, traffic

SETTINGS = ServiceSettings.from_env_or_exit()
# Before BentoML builds the app: its own request timeout keeps finished
# requests alive for the whole timeout (see the module).
request_timeout.install()
# Likewise: BentoML's request metrics would add series for any path a client sends.
request_metrics.install()
# Before any metric exists in a worker: this server's metrics, not every
# server's under BENTOML_HOME (see the function). The worker's parent is the
# server's main process.
use_server_multiproc_dir(os.getppid())
if SETTINGS.balance_connections:  # before BentoML starts uvicorn in a worker
    connection_balance.install(SETTINGS.workers)
MEDIA_TYPES = {
    "/predict": "application/json",
    "/predict_csv": "multipart/form-data",
    open_inference.INFER_PATH: "application/json",
}
# The media type is declared so that BentoML does not rebuild the response's JSON
# Schema for every answer to find it out (15% of a worker's time on single-row
# requests, measured with py-spy).
Decisions = Annotated[list[SerializeAsAny[Decision]], ContentType("application/json")]


@functools.cache
def _serving_tag() -> str:
    """The concrete model version this process serves: in a worker, the one its
    server's main process resolved before any worker started, so a restarted
    worker serves it too whatever was trained meanwhile; elsewhere (the main
    process, an in-process app) resolved here, once."""
    if (runtime := server_runtime()) is not None:
        return runtime.model_tag
    # LoanApproval.bento is set when BentoML serves a built Bento (mypy sees the
    # class, not the bentoml.Service its decorator makes of it).
    bento = LoanApproval.bento  # type: ignore[attr-defined]
    return str(get_model(tag_to_serve(SETTINGS.model_tag, bento)).tag)


def _load_scorer() -> Scorer:
    return Scorer.from_model(get_model(_serving_tag()))


@functools.cache
def _challenger_tag() -> str | None:
    """The challenger's concrete version (LOAN_CHALLENGER_TAG), resolved once per
    process like the served one's; None without a challenger."""
    if SETTINGS.challenger_tag is None:
        return None
    return resolve_challenger_tag(SETTINGS.challenger_tag, _serving_tag())


# The Open Inference Protocol (V2) at /v2, the decision records at /decisions
# and their outcomes at /outcomes, beside /predict.
@bentoml.asgi_app(outcomes_api.app, path=outcomes_api.MOUNT)
@bentoml.asgi_app(decisions_api.app, path=decisions_api.MOUNT)
@bentoml.asgi_app(open_inference.app, path=open_inference.MOUNT)
@bentoml.service(
    workers=SETTINGS.workers,
    threads=SETTINGS.threads,
    traffic=traffic(SETTINGS),
    logging={"access": {"enabled": SETTINGS.access_log}},
    envs=worker_envs(SETTINGS),
)
class LoanApproval:
    model = LocalBentoModel(SETTINGS.model_tag)

    @bentoml.on_deployment
    def verify_model() -> None:
        """Runs once in the main process before workers start: a missing, tampered,
        untrusted or incompatible model stops `bentoml serve` with one line; so do
        such a challenger (LOAN_CHALLENGER_TAG) and a decision store that cannot be
        opened or has an older schema. The version verified is the one every
        worker serves (serving/server_runtime.py)."""
        _load_scorer()
        if (challenger := _challenger_tag()) is not None:
            load_challenger(challenger)
        prepare_store(SETTINGS)
        start_server_runtime(_serving_tag())

    # Read by the V2 handlers (serving/open_inference.py).
    max_rows = SETTINGS.max_applications

    def __init__(self) -> None:
        self.runtime = server_runtime()
        try:
            self._start()
        except Exception as exc:
            if self.runtime is None:
                raise
            # A worker that cannot start would be restarted, and fail, forever:
            # stop the server instead, with one line (no traceback).
            stop_server(self.runtime, f"{type(exc).__name__}: {exc}")
            os._exit(1)

    def _start(self) -> None:
        quiet_expected_errors()
        self.scorer = _load_scorer()
        self.model_version = self.scorer.tag.partition(":")[2]
        metrics = domain_metrics()
        metrics.model_info.labels(model_tag=self.scorer.tag).set(1)
        sha256 = model_metadata(get_model(self.scorer.tag))["artifact"]["sha256"]
        self.recorder = DecisionRecorder.open(SETTINGS, self.scorer.tag, sha256, metrics)
        # Read by GET /decisions/{id}/notice (serving/decisions_api.py).
        self.notice_settings = SETTINGS.notice_settings()
        challenger = _challenger_tag()
        self.challenger = (
            None if challenger is None else ChallengerShadow(load_challenger(challenger), metrics)
        )
        freeze_startup_heap()

    async def __is_ready__(self) -> bool:
        """/readyz: not ready once any worker of this server failed to start, nor
        while decisions cannot be recorded (ready again by itself as soon as the
        store commits)."""
        if self.runtime is not None and self.runtime.failure() is not None:
            return False
        return await self.recorder.ready()

    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
        input_spec=recorded_request_model(predict_request_model(SETTINGS.max_applications)),
    )
    async def predict(self, applications: list[LoanApplication]) -> Decisions:
        """Approve (Y) or reject (N) each application, in order, with P(Y) and, for
        a rejection, its principal reasons (at most four, most important first)."""
        # Async although it computes: a batch takes about a millisecond per 1000
        # rows, less than handing it to a thread and back (measured 7-9% more
        # requests/s this way); one batch runs at a time anyway.
        decisions = self.scorer.decide(applications)
        await self.recorder.record(applications, decisions)
        if self.challenger is not None:
            self.recorder.record_challenger(
                [None if isinstance(d, Unscored) else d.Loan_Status for d in decisions],
                [d.decision_id for d in decisions],
                self.challenger.decide(applications),
            )
        return decisions

    @bentoml.api(route="/predict_csv")
    # BentoML sends a returned starlette Response as it is (hence the ignores on
    # the returns); the annotation documents the 200 answer's body.
    def predict_csv(self, file: Path) -> Annotated[str, ContentType("text/csv")]:
        """Score a CSV file in the data set's format (multipart field `file`);
        answers CSV `Loan_ID,Loan_Status,probability,reasons,counteroffer_amount,
        counteroffer_term,decision_id` in the file's order (`reasons`: a
        rejection's reason codes separated by `;`).
        The part's own Content-Type is not checked: curl sends
        application/octet-stream and Excel-era browsers application/vnd.ms-excel;
        the parse decides."""
        return answer_csv_upload(  # type: ignore[return-value]
            file, SETTINGS.max_applications, self.decide_columns
        )

    def decide_columns(
        self, columns: ValidatedColumns, answers: recording.RowAnswers = recorded_answers.csv_rows
    ) -> tuple[ColumnDecisions, list[str] | None]:
        """Decide applications held as columns (the V2 endpoint, CSV uploads),
        recorded as /predict records its decisions (`answers` renders each row's
        answer as the route gives it); the decisions and their ids. Nothing is
        recorded once the request's deadline has passed (its answer is a 504)."""
        decided = self.scorer.decide_columns(columns)
        deadline.check()
        decision_ids = self.recorder.record_columns(columns, decided, answers)
        if self.challenger is not None:
            self.recorder.record_challenger(
                decided.statuses, decision_ids, self.challenger.decide_columns(columns)
            )
        return decided, decision_ids


# mypy cannot follow class decorators: LoanApproval is a bentoml.Service here.
add_middleware(
    LoanApproval,  # type: ignore[arg-type]
    SETTINGS,
    media_types=MEDIA_TYPES,
    model_tag=_serving_tag,
    on_validation_failure=count_validation_failures,
)

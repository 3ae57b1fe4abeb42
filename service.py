"""The loan-approval HTTP service: one adaptively batched /predict API.

    BENTOML_DO_NOT_TRACK=true bentoml serve service:LoanApproval --host 127.0.0.1

The model is the whole scikit-learn pipeline saved by train.py; it is declared
here so `bentoml build` packages it, and loaded once per worker.
"""

from __future__ import annotations

import bentoml
import numpy as np

from loan_preprocessing.features import to_feature_frame
from loan_preprocessing.middleware import BearerAuth, BodySizeLimit, ModelTagHeader
from loan_preprocessing.model_store import get_model, load_pipeline, tag_to_serve
from loan_preprocessing.schema import (
    APPROVED,
    REJECTED,
    Decision,
    LoanApplication,
    predict_request_model,
)
from loan_preprocessing.settings import ServiceSettings

SETTINGS = ServiceSettings.from_env()


@bentoml.service(
    workers=SETTINGS.workers,
    threads=SETTINGS.threads,
    traffic={"timeout": SETTINGS.timeout_seconds, "max_concurrency": SETTINGS.max_concurrency},
    logging={"access": {"enabled": SETTINGS.access_log}},
)
class LoanApproval:
    model = bentoml.models.BentoModel(SETTINGS.model_tag)
    serving_tag: str | None = None

    def __init__(self) -> None:
        # LoanApproval.bento is set when BentoML serves a built Bento.
        stored = get_model(tag_to_serve(SETTINGS.model_tag, LoanApproval.bento))
        self.pipeline = load_pipeline(stored)
        self.threshold = float(stored.info.metadata.get("threshold", 0.5))
        type(self).serving_tag = str(stored.tag)

    @bentoml.api(
        batchable=True,
        max_batch_size=SETTINGS.max_batch_size,
        max_latency_ms=SETTINGS.max_latency_ms,
        input_spec=predict_request_model(SETTINGS.max_applications),
    )
    def predict(self, applications: list[LoanApplication]) -> list[Decision]:
        """Approve (Y) or reject (N) each application, in order, with P(Y)."""
        frame = to_feature_frame([a.model_dump() for a in applications])
        probabilities = self.pipeline.predict_proba(frame)[:, 1]
        return [
            Decision(
                Loan_ID=a.Loan_ID,
                Loan_Status=APPROVED if p >= self.threshold else REJECTED,
                probability=float(p),
            )
            for a, p in zip(applications, np.clip(probabilities, 0.0, 1.0), strict=True)
        ]


LoanApproval.add_asgi_middleware(ModelTagHeader, model_tag=lambda: LoanApproval.inner.serving_tag)
LoanApproval.add_asgi_middleware(BearerAuth, api_key=SETTINGS.api_key)
LoanApproval.add_asgi_middleware(BodySizeLimit, max_bytes=SETTINGS.max_body_bytes)

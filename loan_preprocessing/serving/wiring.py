"""The service's ASGI middleware, added in one place and in one order.

Used by service.py and by the bench's no-model ceiling, so the ceiling pays for
exactly the middleware the service runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import bentoml

from loan_preprocessing.schema import TARGET_COLUMN, LoanApplication, predict_request_model
from loan_preprocessing.serving import decisions_api, open_inference, outcomes_api
from loan_preprocessing.serving.decisions_api import BarePath
from loan_preprocessing.serving.guards import (
    JSON_MEDIA_TYPE,
    ContentTypeGuard,
    ErrorBodies,
    JsonBodyGuard,
    shed_error,
)
from loan_preprocessing.serving.middleware import (
    AmbiguousFraming,
    BearerAuth,
    BodyReader,
    BodySizeLimit,
    ConcurrencyLimit,
    ModelTagHeader,
    UnroutablePath,
)
from loan_preprocessing.serving.openapi import DocsPage, OpenApiCorrections
from loan_preprocessing.serving.recorded_answers import REPLAYERS
from loan_preprocessing.serving.recording import DecisionDelivery, DecisionRecorder
from loan_preprocessing.serving.settings import ServiceSettings

Layer = tuple[type, dict[str, Any]]


def middleware_stack(
    settings: ServiceSettings,
    *,
    media_types: Mapping[str, str],
    model_tag: Callable[[], str],
    on_validation_failure: Callable[[list[dict[str, Any]]], None],
) -> list[Layer]:
    """The middleware with their options, OUTERMOST FIRST: a request meets them in
    this order. The size limit and the key come before anything reads the body;
    the body is received (with its idle timeout) before a concurrency slot is
    taken; only then is it checked and handed to BentoML. A request whose body's
    length is ambiguous is refused before all of them."""
    api_paths = frozenset(media_types)
    # The object keys each JSON API's bodies may hold (an Open Inference request's
    # are the protocol's own; its columns are values, checked by the columns).
    record_keys = frozenset(
        {*predict_request_model().model_fields, *LoanApplication.model_fields, TARGET_COLUMN}
    )
    known_keys = {
        path: open_inference.KNOWN_KEYS if path == open_inference.INFER_PATH else record_keys
        for path, media_type in media_types.items()
        if media_type == JSON_MEDIA_TYPE
    }
    return [
        (AmbiguousFraming, {}),
        (UnroutablePath, {}),
        # The served version's V2 routes take the unversioned ones' path, so
        # every layer below applies to them as it does there.
        (open_inference.OpenInferencePaths, {"model_tag": model_tag}),
        (BodySizeLimit, {"max_bytes": settings.max_body_bytes}),
        (BearerAuth, {"api_key": settings.api_key}),
        (
            BodyReader,
            {
                "max_bytes": settings.max_body_bytes,
                "idle_seconds": settings.body_idle_seconds,
                # Bodies received but not yet answered hold at most what the
                # slots could: memory stays bounded however many clients upload.
                "budget_bytes": settings.slots_per_worker * settings.max_body_bytes,
            },
        ),
        (ConcurrencyLimit, {"paths": api_paths, "slots": settings.slots_per_worker}),
        (ModelTagHeader, {"model_tag": model_tag}),
        # Inside the concurrency limit, so a request holds its slot until its
        # answer is delivered; outside everything that can answer for the routes.
        (DecisionDelivery, {"replayers": REPLAYERS, "recorder": _worker_recorder}),
        (BarePath, {"mounts": (decisions_api.MOUNT, outcomes_api.MOUNT)}),
        (DocsPage, {}),
        (
            OpenApiCorrections,
            {
                "api_paths": api_paths,
                "model_tag": model_tag,
                "key_required": settings.api_key is not None,
            },
        ),
        (
            ErrorBodies,
            {
                "paths": api_paths,
                "on_failure": on_validation_failure,
                "shed_error": shed_error(settings.max_latency_ms),
            },
        ),
        (ContentTypeGuard, {"accepted": media_types}),
        (JsonBodyGuard, {"known_keys": known_keys}),
    ]


def _worker_recorder() -> DecisionRecorder | None:
    """The recorder of this worker's service instance (None: records are off, or
    a service without them, such as the bench's no-model ceiling)."""
    try:
        service = bentoml.get_current_service()
    except bentoml.exceptions.BentoMLException:
        return None
    recorder: DecisionRecorder | None = getattr(service, "recorder", None)
    return recorder


def add_middleware(
    service: bentoml.Service[Any],
    settings: ServiceSettings,
    *,
    media_types: Mapping[str, str],
    model_tag: Callable[[], str],
    on_validation_failure: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Add the middleware of `middleware_stack` to `service`; `media_types` maps
    each API route to the request media type it accepts."""
    # Starlette makes the first middleware added the outermost, so adding the
    # stack in its order keeps that order.
    for middleware, options in middleware_stack(
        settings,
        media_types=media_types,
        model_tag=model_tag,
        on_validation_failure=on_validation_failure,
    ):
        service.add_asgi_middleware(middleware, **options)


def traffic(settings: ServiceSettings) -> dict[str, float]:
    """BentoML's traffic options: its request timeout only. Its concurrency limit
    would take a slot before the body arrives; ConcurrencyLimit replaces it."""
    return {"timeout": settings.timeout_seconds}

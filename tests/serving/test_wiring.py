"""The middleware order, outermost first, as the service really registers it."""

from __future__ import annotations

from loan_preprocessing.serving.guards import ContentTypeGuard, ErrorBodies, JsonBodyGuard
from loan_preprocessing.serving.middleware import (
    AmbiguousFraming,
    BearerAuth,
    BodyReader,
    BodySizeLimit,
    ConcurrencyLimit,
    UnroutablePath,
)
from loan_preprocessing.serving.open_inference import OpenInferencePaths
from loan_preprocessing.serving.settings import ServiceSettings
from loan_preprocessing.serving.wiring import middleware_stack, traffic

MEDIA_TYPES = {"/predict": "application/json", "/predict_csv": "multipart/form-data"}


def stack(settings: ServiceSettings) -> list[type]:
    layers = middleware_stack(
        settings, media_types=MEDIA_TYPES, model_tag=lambda: "m:1", on_validation_failure=print
    )
    return [middleware for middleware, _ in layers]


def test_limits_and_key_come_before_anything_that_reads_the_body():
    order = stack(ServiceSettings.from_env({}))
    # OpenInferencePaths only renames a path, before anything looks at it.
    assert order[:7] == [
        AmbiguousFraming,
        UnroutablePath,
        OpenInferencePaths,
        BodySizeLimit,
        BearerAuth,
        BodyReader,
        ConcurrencyLimit,
    ]
    for reader in (ContentTypeGuard, JsonBodyGuard, ErrorBodies):
        assert order.index(reader) > order.index(ConcurrencyLimit)


def test_the_service_registers_the_stack_in_its_order(service_module):
    registered = [cls for cls, _ in service_module.LoanApproval.middlewares]
    assert registered == stack(service_module.SETTINGS)


def test_bentoml_takes_no_concurrency_slot_before_the_body():
    """BentoML's own limit would hold a slot from the first header on."""
    assert "max_concurrency" not in traffic(ServiceSettings.from_env({}))


def test_a_slot_budget_per_worker():
    settings = ServiceSettings.from_env({"LOAN_WORKERS": "2", "LOAN_MAX_CONCURRENCY": "129"})
    layers = dict(
        middleware_stack(
            settings, media_types=MEDIA_TYPES, model_tag=lambda: "m", on_validation_failure=print
        )
    )
    assert layers[ConcurrencyLimit]["slots"] == 65
    assert layers[BodyReader]["budget_bytes"] == 65 * settings.max_body_bytes

"""BentoML's request metrics labelled from a closed set of endpoints."""

from __future__ import annotations

import pytest

from loan_preprocessing.serving.request_metrics import (
    ASSETS_PREFIX,
    OTHER_ENDPOINT,
    SYSTEM_ENDPOINTS,
    BoundedRequestMetrics,
    endpoint_label,
)


@pytest.mark.parametrize("path", sorted(SYSTEM_ENDPOINTS))
def test_system_routes_keep_their_path(path):
    assert endpoint_label(path) == path


@pytest.mark.parametrize(
    ("path", "label"),
    [
        ("/static_content/swagger-ui.css", ASSETS_PREFIX),
        ("/made-up-1", OTHER_ENDPOINT),
        ("/predict/../x", OTHER_ENDPOINT),
        ("/" + "a" * 10_000, OTHER_ENDPOINT),
    ],
)
def test_other_paths_share_a_label(path, label):
    assert endpoint_label(path) == label


def test_the_service_app_is_built_with_it(asgi_app):
    """service.py installs it before BentoML builds the app."""
    classes = [m.cls for m in asgi_app.user_middleware]
    assert BoundedRequestMetrics in classes
    assert not [c for c in classes if c.__name__ == "RunnerTrafficMetricsMiddleware"]

"""BentoML's request metrics, labelled by route instead of by whatever path a
client asks for.

BentoML 1.4's RunnerTrafficMetricsMiddleware labels its request counter,
duration histogram and in-progress gauge with the request's raw path, so every
distinct path a client sends, 404s included, adds a dozen series for good:
`GET /a1`, `GET /a2`, ... grow the worker's memory and /metrics without bound.
`BoundedRequestMetrics` is that middleware with the `endpoint` label taken from
a closed set: the service's routes, the API page's assets as one, and
OTHER_ENDPOINT for the rest. The request itself still sees its real path.
`install()` puts it where BentoML looks the middleware up when it builds a
worker's app.
"""

from __future__ import annotations

import copy
from typing import Any, Final

from bentoml._internal.context import server_context
from bentoml._internal.server.http import instruments

OTHER_ENDPOINT: Final = "other"
SYSTEM_ENDPOINTS: Final = frozenset(
    {"/", "/docs.json", "/schema.json", "/livez", "/readyz", "/healthz", "/metrics"}
)
ASSETS_PREFIX: Final = "/static_content/"
# BentoML's class, kept: install() replaces the module's name with the subclass.
_BENTOML_MIDDLEWARE: Final = instruments.RunnerTrafficMetricsMiddleware


def endpoint_label(path: str) -> str:
    """The `endpoint` label of a request for `path`."""
    if path in SYSTEM_ENDPOINTS or path in server_context.service_routes:
        return path
    if path.startswith(ASSETS_PREFIX):
        return ASSETS_PREFIX
    return OTHER_ENDPOINT


class BoundedRequestMetrics(_BENTOML_MIDDLEWARE):  # type: ignore[valid-type,misc]
    """RunnerTrafficMetricsMiddleware whose `endpoint` label is `endpoint_label`."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if not str(scope.get("type", "")).startswith("http"):
            return await super().__call__(scope, receive, send)
        label = endpoint_label(scope["path"])
        if label == scope["path"]:
            return await super().__call__(scope, receive, send)
        if not self._is_setup:
            self._setup()
        # BentoML's code reads the label from scope["path"]: it gets the label,
        # and the app behind it the request's own scope.
        app = self.app

        async def with_real_path(_: Any, inner_receive: Any, inner_send: Any) -> None:
            await app(scope, inner_receive, inner_send)

        labelled = copy.copy(self)
        labelled.app = with_real_path
        await _BENTOML_MIDDLEWARE.__call__(labelled, {**scope, "path": label}, receive, send)


def install() -> None:
    """Make BentoML build its apps with BoundedRequestMetrics; before the app is built."""
    # A deliberate replacement of BentoML's class, which mypy cannot type.
    instruments.RunnerTrafficMetricsMiddleware = BoundedRequestMetrics  # type: ignore[misc]

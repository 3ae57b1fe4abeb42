"""The service's ASGI middleware, added in one place and one order.

Used by service.py and by the bench's no-model ceiling, so the ceiling pays for
exactly the middleware the service runs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import bentoml

from loan_preprocessing.serving.middleware import (
    BearerAuth,
    BodySizeLimit,
    ContentTypeGuard,
    ModelTagHeader,
    OpenApiCorrections,
    ValidationFailureCounter,
)
from loan_preprocessing.serving.settings import ServiceSettings


def add_middleware(
    service: bentoml.Service[Any],
    settings: ServiceSettings,
    *,
    media_types: Mapping[str, str],
    model_tag: Callable[[], str],
    on_validation_failure: Callable[[list[dict[str, Any]]], None],
) -> None:
    """Add the middleware to `service`; `media_types` maps each API route to the
    request media type it accepts."""
    api_paths = frozenset(media_types)
    # Outermost last: the size limit runs first, then the key, then the rest.
    service.add_asgi_middleware(OpenApiCorrections, api_paths=api_paths)
    service.add_asgi_middleware(ContentTypeGuard, accepted=media_types)
    service.add_asgi_middleware(
        ValidationFailureCounter, paths=api_paths, on_failure=on_validation_failure
    )
    service.add_asgi_middleware(ModelTagHeader, model_tag=model_tag)
    service.add_asgi_middleware(BearerAuth, api_key=settings.api_key)
    service.add_asgi_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)

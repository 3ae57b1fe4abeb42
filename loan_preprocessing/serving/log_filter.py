"""Keep the service log readable: a caller's bad input, or a request the batcher
shed under load, is one line, not a traceback."""

from __future__ import annotations

import logging
from typing import Final

from bentoml.exceptions import ServiceUnavailable
from pydantic import ValidationError

# BentoML logs every exception of an API call, validation errors included,
# with a full traceback, under this logger.
BENTOML_HTTP_LOGGER: Final = "bentoml._internal.server.http_app"


class ExpectedErrorFilter(logging.Filter):
    """Turns BentoML's error-with-traceback for a pydantic ValidationError into a
    one-line warning: it is the caller's mistake (answered 400), not the server's.
    Likewise a request its batcher shed (ServiceUnavailable, answered 503): load,
    not a fault; `bentoml_service_request_total{http_response_code="503"}` on
    /metrics counts them."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            _one_line(record, f"400, {error.error_count()} validation error(s)")
        elif isinstance(error, ServiceUnavailable):
            _one_line(record, "503, shed by the batcher (past LOAN_MAX_LATENCY_MS)")
        return True


def _one_line(record: logging.LogRecord, outcome: str) -> None:
    record.msg = f"{record.getMessage()}: {outcome}"
    record.args = ()
    record.exc_info = None
    record.exc_text = None
    record.levelno, record.levelname = logging.WARNING, "WARNING"


def quiet_expected_errors() -> None:
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ExpectedErrorFilter) for f in logger.filters):
        logger.addFilter(ExpectedErrorFilter())

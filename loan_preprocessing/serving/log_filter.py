"""Keep the service log readable: a caller's bad input is one line, not a traceback."""

from __future__ import annotations

import logging
from typing import Final

from pydantic import ValidationError

# BentoML logs every exception of an API call, validation errors included,
# with a full traceback, under this logger.
BENTOML_HTTP_LOGGER: Final = "bentoml._internal.server.http_app"


class ValidationTracebackFilter(logging.Filter):
    """Turns BentoML's error-with-traceback for a pydantic ValidationError into a
    one-line warning: it is the caller's mistake (answered 400), not the server's."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], ValidationError):
            error = record.exc_info[1]
            record.msg = f"{record.getMessage()}: 400, {error.error_count()} validation error(s)"
            record.args = ()
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.WARNING, "WARNING"
        return True


def quiet_validation_tracebacks() -> None:
    logger = logging.getLogger(BENTOML_HTTP_LOGGER)
    if not any(isinstance(f, ValidationTracebackFilter) for f in logger.filters):
        logger.addFilter(ValidationTracebackFilter())

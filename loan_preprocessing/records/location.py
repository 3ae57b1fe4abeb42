"""Where the decision store is: the URL the service and the operator commands
share (LOAN_DECISION_STORE_URL, or the file LOAN_DECISION_STORE_URL_FILE names),
by default a SQLite file beside the model store."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from loan_preprocessing.environment import DEFAULT_BENTOML_HOME

URL_VARIABLE: Final = "LOAN_DECISION_STORE_URL"
URL_FILE_VARIABLE: Final = "LOAN_DECISION_STORE_URL_FILE"
STORE_FILE: Final = "decisions.sqlite3"


def default_store_url(environ: Mapping[str, str] | None = None) -> str:
    """The SQLite file in the project's state folder: BENTOML_HOME (the model
    store), else the project's .bentoml."""
    environ = os.environ if environ is None else environ
    home = Path(environ.get("BENTOML_HOME") or DEFAULT_BENTOML_HOME)
    return f"sqlite:///{home / STORE_FILE}"


def store_url_from_environment(environ: Mapping[str, str] | None = None) -> str:
    """The store's URL as the service would read it from `environ`."""
    environ = os.environ if environ is None else environ
    if environ.get(URL_VARIABLE, "").strip():
        return environ[URL_VARIABLE].strip()
    if environ.get(URL_FILE_VARIABLE, "").strip():
        return Path(environ[URL_FILE_VARIABLE]).read_text(encoding="utf-8").strip()
    return default_store_url(environ)

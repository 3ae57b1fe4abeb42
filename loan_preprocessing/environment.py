"""Project-wide defaults for running BentoML, applied by entry points (never at import)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Final

PROJECT_ROOT: Final = Path(__file__).resolve().parent.parent
# The model store lives inside the project (git-ignored) unless BENTOML_HOME says otherwise.
DEFAULT_BENTOML_HOME: Final = PROJECT_ROOT / ".bentoml"


def apply_project_defaults() -> None:
    """Point BentoML at the project's store and switch its telemetry off, unless the
    environment already decides; call before BentoML is first used."""
    os.environ.setdefault("BENTOML_HOME", str(DEFAULT_BENTOML_HOME))
    os.environ.setdefault("BENTOML_DO_NOT_TRACK", "true")

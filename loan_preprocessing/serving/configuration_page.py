"""The manual's configuration page, generated from what the code reads.

The LOAN_* variables come from `ServiceSettings` (each field's name, type and
default, and the comment above it in settings.py); the make variables from the
Makefile's `NAME ?= default` lines and the `# NAME: meaning` comment above each.
docs/configuration.md is this module's output, and a test fails when it is not
current, or when a setting or a make variable has no description. Regenerate it:

    python -m loan_preprocessing.serving.configuration_page > docs/configuration.md
"""

from __future__ import annotations

import ast
import html
import inspect
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic_core import PydanticUndefined

from loan_preprocessing.serving.settings import ENV_PREFIX, ServiceSettings

MAKE_VARIABLE: Final = re.compile(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*\?=\s*(.*)$")
MAKE_COMMENT: Final = re.compile(r"^#\s*([A-Z][A-Z0-9_]*):\s*(.+)$")


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    meaning: str


def setting_comments() -> dict[str, str]:
    """Each ServiceSettings field's comment (the comment lines just above it)."""
    source = textwrap.dedent(inspect.getsource(ServiceSettings))
    tree = ast.parse(source)
    lines = source.splitlines()
    comments: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            above: list[str] = []
            row = node.lineno - 2
            while row >= 0 and lines[row].strip().startswith("#"):
                above.insert(0, lines[row].strip().removeprefix("#").strip())
                row -= 1
            comments[node.target.id] = " ".join(above)
    return comments


def service_variables() -> list[Variable]:
    comments = setting_comments()
    variables = []
    for field, info in ServiceSettings.model_fields.items():
        default = info.default
        shown = "unset" if default is None or default is PydanticUndefined else f"`{default}`"
        if isinstance(default, bool):
            shown = f"`{str(default).lower()}`"
        variables.append(Variable(ENV_PREFIX + field.upper(), shown, comments.get(field, "")))
    return variables


def make_variables(makefile: str) -> list[Variable]:
    """The Makefile's `NAME ?= default` variables with their `# NAME: meaning` lines."""
    variables = []
    lines = makefile.splitlines()
    for number, line in enumerate(lines):
        match = MAKE_VARIABLE.match(line)
        if not match:
            continue
        name, default = match.groups()
        comment = MAKE_COMMENT.match(lines[number - 1]) if number else None
        meaning = comment.group(2) if comment and comment.group(1) == name else ""
        shown = f"`{default.strip()}`" if default.strip() else "unset"
        variables.append(Variable(name, shown, meaning))
    return variables


def _table(variables: list[Variable]) -> str:
    # Escaped: a meaning may say <version>, which Markdown would take for a tag.
    rows = [
        f"| `{v.name}` | {v.default} | {html.escape(v.meaning, quote=False)} |" for v in variables
    ]
    return "\n".join(["| variable | default | meaning |", "|---|---|---|", *rows])


def configuration_page(makefile_path: Path) -> str:
    return f"""# Configuration

This page is generated from the code (the service's settings class and the
Makefile), and a test checks that it is current. It lists everything there is to set.

## The service: `LOAN_*` environment variables

Read once when the service starts (`make serve`, `bentoml serve`, the image, the
Kubernetes Deployment). A value the service cannot use stops it with one line
naming the variable; an empty variable counts as unset.

{_table(service_variables())}

For example, serve an older version with a smaller batch limit:

```bash
LOAN_MODEL_TAG=loan_approval:<version> LOAN_MAX_APPLICATIONS=1000 make serve
```

## The make targets: make variables

Given on the command line, as in `make serve PORT=3001` or
`make train DATA=path/to/training.csv`. `make` alone lists the targets.

{_table(make_variables(makefile_path.read_text()))}

`BENTOML_HOME` is exported to every command `make` runs, with
`BENTOML_DO_NOT_TRACK=true` (BentoML's telemetry off). When you run `bentoml`
yourself, export both first (see [Get started](get-started.md)).
"""


def main() -> None:
    root = Path(__file__).resolve().parents[2]
    print(configuration_page(root / "Makefile"), end="")


if __name__ == "__main__":
    main()

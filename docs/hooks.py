"""MkDocs hooks: the landing page generated from the repository at every build.

- index.md is README.md, its links into docs/ made relative to the site, so the
  landing page on GitHub and in the manual is one text;
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parent.parent


def landing_page() -> str:
    """README.md with `docs/x.md` links as `x.md`."""
    return re.sub(r"\]\(docs/", "](", (ROOT / "README.md").read_text())


def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", content=landing_page()))
    return files

"""Request bodies for the load generator: one JSON body per line of a file.

Rows are the real applications (test and training files, read in place, never
copied into the project) when they are there, else the synthetic sample; each is
exported with pandas `to_json(orient="records")`, as a client would send them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from loan_preprocessing.data import read_applications
from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN

BATCH_ROWS: Final = 1_000
# Distinct large bodies; a few are enough to keep caches honest.
BATCH_BODIES: Final = 8


def application_rows(paths: list[Path]) -> list[dict]:
    """Every application in `paths` as JSON records with the request's fields only."""
    frames = [read_applications(p)[[ID_COLUMN, *FEATURE_COLUMNS]] for p in paths]
    return json.loads(pd.concat(frames, ignore_index=True).to_json(orient="records"))


def write_single_bodies(rows: list[dict], path: Path) -> Path:
    """One single-application body per row."""
    path.write_text("".join(json.dumps({"applications": [r]}) + "\n" for r in rows))
    return path


def write_bodies(rows: list[dict], directory: Path, seed: int = 0) -> dict[str, Path]:
    """`single`: one body per application; `batch`: BATCH_BODIES bodies of BATCH_ROWS
    applications drawn with replacement."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    single = write_single_bodies(rows, directory / "single_row_bodies.jsonl")
    batch = directory / f"{BATCH_ROWS}_row_bodies.jsonl"
    with open(batch, "w") as out:
        for _ in range(BATCH_BODIES):
            picked = rng.integers(0, len(rows), BATCH_ROWS)
            out.write(json.dumps({"applications": [rows[i] for i in picked]}) + "\n")
    return {"single": single, "batch": batch}

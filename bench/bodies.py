"""Request bodies for the load generator: one JSON body per line of a file.

Rows are the real applications (test and training files, read in place, never
copied into the project) when they are there, else the synthetic sample; each is
exported with pandas `to_json(orient="records")`, as a client would send them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from loan_preprocessing.data import read_applications
from loan_preprocessing.schema import CATEGORICAL_COLUMNS, FEATURE_COLUMNS, ID_COLUMN

BATCH_ROWS: Final = 1_000
# Distinct large bodies; a few are enough to keep caches honest.
BATCH_BODIES: Final = 8


def application_rows(paths: list[Path]) -> list[dict]:
    """Every application in `paths` as JSON records with the request's fields only."""
    frames = [read_applications(p)[[ID_COLUMN, *FEATURE_COLUMNS]] for p in paths]
    return json.loads(pd.concat(frames, ignore_index=True).to_json(orient="records"))


def v2_body(rows: list[dict]) -> dict:
    """The same applications as an Open Inference Protocol (V2) request in the
    pandas codec's form, as an MLServer or KServe client sends it: one [n, 1] input
    per column, text marked as str, missing values null. Without Loan_ID: a peer
    serving the bare pipeline would hand it to the model."""
    inputs = []
    for name in FEATURE_COLUMNS:
        text = name in CATEGORICAL_COLUMNS
        column: dict[str, Any] = {
            "name": name,
            "shape": [len(rows), 1],
            "datatype": "BYTES" if text else "FP64",
            "data": [row[name] for row in rows],
        }
        if text:
            column["parameters"] = {"content_type": "str"}
        inputs.append(column)
    return {"parameters": {"content_type": "pd"}, "inputs": inputs}


def write_single_bodies(rows: list[dict], path: Path) -> Path:
    """One single-application body per row."""
    path.write_text("".join(json.dumps({"applications": [r]}) + "\n" for r in rows))
    return path


def write_bodies(rows: list[dict], directory: Path, seed: int = 0) -> dict[str, Path]:
    """`single`: one body per application; `batch`: BATCH_BODIES bodies of BATCH_ROWS
    applications drawn with replacement; `v2_batch`: the same applications as
    `batch`, as V2 requests."""
    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    single = write_single_bodies(rows, directory / "single_row_bodies.jsonl")
    batch = directory / f"{BATCH_ROWS}_row_bodies.jsonl"
    v2_batch = directory / f"{BATCH_ROWS}_row_v2_bodies.jsonl"
    with open(batch, "w") as out, open(v2_batch, "w") as v2_out:
        for _ in range(BATCH_BODIES):
            picked = [rows[i] for i in rng.integers(0, len(rows), BATCH_ROWS)]
            out.write(json.dumps({"applications": picked}) + "\n")
            v2_out.write(json.dumps(v2_body(picked)) + "\n")
    return {"single": single, "batch": batch, "v2_batch": v2_batch}

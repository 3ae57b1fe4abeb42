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


def v2_binary_body(rows: list[dict]) -> bytes:
    """The V2 request of `v2_body` in the binary tensor extension's form, as
    tritonclient sends it with binary_data=True (NaN for a missing number, an empty
    string for a missing text), asking for every output in binary too; framed for
    bench/wrk/post_bodies.lua as "<json length> <body length>\\n<body>"."""
    inputs, parts = [], []
    for column in v2_body(rows)["inputs"]:
        values = column["data"]
        if column["datatype"] == "BYTES":
            encoded = [b"" if v is None else str(v).encode() for v in values]
            raw = b"".join(len(e).to_bytes(4, "little") + e for e in encoded)
        else:
            raw = np.array([np.nan if v is None else v for v in values], "<f8").tobytes()
        parts.append(raw)
        meta = {k: v for k, v in column.items() if k != "data"}
        meta["parameters"] = {**meta.get("parameters", {}), "binary_data_size": len(raw)}
        inputs.append(meta)
    header = json.dumps(
        {"parameters": {"content_type": "pd", "binary_data_output": True}, "inputs": inputs}
    ).encode()
    body = header + b"".join(parts)
    return f"{len(header)} {len(body)}\n".encode() + body


def v1_body(rows: list[dict]) -> dict:
    """The same applications as a KServe V1 request: records, as /predict's, without
    Loan_ID as in v2_body. KServe makes a DataFrame of each instance, and a single
    record (all scalars) is refused ("If using all scalar values, you must pass an
    index"), so the records go as one instance holding them all."""
    return {"instances": [[{k: row[k] for k in FEATURE_COLUMNS} for row in rows]]}


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
    v2_single = directory / "single_row_v2_bodies.jsonl"
    v2_single.write_text("".join(json.dumps(v2_body([r])) + "\n" for r in rows))
    batch = directory / f"{BATCH_ROWS}_row_bodies.jsonl"
    v2_batch = directory / f"{BATCH_ROWS}_row_v2_bodies.jsonl"
    v2_binary = directory / f"{BATCH_ROWS}_row_v2_binary_bodies.framed"
    v1_batch = directory / f"{BATCH_ROWS}_row_v1_bodies.jsonl"
    with (
        open(batch, "w") as out,
        open(v2_batch, "w") as v2_out,
        open(v2_binary, "wb") as binary_out,
        open(v1_batch, "w") as v1_out,
    ):
        for _ in range(BATCH_BODIES):
            picked = [rows[i] for i in rng.integers(0, len(rows), BATCH_ROWS)]
            out.write(json.dumps({"applications": picked}) + "\n")
            v2_out.write(json.dumps(v2_body(picked)) + "\n")
            binary_out.write(v2_binary_body(picked))
            v1_out.write(json.dumps(v1_body(picked)) + "\n")
    return {
        "single": single,
        "v2_single": v2_single,
        "batch": batch,
        "v2_batch": v2_batch,
        "v2_binary": v2_binary,
        "v1_batch": v1_batch,
    }

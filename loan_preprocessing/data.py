"""Reading loan applications from CSV files in the Loan Prediction format."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.schema import APPROVED, FEATURE_COLUMNS, ID_COLUMN, REJECTED, TARGET_COLUMN

DEFAULT_DATA_PATH: Final = Path(__file__).resolve().parent.parent / "data" / "loan_sample.csv"


def read_applications(path: str | Path) -> pd.DataFrame:
    """Read a CSV in the data set's format; a byte-order mark is tolerated because
    some copies of the public data carry one."""
    frame = pd.read_csv(path, encoding="utf-8-sig", dtype={ID_COLUMN: str, "Dependents": str})
    missing = [c for c in FEATURE_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{path}: missing columns {', '.join(missing)}")
    return frame


def features_and_target(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    """Split a labelled frame into the canonical features and y (1 = approved)."""
    if TARGET_COLUMN not in frame.columns:
        raise ValueError(f"no {TARGET_COLUMN} column: cannot train on unlabelled data")
    status = frame[TARGET_COLUMN].astype(str)
    unknown = sorted(set(status) - {APPROVED, REJECTED})
    if unknown:
        raise ValueError(f"{TARGET_COLUMN} must be {APPROVED} or {REJECTED}, found {unknown}")
    return to_feature_frame(frame), (status == APPROVED).to_numpy(dtype=np.int64)


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

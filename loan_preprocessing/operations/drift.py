"""Input drift: logged applications against the model's training data, per feature.

    python -m loan_preprocessing.operations.drift --log predictions.jsonl [--log more.jsonl]
        [--model-tag TAG | --reference training.csv] [--fail-on-significant] [--json]

train.py stores a reference profile of the training rows with every model
(`reference_profile.json`): 10 quantile bins per numeric column, the frequency of
every category of the others, missing values as a bin or category of their own.
This module builds that profile and compares a sample with it using the population
stability index, PSI = sum((current - reference) * ln(current / reference)).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.schema import (
    APPROVED,
    CATEGORICAL_COLUMNS,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    TARGET_COLUMN,
)

PROFILE_FILE: Final = "reference_profile.json"
PROFILE_FORMAT: Final = 1
NUMERIC_BINS: Final = 10
# Stands in for an empty bin, so that ln(current / reference) stays finite.
EPSILON: Final = 1e-4
# The usual PSI bands.
STABLE_BELOW: Final = 0.1
SIGNIFICANT_ABOVE: Final = 0.25
STABLE, MODERATE, SIGNIFICANT = "stable", "moderate shift", "significant shift"
MISSING: Final = "<missing>"
# A 0/1 flag: its quantile bins would be meaningless, it is compared as categories.
FLAG_COLUMNS: Final = ("Credit_History",)
BINNED_COLUMNS: Final = tuple(c for c in NUMERIC_COLUMNS if c not in FLAG_COLUMNS)
CATEGORY_COLUMNS: Final = (*CATEGORICAL_COLUMNS, *FLAG_COLUMNS)
# Below this many applications PSI is mostly sampling noise; the report says so.
SMALL_SAMPLE: Final = 100
EXIT_SIGNIFICANT: Final = 3


@dataclass(frozen=True)
class FeatureDrift:
    """One row of the drift table."""

    feature: str
    psi: float
    band: str
    missing_reference: float
    missing_current: float


def build_reference_profile(features: pd.DataFrame) -> dict[str, Any]:
    """The training distribution of every input column, as plain JSON data.
    `features` is the canonical frame of `to_feature_frame`."""
    columns: dict[str, Any] = {}
    for name in BINNED_COLUMNS:
        values = features[name].to_numpy(dtype=np.float64)
        present = values[~np.isnan(values)]
        quantiles = np.linspace(0, 1, NUMERIC_BINS + 1)[1:-1]
        # Heavily tied columns (most terms are 360, many co-incomes 0) give
        # repeated quantiles; repeated cuts would only make empty bins.
        cuts = np.unique(np.quantile(present, quantiles)).tolist() if present.size else []
        columns[name] = {"kind": "numeric", "cuts": cuts, **_binned_shares(values, cuts)}
    for name in CATEGORY_COLUMNS:
        columns[name] = {"kind": "categorical", **_category_shares(features[name])}
    return {"format": PROFILE_FORMAT, "rows": len(features), "columns": columns}


def compare_with_profile(profile: Mapping[str, Any], features: pd.DataFrame) -> list[FeatureDrift]:
    """PSI of every profiled column of `features` against `profile`, in column order."""
    rows = []
    for name in FEATURE_COLUMNS:
        reference = profile["columns"].get(name)
        if reference is None:
            continue
        if reference["kind"] == "numeric":
            current = _binned_shares(features[name].to_numpy(dtype=np.float64), reference["cuts"])
            ref_vector = [*reference["shares"], reference["missing"]]
            cur_vector = [*current["shares"], current["missing"]]
        else:
            current = _category_shares(features[name])
            levels = list(reference["shares"]) + sorted(
                set(current["shares"]) - set(reference["shares"])
            )
            ref_vector = [reference["shares"].get(level, 0.0) for level in levels]
            cur_vector = [current["shares"].get(level, 0.0) for level in levels]
        psi = population_stability_index(ref_vector, cur_vector)
        rows.append(FeatureDrift(name, psi, band(psi), reference["missing"], current["missing"]))
    return rows


def population_stability_index(reference: Sequence[float], current: Sequence[float]) -> float:
    """PSI of two distributions over the same bins (shares summing to 1)."""
    ref = np.maximum(np.asarray(reference, dtype=np.float64), EPSILON)
    cur = np.maximum(np.asarray(current, dtype=np.float64), EPSILON)
    return float(np.sum((cur - ref) * np.log(cur / ref)))


def band(psi: float) -> str:
    if psi < STABLE_BELOW:
        return STABLE
    return MODERATE if psi <= SIGNIFICANT_ABOVE else SIGNIFICANT


def _binned_shares(values: np.ndarray, cuts: Sequence[float]) -> dict[str, Any]:
    """Shares of all rows in each bin (bin i holds cuts[i-1] < x <= cuts[i]) and missing."""
    missing = np.isnan(values)
    bins = np.searchsorted(np.asarray(cuts, dtype=np.float64), values[~missing], side="left")
    counts = np.bincount(bins, minlength=len(cuts) + 1)
    total = max(len(values), 1)
    return {"shares": (counts / total).tolist(), "missing": float(missing.sum() / total)}


def _category_shares(column: pd.Series) -> dict[str, Any]:
    """Share of each category, missing included as the category MISSING."""
    counts = Counter(_category(v) for v in column)
    total = max(len(column), 1)
    shares = {level: counts[level] / total for level in sorted(counts)}
    return {"shares": shares, "missing": shares.get(MISSING, 0.0)}


def _category(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # Credit_History 1.0 is the category "1"
    return str(value)


@dataclass(frozen=True)
class LoggedApplications:
    features: pd.DataFrame
    approved: np.ndarray  # 1 where the service approved the application
    model_tags: Counter[str]
    first_time: str | None
    last_time: str | None


def _file_entries(paths: Iterable[Path]) -> Iterator[Mapping[str, Any]]:
    """The entries of JSON-lines files: decision-record exports (`make
    decisions-export`) or the prediction logs of earlier versions."""
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            for number, text in enumerate(handle, start=1):
                if not text.strip():
                    continue
                try:
                    entry = json.loads(text)
                    if not isinstance(entry["application"], dict):
                        raise TypeError("application is not an object")
                except (json.JSONDecodeError, KeyError, TypeError) as exc:
                    raise ValueError(
                        f"{path}:{number}: not a decision record ({type(exc).__name__})"
                    ) from None
                yield entry


def read_prediction_logs(paths: Iterable[Path]) -> LoggedApplications:
    """The decided applications in JSON-lines files, as a feature frame."""
    return read_decisions(_file_entries(paths))


def read_store(url: str) -> LoggedApplications:
    """The delivered decisions in the decision store at `url`."""
    from loan_preprocessing.records.store import DecisionStore

    store = DecisionStore(url)
    try:
        store.prepare()
        return read_decisions(store.export())
    finally:
        store.close()


def read_source(logs: list[Path] | None) -> tuple[LoggedApplications, str]:
    """The files given, else the service's decision store; and what was read."""
    if logs:
        return read_prediction_logs(logs), f"{len(logs)} file(s)"
    from loan_preprocessing.records.location import store_url_from_environment
    from loan_preprocessing.records.store import DecisionStore

    url = store_url_from_environment()
    return read_store(url), DecisionStore.redacted(url)


def read_decisions(entries: Iterable[Mapping[str, Any]]) -> LoggedApplications:
    """Decided applications (record dicts: `application`, `Loan_Status`,
    `model_tag`, `time`), as a feature frame. A record marked undelivered was
    never given to the applicant and is left out."""
    applications: list[Mapping[str, Any]] = []
    approved: list[bool] = []
    tags: Counter[str] = Counter()
    times: list[str] = []
    for entry in entries:
        if entry.get("delivered") is False:
            continue
        applications.append(entry["application"])
        approved.append(entry.get(TARGET_COLUMN) == APPROVED)
        tags[str(entry.get("model_tag"))] += 1
        if entry.get("time"):
            times.append(str(entry["time"]))
    if not applications:
        raise ValueError("no delivered decisions to read")
    frame = to_feature_frame(
        [{name: a.get(name) for name in FEATURE_COLUMNS} for a in applications]
    )
    return LoggedApplications(
        frame,
        np.array(approved, dtype=np.int64),
        tags,
        min(times, default=None),
        max(times, default=None),
    )


def load_model_profile(tag: str) -> tuple[str, dict[str, Any]]:
    """(full tag, profile) of a stored model."""
    from loan_preprocessing.model.store import get_model

    model = get_model(tag)
    path = Path(model.path_of(PROFILE_FILE))
    if not path.is_file():
        raise FileNotFoundError(
            f"model {model.tag} has no {PROFILE_FILE} (trained before drift profiles existed); "
            "pass --reference with its training CSV instead"
        )
    return str(model.tag), json.loads(path.read_text())


def format_table(rows: Sequence[FeatureDrift]) -> str:
    """The drift table, worst feature first."""
    lines = [f"{'feature':18s} {'PSI':>7s}  {'band':17s} {'missing ref':>11s} {'missing now':>11s}"]
    for row in sorted(rows, key=lambda r: -r.psi):
        lines.append(
            f"{row.feature:18s} {row.psi:7.3f}  {row.band:17s} "
            f"{row.missing_reference:11.1%} {row.missing_current:11.1%}"
        )
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.operations.drift",
        description="Compare logged applications with the training data (PSI per feature).",
    )
    parser.add_argument(
        "--log",
        type=Path,
        action="append",
        help="a JSON-lines export of decision records (make decisions-export); repeatable. "
        "Default: the service's decision store (LOAN_DECISION_STORE_URL)",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument(
        "--model-tag",
        help="compare with this model's training profile "
        "(default: the model named in the logs, when they name one)",
    )
    source.add_argument("--reference", type=Path, help="compare with this CSV instead")
    parser.add_argument(
        "--fail-on-significant",
        action="store_true",
        help=f"exit {EXIT_SIGNIFICANT} when a feature's PSI is above {SIGNIFICANT_ABOVE}",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from loan_preprocessing.environment import apply_project_defaults

    apply_project_defaults()
    try:
        logged, _ = read_source(args.log)
        if args.reference is not None:
            from loan_preprocessing.data import read_applications

            source = str(args.reference)
            profile = build_reference_profile(to_feature_frame(read_applications(args.reference)))
        else:
            tag = args.model_tag or single_model_tag(logged.model_tags)
            source, profile = load_model_profile(tag)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    rows = compare_with_profile(profile, logged.features)
    worst = max(rows, key=lambda r: r.psi)
    if args.json:
        print(json.dumps({"reference": source, "rows": [asdict(r) for r in rows]}, indent=2))
    else:
        print(f"reference: {source} ({profile['rows']} training rows)")
        print(
            f"current:   {len(logged.features)} applications from {len(args.log)} log file(s), "
            f"{logged.first_time} to {logged.last_time}"
        )
        if len(logged.features) < SMALL_SAMPLE:
            print(f"note: fewer than {SMALL_SAMPLE} applications; PSI is noisy on small samples")
        print(format_table(rows))
        print(
            f"PSI bands: < {STABLE_BELOW} {STABLE}, {STABLE_BELOW}-{SIGNIFICANT_ABOVE} "
            f"{MODERATE}, > {SIGNIFICANT_ABOVE} {SIGNIFICANT}"
        )
    if args.fail_on_significant and worst.band == SIGNIFICANT:
        return EXIT_SIGNIFICANT
    return 0


def single_model_tag(tags: Counter[str]) -> str:
    named = [t for t in tags if t and t != "None"]
    if len(named) != 1:
        raise ValueError(
            f"the logs name {len(named)} model versions ({', '.join(sorted(named)) or 'none'}); "
            "choose the reference with --model-tag or --reference"
        )
    return named[0]


if __name__ == "__main__":
    sys.exit(main())

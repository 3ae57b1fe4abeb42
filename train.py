"""Train the loan-approval pipeline and save it to the BentoML model store.

    python train.py [--data PATH] [--seed N] [--min-roc-auc F | --allow-low-auc]
                    [--report-dir DIR]

Steps: load the CSV, search hyperparameters by cross-validation on a training
part, measure on held-out rows, refuse a model below the ROC AUC floor, refit
on every row and save it as `loan_approval:<version>` with its metrics and lineage,
its training report (plots of the held-out predictions), the reference profile
of its training data that drift reports compare with, and the reference
population its rejections are explained against (loan_preprocessing/reasons.py).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import bentoml
import numpy as np
import pandas as pd
import sklearn
import skops
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline

from loan_preprocessing.data import (
    DEFAULT_DATA_PATH,
    features_and_target,
    file_sha256,
    read_applications,
)
from loan_preprocessing.environment import PROJECT_ROOT, apply_project_defaults
from loan_preprocessing.model_store import MODEL_NAME, save_pipeline
from loan_preprocessing.operations.drift import PROFILE_FILE, build_reference_profile
from loan_preprocessing.operations.report import (
    STORE_REPORT_DIR,
    Holdout,
    TrainingReport,
    build_report,
    write_report,
)
from loan_preprocessing.reasons import METADATA_KEY as REASONS_METADATA_KEY
from loan_preprocessing.reasons import REFERENCE_FILE, ReferencePopulation, build_reference
from loan_preprocessing.schema import (
    CATEGORY_LEVELS,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
)
from loan_preprocessing.search import (
    DECISION_THRESHOLD,
    PARAM_GRID,
    SEARCH_FOLDS,
    SEARCH_SCORING,
    make_search,
)

HOLDOUT_SHARE: Final = 0.2
# The classic tutorial's split, kept so results compare with it.
CLASSIC_SPLIT: Final = {"test_size": 0.25, "random_state": 42}
DEFAULT_MIN_ROC_AUC: Final = 0.70
DEFAULT_REPORT_DIR: Final = PROJECT_ROOT / "reports"


class QualityFloorError(RuntimeError):
    """The trained model is worse than the floor; it must not replace a good one."""


@dataclass(frozen=True)
class TrainingResult:
    pipeline: Pipeline
    threshold: float
    best_params: dict[str, Any]
    metrics: dict[str, float]
    # The held-out rows and their predictions, for the training report.
    holdout: Holdout | None = None


def search_and_fit(
    features: pd.DataFrame, target: np.ndarray, seed: int, verbose: int = 1
) -> tuple[Pipeline, dict[str, Any]]:
    """Grid search on the rows given (and only those); returns the best pipeline,
    refitted on them, and its parameters."""
    search = make_search(seed, verbose=verbose).fit(features, target)
    return search.best_estimator_, dict(search.best_params_)


def evaluate(
    pipeline: Pipeline, threshold: float, features: pd.DataFrame, target: np.ndarray
) -> dict[str, float]:
    return scores(target, pipeline.predict_proba(features)[:, 1], threshold)


def scores(target: np.ndarray, probability: np.ndarray, threshold: float) -> dict[str, float]:
    return {
        "accuracy": float(accuracy_score(target, probability >= threshold)),
        "roc_auc": float(roc_auc_score(target, probability)),
        "brier": float(brier_score_loss(target, probability)),
    }


def train(
    features: pd.DataFrame, target: np.ndarray, seed: int, verbose: int = 1
) -> TrainingResult:
    """Held-out and classic-split evaluation, then the final fit on every row."""
    log = print if verbose else (lambda *_: None)
    train_x, test_x, train_y, test_y = train_test_split(
        features, target, test_size=HOLDOUT_SHARE, stratify=target, random_state=seed
    )
    log(f"[1/3] searching on {len(train_y)} rows, holding out {len(test_y)}")
    threshold = DECISION_THRESHOLD
    pipeline, _ = search_and_fit(train_x, train_y, seed, verbose)
    held_out = Holdout(pipeline, test_x, test_y, pipeline.predict_proba(test_x)[:, 1])
    holdout = scores(test_y, held_out.probabilities, threshold)

    log("[2/3] the classic split (test_size=0.25, random_state=42)")
    c_train_x, c_test_x, c_train_y, c_test_y = train_test_split(features, target, **CLASSIC_SPLIT)
    c_pipeline, _ = search_and_fit(c_train_x, c_train_y, seed, verbose)
    classic = evaluate(c_pipeline, threshold, c_test_x, c_test_y)

    log(f"[3/3] final search on all {len(target)} rows")
    final, params = search_and_fit(features, target, seed, verbose)
    metrics = {
        "holdout_accuracy": holdout["accuracy"],
        "holdout_roc_auc": holdout["roc_auc"],
        "holdout_brier": holdout["brier"],
        "classic_split_accuracy": classic["accuracy"],
        "classic_split_roc_auc": classic["roc_auc"],
    }
    return TrainingResult(final, threshold, params, metrics, held_out)


def check_quality_floor(metrics: dict[str, float], min_roc_auc: float) -> None:
    if metrics["holdout_roc_auc"] < min_roc_auc:
        raise QualityFloorError(
            f"held-out ROC AUC {metrics['holdout_roc_auc']:.3f} is below the floor "
            f"{min_roc_auc:.3f}; not saving (pass --allow-low-auc to save anyway)"
        )


def build_metadata(
    result: TrainingResult, data_path: Path, n_rows: int, seed: int
) -> dict[str, Any]:
    """Everything needed to say what this model is and where it came from."""
    return {
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        "threshold": result.threshold,
        "hyperparameters": {k: _plain(v) for k, v in result.best_params.items()},
        "search": {
            "grid": {k: [_plain(v) for v in vs] for k, vs in PARAM_GRID.items()},
            "folds": SEARCH_FOLDS,
            "scoring": SEARCH_SCORING,
            "seed": seed,
        },
        "training_data": {"file": data_path.name, "sha256": file_sha256(data_path), "rows": n_rows},
        "feature_schema": {
            "columns": list(FEATURE_COLUMNS),
            "numeric": list(NUMERIC_COLUMNS),
            "required": list(REQUIRED_COLUMNS),
            "categories": {k: list(v) for k, v in CATEGORY_LEVELS.items()},
        },
        "versions": {
            "python": platform.python_version(),
            "scikit-learn": sklearn.__version__,
            "numpy": np.__version__,
            "pandas": pd.__version__,
            "skops": skops.__version__,
            "bentoml": bentoml.__version__,
        },
    }


def save_model(
    result: TrainingResult,
    metadata: dict[str, Any],
    labels: dict[str, str],
    report: TrainingReport,
    profile: dict[str, Any],
    run_label: str,
    reference: ReferencePopulation,
) -> bentoml.Model:
    """Save the pipeline with its report, reference profile and the reference
    population of its reasons in its folder (so a Bento packages them all).

    The version is made by the store as the model is created, after these files
    are staged, so the stored plots are titled with `run_label` (data, seed, time);
    the copy in the report directory, written once the tag is known, names it."""
    with tempfile.TemporaryDirectory(prefix="loan-train-") as staging_dir:
        staging = Path(staging_dir)
        report_files = write_report(report, staging / STORE_REPORT_DIR, run_label)
        (staging / PROFILE_FILE).write_text(json.dumps(profile, indent=1) + "\n")
        extra_files = {f"{STORE_REPORT_DIR}/{path.name}": path for path in report_files}
        extra_files[PROFILE_FILE] = staging / PROFILE_FILE
        (staging / REFERENCE_FILE).write_bytes(reference.payload())
        extra_files[REFERENCE_FILE] = staging / REFERENCE_FILE
        return save_pipeline(result.pipeline, metadata, labels=labels, extra_files=extra_files)


def run_label(data_path: Path, seed: int, when: datetime) -> str:
    """What identifies a training run before its model has a tag."""
    return f"{data_path.name}, seed {seed}, trained {when:%Y-%m-%d %H:%M} UTC"


def _plain(value: Any) -> Any:
    """numpy scalars to Python ones, so the metadata is plain YAML."""
    return value.item() if isinstance(value, np.generic) else value


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Train the loan-approval model and store it.")
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA_PATH,
        help="CSV in the Loan Prediction format (default: the synthetic sample)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--min-roc-auc",
        type=float,
        default=DEFAULT_MIN_ROC_AUC,
        help="refuse to save below this held-out ROC AUC (default %(default)s)",
    )
    parser.add_argument(
        "--allow-low-auc",
        action="store_true",
        help="save even when the held-out ROC AUC is below the floor",
    )
    parser.add_argument(
        "--report-dir",
        type=Path,
        default=DEFAULT_REPORT_DIR,
        help="write the training report into DIR/<model version>/ (default: reports/)",
    )
    parser.add_argument("--quiet", action="store_true", help="no search progress")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    apply_project_defaults()
    features, target = features_and_target(read_applications(args.data))
    result = train(features, target, args.seed, verbose=0 if args.quiet else 1)
    for name, value in result.metrics.items():
        print(f"  {name:24s} {value:.3f}")
    print(f"  {'threshold':24s} {result.threshold:.2f}")
    try:
        check_quality_floor(result.metrics, -np.inf if args.allow_low_auc else args.min_roc_auc)
    except QualityFloorError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assert result.holdout is not None  # train() always keeps it
    report = build_report(result.holdout, result.threshold, result.metrics, args.seed)
    label = run_label(args.data, args.seed, datetime.now(UTC))
    reference = build_reference(result.pipeline, features, result.threshold)
    metadata = build_metadata(result, args.data, len(target), args.seed)
    model = save_model(
        result,
        {**metadata, REASONS_METADATA_KEY: reference.metadata()},
        {"data": args.data.name},
        report,
        build_reference_profile(features),
        f"{MODEL_NAME}: {label}",
        reference,
    )
    print(f"saved {model.tag}")
    report_dir = args.report_dir / str(model.tag.version)
    write_report(report, report_dir, f"{model.tag}: {label}", model_tag=str(model.tag))
    print(f"report {report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

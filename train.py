"""Train the loan-approval pipeline and save it to the BentoML model store.

    python train.py [--data PATH] [--seed N] [--min-roc-auc F | --allow-low-auc]
                    [--min-adverse-impact-ratio F | --allow-adverse-impact]
                    [--report-dir DIR]

Steps: load the CSV, search hyperparameters by cross-validation on a training
part, measure on held-out rows, search again on every row, audit the decisions
for fairness on out-of-fold predictions, refuse a model below the ROC AUC floor or
below the adverse-impact floor, and save it as `loan_approval:<version>` with its
metrics, lineage and fairness audit, its training report (plots), its model card,
the reference profile of its training data that drift reports compare with, and
the reference population its rejections are explained against (reasons.py).
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
from sklearn.base import clone
from sklearn.metrics import accuracy_score, brier_score_loss, roc_auc_score
from sklearn.model_selection import cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline

from loan_preprocessing.data import (
    DEFAULT_DATA_PATH,
    features_and_target,
    file_sha256,
    read_applications,
)
from loan_preprocessing.environment import PROJECT_ROOT, apply_project_defaults
from loan_preprocessing.explanations.reasons import METADATA_KEY as REASONS_METADATA_KEY
from loan_preprocessing.explanations.reasons import (
    REFERENCE_FILE,
    ReferencePopulation,
    build_reference,
)
from loan_preprocessing.model.features import model_inputs
from loan_preprocessing.model.search import (
    DECISION_THRESHOLD,
    PARAM_GRID,
    SEARCH_FOLDS,
    SEARCH_SCORING,
    make_search,
    search_folds,
)
from loan_preprocessing.model.store import MODEL_INPUTS_KEY, MODEL_NAME, save_pipeline
from loan_preprocessing.operations.drift import PROFILE_FILE, build_reference_profile
from loan_preprocessing.operations.fairness import (
    DEFAULT_MIN_ADVERSE_IMPACT_RATIO,
    FAIRNESS_KEY,
    audit_decisions,
    below_floor,
    format_audit,
)
from loan_preprocessing.operations.model_card import CARD_FILE, build_card
from loan_preprocessing.operations.report import (
    STORE_REPORT_DIR,
    Holdout,
    TrainingReport,
    build_report,
    write_report,
)
from loan_preprocessing.schema import (
    CATEGORY_LEVELS,
    FEATURE_COLUMNS,
    NUMERIC_COLUMNS,
    REQUIRED_COLUMNS,
)

HOLDOUT_SHARE: Final = 0.2
# The classic tutorial's split, kept so results compare with it.
CLASSIC_SPLIT: Final = {"test_size": 0.25, "random_state": 42}
DEFAULT_MIN_ROC_AUC: Final = 0.70
DEFAULT_REPORT_DIR: Final = PROJECT_ROOT / "reports"


class QualityFloorError(RuntimeError):
    """The trained model is worse than the floor; it must not replace a good one."""


class FairnessFloorError(RuntimeError):
    """The model's decisions fail the adverse-impact floor for a protected attribute."""


@dataclass(frozen=True)
class TrainingResult:
    pipeline: Pipeline
    threshold: float
    best_params: dict[str, Any]
    metrics: dict[str, float]
    # The held-out rows and their predictions, for the training report.
    holdout: Holdout | None = None
    # P(Y) of every row from the final search's folds (the row was not in the fit).
    out_of_fold: np.ndarray | None = None


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
    log(f"[1/4] searching on {len(train_y)} rows, holding out {len(test_y)}")
    threshold = DECISION_THRESHOLD
    pipeline, _ = search_and_fit(train_x, train_y, seed, verbose)
    held_out = Holdout(pipeline, test_x, test_y, pipeline.predict_proba(test_x)[:, 1])
    holdout = scores(test_y, held_out.probabilities, threshold)

    log("[2/4] the classic split (test_size=0.25, random_state=42)")
    c_train_x, c_test_x, c_train_y, c_test_y = train_test_split(features, target, **CLASSIC_SPLIT)
    c_pipeline, _ = search_and_fit(c_train_x, c_train_y, seed, verbose)
    classic = evaluate(c_pipeline, threshold, c_test_x, c_test_y)

    log(f"[3/4] final search on all {len(target)} rows")
    final, params = search_and_fit(features, target, seed, verbose)

    log(f"[4/4] out-of-fold predictions on the search's {SEARCH_FOLDS} folds")
    out_of_fold = out_of_fold_probabilities(final, features, target, seed)
    cross_validated = scores(target, out_of_fold, threshold)
    metrics = {
        "holdout_accuracy": holdout["accuracy"],
        "holdout_roc_auc": holdout["roc_auc"],
        "holdout_brier": holdout["brier"],
        "classic_split_accuracy": classic["accuracy"],
        "classic_split_roc_auc": classic["roc_auc"],
        "cv_accuracy": cross_validated["accuracy"],
        "cv_roc_auc": cross_validated["roc_auc"],
    }
    return TrainingResult(final, threshold, params, metrics, held_out, out_of_fold)


def out_of_fold_probabilities(
    pipeline: Pipeline, features: pd.DataFrame, target: np.ndarray, seed: int
) -> np.ndarray:
    """P(Y) of every row from a copy of `pipeline` fitted on the other folds: the
    search's own folds and chosen hyperparameters, so these are the predictions its
    cross-validation scored (5 fits more, not a new search)."""
    return cross_val_predict(
        clone(pipeline), features, target, cv=search_folds(seed), method="predict_proba"
    )[:, 1]


def audit_fairness(
    features: pd.DataFrame, target: np.ndarray, result: TrainingResult, seed: int
) -> dict[str, Any]:
    """The fairness audit of the out-of-fold decisions at the model's threshold."""
    assert result.out_of_fold is not None  # train() always computes them
    return audit_decisions(
        features,
        result.out_of_fold >= result.threshold,
        target,
        seed,
        f"out-of-fold decisions on the search's {SEARCH_FOLDS} folds",
    )


def check_quality_floor(metrics: dict[str, float], min_roc_auc: float) -> None:
    if metrics["holdout_roc_auc"] < min_roc_auc:
        raise QualityFloorError(
            f"held-out ROC AUC {metrics['holdout_roc_auc']:.3f} is below the floor "
            f"{min_roc_auc:.3f}; not saving (pass --allow-low-auc to save anyway)"
        )


def check_fairness_floor(audit: dict[str, Any], min_ratio: float) -> None:
    problems = below_floor(audit, min_ratio)
    if problems:
        raise FairnessFloorError(
            f"{'; '.join(problems)}; not saving (pass --allow-adverse-impact to save anyway)"
        )


def build_metadata(
    result: TrainingResult, data_path: Path, n_rows: int, seed: int, audit: dict[str, Any]
) -> dict[str, Any]:
    """Everything needed to say what this model is and where it came from."""
    return {
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        "threshold": result.threshold,
        MODEL_INPUTS_KEY: model_inputs(),
        FAIRNESS_KEY: audit,
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
    """Save the pipeline with its report, model card, reference profile and the
    reference population of its reasons in its folder (so a Bento packages them all).

    The version is made by the store as the model is created, after these files
    are staged, so the stored plots and card are titled with `run_label` (data,
    seed, time); the copy of the report in the report directory, written once the
    tag is known, names it."""
    with tempfile.TemporaryDirectory(prefix="loan-train-") as staging_dir:
        staging = Path(staging_dir)
        report_files = write_report(report, staging / STORE_REPORT_DIR, run_label)
        (staging / PROFILE_FILE).write_text(json.dumps(profile, indent=1) + "\n")
        build_card(result.pipeline, metadata, run_label).save(staging / CARD_FILE)
        extra_files = {f"{STORE_REPORT_DIR}/{path.name}": path for path in report_files}
        extra_files[PROFILE_FILE] = staging / PROFILE_FILE
        extra_files[CARD_FILE] = staging / CARD_FILE
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
        "--min-adverse-impact-ratio",
        type=float,
        default=DEFAULT_MIN_ADVERSE_IMPACT_RATIO,
        help="refuse to save when a protected attribute's adverse impact ratio (lowest "
        "group approval rate over the highest, out of fold) is below this "
        "(default %(default)s, the four-fifths rule)",
    )
    parser.add_argument(
        "--allow-adverse-impact",
        action="store_true",
        help="save even when a protected attribute is below the adverse-impact floor",
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
    audit = audit_fairness(features, target, result, args.seed)
    print(format_audit(audit))
    try:
        check_quality_floor(result.metrics, -np.inf if args.allow_low_auc else args.min_roc_auc)
        check_fairness_floor(
            audit, -np.inf if args.allow_adverse_impact else args.min_adverse_impact_ratio
        )
    except (QualityFloorError, FairnessFloorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assert result.holdout is not None  # train() always keeps it
    report = build_report(result.holdout, result.threshold, result.metrics, args.seed, audit)
    label = run_label(args.data, args.seed, datetime.now(UTC))
    reference = build_reference(result.pipeline, features, result.threshold)
    metadata = build_metadata(result, args.data, len(target), args.seed, audit)
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

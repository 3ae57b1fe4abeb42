"""Train the loan-approval pipeline and save it to the BentoML model store.

    python train.py [--data PATH] [--seed N] [--min-roc-auc F | --allow-low-auc]
                    [--min-adverse-impact-ratio F | --allow-adverse-impact]
                    [--cutoff F] [--auc-tolerance F] [--candidate NAME]
                    [--search full|first-model] [--report-dir DIR]

Steps: load the CSV, search every candidate of the declared search space (feature
sets x hyperparameter grid) in one pass over the search's folds, score each out of
fold (quality and fairness at the cutoff) and pick one by the stated rule
(operations/alternatives.py) unless --candidate names another; measure the chosen
feature set on held-out rows and on the classic split, fit it on every row, run
the proxy test, audit its out-of-fold decisions, refuse a model below the ROC AUC
floor or below the adverse-impact floor, and save it as `loan_approval:<version>`
with its metrics, lineage, frontier, selection, proxy test, cutoff and fairness
audit, its training report (plots), its model card, the reference profile of its
training data that drift reports compare with, and the reference population its
rejections are explained against (reasons.py). `--search first-model` runs the
reduced search of the first model `make serve` trains (search.FIRST_MODEL_SEARCH),
and the model's metadata, card and labels say so.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
from collections.abc import Sequence
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
from sklearn.model_selection import ParameterGrid, cross_val_predict, train_test_split
from sklearn.pipeline import Pipeline
from threadpoolctl import threadpool_limits

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
from loan_preprocessing.model.features import MODEL_FEATURES, model_inputs
from loan_preprocessing.model.search import (
    ALL_INPUTS,
    CANDIDATE_NAMES,
    CANDIDATES,
    DECISION_THRESHOLD,
    FULL_SEARCH,
    MONOTONIC_FEATURES,
    SEARCH_FOLDS,
    SEARCH_SCORING,
    SEARCHES,
    Candidate,
    SearchSpace,
    fit_candidate,
    make_pipeline,
    make_search,
    search_candidates,
    search_folds,
)
from loan_preprocessing.model.store import MODEL_INPUTS_KEY, MODEL_NAME, save_pipeline
from loan_preprocessing.operations.alternatives import (
    CUTOFF_KEY,
    DEFAULT_AUC_TOLERANCE,
    PROXY_TEST_KEY,
    SELECTION_KEY,
    cutoff_curve,
    proxy_test,
    score_frontier,
    select,
)
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
    # The candidate kept, the frontier and the rule's record, the cutoff curve.
    candidate: Candidate = CANDIDATES[0]
    selection: dict[str, Any] | None = None
    cutoff_curve: dict[str, Any] | None = None
    # The declared search that made it.
    search: SearchSpace = FULL_SEARCH


def search_and_fit(
    features: pd.DataFrame,
    target: np.ndarray,
    seed: int,
    verbose: int = 1,
    feature_set: Sequence[str] = MODEL_FEATURES,
    grid: dict[str, list[Any]] = FULL_SEARCH.grid,
) -> tuple[Pipeline, dict[str, Any]]:
    """Grid search of one feature set on the rows given (and only those); returns
    the best pipeline, refitted on them, and its parameters. A grid of one point
    is that point's fit (the search's refit), without cross-validating it."""
    points = list(ParameterGrid(grid))
    if len(points) == 1:
        pipeline = make_pipeline(seed, feature_set).set_params(**points[0])
        return pipeline.fit(features, target), dict(points[0])
    search = make_search(seed, verbose=verbose, features=feature_set, grid=grid)
    search.fit(features, target)
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
    features: pd.DataFrame,
    target: np.ndarray,
    seed: int,
    verbose: int = 1,
    cutoff: float = DECISION_THRESHOLD,
    auc_tolerance: float = DEFAULT_AUC_TOLERANCE,
    keep: str | None = None,
    search: SearchSpace = FULL_SEARCH,
) -> TrainingResult:
    """Search every candidate of `search` on every row's folds and choose one by
    the rule (or `keep`); held-out and classic-split evaluation of its feature set,
    then its fit on every row."""
    log = print if verbose else (lambda *_: None)
    log(
        f"[1/4] {len(search.candidates)} candidates x {search.grid_size} grid points "
        f"on {SEARCH_FOLDS} folds ({search.name} search)"
    )
    searched = search_candidates(features, target, seed, search.candidates, search.grid)
    frontier = score_frontier(features, target, searched, cutoff, seed)
    selection = select(frontier, auc_tolerance, keep)
    chosen = next(r for r in searched if r.candidate.name == selection["chosen"])
    log(f"      chosen: {chosen.candidate.name} ({'--candidate' if keep else 'the rule'})")
    threshold = cutoff

    train_x, test_x, train_y, test_y = train_test_split(
        features, target, test_size=HOLDOUT_SHARE, stratify=target, random_state=seed
    )
    log(f"[2/4] searching its grid on {len(train_y)} rows, holding out {len(test_y)}")
    feature_set = chosen.candidate.features
    pipeline, _ = search_and_fit(train_x, train_y, seed, verbose, feature_set, search.grid)
    held_out = Holdout(pipeline, test_x, test_y, pipeline.predict_proba(test_x)[:, 1])
    holdout = scores(test_y, held_out.probabilities, threshold)

    log("[3/4] the classic split (test_size=0.25, random_state=42)")
    c_train_x, c_test_x, c_train_y, c_test_y = train_test_split(features, target, **CLASSIC_SPLIT)
    c_pipeline, _ = search_and_fit(c_train_x, c_train_y, seed, verbose, feature_set, search.grid)
    classic = evaluate(c_pipeline, threshold, c_test_x, c_test_y)

    log(f"[4/4] fitting {chosen.candidate.name} on all {len(target)} rows")
    final = fit_candidate(chosen.candidate, chosen.params, features, target, seed)
    out_of_fold = chosen.out_of_fold
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
    return TrainingResult(
        final,
        threshold,
        chosen.params,
        metrics,
        held_out,
        out_of_fold,
        chosen.candidate,
        selection,
        cutoff_curve(out_of_fold, target, threshold),
        search,
    )


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


def check_quality_floor(
    metrics: dict[str, float], min_roc_auc: float, chosen: str = ALL_INPUTS
) -> None:
    if metrics["holdout_roc_auc"] < min_roc_auc:
        raise QualityFloorError(
            f"held-out ROC AUC {metrics['holdout_roc_auc']:.4f} of the candidate {chosen!r} "
            f"is below the floor {min_roc_auc:.3f}; not saving (pass --allow-low-auc to save "
            "anyway, or --candidate to keep another)"
        )


def check_fairness_floor(audit: dict[str, Any], min_ratio: float) -> None:
    problems = below_floor(audit, min_ratio)
    if problems:
        raise FairnessFloorError(
            f"{'; '.join(problems)}; not saving (pass --allow-adverse-impact to save anyway)"
        )


def build_metadata(
    result: TrainingResult,
    data_path: Path,
    n_rows: int,
    seed: int,
    audit: dict[str, Any],
    proxy: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Everything needed to say what this model is and where it came from."""
    return {
        "metrics": {k: round(v, 4) for k, v in result.metrics.items()},
        # The recorded cutoff: every scoring path decides Y when P(Y) >= this.
        "threshold": result.threshold,
        CUTOFF_KEY: result.cutoff_curve,
        MODEL_INPUTS_KEY: model_inputs(result.candidate.features),
        FAIRNESS_KEY: audit,
        SELECTION_KEY: result.selection,
        PROXY_TEST_KEY: proxy,
        "hyperparameters": {k: _plain(v) for k, v in result.best_params.items()},
        "search": {
            "name": result.search.name,
            "purpose": search_purpose(result.search, data_path),
            "candidates": {c.name: list(c.features) for c in result.search.candidates},
            "grid": {k: [_plain(v) for v in vs] for k, vs in result.search.grid.items()},
            "monotonic_constraints": dict(MONOTONIC_FEATURES),
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


def search_purpose(search: SearchSpace, data_path: Path) -> str:
    """What the search made, in a sentence; a first model on the synthetic sample says so."""
    if search is FULL_SEARCH:
        return search.purpose
    synthetic = data_path.resolve() == DEFAULT_DATA_PATH.resolve()
    data = "the synthetic sample, which says nothing about real applicants" if synthetic else None
    return search.purpose + (f"; trained on {data}" if data else f"; trained on {data_path.name}")


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
    parser.add_argument(
        "--cutoff",
        type=_probability,
        default=DECISION_THRESHOLD,
        help="approve when P(Y) >= this; recorded with the model and used by every scoring "
        "path (default %(default)s)",
    )
    parser.add_argument(
        "--auc-tolerance",
        type=float,
        default=DEFAULT_AUC_TOLERANCE,
        help="the selection rule's business-necessity band: candidates within this of the "
        "best out-of-fold ROC AUC compete on fairness (default %(default)s)",
    )
    parser.add_argument(
        "--candidate",
        choices=CANDIDATE_NAMES,
        help="keep this candidate instead of the rule's choice (the card says so)",
    )
    parser.add_argument(
        "--search",
        choices=tuple(SEARCHES),
        default=FULL_SEARCH.name,
        help="the declared search to run: the whole one (default), or the reduced one of "
        "the first model `make serve` trains when the store is empty",
    )
    parser.add_argument("--quiet", action="store_true", help="no search progress")
    return parser.parse_args(argv)


def _probability(text: str) -> float:
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(
            f"a cutoff is a probability strictly between 0 and 1, not {text}"
        )
    return value


def format_frontier(selection: dict[str, Any]) -> str:
    """The frontier as a table, the chosen candidate marked."""
    attributes = list(next(iter(selection["frontier"].values()))["attributes"])
    lines = [
        f"  {'candidate':28s} {'AUC':>6s} {'acc':>6s} {'Brier':>6s} "
        + " ".join(f"{'AIR ' + a:>18s}" for a in attributes)
    ]
    for name, point in selection["frontier"].items():
        mark = (
            "*"
            if name == selection["chosen"]
            else ("~" if name in selection["within_tolerance"] else " ")
        )
        airs = " ".join(
            f"{_text(point['attributes'][a]['adverse_impact_ratio']):>18s}" for a in attributes
        )
        lines.append(
            f"{mark} {name:28s} {point['roc_auc']:6.3f} {point['accuracy']:6.3f} "
            f"{point['brier']:6.3f} {airs}"
        )
    lines.append(
        f"  (* chosen{' by --candidate' if selection['overridden'] else ' by the rule'}; ~ within "
        f"{selection['auc_tolerance']:g} of the best AUC {selection['best_roc_auc']:.3f})"
    )
    return "\n".join(lines)


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


# OpenMP threads for training when OMP_NUM_THREADS does not say: one. On a few
# hundred rows the boosting gains nothing from threads, and on a busy machine
# OpenMP's spinning threads multiply the work: the first model took 138 s of CPU
# (708 s wall) with the default threads and 9 s (69 s wall) with one, on 2 cores
# at a load average of 11.
TRAINING_THREADS: Final = 1


def main(argv: list[str] | None = None) -> int:
    threads = None if "OMP_NUM_THREADS" in os.environ else TRAINING_THREADS
    with threadpool_limits(limits=threads, user_api="openmp"):
        return run(argv)


def run(argv: list[str] | None = None) -> int:
    """Parse the arguments, train, check the floors, save (main's body)."""
    args = parse_args(argv)
    searched_names = [c.name for c in SEARCHES[args.search].candidates]
    if args.candidate and args.candidate not in searched_names:
        print(
            f"error: the {args.search} search has no candidate {args.candidate!r} "
            f"(its candidates: {', '.join(searched_names)})",
            file=sys.stderr,
        )
        return 2
    apply_project_defaults()
    try:
        features, target = features_and_target(read_applications(args.data))
    except OSError as exc:
        # A wrong DATA= path or an unreadable file: one line, not a traceback.
        print(
            f"error: cannot read the training data {args.data} ({exc.strerror or exc}); "
            "name a readable CSV with --data (make train DATA=path/to/training.csv)",
            file=sys.stderr,
        )
        return 2
    except (ValueError, pd.errors.ParserError) as exc:
        print(
            f"error: cannot train on {args.data}: {exc}; the file needs the Loan Prediction "
            "data set's columns and a Loan_Status label (see data/loan_sample.csv)",
            file=sys.stderr,
        )
        return 2
    result = train(
        features,
        target,
        args.seed,
        verbose=0 if args.quiet else 1,
        cutoff=args.cutoff,
        auc_tolerance=args.auc_tolerance,
        keep=args.candidate,
        search=SEARCHES[args.search],
    )
    # train() always selects and draws the cutoff curve.
    assert result.selection is not None and result.cutoff_curve is not None
    print(format_frontier(result.selection))
    for name, value in result.metrics.items():
        print(f"  {name:24s} {value:.3f}")
    print(f"  {'threshold':24s} {result.threshold:g}")
    audit = audit_fairness(features, target, result, args.seed)
    print(format_audit(audit))
    try:
        check_quality_floor(
            result.metrics,
            -np.inf if args.allow_low_auc else args.min_roc_auc,
            result.candidate.name,
        )
        check_fairness_floor(
            audit, -np.inf if args.allow_adverse_impact else args.min_adverse_impact_ratio
        )
    except (QualityFloorError, FairnessFloorError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    assert result.holdout is not None  # train() always keeps it
    report = build_report(
        result.holdout,
        result.threshold,
        result.metrics,
        args.seed,
        audit,
        selection=result.selection,
        cutoff=result.cutoff_curve,
    )
    label = run_label(args.data, args.seed, datetime.now(UTC))
    reference = build_reference(result.pipeline, features, result.threshold)
    proxy = proxy_test(features, result.selection["frontier"], args.seed)
    metadata = build_metadata(result, args.data, len(target), args.seed, audit, proxy)
    model = save_model(
        result,
        {**metadata, REASONS_METADATA_KEY: reference.metadata()},
        {"data": args.data.name, "search": result.search.name},
        report,
        build_reference_profile(features),
        f"{MODEL_NAME}: {label}",
        reference,
    )
    print(f"saved {model.tag}")
    if result.search is not FULL_SEARCH:
        print(f"  {metadata['search']['purpose']}")
    report_dir = args.report_dir / str(model.tag.version)
    write_report(report, report_dir, f"{model.tag}: {label}", model_tag=str(model.tag))
    print(f"report {report_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

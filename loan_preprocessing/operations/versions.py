"""The stored model versions: list them, show one, compare two.

    python -m loan_preprocessing.operations.versions list
    python -m loan_preprocessing.operations.versions show loan_approval:<version> [--card]
    python -m loan_preprocessing.operations.versions compare loan_approval:<a> loan_approval:<b>

Reads the metadata train.py records (metrics, fairness audit, model inputs,
hyperparameters, training data, package versions) and the model card from the
local BentoML store; nothing is loaded or changed.
Rolling back is serving an older version: LOAN_MODEL_TAG=loan_approval:<version>.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

import bentoml

from loan_preprocessing.model.store import MODEL_NAME, ModelLoadError, get_model
from loan_preprocessing.operations.alternatives import CUTOFF_KEY, PROXY_TEST_KEY, SELECTION_KEY
from loan_preprocessing.operations.drift import PROFILE_FILE
from loan_preprocessing.operations.fairness import FAIRNESS_KEY
from loan_preprocessing.operations.model_card import CARD_FILE
from loan_preprocessing.operations.report import STORE_REPORT_DIR
from loan_preprocessing.schema import PROTECTED_ATTRIBUTES

# The columns of `list`: (heading, metadata path, format).
LIST_COLUMNS: Final = (
    ("data", ("training_data", "file"), "{}"),
    ("rows", ("training_data", "rows"), "{}"),
    ("acc", ("metrics", "holdout_accuracy"), "{:.3f}"),
    ("ROC AUC", ("metrics", "holdout_roc_auc"), "{:.3f}"),
    ("Brier", ("metrics", "holdout_brier"), "{:.3f}"),
    ("classic acc", ("metrics", "classic_split_accuracy"), "{:.3f}"),
    ("cutoff", ("threshold",), "{:g}"),
    ("candidate", ("selection", "chosen"), "{}"),
    # The adverse impact ratio of each protected attribute (fairness audit).
    *(
        (f"AIR {name}", (FAIRNESS_KEY, "attributes", name, "adverse_impact_ratio"), "{:.3f}")
        for name in PROTECTED_ATTRIBUTES
    ),
)
# Metadata sections shown by `show` and `compare`, in this order; the rest follow.
SECTIONS: Final = (
    "metrics",
    "threshold",
    FAIRNESS_KEY,
    "model_inputs",
    SELECTION_KEY,
    PROXY_TEST_KEY,
    CUTOFF_KEY,
    "hyperparameters",
    "training_data",
    "search",
    "versions",
    "artifact",
    "feature_schema",
)
DIFFERS: Final = "*"
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"


def list_models() -> list[bentoml.Model]:
    """Every stored loan_approval version, newest first."""
    return sorted(bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True)


def format_list(models: Sequence[bentoml.Model]) -> str:
    """One row per version: tag, creation time, data and held-out metrics."""
    headings = ["tag", "created (UTC)", *(h for h, _, _ in LIST_COLUMNS)]
    rows = [
        [
            str(m.tag),
            m.info.creation_time.strftime(TIME_FORMAT),
            *(_format(_lookup(m.info.metadata, path), fmt) for _, path, fmt in LIST_COLUMNS),
        ]
        for m in models
    ]
    return _table(headings, rows, right_from=3)


def flatten(metadata: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Dotted keys to printable values, e.g. "metrics.holdout_roc_auc": "0.7636"."""
    flat: dict[str, str] = {}
    for key, value in metadata.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = str(value)
    return flat


def describe(model: bentoml.Model) -> dict[str, str]:
    """Everything `show` and `compare` print for one version, in section order."""
    metadata = model.info.metadata
    ordered = [s for s in SECTIONS if s in metadata] + sorted(set(metadata) - set(SECTIONS))
    described = {
        "tag": str(model.tag),
        "created": model.info.creation_time.strftime(TIME_FORMAT) + " UTC",
        **{f"labels.{k}": v for k, v in model.info.labels.items()},
    }
    for section in ordered:
        value = metadata[section]
        described.update(
            flatten(value, f"{section}.") if isinstance(value, Mapping) else {section: str(value)}
        )
    described["files"] = ", ".join(stored_files(model))
    return described


def stored_files(model: bentoml.Model) -> list[str]:
    """The files of the version's folder (pipeline, report, reference profile)."""
    root = Path(model.path)
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name != "model.yaml"
    )


def format_show(model: bentoml.Model) -> str:
    lines = [f"{k:45s} {v}" for k, v in describe(model).items()]
    report = Path(model.path_of(STORE_REPORT_DIR))
    lines.append(f"{'folder':45s} {model.path}")
    if report.is_dir():
        lines.append(f"{'report':45s} {report}")
    if not Path(model.path_of(PROFILE_FILE)).is_file():
        lines.append(f"{'note':45s} no {PROFILE_FILE}: drift needs --reference for this version")
    if not Path(model.path_of(CARD_FILE)).is_file():
        lines.append(f"{'note':45s} no {CARD_FILE}: trained before model cards")
    return "\n".join(lines)


def model_card(model: bentoml.Model) -> str:
    """The version's model card (Markdown), as train.py stored it."""
    path = Path(model.path_of(CARD_FILE))
    if not path.is_file():
        raise ModelLoadError(f"model {model.tag} has no {CARD_FILE} (trained before model cards)")
    return path.read_text(encoding="utf-8")


def format_compare(a: bentoml.Model, b: bentoml.Model, only_differences: bool = False) -> str:
    """Side by side; DIFFERS marks the lines that differ, numeric ones with B - A."""
    left, right = describe(a), describe(b)
    rows = []
    for key in [*left, *(k for k in right if k not in left)]:
        va, vb = left.get(key, "-"), right.get(key, "-")
        if only_differences and va == vb:
            continue
        rows.append([DIFFERS if va != vb else "", key, va, vb, _delta(va, vb)])
    differing = sum(1 for r in rows if r[0] == DIFFERS) - 2  # tag and created always differ
    table = _table(["", "", "A", "B", "B - A"], rows, right_from=4)
    return f"{table}\n{max(differing, 0)} recorded value(s) differ besides tag and time"


def _delta(a: str, b: str) -> str:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return ""
    return "" if x == y else f"{y - x:+.4g}"


def _lookup(metadata: Mapping[str, Any], path: Sequence[str]) -> Any:
    value: Any = metadata
    for key in path:
        value = value.get(key) if isinstance(value, Mapping) else None
    return value


def _format(value: Any, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _table(headings: Sequence[str], rows: Sequence[Sequence[str]], right_from: int) -> str:
    """Plain aligned text; columns from index `right_from` on are right-aligned numbers."""
    widths = [max(len(str(r[i])) for r in [headings, *rows]) for i in range(len(headings))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            str(c).rjust(w) if i >= right_from else str(c).ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    return "\n".join([line(headings), *(line(r) for r in rows)])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.operations.versions",
        description=f"List, show and compare the stored {MODEL_NAME} versions.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="every version, newest first")
    show = commands.add_parser("show", help="everything recorded about one version")
    show.add_argument("tag", help=f"e.g. {MODEL_NAME}:latest")
    show.add_argument("--card", action="store_true", help="print the model card instead")
    compare = commands.add_parser("compare", help="two versions side by side")
    compare.add_argument("tag_a")
    compare.add_argument("tag_b")
    compare.add_argument("--differences", action="store_true", help="only the lines that differ")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from loan_preprocessing.environment import apply_project_defaults

    apply_project_defaults()
    try:
        if args.command == "list":
            models = list_models()
            print(format_list(models) if models else f"no {MODEL_NAME} models in the store")
        elif args.command == "show":
            model = get_model(_full(args.tag))
            print(model_card(model) if args.card else format_show(model))
        else:
            a, b = get_model(_full(args.tag_a)), get_model(_full(args.tag_b))
            print(format_compare(a, b, only_differences=args.differences))
    except ModelLoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


def _full(tag: str) -> str:
    """Accept a bare version ("ov3giqhinob5oax4") as well as name:version."""
    if tag == MODEL_NAME:
        return f"{MODEL_NAME}:latest"
    return tag if ":" in tag else f"{MODEL_NAME}:{tag}"


if __name__ == "__main__":
    sys.exit(main())

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
import os
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
    # "first-model" marks the reduced search of the model `make serve` trains first.
    ("search", ("search", "name"), "{}"),
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
# `compare` fits this many columns: keys up to MAX_KEY_WIDTH, B - A in DELTA_WIDTH,
# the two versions' values share the rest.
COMPARE_WIDTH: Final = 100
MAX_KEY_WIDTH: Final = 48
DELTA_WIDTH: Final = 8
ELIDED_KEY_PARTS: Final = frozenset({"attributes", "groups"})
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S"
MODEL_TAG_VARIABLE: Final = "LOAN_MODEL_TAG"


def list_models() -> list[bentoml.Model]:
    """Every stored loan_approval version, newest first."""
    return sorted(bentoml.models.list(MODEL_NAME), key=lambda m: m.info.creation_time, reverse=True)


def format_list(models: Sequence[bentoml.Model], serving: str | None = None) -> str:
    """One row per version: tag, creation time, data and held-out metrics; the
    newest marked `latest`, and the one a server started now would serve `serves`."""
    headings = ["tag", "", "created (UTC)", *(h for h, _, _ in LIST_COLUMNS)]
    rows = [
        [
            str(m.tag),
            _marks(m, index == 0, serving),
            m.info.creation_time.strftime(TIME_FORMAT),
            *(_format(_lookup(m.info.metadata, path), fmt) for _, path, fmt in LIST_COLUMNS),
        ]
        for index, m in enumerate(models)
    ]
    return _table(headings, rows, right_from=5)


def _marks(model: bentoml.Model, newest: bool, serving: str | None) -> str:
    marks = ["latest"] if newest else []
    if str(model.tag) == serving:
        marks.append("serves")
    return ",".join(marks)


def serving_tag(models: Sequence[bentoml.Model]) -> str | None:
    """The version `make serve` would serve now: LOAN_MODEL_TAG's (the variable the
    service reads, serving/settings.py), or the newest."""
    requested = os.environ.get(MODEL_TAG_VARIABLE, "").strip() or f"{MODEL_NAME}:latest"
    if requested in (MODEL_NAME, f"{MODEL_NAME}:latest"):
        return str(models[0].tag) if models else None
    return _full(requested)


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
    """Everything recorded, grouped under a heading per metadata section."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key, value in describe(model).items():
        section, _, rest = key.partition(".")
        heading, name = (section, rest) if rest else ("version", key)
        if key == "files":
            heading, name = "files", "stored"
        groups.setdefault(heading, []).append((name, value))
    notes = [("folder", str(model.path))]
    report = Path(model.path_of(STORE_REPORT_DIR))
    if report.is_dir():
        notes.append(("report", str(report)))
    if not Path(model.path_of(PROFILE_FILE)).is_file():
        notes.append(("note", f"no {PROFILE_FILE}: drift needs --reference for this version"))
    if not Path(model.path_of(CARD_FILE)).is_file():
        notes.append(("note", f"no {CARD_FILE}: trained before model cards"))
    groups.setdefault("files", []).extend(notes)
    blocks = []
    for heading, items in groups.items():
        width = max(len(name) for name, _ in items)
        lines = [f"  {name.ljust(width)}  {value}" for name, value in items]
        blocks.append("\n".join([heading.replace("_", " "), *lines]))
    return "\n\n".join(blocks)


def model_card(model: bentoml.Model) -> str:
    """The version's model card (Markdown), as train.py stored it."""
    path = Path(model.path_of(CARD_FILE))
    if not path.is_file():
        raise ModelLoadError(f"model {model.tag} has no {CARD_FILE} (trained before model cards)")
    return path.read_text(encoding="utf-8")


def compared(a: bentoml.Model, b: bentoml.Model) -> dict[str, dict[str, str]]:
    """Every recorded value of the two versions, key by key (`compare --json`)."""
    left, right = describe(a), describe(b)
    keys = [*left, *(k for k in right if k not in left)]
    return {key: {"a": left.get(key, "-"), "b": right.get(key, "-")} for key in keys}


def format_compare(a: bentoml.Model, b: bentoml.Model, show_all: bool = False) -> str:
    """The values that differ side by side (every value with `show_all`), cut to fit
    COMPARE_WIDTH columns; numeric ones with B - A. `--json` prints them whole."""
    rows = []
    differing = 0
    for key, pair in compared(a, b).items():
        va, vb = pair["a"], pair["b"]
        if va != vb and key not in ("tag", "created"):
            differing += 1
        if va == vb and not show_all:
            continue
        rows.append([DIFFERS if va != vb else "", short_key(key), va, vb, _delta(va, vb)])
    key_width = min(max((len(r[1]) for r in rows), default=0), MAX_KEY_WIDTH)
    # Marker, key, A, B and B - A with two spaces between them.
    value_width = (COMPARE_WIDTH - 1 - key_width - DELTA_WIDTH - 4 * 2) // 2
    widths = (key_width, value_width, value_width, DELTA_WIDTH)
    rows = [
        [
            mark,
            _cut(key, key_width, from_start=True),
            *(_cut(c, w) for c, w in zip(cells, widths[1:], strict=True)),
        ]
        for mark, key, *cells in rows
    ]
    table = _table(["", "", "A", "B", "B - A"], rows, right_from=4)
    hidden = "" if show_all else "; --all shows every value, --json every value whole"
    return f"{table}\n{differing} recorded value(s) differ besides tag and time{hidden}"


def short_key(key: str) -> str:
    """A metadata key as `compare` shows it: the fairness audit's "attributes" and
    "groups" levels left out (fairness.Gender.Male.approval_rate)."""
    return ".".join(part for part in key.split(".") if part not in ELIDED_KEY_PARTS)


def _cut(text: str, width: int, from_start: bool = False) -> str:
    """`text` in at most `width` characters, '~' where it was cut (its start for keys,
    whose ends tell them apart)."""
    if len(text) <= width:
        return text
    return "~" + text[len(text) - width + 1 :] if from_start else text[: width - 1] + "~"


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
    shown = compare.add_mutually_exclusive_group()
    shown.add_argument("--all", action="store_true", help="every value, not only those that differ")
    shown.add_argument("--json", action="store_true", help="every value, whole, as JSON")
    # The default since `compare` fits 100 columns; kept so scripts that pass it work.
    shown.add_argument("--differences", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from loan_preprocessing.environment import apply_project_defaults

    apply_project_defaults()
    try:
        if args.command == "list":
            models = list_models()
            if models:
                print(format_list(models, serving_tag(models)))
            else:
                print(f"no {MODEL_NAME} models in the store")
        elif args.command == "show":
            model = get_model(_full(args.tag))
            print(model_card(model) if args.card else format_show(model))
        else:
            a, b = get_model(_full(args.tag_a)), get_model(_full(args.tag_b))
            if args.json:
                print(json.dumps(compared(a, b), indent=1))
            else:
                print(format_compare(a, b, show_all=args.all))
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

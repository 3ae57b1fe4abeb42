"""The package's import rule, as layers (docs/layout.md), read from the code.

Every module of loan_preprocessing/ belongs to one part (a top-level module or a
subpackage) and every part to one layer. A module may import its own part and
the layers below; parts of one layer that are subpackages never import each
other. The docs' layout tree names every module."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import pytest

from tests.conftest import ROOT

PACKAGE: Final = "loan_preprocessing"
PACKAGE_DIR: Final = ROOT / PACKAGE
LAYOUT_DOC: Final = ROOT / "docs" / "layout.md"

# Lowest first. A part is a top-level module's name or a subpackage's name.
LAYERS: Final[tuple[tuple[str, frozenset[str]], ...]] = (
    ("contract", frozenset({"schema", "reason_codes", "environment", "deadline"})),
    ("inputs, model", frozenset({"inputs", "model"})),
    ("explanations", frozenset({"explanations"})),
    ("decisions", frozenset({"decide", "csv_output", "data", "synthetic"})),
    ("records", frozenset({"records", "notices"})),
    ("applications", frozenset({"serving", "batch", "operations"})),
)
LAYER_OF: Final = {part: index for index, (_, parts) in enumerate(LAYERS) for part in parts}


def part_of(module: str) -> str | None:
    """`loan_preprocessing.model.store` -> `model`; the package itself -> None."""
    names = module.split(".")
    return names[1] if len(names) > 1 and names[0] == PACKAGE else None


def is_subpackage(part: str) -> bool:
    return (PACKAGE_DIR / part).is_dir()


def breaks_rule(importer: str, imported: str) -> str | None:
    """Why `importer` (a part) may not import `imported` (a part), or None."""
    if importer == imported:
        return None
    low, high = LAYER_OF[imported], LAYER_OF[importer]
    if low > high:
        return f"{importer} (layer {LAYERS[high][0]}) imports the higher layer {LAYERS[low][0]}"
    if low == high and (is_subpackage(importer) or is_subpackage(imported)):
        return f"{importer} and {imported} share the layer {LAYERS[low][0]} and must not meet"
    return None


def module_name(path: Path) -> str:
    relative = path.relative_to(ROOT).with_suffix("")
    names = list(relative.parts)
    if names[-1] == "__init__":
        names.pop()
    return ".".join(names)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every loan_preprocessing module `path` imports, lazily or not, with its line."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == PACKAGE:
                # `from loan_preprocessing import x`: x is a part.
                found += [(node.lineno, f"{PACKAGE}.{alias.name}") for alias in node.names]
            else:
                found.append((node.lineno, node.module))
        elif isinstance(node, ast.ImportFrom) and node.level:
            pytest.fail(f"{path}:{node.lineno}: relative import; name the module in full")
    return [(line, name) for line, name in found if name.split(".")[0] == PACKAGE]


MODULES: Final = sorted(PACKAGE_DIR.rglob("*.py"))


def test_every_part_is_in_a_layer():
    parts = {part_of(module_name(path)) for path in MODULES} - {None}
    assert parts <= set(LAYER_OF), f"parts in no layer: {sorted(parts - set(LAYER_OF))}"


def test_no_import_breaks_the_layers():
    broken = []
    for path in MODULES:
        importer = part_of(module_name(path))
        if importer is None:
            continue
        for line, name in imported_modules(path):
            imported = part_of(name)
            reason = imported and breaks_rule(importer, imported)
            if reason:
                broken.append(f"{path.relative_to(ROOT)}:{line} imports {name}: {reason}")
    assert not broken, "\n".join(broken)


@pytest.mark.parametrize(
    ("importer", "imported", "allowed"),
    [
        ("decide", "model", True),
        ("serving", "decide", True),
        ("schema", "reason_codes", True),
        ("csv_output", "decide", True),
        ("model", "explanations", False),
        ("inputs", "model", False),
        ("serving", "batch", False),
        ("schema", "decide", False),
        ("explanations", "serving", False),
    ],
)
def test_the_rule_itself(importer, imported, allowed):
    """The checker can fail: a known-bad import is reported, a known-good one is not."""
    assert (breaks_rule(importer, imported) is None) is allowed


def test_the_layout_tree_names_every_module():
    tree = LAYOUT_DOC.read_text()
    missing = [
        str(path.relative_to(ROOT))
        for path in MODULES
        if path.name != "__init__.py" and f"{path.name} " not in tree
    ]
    assert not missing, f"modules missing from {LAYOUT_DOC.name}'s tree: {missing}"


def test_the_top_level_stays_small():
    top = [path.name for path in PACKAGE_DIR.glob("*.py") if path.name != "__init__.py"]
    assert len(top) <= 8, sorted(top)

"""Every `make ...` and `python -m ...` command the README and the manual show is
one that works: each make target is a target of the Makefile that `make -n`
accepts, listed by `make help`, with only variables the Makefile reads; each
module answers `--help`, with the subcommands and options the manual gives it.
The cheap ones also run for real (`make`, `make versions`, the documented error
of `make train DATA=missing.csv`, `make score`). The client examples (curl,
Python) run in tests/test_readme_examples.py."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REAL_TEST_CSV, require_real_data
from tests.support.server import ROOT

# The Makefile's stamps: `-o` keeps make from reinstalling a venv because a pin
# changed, so a dry run or a cheap run never starts pip.
STAMPS = [
    *(f"-o.venv/bin/.installed-{path.stem}" for path in (ROOT / "requirements").glob("*.txt")),
    "-o.venv-checkov/.installed",
]
TARGET = re.compile(r"[a-z][a-z0-9-]*")
VARIABLE = re.compile(r"([A-Z][A-Z0-9_]*)=(\S*)")
# `show`, `show/compare`, `outcomes|overrides|challenger`: a path is not one.
SUBCOMMANDS = re.compile(r"[a-z][a-z-]*(?:[/|][a-z][a-z-]*)*")


def documents() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def code_snippets() -> list[tuple[str, str]]:
    """(page, text) of every line of a fenced block, less its comment or tree
    note, and of every inline code span."""
    snippets = []
    for document in documents():
        text = document.read_text()
        fence = re.compile(r"```[a-z]*\n(.*?)```", flags=re.S)
        for block in fence.findall(text):
            for line in block.splitlines():
                snippets.append((document.name, re.split(r"\s#|\s<-\s", line)[0]))
        spans = re.findall(r"`([^`\n]+)`", fence.sub("", text))
        snippets += [(document.name, span) for span in spans]
    return snippets


@dataclass(frozen=True)
class MakeCommand:
    page: str
    text: str
    targets: tuple[str, ...]
    variables: tuple[tuple[str, str], ...]


def make_commands() -> list[MakeCommand]:
    """Each `make` command shown, read as targets and VAR=value words up to the
    first word that is neither ([optional] brackets and trailing punctuation
    dropped)."""
    found: dict[tuple[str, str], MakeCommand] = {}
    for page, snippet in code_snippets():
        for match in re.finditer(r"(?:^|(?<=[\s;&|(]))make((?:[ \t]+\S+)*)", snippet):
            targets: list[str] = []
            variables: list[tuple[str, str]] = []
            for word in match.group(1).split():
                if assignment := VARIABLE.fullmatch(word.strip("[]")):
                    variables.append((assignment.group(1), assignment.group(2)))
                elif TARGET.fullmatch(word.rstrip(",;.)")):
                    targets.append(word.rstrip(",;.)"))
                else:
                    break
            text = match.group(0).strip()
            found.setdefault(
                (" ".join(targets), text),
                MakeCommand(page, text, tuple(targets), tuple(variables)),
            )
    return sorted(found.values(), key=lambda c: (c.targets, c.text))


@dataclass(frozen=True)
class ModuleCommand:
    page: str
    text: str
    module: str
    subcommands: tuple[str, ...]
    options: tuple[str, ...]


def module_commands() -> list[ModuleCommand]:
    """Each `python -m MODULE ...` shown: the module, the subcommands it is given
    (`show/compare`, `outcomes|overrides`), and the long options it is given."""
    found = {}
    for page, snippet in code_snippets():
        for match in re.finditer(r"python -m ([A-Za-z_][\w.]*)((?:[ \t]+\S+)*)", snippet):
            words = match.group(2).split()
            named = bool(words) and SUBCOMMANDS.fullmatch(words[0]) is not None
            subcommands = tuple(re.split(r"[/|]", words[0])) if named else ()
            options = tuple(
                w.strip("[]").split("=")[0] for w in words if w.strip("[]").startswith("--")
            )
            command = ModuleCommand(page, match.group(0), match.group(1), subcommands, options)
            found[command.text] = command
    return sorted(found.values(), key=lambda c: c.text)


def make_variables() -> set[str]:
    """Every variable the Makefile sets or reads."""
    makefile = (ROOT / "Makefile").read_text()
    return set(re.findall(r"^(?:export\s+)?([A-Z][A-Z0-9_]*)\s*[?:]?=", makefile, re.M)) | set(
        re.findall(r"\$\(([A-Z][A-Z0-9_]*)\)", makefile)
    )


@functools.cache
def make_targets() -> dict[str, str]:
    """The targets `make help` lists, and what it says of each."""
    listed = run_make(["help"])
    assert listed.returncode == 0, listed.stderr
    return dict(re.findall(r"^\s+(\S+)\s+(.*)$", listed.stdout, flags=re.M))


def run_make(arguments: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["make", "--no-print-directory", *STAMPS, *arguments],
        cwd=ROOT,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@functools.cache
def run_module(arguments: tuple[str, ...]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *arguments],
        cwd=ROOT,
        env={**os.environ, "BENTOML_DO_NOT_TRACK": "true"},
        capture_output=True,
        text=True,
        timeout=120,
    )


MAKE_COMMANDS = make_commands()
MODULE_COMMANDS = module_commands()


def test_the_manual_has_the_commands():
    """The extraction finds what the manual is known to show (so an empty list
    cannot pass the tests below)."""
    shown = {target for command in MAKE_COMMANDS for target in command.targets}
    assert {"serve", "test", "train", "build", "image", "spark-score", "versions"} <= shown
    assert {c.module for c in MODULE_COMMANDS} >= {
        "loan_preprocessing.operations.versions",
        "loan_preprocessing.batch.score_csv",
        "bench.run",
    }


@pytest.mark.parametrize("command", MAKE_COMMANDS, ids=lambda c: f"{c.page}: {c.text}")
def test_each_make_command_is_a_target_make_accepts(command: MakeCommand):
    """A dry run (`make -n`) of the command as written: the targets exist and are
    listed by `make help`, every variable is one the Makefile reads. Nothing is
    built or installed; `make -n image` only asks BentoML whether a Bento exists."""
    targets = set(command.targets)
    listed = make_targets()
    assert targets <= set(listed), f"{command.page}: {command.text}: not in `make help`"
    unknown = {name for name, _ in command.variables} - make_variables()
    assert not unknown, f"{command.page}: {command.text}: the Makefile reads no {unknown}"
    assignments = [f"{name}={value}" for name, value in command.variables]
    dry = run_make(["-n", *sorted(targets), *assignments])
    assert dry.returncode == 0, f"{command.text}: {dry.stderr[-2000:]}"


NEEDS = {
    # --help of the Spark job imports nothing of Spark's, but the job is pointless
    # without it: a venv without pyspark (make serve's) skips, saying so.
    "loan_preprocessing.batch.spark_job": "pyspark",
}


@pytest.mark.parametrize("command", MODULE_COMMANDS, ids=lambda c: f"{c.page}: {c.text}")
def test_each_module_command_answers_help(command: ModuleCommand):
    """`python -m MODULE --help` answers, as does each subcommand the manual gives
    it, and every long option the manual passes is in that help."""
    needed = NEEDS.get(command.module)
    if needed and importlib.util.find_spec(needed) is None:
        pytest.skip(
            f"SPARK ABSENT: {needed} is not installed in this venv (requirements/spark.txt); "
            f"cannot check `{command.text}`"
        )
    helped = run_module((command.module, "--help"))
    assert helped.returncode == 0, f"{command.text}: {helped.stderr[-2000:]}"
    assert "usage" in helped.stdout.lower()
    texts = [helped.stdout]
    for subcommand in command.subcommands:
        sub = run_module((command.module, subcommand, "--help"))
        assert sub.returncode == 0, f"{command.module} {subcommand}: {sub.stderr[-2000:]}"
        texts.append(sub.stdout)
    for option in command.options:
        assert any(option in text for text in texts), f"{command.text}: no {option} in --help"


def test_make_alone_lists_the_targets():
    listed = run_make([])
    assert listed.returncode == 0, listed.stderr
    assert "serve" in listed.stdout and listed.stdout == run_make(["help"]).stdout


@pytest.mark.e2e
def test_make_versions_lists_the_stored_versions(service_module):
    from loan_preprocessing.model.store import stored_versions

    listed = run_make(["versions"])
    assert listed.returncode == 0, listed.stderr
    assert stored_versions()[0].split(":")[1] in listed.stdout


def test_make_train_on_a_missing_file_says_the_documented_line():
    """The get-started page's table of usual mistakes shows this line."""
    table = (ROOT / "docs" / "get-started.md").read_text()
    [documented] = re.findall(r"\| `make train DATA=missing.csv` \| `([^`]+)` \|", table)
    result = run_make(["train", "DATA=missing.csv"])
    assert result.returncode != 0
    assert documented in result.stderr.splitlines()


@pytest.mark.e2e
def test_make_score_writes_the_decisions(service_module, tmp_path):
    """batch-scoring.md's `make score`, with OUT in a temporary folder."""
    require_real_data()
    [command] = [c for c in MAKE_COMMANDS if c.targets == ("score",) and c.variables]
    variables = dict(command.variables)
    assert Path(ROOT, variables["CSV"]).resolve() == REAL_TEST_CSV.resolve()
    out = tmp_path / "decisions.csv"
    result = run_make(["score", f"CSV={variables['CSV']}", f"OUT={out}"], timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    rows = out.read_text().splitlines()
    assert len(rows) == 1 + 367  # the header, then every real test application

"""Train a first model when the store has none, saying why and on what.

    python -m loan_preprocessing.operations.first_model --data data/loan_sample.csv

The make targets that need a model (serve, build, score, the Spark ones) run
this first, so each works from a fresh clone; a store that already has a model
is left alone, in one line. The first model comes from the reduced search
(search.FIRST_MODEL_SEARCH: one candidate at one grid point, the same floors),
so a first answer does not wait for the whole search; its metadata and card say
so, and `make train` stores a fully searched version that supersedes it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path
from typing import Final

from loan_preprocessing.environment import PROJECT_ROOT
from loan_preprocessing.model.search import FIRST_MODEL_SEARCH
from loan_preprocessing.model.store import stored_versions

SYNTHETIC_SAMPLE: Final = Path("data/loan_sample.csv")


def describe_data(data: Path) -> str:
    if data.resolve() == (PROJECT_ROOT / SYNTHETIC_SAMPLE).resolve():
        return (
            f"{data} (the synthetic sample: it says nothing about real applicants; "
            "DATA=path/to/training.csv trains on yours)"
        )
    return str(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Train a first model if the store has none.")
    parser.add_argument("--data", type=Path, default=SYNTHETIC_SAMPLE)
    args = parser.parse_args(argv)
    if stored_versions():
        return 0
    store = os.environ.get("BENTOML_HOME", "~/bentoml")
    print(
        f"make: the model store {store} has no model yet, so training a first model from a "
        "reduced search (one candidate at one grid point, held to the same floors; "
        "`make train` runs the whole search) on "
        f"{describe_data(args.data)}",
        flush=True,
    )
    trained = subprocess.run(
        [
            sys.executable,
            str(PROJECT_ROOT / "train.py"),
            "--data",
            str(args.data),
            "--search",
            FIRST_MODEL_SEARCH.name,
            "--quiet",
        ],
        check=False,
    )
    return trained.returncode


if __name__ == "__main__":
    sys.exit(main())

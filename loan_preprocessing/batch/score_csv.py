"""Score a CSV of applications offline, in process, with a stored model.

    python -m loan_preprocessing.batch.score_csv INPUT.csv [--output OUT.csv]
        [--model-tag TAG] [--chunk-size N] [--quiet]

Reads INPUT in the data set's format chunk by chunk (a large file is never held in
memory), validates every row with the API's schema, and writes
`Loan_ID,Loan_Status,probability,reasons` with the model's own decision threshold
and a rejection's reason codes: the same answers as POST /predict. The model is
loaded with the store's integrity checks. A bad row stops the run with its line
and column and exit code 1; with --output nothing is written then (the file
appears only when every row scored).
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from itertools import islice
from pathlib import Path
from typing import IO, Final

from loan_preprocessing.batch.csv_output import CSV_COLUMNS, CsvRow, csv_row
from loan_preprocessing.csv_rows import CsvValidationError, iter_csv_applications
from loan_preprocessing.decide import Scorer, Unscored
from loan_preprocessing.model_store import MODEL_NAME, ModelLoadError, get_model
from loan_preprocessing.schema import LoanApplication

OUTPUT_COLUMNS: Final = CSV_COLUMNS
DEFAULT_CHUNK_SIZE: Final = 10_000
DEFAULT_MODEL_TAG: Final = f"{MODEL_NAME}:latest"

Progress = Callable[[int], None]


def score_chunk(scorer: Scorer, applications: list[LoanApplication]) -> list[CsvRow]:
    """The CSV row of each application, decided by the service's own rule."""
    decisions = scorer.decide(applications)
    if any(isinstance(d, Unscored) for d in decisions):
        raise RuntimeError("the model could not score every application; see the log above")
    return [csv_row(decision) for decision in decisions]


def score_stream(
    source: IO[str],
    sink: IO[str],
    scorer: Scorer,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> int:
    """Score every row of the CSV `source` into `sink`; the number of rows scored."""
    writer = csv.writer(sink, lineterminator="\n")
    writer.writerow(OUTPUT_COLUMNS)
    scored = 0
    for chunk in _chunks(iter_csv_applications(source), chunk_size):
        writer.writerows(score_chunk(scorer, chunk))
        scored += len(chunk)
        if progress is not None:
            progress(len(chunk))
    return scored


def _chunks(rows: Iterator[tuple[int, LoanApplication]], size: int) -> Iterator[list]:
    while chunk := [application for _, application in islice(rows, size)]:
        yield chunk


def estimate_rows(path: Path) -> int:
    """Data lines in the file (a quoted cell spanning lines would count twice;
    this only sizes the progress bar)."""
    with open(path, "rb") as handle:
        newlines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
    return max(newlines - 1, 0)


@contextmanager
def progress_bar(total: int, enabled: bool) -> Iterator[Progress]:
    """A progress bar on stderr (rich, which BentoML already depends on)."""
    if not enabled:
        yield lambda _: None
        return
    from rich.console import Console
    from rich.progress import Progress as RichProgress

    with RichProgress(console=Console(stderr=True), transient=False) as bar:
        task = bar.add_task("scoring", total=total)
        yield lambda done: bar.advance(task, done)


@contextmanager
def atomic_output(path: Path | None) -> Iterator[IO[str]]:
    """stdout, or a temporary file renamed to `path` only when the block succeeds."""
    if path is None:
        yield sys.stdout
        return
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below
        "w", dir=path.parent, prefix=f".{path.name}.", suffix=".part", delete=False, newline=""
    )
    try:
        with handle:
            yield handle
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def parse_args(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.batch.score_csv",
        description="Score a CSV of loan applications with a stored model.",
    )
    parser.add_argument("input", type=Path, help="CSV in the Loan Prediction format")
    parser.add_argument("--output", type=Path, help="CSV to write (default: standard output)")
    parser.add_argument("--model-tag", default=DEFAULT_MODEL_TAG, help="default: %(default)s")
    parser.add_argument(
        "--chunk-size",
        type=_positive,
        default=DEFAULT_CHUNK_SIZE,
        help="rows validated and scored at a time (default: %(default)s)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(None if argv is None else list(argv))


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive whole number")
    return value


def main(argv: Iterable[str] | None = None) -> int:
    args = parse_args(argv)
    from loan_preprocessing.environment import apply_project_defaults

    apply_project_defaults()
    try:
        stored = get_model(args.model_tag)
        scorer = Scorer.from_model(stored)
        total = estimate_rows(args.input)
        with (
            open(args.input, encoding="utf-8-sig", newline="") as source,
            atomic_output(args.output) as sink,
            progress_bar(total, enabled=not args.quiet) as progress,
        ):
            scored = score_stream(source, sink, scorer, args.chunk_size, progress)
    except CsvValidationError as exc:
        print(f"error: {args.input}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of standard output (e.g. `| head`) has had enough; stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ModelLoadError, OSError, UnicodeDecodeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    destination = args.output or "standard output"
    print(
        f"scored {scored} applications with {stored.tag} (threshold {scorer.threshold:g}) "
        f"into {destination}",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Score a CSV of applications offline, in process, with a stored model.

    python -m loan_preprocessing.batch.score_csv INPUT.csv [--output OUT.csv]
        [--model-tag TAG] [--chunk-size N] [--quiet]

Reads INPUT in the data set's format chunk by chunk (a large file is never held in
memory) with pyarrow, validates every row with the API's rules a column at a time
(csv_columns.py), and writes
`Loan_ID,Loan_Status,probability,reasons` with the model's own decision threshold
and a rejection's reason codes: the same answers as POST /predict. The model is
loaded with the store's integrity checks. A bad row stops the run with its line
and column and exit code 1; with --output nothing is written then (the file
appears only when every row scored, with the mode an existing file had, or else
the one the umask gives a new file; an interrupted run, by Ctrl-C or SIGTERM,
removes its temporary file, and one a SIGKILL left is removed by the next run
that writes the same output).
"""

from __future__ import annotations

import argparse
import codecs
import csv
import glob
import os
import signal
import stat
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Final, NoReturn

from loan_preprocessing.batch.arrow_columns import iter_cell_columns, open_stream
from loan_preprocessing.csv_output import CSV_COLUMNS, column_csv_lines
from loan_preprocessing.decide import Scorer, UnscoredRowError
from loan_preprocessing.inputs.csv_rows import (
    HEADER_LINE,
    NO_APPLICATIONS,
    CsvProblem,
    CsvValidationError,
    iter_csv_applications,
)
from loan_preprocessing.model.store import MODEL_NAME, ModelLoadError, get_model

OUTPUT_COLUMNS: Final = CSV_COLUMNS
DEFAULT_CHUNK_SIZE: Final = 10_000
DEFAULT_MODEL_TAG: Final = f"{MODEL_NAME}:latest"
PART_SUFFIX: Final = ".part"

Progress = Callable[[int], None]


def score_stream(
    source: Path,
    sink: IO[str],
    scorer: Scorer,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    progress: Progress | None = None,
) -> int:
    """Score every row of the CSV file `source` into `sink`; the number of rows
    scored. Stops with the CsvValidationError of the first bad row (csv_rows'
    own, so the line, column and words are the ones the row-by-row reader gives).
    A file with no application, or a byte that is not UTF-8, is refused as
    POST /predict_csv refuses it, with its line."""
    try:
        scored = _score_chunks(source, sink, scorer, chunk_size, progress)
    except UnicodeDecodeError:
        raise CsvValidationError(
            [CsvProblem(first_undecodable_line(source), None, "not UTF-8 text")]
        ) from None
    if not scored:
        raise CsvValidationError([CsvProblem(HEADER_LINE, None, NO_APPLICATIONS)])
    return scored


def _score_chunks(
    source: Path, sink: IO[str], scorer: Scorer, chunk_size: int, progress: Progress | None
) -> int:
    csv.writer(sink, lineterminator="\n").writerow(OUTPUT_COLUMNS)
    scored = 0
    for cells in iter_cell_columns(source, max_rows=chunk_size):
        checked = cells.check()
        if checked.refused.any():
            raise_first_bad_row(source)
        try:
            decided = scorer.decide_columns(checked.columns)
        except UnscoredRowError:
            raise RuntimeError(
                "the model could not score every application; see the log above"
            ) from None
        # A chunk at a time: a write per row (through a temporary file's wrapper)
        # cost a tenth of a large file's time.
        sink.write(column_csv_lines(decided))
        scored += len(decided)
        if progress is not None:
            progress(len(decided))
    return scored


def raise_first_bad_row(source: Path) -> NoReturn:
    """Read `source` row by row up to its first bad row, and raise its error."""
    with open_stream(source) as text:
        for _ in iter_csv_applications(text):
            pass
    raise AssertionError("the columnar check refused a CSV file that csv_rows accepts")


def first_undecodable_line(path: Path) -> int:
    """The line of the first byte of `path` that is not UTF-8 (1-based)."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    line = 1
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return line + block[: max(exc.start, 0)].count(b"\n")
            line += block.count(b"\n")
    return line


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
    """stdout, or a temporary file renamed to `path` only when the block succeeds,
    with the mode `path` had, or else the one the umask gives a new file (a
    temporary file is made 0600, which the rename would have kept)."""
    if path is None:
        yield sys.stdout
        return
    remove_stale_parts(path)
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed or removed below
        "w",
        dir=path.parent,
        prefix=f".{path.name}.{os.getpid()}.",
        suffix=PART_SUFFIX,
        delete=False,
        newline="",
    )
    try:
        os.fchmod(handle.fileno(), output_mode(path))
        with handle:
            yield handle
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def output_mode(path: Path) -> int:
    """The permission bits of an existing `path`, or what the umask leaves of 0666."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def remove_stale_parts(path: Path) -> None:
    """Remove the temporary files of earlier runs writing `path` whose process is
    gone (killed by SIGKILL, which leaves no chance to clean up)."""
    prefix = f".{path.name}."
    for part in path.parent.glob(f"{glob.escape(prefix)}*{PART_SUFFIX}"):
        pid = part.name[len(prefix) :].partition(".")[0]
        if pid.isdigit() and not _alive(int(pid)):
            part.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exit_on_sigterm(signum: int, frame: object) -> None:
    """SIGTERM ends the run as Ctrl-C does, through the cleanup of atomic_output;
    the status is the one a SIGTERM death gives (143)."""
    raise SystemExit(128 + signum)


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
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(parse_args(argv))
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run(args: argparse.Namespace) -> int:
    from loan_preprocessing.environment import apply_project_defaults

    apply_project_defaults()
    try:
        stored = get_model(args.model_tag)
        scorer = Scorer.from_model(stored)
        total = estimate_rows(args.input)
        with (
            atomic_output(args.output) as sink,
            progress_bar(total, enabled=not args.quiet) as progress,
        ):
            scored = score_stream(args.input, sink, scorer, args.chunk_size, progress)
    except CsvValidationError as exc:
        print(f"error: {args.input}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader of standard output (e.g. `| head`) has had enough; stop quietly.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ModelLoadError, OSError) as exc:
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

"""Operator commands on the decision store (the Makefile's decisions-* targets):

    python -m loan_preprocessing.records migrate
    python -m loan_preprocessing.records export --since 2026-01-01 --until 2026-02-01 --out x.jsonl
    python -m loan_preprocessing.records purge [--months 25]

The store is the service's: LOAN_DECISION_STORE_URL (or _FILE), else the SQLite
file beside the model store; --url overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from loan_preprocessing.records.location import store_url_from_environment
from loan_preprocessing.records.migrations import SchemaOutOfDate
from loan_preprocessing.records.store import DecisionStore, StoreUnavailable

RETENTION_VARIABLE: Final = "LOAN_RETENTION_MONTHS"
# Regulation B, 12 CFR 1002.12(b)(1): 25 months after notice of action taken.
DEFAULT_RETENTION_MONTHS: Final = 25
# Columns kept as JSON text in Parquet: their keys vary between records.
PARQUET_JSON_FIELDS: Final = ("answer", "reason_texts")


def months_before(moment: datetime, months: int) -> datetime:
    """The same day and time `months` calendar months earlier (the month's last
    day when it is shorter: 31 March less one month is 28 or 29 February)."""
    index = moment.year * 12 + moment.month - 1 - months
    year, month = divmod(index, 12)
    month += 1
    for day in range(moment.day, 27, -1):
        try:
            return moment.replace(year=year, month=month, day=day)
        except ValueError:
            continue
    return moment.replace(year=year, month=month, day=min(moment.day, 28))


def _moment(text: str) -> datetime:
    """An ISO date or time; a time without a zone is UTC."""
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def write_json_lines(records: Iterable[dict[str, Any]], path: Path) -> int:
    count = 0
    with open(path, "w", encoding="utf-8") as out:
        for record in records:
            out.write(json.dumps(record) + "\n")
            count += 1
    return count


def write_parquet(records: Iterable[dict[str, Any]], path: Path) -> int:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise SystemExit(
            "error: Parquet needs pyarrow (pip install pyarrow); or write .jsonl"
        ) from None
    rows = [{**r, **{name: json.dumps(r[name]) for name in PARQUET_JSON_FIELDS}} for r in records]
    pq.write_table(pa.Table.from_pylist(rows), path)
    return len(rows)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m loan_preprocessing.records")
    parser.add_argument("--url", help="the store's URL (default: as the service reads it)")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="bring the store's schema to this version's")
    export = commands.add_parser("export", help="write the decisions of a time range")
    export.add_argument("--since", type=_moment, help="from this date or time (UTC), inclusive")
    export.add_argument("--until", type=_moment, help="to this date or time (UTC), exclusive")
    export.add_argument(
        "--out", type=Path, required=True, help="a .jsonl file, or .parquet (needs pyarrow)"
    )
    purge = commands.add_parser("purge", help="delete the records past the retention period")
    purge.add_argument(
        "--months",
        type=int,
        default=int(os.environ.get(RETENTION_VARIABLE) or DEFAULT_RETENTION_MONTHS),
        help=f"retention in months (default {RETENTION_VARIABLE} or "
        f"{DEFAULT_RETENTION_MONTHS}, Regulation B 12 CFR 1002.12(b)(1))",
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = DecisionStore(args.url or store_url_from_environment())
    try:
        if args.command == "migrate":
            print(f"{store.where}: schema at revision {store.upgrade()}")
            return 0
        store.prepare()
        if args.command == "export":
            records = store.export(args.since, args.until)
            writer = write_parquet if args.out.suffix == ".parquet" else write_json_lines
            count = writer(records, args.out)
            print(f"{count} decisions written to {args.out}")
            return 0
        if args.months < 1:
            print("error: --months must be at least 1", file=sys.stderr)
            return 2
        cutoff = months_before(datetime.now(UTC), args.months)
        deleted = store.purge(cutoff)
        print(
            f"{deleted} decisions recorded before {cutoff.isoformat(timespec='seconds')} "
            f"deleted ({args.months} months' retention); younger ones kept"
        )
        return 0
    except (StoreUnavailable, SchemaOutOfDate) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())

"""The model-risk reports (the Makefile's *-report targets):

    python -m loan_preprocessing.operations.model_risk outcomes [--window M]
        [--since D] [--until D] [--json]
    python -m loan_preprocessing.operations.model_risk overrides [--json]
    python -m loan_preprocessing.operations.model_risk challenger [--json]

Every table a report reads comes from the decision store the service records in
(LOAN_DECISION_STORE_URL, else the SQLite file beside the model store; --url
overrides) unless a file is given for it: --decisions, the store's JSON-lines
export; --outcomes, --overrides and --challenger, CSV with the columns named in
inputs.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

from loan_preprocessing.operations.model_risk.challenger import (
    challenger_report,
    format_challenger,
)
from loan_preprocessing.operations.model_risk.inputs import (
    TableError,
    read_challenger,
    read_decisions,
    read_outcomes,
    read_overrides,
    store_challenger,
    store_decisions,
    store_outcomes,
    store_overrides,
)
from loan_preprocessing.operations.model_risk.outcomes import format_outcomes, outcomes_report
from loan_preprocessing.operations.model_risk.overrides import format_overrides, overrides_report
from loan_preprocessing.records.location import store_url_from_environment
from loan_preprocessing.records.migrations import SchemaOutOfDate
from loan_preprocessing.records.store import DecisionStore, StoreUnavailable


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.operations.model_risk", description=__doc__
    )
    parser.add_argument("report", choices=("outcomes", "overrides", "challenger"))
    parser.add_argument("--url", help="the decision store's URL (default: as the service reads it)")
    parser.add_argument("--decisions", type=Path, help="JSON-lines export (default: the store)")
    parser.add_argument("--outcomes", type=Path)
    parser.add_argument("--overrides", type=Path)
    parser.add_argument("--challenger", type=Path)
    parser.add_argument("--window", default="M", help="pandas period: D, W, M, Q (outcomes)")
    parser.add_argument("--since", type=pd.Timestamp, help="decisions from (UTC, inclusive)")
    parser.add_argument("--until", type=pd.Timestamp, help="decisions before (UTC)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    return parser.parse_args(argv)


# The tables each report reads.
TABLES = {
    "outcomes": ("decisions", "outcomes", "overrides"),
    "overrides": ("decisions", "overrides"),
    "challenger": ("decisions", "challenger", "outcomes", "overrides"),
}


def _utc(moment: pd.Timestamp | None) -> pd.Timestamp | None:
    if moment is None:
        return None
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    start, end = _utc(args.since), _utc(args.until)
    store = None
    if any(getattr(args, table) is None for table in TABLES[args.report]):
        store = DecisionStore(args.url or store_url_from_environment())
    try:
        if store is not None:
            store.prepare()
        decisions = (
            read_decisions(args.decisions)
            if args.decisions is not None
            else store_decisions(store, start, end)  # type: ignore[arg-type]
        )
        # A table the report does not read is left empty (on a million decisions,
        # reading the challenger's for the overrides report cost seconds).
        needed = TABLES[args.report]
        outcomes = (
            read_outcomes(args.outcomes)
            if args.outcomes is not None or store is None or "outcomes" not in needed
            else store_outcomes(store, start, end)
        )
        overrides = (
            read_overrides(args.overrides)
            if args.overrides is not None or store is None or "overrides" not in needed
            else store_overrides(store, start, end)
        )
        challenger = (
            read_challenger(args.challenger)
            if args.challenger is not None or store is None or "challenger" not in needed
            else store_challenger(store, start, end)
        )
    except (OSError, TableError, StoreUnavailable, SchemaOutOfDate) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if store is not None:
            store.close()
    if args.report == "outcomes":
        report = outcomes_report(
            decisions,
            outcomes,
            overrides,
            window=args.window,
            start=start,
            end=end,
            seed=args.seed,
        )
        text = format_outcomes(report)
    elif args.report == "overrides":
        report = overrides_report(decisions, overrides, seed=args.seed)
        text = format_overrides(report)
    else:
        report = challenger_report(decisions, challenger, outcomes, overrides, seed=args.seed)
        text = format_challenger(report)
    print(json.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

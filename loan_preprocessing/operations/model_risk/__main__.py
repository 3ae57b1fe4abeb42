"""The model-risk reports from files (the Makefile's *-report targets):

    python -m loan_preprocessing.operations.model_risk outcomes --decisions d.jsonl
        --outcomes o.csv [--overrides v.csv] [--window M] [--since D] [--until D] [--json]
    python -m loan_preprocessing.operations.model_risk overrides --decisions d.jsonl
        --overrides v.csv [--json]
    python -m loan_preprocessing.operations.model_risk challenger --decisions d.jsonl
        --challenger c.csv [--outcomes o.csv] [--overrides v.csv] [--json]

Decisions: the decision store's JSON-lines export. Outcomes, overrides and
challenger decisions: CSV with the columns named in inputs.py.
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
)
from loan_preprocessing.operations.model_risk.outcomes import format_outcomes, outcomes_report
from loan_preprocessing.operations.model_risk.overrides import format_overrides, overrides_report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.operations.model_risk", description=__doc__
    )
    parser.add_argument("report", choices=("outcomes", "overrides", "challenger"))
    parser.add_argument("--decisions", type=Path, required=True, help="JSON-lines export")
    parser.add_argument("--outcomes", type=Path)
    parser.add_argument("--overrides", type=Path)
    parser.add_argument("--challenger", type=Path)
    parser.add_argument("--window", default="M", help="pandas period: D, W, M, Q (outcomes)")
    parser.add_argument("--since", type=pd.Timestamp, help="decisions from (UTC, inclusive)")
    parser.add_argument("--until", type=pd.Timestamp, help="decisions before (UTC)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the bootstrap intervals")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    needed = {"overrides": "overrides", "challenger": "challenger", "outcomes": "outcomes"}
    if getattr(args, needed[args.report]) is None:
        parser.error(f"the {args.report} report needs --{needed[args.report]}")
    return args


def _utc(moment: pd.Timestamp | None) -> pd.Timestamp | None:
    if moment is None:
        return None
    return moment.tz_localize("UTC") if moment.tzinfo is None else moment.tz_convert("UTC")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        decisions = read_decisions(args.decisions)
        outcomes = read_outcomes(args.outcomes)
        overrides = read_overrides(args.overrides)
    except (OSError, TableError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.report == "outcomes":
        report = outcomes_report(
            decisions,
            outcomes,
            overrides,
            window=args.window,
            start=_utc(args.since),
            end=_utc(args.until),
            seed=args.seed,
        )
        text = format_outcomes(report)
    elif args.report == "overrides":
        report = overrides_report(decisions, overrides, seed=args.seed)
        text = format_overrides(report)
    else:
        try:
            challenger = read_challenger(args.challenger)
        except (OSError, TableError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        report = challenger_report(decisions, challenger, outcomes, overrides, seed=args.seed)
        text = format_challenger(report)
    print(json.dumps(report, indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

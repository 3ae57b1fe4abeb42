"""`make promote`: make a stored version the served one, and record it.

    python -m loan_preprocessing.operations.promote --tag loan_approval:<version>
        --by <person> --report challenger-report.json [--url <store URL>]
    python -m loan_preprocessing.operations.promote --list

The served version is `loan_approval:latest` (LOAN_MODEL_TAG's default): the
model store's pointer, which this moves to --tag once the version loads as the
service would load it. Who promoted what, when, and the report they promoted on
(its name, sha256 and text) go into the decision store's `promotions` table. A
running service keeps serving the version it resolved at start: restart it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Final

from loan_preprocessing.model.store import ModelLoadError, get_model, make_latest, served_by_default
from loan_preprocessing.records.location import store_url_from_environment
from loan_preprocessing.records.migrations import SchemaOutOfDate
from loan_preprocessing.records.promotions import list_promotions, record_promotion
from loan_preprocessing.records.store import DecisionStore, StoreUnavailable
from loan_preprocessing.schema import MAX_PERSON_LENGTH

# A report larger than this is not a report (and would bloat the store).
MAX_REPORT_BYTES: Final = 5_000_000
MODEL_TAG_VARIABLE: Final = "LOAN_MODEL_TAG"


class PromotionRefused(ValueError):
    """A promotion that must not happen; the message is one line."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m loan_preprocessing.operations.promote", description=__doc__
    )
    parser.add_argument("--tag", help="the stored version to serve: loan_approval:<version>")
    parser.add_argument("--by", help="who promotes (an identifier of the person)")
    parser.add_argument("--report", type=Path, help="the report the promotion rests on")
    parser.add_argument("--url", help="the decision store's URL (default: as the service reads it)")
    parser.add_argument("--list", action="store_true", help="list the recorded promotions")
    args = parser.parse_args(argv)
    if not args.list and (not args.tag or not args.by or args.report is None):
        parser.error("a promotion needs --tag, --by and --report (or --list)")
    return args


def read_report(path: Path, tag: str) -> str:
    """The report's text. A challenger report (JSON) must name `tag` as its
    challenger: promoting on a report about another version is a mistake."""
    try:
        if path.stat().st_size > MAX_REPORT_BYTES:
            raise PromotionRefused(f"{path}: larger than {MAX_REPORT_BYTES} bytes; not a report")
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise PromotionRefused(f"{path}: cannot be read as UTF-8 text ({exc})") from None
    if not text.strip():
        raise PromotionRefused(f"{path}: empty; give the report the promotion rests on")
    try:
        parsed: Any = json.loads(text)
    except ValueError:
        return text
    named = parsed.get("challenger_tags") if isinstance(parsed, dict) else None
    if isinstance(named, list) and tag not in named:
        raise PromotionRefused(
            f"{path} compares {', '.join(map(str, named)) or 'no challenger'}, not {tag}"
        )
    return text


def promote(store: DecisionStore, tag: str, person: str, report_path: Path) -> dict[str, Any]:
    """Move `loan_approval:latest` to `tag` and record the promotion; put the
    pointer back when the record cannot be written."""
    person = person.strip()
    if not person or len(person) > MAX_PERSON_LENGTH:
        raise PromotionRefused(f"--by: a person's identifier of 1-{MAX_PERSON_LENGTH} characters")
    concrete = str(get_model(tag).tag)
    report = read_report(report_path, concrete)
    store.prepare()
    previous = served_by_default()
    make_latest(concrete)
    try:
        return record_promotion(store, concrete, previous, person, report_path.name, report)
    except StoreUnavailable:
        if previous is not None:
            make_latest(previous)
        raise


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    store = DecisionStore(args.url or store_url_from_environment())
    try:
        if args.list:
            store.prepare()
            for p in list_promotions(store):
                print(
                    f"{p['promoted_at']:%Y-%m-%d %H:%M:%S} {p['model_tag']} (was "
                    f"{p['previous_tag'] or 'none'}) by {p['person']} on {p['report_name']} "
                    f"sha256 {p['report_sha256'][:12]}"
                )
            return 0
        made = promote(store, args.tag, args.by, args.report)
    except (PromotionRefused, ModelLoadError, StoreUnavailable, SchemaOutOfDate) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()
    print(
        f"{made['model_tag']} is now loan_approval:latest, the served version (was "
        f"{made['previous_tag'] or 'none'}); promotion recorded in {store.where} by "
        f"{made['person']} on {args.report.name} (sha256 {made['report_sha256'][:12]}). "
        "Restart the service to serve it."
    )
    pinned = os.environ.get(MODEL_TAG_VARIABLE)
    if pinned and pinned not in (made["model_tag"], "loan_approval:latest", "loan_approval"):
        print(
            f"warning: {MODEL_TAG_VARIABLE}={pinned} is set here: a service started with it "
            "serves that version, not the promoted one",
            file=sys.stderr,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

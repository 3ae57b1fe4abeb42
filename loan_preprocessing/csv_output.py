"""Decisions as CSV (`Loan_ID,Loan_Status,probability,reasons`), for the CSV API
and offline scoring. `reasons` holds a rejection's reason codes, most important
first, separated by REASON_SEPARATOR (empty for an approval)."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Final

from loan_preprocessing.decide import ColumnDecisions
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

REASONS_COLUMN: Final = "reasons"
CSV_COLUMNS: Final = (ID_COLUMN, TARGET_COLUMN, "probability", REASONS_COLUMN)
# The service's CSV answers end with each decision's recorded id.
DECISION_ID_COLUMN: Final = "decision_id"
CsvRow = tuple[str, ...]
# A spreadsheet runs a cell that starts with one of these as a formula (CSV
# injection); OWASP's advice is to prefix such a cell with a single quote, which
# spreadsheets show as text. Every CSV this project writes goes through this.
FORMULA_TRIGGERS: Final = ("=", "+", "-", "@", "\t", "\r")
FORMULA_ESCAPE: Final = "'"


def neutralised(cell: str) -> str:
    """`cell`, made inert for spreadsheets: quoted when it starts like a formula."""
    return FORMULA_ESCAPE + cell if cell.startswith(FORMULA_TRIGGERS) else cell


def reason_codes_cell(decision: Decision) -> str:
    return REASON_SEPARATOR.join(reason.code for reason in decision.reasons)


def csv_row(decision: Decision) -> CsvRow:
    """One CSV row; repr of a float round-trips exactly, so CSV and JSON answers agree."""
    return (
        neutralised(decision.Loan_ID or ""),
        decision.Loan_Status,
        repr(decision.probability),
        reason_codes_cell(decision),
    )


def column_csv_rows(decided: ColumnDecisions) -> Iterator[CsvRow]:
    """The CSV rows of decisions held as columns: the same cells as `csv_row`."""
    return zip(
        # `neutralised`, inline: a call per row is a tenth of a large file's time.
        [
            FORMULA_ESCAPE + loan_id if loan_id.startswith(FORMULA_TRIGGERS) else loan_id
            for loan_id in (i or "" for i in decided.loan_ids)
        ],
        decided.statuses,
        map(repr, decided.probabilities),
        decided.reason_codes(),
        strict=True,
    )


def column_csv_lines(decided: ColumnDecisions, decision_ids: list[str] | None = None) -> str:
    """The CSV lines of decisions held as columns (no header), as csv.writer
    writes them, each ending with its decision id when given."""
    rows: list[CsvRow] = list(column_csv_rows(decided))
    if decision_ids is not None:
        rows = [(*row, i) for row, i in zip(rows, decision_ids, strict=True)]
    return csv_lines(rows)


def csv_lines(rows: list[CsvRow]) -> str:
    """Rows as csv.writer writes them. Only an identifier can need quoting (the
    other cells are codes, numbers and ids); when none does, the lines are joined
    directly, which is several times faster than the csv module on a large file."""
    if not rows:
        return ""
    text = "\n".join(map(",".join, rows))
    # Counted over the whole text at C speed: a separator, quote or line end
    # beyond the rows' own is in an identifier, which csv.writer must quote.
    plain = (
        text.count(",") == (len(rows[0]) - 1) * len(rows)
        and text.count("\n") == len(rows) - 1
        and '"' not in text
        and "\r" not in text
    )
    if plain:
        return text + "\n"
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\n").writerows(rows)
    return buffer.getvalue()


def csv_text(rows: list[CsvRow]) -> str:
    """A whole answer of recorded rows (the CSV columns and the decision id)."""
    return ",".join((*CSV_COLUMNS, DECISION_ID_COLUMN)) + "\n" + csv_lines(rows)


def decisions_to_csv(
    decisions: Iterable[Decision] | ColumnDecisions, decision_ids: list[str] | None = None
) -> str:
    """The CSV answer; a last column of decision ids when they are given."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    columns = CSV_COLUMNS if decision_ids is None else (*CSV_COLUMNS, DECISION_ID_COLUMN)
    writer.writerow(columns)
    if isinstance(decisions, ColumnDecisions):
        buffer.write(column_csv_lines(decisions, decision_ids))
    else:
        rows = [csv_row(decision) for decision in decisions]
        if decision_ids is not None:
            rows = [(*row, i) for row, i in zip(rows, decision_ids, strict=True)]
        writer.writerows(rows)
    return buffer.getvalue()

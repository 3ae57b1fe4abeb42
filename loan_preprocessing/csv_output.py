"""Decisions as CSV (`Loan_ID,Loan_Status,probability,reasons,counteroffer_amount,
counteroffer_term`), for the CSV API and offline scoring. `reasons` holds a
rejection's reason codes, most important first, separated by REASON_SEPARATOR;
the counteroffer cells a rejection's offered amount and term. Each is empty
for an approval, and an offer cell is empty where there is no such offer."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import Final

from loan_preprocessing.decide import ColumnDecisions
from loan_preprocessing.reason_codes import REASON_SEPARATOR
from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, Decision

REASONS_COLUMN: Final = "reasons"
COUNTEROFFER_AMOUNT_COLUMN: Final = "counteroffer_amount"
COUNTEROFFER_TERM_COLUMN: Final = "counteroffer_term"
CSV_COLUMNS: Final = (
    ID_COLUMN,
    TARGET_COLUMN,
    "probability",
    REASONS_COLUMN,
    COUNTEROFFER_AMOUNT_COLUMN,
    COUNTEROFFER_TERM_COLUMN,
)
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


def number_cell(value: float | None) -> str:
    """repr of a float round-trips exactly, so CSV and JSON answers agree; empty: none."""
    return "" if value is None else repr(value)


def csv_row(decision: Decision) -> CsvRow:
    """One CSV row."""
    offer = decision.counteroffer
    return (
        neutralised(decision.Loan_ID or ""),
        decision.Loan_Status,
        repr(decision.probability),
        reason_codes_cell(decision),
        number_cell(offer.LoanAmount if offer else None),
        number_cell(offer.Loan_Amount_Term if offer else None),
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
        map(number_cell, decided.counteroffer_amounts),
        map(number_cell, decided.counteroffer_terms),
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
    return quoted_csv_lines(rows)


def quoted_csv_lines(rows: Iterable[Iterable[str]]) -> str:
    """`rows` as CSV lines ending in "\n", every cell that holds a separator, a
    quote, a CR or a LF quoted. csv.writer alone quotes only the characters of its
    own line terminator, so with "\n" it left a bare CR unquoted, and readers
    (Python's csv module, pandas) end a row there: one row read back as two.
    Written with "\r\n" (which makes it quote both) and each line's end replaced."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    lines = []
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        lines.append(buffer.getvalue()[:-2] + "\n")
    return "".join(lines)


def csv_text(rows: list[CsvRow]) -> str:
    """A whole answer of recorded rows (the CSV columns and the decision id)."""
    return ",".join((*CSV_COLUMNS, DECISION_ID_COLUMN)) + "\n" + csv_lines(rows)


def decisions_to_csv(
    decisions: Iterable[Decision] | ColumnDecisions, decision_ids: list[str] | None = None
) -> str:
    """The CSV answer; a last column of decision ids when they are given."""
    columns = CSV_COLUMNS if decision_ids is None else (*CSV_COLUMNS, DECISION_ID_COLUMN)
    header = quoted_csv_lines([columns])
    if isinstance(decisions, ColumnDecisions):
        return header + column_csv_lines(decisions, decision_ids)
    rows: list[CsvRow] = [csv_row(decision) for decision in decisions]
    if decision_ids is not None:
        rows = [(*row, i) for row, i in zip(rows, decision_ids, strict=True)]
    return header + quoted_csv_lines(rows)

"""The columnar CSV reading accepts and refuses exactly the files csv_rows does,
with the same values and the same errors (csv_columns.py, batch/arrow_columns.py)."""

from __future__ import annotations

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from loan_preprocessing.batch.arrow_columns import parse_arrow_csv
from loan_preprocessing.inputs.csv_columns import parse_csv_columns
from loan_preprocessing.inputs.csv_rows import (
    NUMBER_PATTERN,
    CsvValidationError,
    parse_csv_applications,
)
from loan_preprocessing.schema import FEATURE_COLUMNS, ID_COLUMN, REQUIRED_COLUMNS, TARGET_COLUMN

# Per column: cells the schema accepts, and cells that test the reading rules
# (missing spellings, spaces, numbers JSON would refuse, out of range, wrong case).
NUMBER_EDGES = [
    "",
    "NA",
    "nan",
    "inf",
    "-1",
    "5_720",
    "\u0665\u0667",
    "1e999",
    " 3000 ",
    "abc",
    "1e3",
    "+12",
    ".5",
    "7.",
    "0",
    "1e10",
    "00012",
    "4.9e-324",
    "-0",
]
VALID = {
    ID_COLUMN: ["LP001002", "x", "NA", "null", "=1+1", " padded "],
    "Gender": ["Male", "Female", ""],
    "Married": ["Yes", "No", ""],
    "Dependents": ["0", "1", "2", "3+", ""],
    "Education": ["Graduate", "Not Graduate"],
    "Self_Employed": ["Yes", "No", ""],
    "ApplicantIncome": ["5720", "0", "4583.5", "150000"],
    "CoapplicantIncome": ["0", "1508", "2358.0"],
    "LoanAmount": ["110", "", "66.0", "700"],
    "Loan_Amount_Term": ["360", "", "12", "480.0"],
    "Credit_History": ["1", "0", "1.0", ""],
    "Property_Area": ["Urban", "Semiurban", "Rural"],
    TARGET_COLUMN: ["Y", "N", "", "anything"],
}
EDGES = {
    ID_COLUMN: ["", "L" * 65, "é\u00a0", '"quoted"', "a,b", "line\nbreak"],
    "Gender": ["NA", " Male ", "male", "null", "1", "#N/A"],
    "Married": ["yes", "None", "\u00a0No"],
    "Dependents": ["1.0", "3", "4", "x", "3.0", " 2 ", "-0", "1e0", "N/A"],
    "Education": ["graduate", "", "NULL"],
    "Self_Employed": ["Y", "<NA>"],
    "ApplicantIncome": NUMBER_EDGES,
    "CoapplicantIncome": NUMBER_EDGES,
    "LoanAmount": NUMBER_EDGES,
    "Loan_Amount_Term": NUMBER_EDGES,
    "Credit_History": ["2", "true", "0.5", "NA", "1e0", "-0", " 1"],
    "Property_Area": ["urban", "", "Rural "],
    TARGET_COLUMN: [],
}
READERS = {"csv.reader": parse_csv_columns, "pyarrow": parse_arrow_csv}


@st.composite
def csv_files(draw: st.DrawFn) -> str:
    optional = [c for c in (*VALID,) if c not in REQUIRED_COLUMNS]
    dropped = draw(st.sets(st.sampled_from(optional), max_size=3))
    header = [c for c in (ID_COLUMN, *FEATURE_COLUMNS, TARGET_COLUMN) if c not in dropped]
    header = draw(st.permutations(header))
    rows = draw(st.integers(0, 6))
    # A few cells of a few rows take an edge value; the others are valid, so
    # that one cell decides whether the file is accepted.
    odd_cells = draw(
        st.sets(st.tuples(st.integers(0, max(rows - 1, 0)), st.sampled_from(header)), max_size=2)
    )
    body = []
    for row in range(rows):
        cells = []
        for column in header:
            pool = EDGES[column] if (row, column) in odd_cells and EDGES[column] else VALID[column]
            cells.append(draw(st.sampled_from(pool)))
        body.append(cells)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator=draw(st.sampled_from(["\n", "\r\n", "\r"])))
    writer.writerow(header)
    writer.writerows(body)
    if draw(st.booleans()):
        buffer.write("\n" + "," * (len(header) - 1) + "\n")  # blank lines are skipped
    return buffer.getvalue()


def _outcome(parse, text: str | bytes):
    try:
        return "ok", list(
            parse(text).applications()
        ) if parse is not parse_csv_applications else parse(text)
    except CsvValidationError as exc:
        return "refused", (str(exc), exc.problems, exc.total)


@pytest.mark.parametrize("reader", READERS)
@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=csv_files())
def test_the_columns_accept_and_refuse_what_the_rows_do(reader: str, text: str) -> None:
    expected = _outcome(parse_csv_applications, text)
    got = _outcome(READERS[reader], text.encode())
    assert got == expected


@pytest.mark.parametrize("reader", READERS)
def test_a_refused_file_names_the_line_and_column(reader: str) -> None:
    header = ",".join((ID_COLUMN, *FEATURE_COLUMNS))
    good = "LP1,Male,Yes,0,Graduate,No,5720,0,110,360,1,Urban"
    bad = "LP2,Male,Yes,0,Graduate,No,5_720,0,110,360,1,Urban"
    with pytest.raises(CsvValidationError) as refused:
        READERS[reader](f"{header}\n{good}\n{good}\n{bad}\n".encode())
    assert (refused.value.line, refused.value.column) == (4, "ApplicantIncome")
    assert "not a number: '5_720'" in str(refused.value)


def test_the_blank_characters_are_pythons() -> None:
    import sys

    from loan_preprocessing.batch.arrow_columns import PYTHON_WHITESPACE

    everything = (chr(c) for c in range(sys.maxunicode + 1))
    assert "".join(c for c in everything if c.isspace()) == PYTHON_WHITESPACE


@settings(max_examples=500, deadline=None)
@given(
    text=st.one_of(
        st.from_regex(NUMBER_PATTERN, fullmatch=True),
        st.floats(allow_nan=False, allow_infinity=False).map(repr),
    )
)
def test_arrow_reads_a_number_as_python_does(text: str) -> None:
    import math

    import pyarrow as pa
    import pyarrow.compute as pc

    value = pc.cast(pa.array([text]), pa.float64())[0].as_py()
    expected = float(text)
    assert value == expected and math.copysign(1, value) == math.copysign(1, expected)

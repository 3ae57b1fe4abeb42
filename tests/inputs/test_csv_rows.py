"""CSV rows -> LoanApplication: what is accepted, and how problems are located."""

from __future__ import annotations

import pandas as pd
import pytest

from loan_preprocessing.inputs.csv_rows import (
    MAX_REPORTED_PROBLEMS,
    CsvValidationError,
    parse_csv_applications,
)
from loan_preprocessing.schema import EXAMPLE_APPLICATION, FEATURE_COLUMNS, TARGET_COLUMN
from tests.conftest import SAMPLE_CSV

# Every column the model reads (LoanAmount and Loan_Amount_Term left empty), no other
# optional one.
HEADER = (
    "Loan_ID,Education,ApplicantIncome,CoapplicantIncome,Property_Area,Credit_History,"
    "LoanAmount,Loan_Amount_Term"
)
GOOD = "A1,Graduate,5720,0,Urban,1,,"


def test_a_data_set_file_parses_like_pandas_reads_it():
    frame = pd.read_csv(SAMPLE_CSV, dtype={"Dependents": str, "Loan_ID": str})
    applications = parse_csv_applications(SAMPLE_CSV)  # a labelled file: Loan_Status ignored
    assert TARGET_COLUMN in frame.columns
    assert len(applications) == len(frame)
    parsed = pd.DataFrame([a.model_dump() for a in applications])
    for column in FEATURE_COLUMNS:
        expected = frame[column].astype(object).where(frame[column].notna(), None)
        got = parsed[column].astype(object).where(parsed[column].notna(), None)
        assert expected.tolist() == got.tolist(), column


def test_bytes_text_and_path_give_the_same_applications(tmp_path):
    text = f"{HEADER}\n{GOOD}\n"
    path = tmp_path / "one.csv"
    path.write_bytes(b"\xef\xbb\xbf" + text.encode())  # with a byte-order mark
    assert (
        parse_csv_applications(text)
        == parse_csv_applications(text.encode())
        == parse_csv_applications(path)
    )


def test_missing_cells_are_none_and_optional_columns_may_be_absent():
    (application,) = parse_csv_applications(f"{HEADER}\nA1,Graduate,5720,0,Urban,,,\n")
    assert application.Credit_History is None and application.Gender is None
    assert application.ApplicantIncome == EXAMPLE_APPLICATION.ApplicantIncome


def test_a_missing_column_the_model_reads_is_refused_by_name_an_empty_one_is_unknown():
    without = HEADER.replace(",Credit_History", "")
    with pytest.raises(CsvValidationError) as caught:
        parse_csv_applications(f"{without}\nA1,Graduate,5720,0,Urban,,\n")
    assert [(p.line, p.column) for p in caught.value.problems] == [(1, "Credit_History")]
    assert "the model reads it" in caught.value.message
    assert "empty cells" in caught.value.message
    (application,) = parse_csv_applications(f"{HEADER}\nA1,Graduate,5720,0,Urban,,,\n")
    assert application.Credit_History is None


def test_a_bad_cell_names_line_and_column():
    text = f"{HEADER}\n{GOOD}\nA2,Graduate,lots,0,Urban,1,,\n"
    with pytest.raises(CsvValidationError) as caught:
        parse_csv_applications(text)
    error = caught.value
    assert (error.line, error.column) == (3, "ApplicantIncome")
    assert "not a number" in error.message and "'lots'" in error.message
    assert str(error).startswith("line 3, column ApplicantIncome:")


def test_every_bad_row_is_reported_in_file_order_blank_lines_counted():
    text = f"{HEADER}\nA1,Grad,5720,0,Urban,1,,\n\nA3,Graduate,5720,,Urban,2,,\n"
    with pytest.raises(CsvValidationError) as caught:
        parse_csv_applications(text)
    located = [(p.line, p.column) for p in caught.value.problems]
    assert located == [(2, "Education"), (4, "CoapplicantIncome"), (4, "Credit_History")]
    assert "required value is missing" in caught.value.problems[1].message


def test_header_problems_are_on_line_1():
    with pytest.raises(CsvValidationError) as caught:
        parse_csv_applications("Loan_ID,Educaton,ApplicantIncome,CoapplicantIncome\nA,B,1,2\n")
    problems = {(p.line, p.column, p.message.split(";")[0]) for p in caught.value.problems}
    assert (1, "Educaton", "unknown column") in problems
    assert (1, "Education", "required column is missing") in problems


def test_problem_list_is_capped_but_counted():
    rows = "\n".join(f"A{i},Graduate,-1,0,Urban,1,," for i in range(50))
    with pytest.raises(CsvValidationError) as caught:
        parse_csv_applications(f"{HEADER}\n{rows}\n")
    assert len(caught.value.problems) == MAX_REPORTED_PROBLEMS
    assert caught.value.total == 50 and "and 49 more problems" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("", 1, "empty"),
        (f"{HEADER}\n", 1, "no applications"),
        (f"{HEADER}\nA1,Graduate,5720\n", 2, "3 values but the header has 8"),
        (f"{HEADER}\n{GOOD}\n{GOOD}\n{GOOD}\n", 4, "more than 2 applications"),
    ],
)
def test_file_level_problems(text, line, fragment):
    with pytest.raises(CsvValidationError) as caught:
        parse_csv_applications(text, max_rows=2)
    assert caught.value.line == line and fragment in caught.value.message


def test_undecodable_bytes_are_a_validation_error():
    with pytest.raises(CsvValidationError, match="line 2: not UTF-8"):
        parse_csv_applications(f"{HEADER}\n".encode() + b"\xff\xfe,,\n")


@pytest.mark.parametrize("loan_id", ["NA", "None", "#N/A", "null", "NaN", " padded ", "=1+1"])
def test_an_identifier_is_read_exactly_as_written(loan_id):
    (application,) = parse_csv_applications(f'{HEADER}\n"{loan_id}",Graduate,5720,0,Urban,1,,\n')
    assert application.Loan_ID == loan_id


def test_an_empty_identifier_is_none():
    (application,) = parse_csv_applications(f"{HEADER}\n,Graduate,5720,0,Urban,1,,\n")
    assert application.Loan_ID is None


@pytest.mark.parametrize("number", ["5_720", "\u0665\u0667\u0662\u0660", "infinity", "0x10", "1e"])
def test_only_json_spellings_of_numbers_are_numbers(number):
    with pytest.raises(CsvValidationError) as error:
        parse_csv_applications(f"{HEADER}\nA1,Graduate,{number},0,Urban,1,,\n")
    assert error.value.column == "ApplicantIncome"


@pytest.mark.parametrize("number", ["5720", "5720.5", "+3", ".5", "5.", "1e3", "1E-3"])
def test_json_spellings_of_numbers_are_read(number):
    text = f"{HEADER}\nA1,Graduate,5720,{number},Urban,1,,\n"
    (application,) = parse_csv_applications(text)
    assert application.CoapplicantIncome == float(number)

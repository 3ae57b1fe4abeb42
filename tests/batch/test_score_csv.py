"""Offline CSV scoring: the same answers as the pipeline, bad rows located."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from loan_preprocessing.batch import score_csv
from loan_preprocessing.decide import Scorer
from loan_preprocessing.explanations.reasons import load_reference
from loan_preprocessing.model.features import to_feature_frame
from loan_preprocessing.schema import ID_COLUMN, TARGET_COLUMN, LoanApplication
from tests.conftest import REAL_TEST_CSV
from tests.support.counteroffers import assert_exact


@pytest.fixture(scope="module")
def scored(real_model, tmp_path_factory) -> pd.DataFrame:
    stored, _ = real_model
    output = tmp_path_factory.mktemp("scored") / "decisions.csv"
    argv = [str(REAL_TEST_CSV), "--output", str(output), "--model-tag", str(stored.tag)]
    # A chunk size that does not divide 367, so the last chunk is a partial one.
    assert score_csv.main([*argv, "--chunk-size", "50", "--quiet"]) == 0
    return pd.read_csv(output, dtype={ID_COLUMN: str})


def test_the_real_test_rows_score_as_the_pipeline_does(scored, real_model, real_test_rows):
    stored, pipeline = real_model
    expected = pipeline.predict_proba(to_feature_frame(real_test_rows))[:, 1]
    assert list(scored.columns) == list(score_csv.OUTPUT_COLUMNS)
    assert scored[ID_COLUMN].tolist() == [r[ID_COLUMN] for r in real_test_rows]
    np.testing.assert_array_equal(scored["probability"].to_numpy(), expected)
    threshold = stored.info.metadata["threshold"]
    assert scored[TARGET_COLUMN].tolist() == ["Y" if p >= threshold else "N" for p in expected]


def test_every_denial_gets_its_exact_counteroffer(scored, real_model, real_test_rows):
    stored, pipeline = real_model
    amounts = [None if a != a else a for a in scored["counteroffer_amount"].tolist()]
    terms = [None if t != t else t for t in scored["counteroffer_term"].tolist()]
    assert any(a is not None for a in amounts) and any(t is not None for t in terms)
    applications = [LoanApplication.model_validate(r) for r in real_test_rows]
    statuses = scored[TARGET_COLUMN].tolist()
    threshold = float(stored.info.metadata["threshold"])
    assert_exact(pipeline, threshold, applications, statuses, amounts, terms)


def test_chunk_size_does_not_change_the_answers(scored, real_model):
    stored, pipeline = real_model
    sink = io.StringIO()
    scorer = Scorer(pipeline, "test", load_reference(stored), 0.5)
    n = score_csv.score_stream(REAL_TEST_CSV, sink, scorer, chunk_size=1000)
    assert n == len(scored) == 367
    sink.seek(0)
    pd.testing.assert_frame_equal(pd.read_csv(sink, dtype={ID_COLUMN: str}), scored)


def test_a_bad_row_stops_with_line_and_column(real_model, tmp_path, capsys):
    stored, _ = real_model
    lines = REAL_TEST_CSV.read_text(encoding="utf-8-sig").splitlines()
    # Line 5 of the file (the header is line 1): a loan amount that is not a number.
    cells = lines[4].split(",")
    cells[8] = "lots"
    bad = tmp_path / "bad.csv"
    bad.write_text("\n".join([*lines[:4], ",".join(cells), *lines[5:]]) + "\n")
    output = tmp_path / "out.csv"
    argv = [str(bad), "--output", str(output), "--model-tag", str(stored.tag), "--quiet"]
    assert score_csv.main([*argv, "--chunk-size", "2"]) == 1
    err = capsys.readouterr().err
    assert "line 5, column LoanAmount: not a number: 'lots'" in err
    # Nothing half-written is left behind.
    assert list(tmp_path.iterdir()) == [bad]


def test_an_unknown_model_is_a_clear_error(tmp_path, capsys):
    argv = [str(REAL_TEST_CSV), "--model-tag", "loan_approval:doesnotexist", "--quiet"]
    assert score_csv.main(argv) == 1
    assert "no model 'loan_approval:doesnotexist'" in capsys.readouterr().err


def test_chunk_size_must_be_positive():
    with pytest.raises(SystemExit):
        score_csv.parse_args([str(REAL_TEST_CSV), "--chunk-size", "0"])

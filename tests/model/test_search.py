"""The declared search space and the one-pass candidate search.

The pass over the folds (with warm-started fits shared between grid points) must
be the grid search scikit-learn would run: the same fold scores for every grid
point, the same choice, the same out-of-fold predictions.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid, cross_val_predict

from loan_preprocessing.data import features_and_target, read_applications
from loan_preprocessing.model.features import DERIVED_FROM, MODEL_FEATURES, fields_of
from loan_preprocessing.model.search import (
    ALL_INPUTS,
    CANDIDATES,
    PARAM_GRID,
    candidate,
    fit_candidate,
    make_search,
    search_candidates,
    search_folds,
    without,
)
from loan_preprocessing.schema import PROTECTED_ATTRIBUTES
from tests.conftest import SAMPLE_CSV


@pytest.fixture(scope="module")
def data():
    return features_and_target(read_applications(SAMPLE_CSV))


def test_the_space_has_all_inputs_and_each_field_left_out_once():
    assert CANDIDATES[0].name == ALL_INPUTS and CANDIDATES[0].features == MODEL_FEATURES
    assert CANDIDATES[0].dropped == ()
    assert [c.name for c in CANDIDATES[1:]] == [without(f) for f in DERIVED_FROM]
    assert all(f in c.dropped for c, f in zip(CANDIDATES[1:], DERIVED_FROM, strict=True))
    for declared in CANDIDATES:
        read = fields_of(declared.features)
        assert not set(read) & set(declared.dropped), declared.name
        assert set(read) | set(declared.dropped) == set(DERIVED_FROM), declared.name
        assert not set(read) & set(PROTECTED_ATTRIBUTES)
    assert candidate(without("Property_Area")).dropped == ("Property_Area",)
    # The income features all read ApplicantIncome: without it, no co-applicant income.
    assert candidate(without("ApplicantIncome")).dropped == (
        "ApplicantIncome",
        "CoapplicantIncome",
    )
    with pytest.raises(ValueError, match="the candidates are"):
        candidate("without-Gender")


@pytest.mark.parametrize("name", [ALL_INPUTS, without("Property_Area")])
def test_the_one_pass_search_is_the_grid_search(data, name):
    features, target = data
    declared = candidate(name)
    [result] = search_candidates(features, target, seed=3, candidates=[declared])
    grid = make_search(seed=3, verbose=0, features=declared.features).fit(features, target)
    assert len(result.mean_fold_auc) == len(ParameterGrid(PARAM_GRID))
    np.testing.assert_allclose(
        result.mean_fold_auc, grid.cv_results_["mean_test_score"], rtol=0, atol=1e-12
    )
    assert result.params == grid.best_params_
    expected = cross_val_predict(
        grid.best_estimator_, features, target, cv=search_folds(3), method="predict_proba"
    )[:, 1]
    np.testing.assert_array_equal(result.out_of_fold, expected)
    for index, (_, test) in enumerate(search_folds(3).split(features, target)):
        scored = grid.cv_results_[f"split{index}_test_score"][grid.best_index_]
        assert roc_auc_score(target[test], result.out_of_fold[test]) == pytest.approx(
            scored, abs=1e-12
        )
    refitted = fit_candidate(declared, result.params, features, target, seed=3)
    np.testing.assert_array_equal(
        refitted.predict_proba(features), grid.best_estimator_.predict_proba(features)
    )

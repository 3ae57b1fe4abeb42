"""VectorizedBooster gives scikit-learn's probabilities bit for bit.

It replaces HistGradientBoostingClassifier.predict_proba on the serving path, so
equality is checked exactly: on the real model and its inputs, on random
matrices with NaN (both missing-value directions), on deeper trees than ours,
on every batch size around the chunk boundary (a one-row chunk is summed
another way), and on models it must refuse.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

from loan_preprocessing.model.features import (
    FastPredictor,
    application_columns,
    loan_feature_matrix,
)
from loan_preprocessing.model.tree_ensemble import VectorizedBooster, unsupported_reason
from loan_preprocessing.schema import LoanApplication


def _fitted(seed: int = 0, n_features: int = 5, nan_rate: float = 0.2, **params):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(600, n_features))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=600) > 0).astype(int)
    X[rng.random(X.shape) < nan_rate] = np.nan  # learns missing_go_to_left both ways
    return HistGradientBoostingClassifier(random_state=seed, **params).fit(X, y), X


@pytest.fixture(scope="module")
def deep_model():
    return _fitted(max_iter=60, max_leaf_nodes=15, max_depth=None)


def test_equals_the_real_model_on_the_real_test_rows(real_model, real_test_rows):
    _, pipeline = real_model
    predictor = FastPredictor(pipeline)
    applications = [LoanApplication.model_validate(r) for r in real_test_rows]
    matrix = loan_feature_matrix(application_columns(applications))
    imputed = np.where(np.isnan(matrix), predictor.medians, matrix)
    classifier = pipeline.named_steps["classify"]
    assert unsupported_reason(classifier) is None
    np.testing.assert_array_equal(
        VectorizedBooster(classifier).predict_proba(imputed), classifier.predict_proba(imputed)
    )


@pytest.mark.parametrize("rows", [1, 2, 3, 127, 128, 129, 130, 257, 300, 1000])
def test_equals_scikit_learn_on_deep_trees_with_missing_values(deep_model, rows):
    classifier, X = deep_model
    booster = VectorizedBooster(classifier)
    assert booster.depth > 2
    chosen = np.resize(X, (rows, X.shape[1]))
    np.testing.assert_array_equal(booster.predict_proba(chosen), classifier.predict_proba(chosen))


def any_matrices(max_rows: int) -> st.SearchStrategy[np.ndarray]:
    """Matrices of the models' 5 features: ordinary values, missing ones and extremes."""
    return arrays(
        np.float64,
        st.tuples(st.integers(1, max_rows), st.just(5)),
        elements=st.one_of(
            st.floats(-5, 5, allow_nan=False), st.just(np.nan), st.sampled_from([-1e300, 1e300])
        ),
    )


@settings(max_examples=60, deadline=None)
@given(any_matrices(300))
def test_equals_scikit_learn_on_any_matrix(deep_model, X):
    classifier, _ = deep_model
    np.testing.assert_array_equal(
        VectorizedBooster(classifier).predict_proba(X), classifier.predict_proba(X)
    )


def test_thresholds_are_inclusive_on_the_left(deep_model):
    """A value exactly on a split threshold goes left (x <= threshold), as in scikit-learn."""
    classifier, _ = deep_model
    root = classifier._predictors[0][0].nodes[0]
    X = np.zeros((1, 5))
    X[0, root["feature_idx"]] = root["num_threshold"]
    np.testing.assert_array_equal(
        VectorizedBooster(classifier).predict_proba(X), classifier.predict_proba(X)
    )


def test_wrong_width_is_refused(deep_model):
    classifier, _ = deep_model
    with pytest.raises(ValueError, match="5 columns"):
        VectorizedBooster(classifier).predict_proba(np.zeros((2, 4)))


X_SMALL = np.array([[0.0], [1.0], [2.0], [1.0], [0.0], [2.0]])
UNSUPPORTED = {
    "not fitted": lambda: HistGradientBoostingClassifier(),
    "not a HistGradientBoostingClassifier": lambda: HistGradientBoostingRegressor(max_iter=5).fit(
        X_SMALL, [0, 1, 2, 1, 0, 2]
    ),
    "not a binary classifier": lambda: HistGradientBoostingClassifier(max_iter=5).fit(
        X_SMALL, [0, 1, 2, 1, 0, 2]
    ),
    "has categorical features": lambda: HistGradientBoostingClassifier(
        max_iter=5, categorical_features=[0]
    ).fit(X_SMALL, [0, 1, 1, 0, 0, 1]),
}


@pytest.mark.parametrize("reason", UNSUPPORTED)
def test_models_it_cannot_reproduce_are_refused(reason):
    model = UNSUPPORTED[reason]()
    assert unsupported_reason(model) == reason
    with pytest.raises(ValueError, match="cannot vectorise"):
        VectorizedBooster(model)


# Batch sizes around every boundary of both paths: the row chunks of the general
# path (128), where larger batches switch to side codes (256), and the chunks
# of rows coded together (16384).
BATCH_SIZES = [1, 127, 128, 129, 255, 256, 257, 1000, 5000, 16384, 16385, 20001]


@pytest.fixture(scope="module")
def two_split_model():
    """Our model family (3 leaves a tree), with missing values both ways."""
    return _fitted(seed=3, max_iter=120, max_leaf_nodes=3)


def test_two_split_trees_take_the_side_code_path(two_split_model, deep_model):
    assert VectorizedBooster(two_split_model[0])._bulk is not None
    assert VectorizedBooster(deep_model[0])._bulk is None


@pytest.mark.parametrize("rows", BATCH_SIZES)
def test_equals_scikit_learn_on_any_batch_size(two_split_model, deep_model, rows):
    """Bit for bit on both paths, so a row's probability cannot depend on the
    size of its batch or on where a chunk ends."""
    for classifier, X in (two_split_model, deep_model):
        rng = np.random.default_rng(rows)
        chosen = X[rng.integers(0, len(X), rows)]
        np.testing.assert_array_equal(
            VectorizedBooster(classifier).predict_proba(chosen), classifier.predict_proba(chosen)
        )


@settings(max_examples=60, deadline=None)
@given(any_matrices(60))
def test_side_codes_equal_scikit_learn_on_any_matrix(two_split_model, X):
    """The side-code path on every batch, in chunks of 7 rows."""
    classifier, _ = two_split_model
    booster = VectorizedBooster(classifier)
    booster.BULK_MIN_ROWS, booster.BULK_CHUNK_ROWS = 1, 7
    np.testing.assert_array_equal(booster.predict_proba(X), classifier.predict_proba(X))


def test_side_codes_equal_scikit_learn_on_the_split_thresholds(two_split_model):
    """Every threshold of the model, and its neighbours, in every feature."""
    classifier, _ = two_split_model
    booster = VectorizedBooster(classifier)
    booster.BULK_MIN_ROWS = 1
    thresholds = np.concatenate(booster._bulk.codes.thresholds)
    values = np.concatenate([thresholds, np.nextafter(thresholds, np.inf), [np.nan]])
    X = np.random.default_rng(0).choice(values, size=(3000, 5))
    np.testing.assert_array_equal(booster.predict_proba(X), classifier.predict_proba(X))

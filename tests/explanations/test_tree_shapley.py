"""TreeShapley gives the interventional Shapley values that shap computes.

The oracle is shap's exact explainer (every coalition of features, each filled
from every reference row, through the model's own raw score): our closed form
per tree must give the same attributions within 1e-9, on the real rejected
applications against the stored reference population and on random models and
matrices with missing values. shap's TreeExplainer (interventional) computes the
same quantity, but in single precision: it agrees to 1e-6 on values away from
the split thresholds, and goes the wrong way on a value equal to a threshold,
which the real data has (scikit-learn sends it left), so it is checked only
where it can be right.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import HistGradientBoostingClassifier

from loan_preprocessing.explanations.tree_shapley import TreeShapley
from loan_preprocessing.model.tree_ensemble import VectorizedBooster

shap = pytest.importorskip("shap", reason="shap (requirements/dev.txt) is the test oracle")

EXACT = 1e-9


def exact_shap(classifier: HistGradientBoostingClassifier, reference: np.ndarray, X: np.ndarray):
    """shap's exact interventional Shapley values of the raw score (log-odds),
    and its base value. VectorizedBooster.raw_predict is scikit-learn's
    decision_function bit for bit (tests/model/test_tree_ensemble.py), only faster."""
    masker = shap.maskers.Independent(reference, max_samples=len(reference))
    explainer = shap.explainers.Exact(VectorizedBooster(classifier).raw_predict, masker)
    explanation = explainer(X, silent=True)
    return explanation.values, float(np.ravel(explanation.base_values)[0])


def _fitted(
    seed: int, nan_rate: float = 0.2, **params
) -> tuple[HistGradientBoostingClassifier, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(400, 4))
    y = (X[:, 0] + X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=400) > 0).astype(int)
    X[rng.random(X.shape) < nan_rate] = np.nan  # missing values go both ways
    params = {"max_leaf_nodes": 3, "max_iter": 30, "random_state": seed, **params}
    return HistGradientBoostingClassifier(**params).fit(X, y), X


@pytest.fixture(scope="module")
def real_explainer(real_model):
    from loan_preprocessing.decide import Scorer

    stored, _ = real_model
    return Scorer.from_model(stored)


def test_equals_shap_on_the_real_rejected_applications(real_explainer, real_test_rows):
    from loan_preprocessing.schema import LoanApplication

    scorer = real_explainer
    applications = [LoanApplication.model_validate(r) for r in real_test_rows]
    inputs = scorer.model_inputs(applications)
    rejected = inputs[scorer._probabilities(inputs) < scorer.threshold]
    assert len(rejected) > 30
    classifier = scorer.pipeline[-1]
    expected, base = exact_shap(classifier, scorer.reference.inputs, rejected)
    ours = scorer.explainer.attributions(rejected)
    np.testing.assert_allclose(ours, expected, rtol=0, atol=EXACT)
    assert scorer.explainer.expected_value == pytest.approx(base, abs=EXACT)


def test_attributions_add_up_to_the_log_odds_on_every_real_row(real_explainer, real_test_rows):
    import pandas as pd

    from loan_preprocessing.data import features_and_target, read_applications
    from loan_preprocessing.schema import LoanApplication
    from tests.conftest import REAL_TRAINING_CSV

    scorer = real_explainer
    training, _ = features_and_target(read_applications(REAL_TRAINING_CSV))
    records = [
        *real_test_rows,
        *training.astype(object).where(pd.notna(training), None).to_dict("records"),
    ]
    inputs = scorer.model_inputs([LoanApplication.model_validate(r) for r in records])
    log_odds = scorer.pipeline[-1].decision_function(inputs)
    phi = scorer.explainer.attributions(inputs)
    np.testing.assert_allclose(
        phi.sum(axis=1) + scorer.explainer.expected_value, log_odds, atol=EXACT
    )


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    nan_rate=st.sampled_from([0.0, 0.2]),
    leaves=st.sampled_from([2, 3]),
)
def test_equals_shap_on_random_models_with_missing_values(seed, nan_rate, leaves):
    classifier, X = _fitted(seed, nan_rate, max_leaf_nodes=leaves)
    reference, explained = X[:25], X[-40:]
    expected, base = exact_shap(classifier, reference, explained)
    explainer = TreeShapley(classifier, reference)
    np.testing.assert_allclose(explainer.shap_values(explained), expected, rtol=0, atol=EXACT)
    assert explainer.expected_value == pytest.approx(base, abs=EXACT)


def test_tree_explainer_agrees_to_its_single_precision_off_the_thresholds():
    classifier, _ = _fitted(3, nan_rate=0.0, max_iter=100)
    rng = np.random.default_rng(7)
    # Fresh draws: no value falls exactly on a split threshold.
    reference, explained = rng.normal(size=(50, 4)), rng.normal(size=(200, 4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # shap's numba and tqdm chatter
        tree = shap.TreeExplainer(
            classifier, reference, feature_perturbation="interventional", model_output="raw"
        )
        expected = tree.shap_values(explained)
    np.testing.assert_allclose(
        TreeShapley(classifier, reference).shap_values(explained), expected, rtol=0, atol=1e-6
    )


def test_a_row_gets_the_same_numbers_in_any_batch():
    classifier, X = _fitted(11)
    explainer = TreeShapley(classifier, X[:30])
    groups = [0, 1, 1, -1]
    whole = explainer.grouped(X, groups, 2)
    for i in (0, 7, 399):
        np.testing.assert_array_equal(explainer.grouped(X[i : i + 1], groups, 2)[0], whole[i])


def test_grouping_adds_the_features_of_a_group_and_drops_the_ungrouped():
    classifier, X = _fitted(5)
    explainer = TreeShapley(classifier, X[:30])
    phi = explainer.shap_values(X)
    grouped = explainer.grouped(X, [1, -1, 1, 0], 3)
    np.testing.assert_allclose(grouped[:, 1], phi[:, 0] + phi[:, 2], atol=1e-12)
    np.testing.assert_allclose(grouped[:, 0], phi[:, 3], atol=1e-12)
    assert not grouped[:, 2].any()


def test_refuses_deeper_trees_and_a_bad_reference():
    deep, X = _fitted(1, max_leaf_nodes=4)
    with pytest.raises(ValueError, match="splits more than twice"):
        TreeShapley(deep, X[:10])
    ours, X = _fitted(1)
    with pytest.raises(ValueError, match="reference population"):
        TreeShapley(ours, X[:10, :3])
    with pytest.raises(ValueError, match="reference population"):
        TreeShapley(ours, X[:0])


@pytest.mark.parametrize("rows", [1, 127, 128, 129, 511, 512, 513, 2047, 2048, 2049, 5000])
def test_a_row_gets_the_same_numbers_alone_whatever_the_batch_size(rows):
    """Around the chunks of rows (512) and where rows start to be merged by their
    side codes (2048): every row of the batch equals the row explained alone, to
    the last bit. Values on a coarse grid make many rows share their codes."""
    classifier, X = _fitted(13)
    explainer = TreeShapley(classifier, X[:30])
    rng = np.random.default_rng(rows)
    batch = np.round(rng.normal(size=(rows, 4)), 1)
    batch[rng.random(batch.shape) < 0.1] = np.nan
    groups = [0, 1, 1, -1]
    whole = explainer.grouped(batch, groups, 2)
    alone = np.array([explainer.grouped(batch[i : i + 1], groups, 2)[0] for i in range(rows)])
    np.testing.assert_array_equal(whole, alone)
    if rows >= explainer.DISTINCT_MIN_ROWS:
        first, _ = explainer._codes.distinct(batch)
        assert len(first) < rows  # the merging was exercised


def test_small_chunks_and_merging_change_no_number():
    classifier, X = _fitted(17)
    explainer = TreeShapley(classifier, X[:30])
    expected = explainer.shap_values(X)
    explainer.CHUNK_ROWS, explainer.DISTINCT_MIN_ROWS = 7, 2
    np.testing.assert_array_equal(
        explainer.shap_values(np.concatenate([X, X])), np.tile(expected, (2, 1))
    )

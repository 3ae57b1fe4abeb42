"""Side codes say, for every split of every tree, the side scikit-learn sends a row.

The booster's bulk path and the explainer both read a row's sides from one code
per feature (how many of the feature's thresholds the value is above, NaN its
own code); here the codes are checked against the split rule itself.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.ensemble import HistGradientBoostingClassifier

from loan_preprocessing.model import split_codes
from loan_preprocessing.model.split_codes import SplitCodes, two_split_tree


def _trees_and_rows(seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(500, 3))
    y = (X[:, 0] - X[:, 1] * X[:, 2] + rng.normal(scale=0.5, size=500) > 0).astype(int)
    X[rng.random(X.shape) < 0.2] = np.nan
    classifier = HistGradientBoostingClassifier(max_leaf_nodes=3, max_iter=40, random_state=seed)
    classifier.fit(X, y)
    trees = [two_split_tree(iteration[0].nodes) for iteration in classifier._predictors]
    thresholds = np.unique(
        [t.a_threshold for t in trees if t] + [t.b_threshold for t in trees if t]
    )
    # Rows on, just above and just below every threshold, and missing values.
    values = np.concatenate(
        [thresholds, np.nextafter(thresholds, np.inf), np.nextafter(thresholds, -np.inf), [np.nan]]
    )
    return trees, rng.choice(values, size=(2000, 3))


def _goes_left(values, threshold, missing_left):
    return np.where(np.isnan(values), missing_left, values <= threshold)


@pytest.mark.parametrize("few", [0, split_codes.FEW_THRESHOLDS])
def test_the_tables_give_each_tree_the_leaf_of_the_split_rule(monkeypatch, few):
    """By comparisons (few thresholds) and by binary search alike."""
    monkeypatch.setattr(split_codes, "FEW_THRESHOLDS", few)
    trees, X = _trees_and_rows()
    codes = SplitCodes(trees, 3)
    joint = codes.joint(X)
    for tree, pair in zip(trees, codes.pair_of_tree, strict=True):
        r = _goes_left(X[:, tree.a], tree.a_threshold, tree.a_missing_left).astype(int)
        s = _goes_left(X[:, tree.b], tree.b_threshold, tree.b_missing_left).astype(int)
        np.testing.assert_array_equal(codes.table(tree, tree.leaf)[joint[pair]], tree.leaf[r, s])


def test_rows_merged_as_distinct_share_every_side():
    trees, X = _trees_and_rows(1)
    codes = SplitCodes(trees, 3)
    first, inverse = codes.distinct(X)
    assert len(first) < len(X)
    np.testing.assert_array_equal(codes.joint(X), codes.joint(X[first])[:, inverse])


def test_codes_too_wide_for_one_key_are_not_merged():
    trees, X = _trees_and_rows(2)
    codes = SplitCodes(trees, 3)
    codes.width = np.full(3, 2**21, dtype=np.intp)
    assert codes.distinct(X) is None

"""Exact interventional Shapley values of a boosted model's raw score (log-odds).

What `shap.TreeExplainer(model, background, feature_perturbation="interventional")`
computes, for boosters whose trees split at most twice (ours: 3 leaves each),
without numba or llvmlite in the serving process. For one row x and one
reference row z, the Shapley value of feature i in a tree f is the average, over
the orders of the features, of what setting x_i (instead of z_i) adds to
f(x on the features set so far, z on the others); the attribution is that value
averaged over the reference rows. A tree with at most two splits reads at most
two features, so the average over orders has two terms and a closed form:

    one feature a:    phi_a = f(x) - E[f(z)]
    features a, b:    phi_a = 1/2 (E_z f(x_a, z_b) - E[f(z)]) + 1/2 (f(x) - E_z f(z_a, x_b))
                      phi_b = the same with a and b swapped

Each term depends on x only through the side it takes at the root split (r)
and at the other split (s), so each tree's attributions are two 2x2 tables
computed once from the reference rows; a batch then costs two comparisons
and two lookups per tree and row. Per tree they add up to f(x) - E[f(z)], so
the attributions of a row add up to its raw score minus `expected_value`.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from loan_preprocessing.model.split_codes import SplitCodes, two_split_tree
from loan_preprocessing.model.tree_ensemble import unsupported_reason


def _goes_left(values: np.ndarray, threshold: np.ndarray, missing_left: np.ndarray) -> np.ndarray:
    """scikit-learn's rule: x <= threshold goes left, NaN where the tree says."""
    left = values <= threshold
    return np.where(np.isnan(values), missing_left, left)


class TreeShapley:
    """Interventional Shapley values of a binary HistGradientBoostingClassifier's
    raw score against a reference population (a float64 matrix of model inputs)."""

    # Rows attributed together: a chunk's temporaries (a few per row and tree)
    # stay within the CPU's caches instead of growing with the batch.
    CHUNK_ROWS = 512
    # From this many rows, rows are first merged by their side codes: below it
    # the merging costs more than it saves (measured on our model: even at 1024
    # rejections; 12% saved at 4096, three quarters at the 156k of 1M rows).
    DISTINCT_MIN_ROWS = 2048

    def __init__(self, classifier: HistGradientBoostingClassifier, reference: np.ndarray) -> None:
        reason = unsupported_reason(classifier)
        if reason:
            raise ValueError(f"cannot explain this classifier: {reason}")
        reference = np.asarray(reference, dtype=np.float64)
        self.n_features = int(classifier.n_features_in_)
        if reference.ndim != 2 or reference.shape[1] != self.n_features or not len(reference):
            raise ValueError(
                f"the reference population must be a non-empty matrix of {self.n_features} "
                f"columns, got {reference.shape}"
            )
        nodes = [iteration[0].nodes for iteration in classifier._predictors]
        trees = [two_split_tree(n) for n in nodes]
        self._codes = SplitCodes(trees, self.n_features)
        # Single-leaf trees add a constant to every row, the reference's included.
        constant = sum(float(n[0]["value"]) for n, t in zip(nodes, trees, strict=True) if t is None)
        split_trees = [t for t in trees if t is not None]
        self.a = np.array([t.a for t in split_trees], dtype=np.intp)
        self.b = np.array([t.b for t in split_trees], dtype=np.intp)
        self.a_threshold = np.array([t.a_threshold for t in split_trees])
        self.b_threshold = np.array([t.b_threshold for t in split_trees])
        self.a_missing_left = np.array([t.a_missing_left for t in split_trees])
        self.b_missing_left = np.array([t.b_missing_left for t in split_trees])
        self._split_feature = np.concatenate([self.a, self.b])
        self._split_threshold = np.concatenate([self.a_threshold, self.b_threshold])
        leaf = np.array([t.leaf for t in split_trees]).reshape(len(split_trees), 2, 2)
        # Sides the reference rows take: E[f(z)], E_z f(x_a, z_b) per root side r,
        # E_z f(z_a, x_b) per side s of the other split.
        cells = self._cells(reference)
        r_ref, s_ref = cells // 2, cells % 2
        trees_index = np.arange(len(split_trees))
        expected = leaf[trees_index, r_ref, s_ref].mean(axis=0)
        by_root_side = np.stack([leaf[trees_index, r, s_ref].mean(axis=0) for r in (0, 1)], 1)
        by_other_side = np.stack([leaf[trees_index, r_ref, s].mean(axis=0) for s in (0, 1)], 1)
        # phi_a and phi_b of each tree for each (r, s); a tree reading one feature
        # gives it the whole f(x) - E[f(z)].
        one_feature = (self.a == self.b)[:, None, None]
        half = 0.5 * (
            by_root_side[:, :, None] - by_other_side[:, None, :] + leaf - expected[:, None, None]
        )
        other_half = 0.5 * (
            by_other_side[:, None, :] - by_root_side[:, :, None] + leaf - expected[:, None, None]
        )
        phi_a = np.where(one_feature, leaf - expected[:, None, None], half)
        phi_b = np.where(one_feature, 0.0, other_half)
        self.expected_value = (
            float(np.asarray(classifier._baseline_prediction).ravel()[0])
            + constant
            + float(expected.sum())
        )
        # One column per (tree, role): the flat table index of its (r, s) = (0, 0)
        # entry and the feature it credits.
        self._tables = np.concatenate([phi_a.reshape(-1, 4), phi_b.reshape(-1, 4)]).ravel()
        self._column_tree = np.concatenate([trees_index, trees_index])
        self._column_base = 4 * np.arange(2 * len(split_trees), dtype=np.intp)
        self.column_feature = np.concatenate([self.a, self.b])

    def _cells(self, X: np.ndarray) -> np.ndarray:
        """(rows x trees) 2 r + s as uint8: r and s are 1 when the row goes left at
        the root split and at the other split."""
        if np.isnan(X).any():
            r = _goes_left(X[:, self.a], self.a_threshold, self.a_missing_left)
            s = _goes_left(X[:, self.b], self.b_threshold, self.b_missing_left)
        else:  # imputed model inputs: the comparisons alone, both splits in one
            sides = X.take(self._split_feature, axis=1) <= self._split_threshold
            r, s = sides[:, : len(self.a)], sides[:, len(self.a) :]
        cells = r.view(np.uint8) << 1
        cells |= s.view(np.uint8)
        return cells

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(rows x 2 trees) each tree's credit to its root feature, then to its
        other feature (`column_feature` says which feature each column credits)."""
        return self._gather(self._checked(X), self._column_base, self._column_tree)

    def _gather(self, X: np.ndarray, base: np.ndarray, tree: np.ndarray) -> np.ndarray:
        # np.take along the columns, not cells[:, tree]: fancy indexing hands back
        # a column-major array, on which the lookups below ran seven times slower.
        return self._tables.take(np.add(np.take(self._cells(X), tree, axis=1), base))

    def _checked(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} columns, got {X.shape}")
        return X

    def shap_values(self, X: np.ndarray) -> np.ndarray:
        """(rows x features) attributions; each row adds up to raw score - expected_value."""
        return self.grouped(X, tuple(range(self.n_features)), self.n_features)

    def grouped(self, X: np.ndarray, group_of_feature: Sequence[int], n_groups: int) -> np.ndarray:
        """(rows x groups) attributions summed by group (feature j belongs to group
        group_of_feature[j]; -1: to none). Each row's sums are made in the same order
        whatever else is in the batch, so a row's result never depends on its batch."""
        X = self._checked(X)
        distinct = self._codes.distinct(X) if len(X) >= self.DISTINCT_MIN_ROWS else None
        if distinct is not None:
            # Rows on the same side of every split get the same numbers: each
            # distinct row is computed once (a quarter of our rejections).
            first, inverse = distinct
            return self._grouped(X[first], group_of_feature, n_groups)[inverse]
        return self._grouped(X, group_of_feature, n_groups)

    def _grouped(self, X: np.ndarray, group_of_feature: Sequence[int], n_groups: int) -> np.ndarray:
        base, tree, starts, present = self._grouping(tuple(group_of_feature))
        out = np.zeros((len(X), n_groups), dtype=np.float64)
        if len(present):
            # The columns come out ordered by group, so each group is one slice.
            # reduceat adds each row's slice on its own, so chunks of rows give the
            # same numbers as one call; they bound the (rows x 2 trees) temporaries.
            for start in range(0, len(X), self.CHUNK_ROWS):
                rows = slice(start, start + self.CHUNK_ROWS)
                ordered = self._gather(X[rows], base, tree)
                out[rows, present] = np.add.reduceat(ordered, starts, axis=1)
        return out

    @functools.lru_cache(maxsize=8)  # noqa: B019 - a handful of groupings per explainer
    def _grouping(
        self, group_of_feature: tuple[int, ...]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The columns of the grouped features, ordered by group, and where each
        group's slice starts."""
        group = np.asarray(group_of_feature, dtype=np.intp)[self.column_feature]
        keep = np.flatnonzero(group >= 0)
        order = keep[np.argsort(group[keep], kind="stable")]
        present, starts = np.unique(group[order], return_index=True)
        return self._column_base[order], self._column_tree[order], starts, present

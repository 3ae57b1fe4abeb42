"""A fitted HistGradientBoostingClassifier's predict_proba, all trees at once.

scikit-learn evaluates a boosted model one tree at a time, each a call into
compiled code with its own set-up: for our 200 to 300 small trees that is about
0.9 ms per call whatever the number of rows, most of a single-row request's
model cost, and about 4 ms for 1000 rows. Here every tree is a row of padded
node tables and a batch walks all of them together with a handful of numpy
operations per tree level. The rules are scikit-learn's (`x <= threshold` goes
left, NaN follows `missing_go_to_left`), the leaf values are added tree by tree
in the same order, and the link is the model's own, so the probabilities are the
same floating-point numbers (tests/model/test_tree_ensemble.py).

Large batches of a model whose trees split at most twice (ours) take another
path: one side code per feature and row, then one table lookup and one addition
per tree (split_codes.py): on one core, 1M rows in 0.34 s instead of 2.4 s and
1000 rows in 0.74 ms instead of 2.3 ms. The leaf values are still added tree by
tree from the baseline, so the numbers are the same.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier

from loan_preprocessing.model.split_codes import (
    MAX_TABLE_CELLS,
    DeeperTreeError,
    SplitCodes,
    two_split_tree,
)


def unsupported_reason(classifier: object) -> str | None:
    """Why VectorizedBooster cannot stand in for `classifier`, or None."""
    if not isinstance(classifier, HistGradientBoostingClassifier):
        return "not a HistGradientBoostingClassifier"
    predictors = getattr(classifier, "_predictors", None)
    if not predictors:
        return "not fitted"
    if getattr(classifier, "n_trees_per_iteration_", None) != 1:
        return "not a binary classifier"
    categorical = getattr(classifier, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        return "has categorical features"
    if not hasattr(getattr(classifier, "_loss", None), "predict_proba"):
        return "no loss object to turn raw scores into probabilities"
    nodes = predictors[0][0].nodes
    fields = {"value", "feature_idx", "num_threshold", "missing_go_to_left", "left", "right"}
    if not fields <= set(nodes.dtype.names or ()) or "is_leaf" not in nodes.dtype.names:
        return "unknown tree node layout"
    return None


class VectorizedBooster:
    """`classifier.predict_proba(X)` for a binary HistGradientBoostingClassifier
    without categorical features, on a float64 matrix."""

    # Rows walked together: the (rows x trees) temporaries of a chunk stay in
    # the CPU cache, which made 1000-row batches about twice as fast.
    CHUNK_ROWS = 128
    # From this many rows, a model of two-split trees is walked by side codes:
    # below it the codes' fixed cost per tree (two numpy calls) is not repaid.
    # Measured on our 300 trees, one core: 128 rows 0.28 ms by levels, 0.45 ms
    # by codes; 256 rows 0.57 / 0.51; 1000 rows 2.3 / 0.74; 10,000 rows 24 / 3.5.
    BULK_MIN_ROWS = 256
    # Rows coded together on that path: the per-tree arrays stay in the L2 cache.
    BULK_CHUNK_ROWS = 16384
    # Rows bounded together by `upper_bounds` (a trees x rows block of 8-byte values).
    BOUND_CHUNK_ROWS = 2048
    # Added to an upper bound of a raw score: far above the rounding of a sum of
    # a few hundred leaves in any order (about 1e-13), far below any leaf.
    BOUND_SLACK = 1e-9

    def __init__(self, classifier: HistGradientBoostingClassifier) -> None:
        reason = unsupported_reason(classifier)
        if reason:
            raise ValueError(f"cannot vectorise this classifier: {reason}")
        trees = [iteration[0].nodes for iteration in classifier._predictors]
        width = max(len(nodes) for nodes in trees)
        self.n_trees = len(trees)
        self.n_features = int(classifier.n_features_in_)
        # Node i of tree t has the key 2 * (t * width + i); a node's two children
        # are at `child[key]` (right) and `child[key + 1]` (left), so one step is
        # `key = child[key + went_left]`. A leaf (and the padding) is its own
        # child on both sides, so the extra steps of a shallow branch stay put.
        own_key = 2 * np.arange(self.n_trees * width).reshape(self.n_trees, width)
        self.feature = np.zeros(2 * self.n_trees * width, dtype=np.intp)
        self.threshold = np.zeros(2 * self.n_trees * width, dtype=np.float64)
        self.missing_left = np.zeros(2 * self.n_trees * width, dtype=bool)
        self.child = np.zeros(2 * self.n_trees * width, dtype=np.intp)
        self.leaf_value = np.zeros(2 * self.n_trees * width, dtype=np.float64)
        depth = 0
        for t, nodes in enumerate(trees):
            keys = own_key[t, : len(nodes)]
            split = nodes["is_leaf"] == 0
            first_key = 2 * t * width
            left = np.where(split, first_key + 2 * nodes["left"].astype(np.intp), keys)
            right = np.where(split, first_key + 2 * nodes["right"].astype(np.intp), keys)
            self.feature[keys] = np.where(split, nodes["feature_idx"], 0)
            self.threshold[keys] = nodes["num_threshold"]
            self.missing_left[keys] = nodes["missing_go_to_left"].astype(bool)
            self.child[keys] = right
            self.child[keys + 1] = left
            self.leaf_value[keys] = np.where(split, 0.0, nodes["value"])
            depth = max(depth, _tree_depth(nodes))
        self.depth = depth
        self.roots = own_key[:, 0].copy()
        self.baseline = float(np.asarray(classifier._baseline_prediction).ravel()[0])
        self.loss: Any = classifier._loss
        self._bulk = _BulkTables.of(trees, self.n_features)

    def raw_predict(self, X: np.ndarray) -> np.ndarray:
        """The raw score of each row: baseline plus each tree's leaf, in tree order."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected a matrix of {self.n_features} columns, got {X.shape}")
        raw = np.empty(X.shape[0], dtype=np.float64)
        if self._bulk is not None and X.shape[0] >= self.BULK_MIN_ROWS:
            for start in range(0, X.shape[0], self.BULK_CHUNK_ROWS):
                chunk = X[start : start + self.BULK_CHUNK_ROWS]
                raw[start : start + len(chunk)] = self._bulk.raw(chunk, self.baseline)
            return raw
        for start in range(0, X.shape[0], self.CHUNK_ROWS):
            chunk = X[start : start + self.CHUNK_ROWS]
            raw[start : start + len(chunk)] = self._raw_chunk(chunk)
        return raw

    def _raw_chunk(self, X: np.ndarray) -> np.ndarray:
        has_nan = bool(np.isnan(X).any())
        # The first step starts at the roots for every row: read per tree, not
        # per (row, tree), which saves most of a step's gathers.
        value = X.take(self.feature[self.roots], axis=1)
        went_left = value <= self.threshold[self.roots]
        if has_nan:  # NaN compares false; it goes where the tree says instead
            went_left = np.where(np.isnan(value), self.missing_left[self.roots], went_left)
        key = np.where(went_left, self.child[self.roots + 1], self.child[self.roots])
        row_start = (np.arange(X.shape[0], dtype=np.intp) * self.n_features)[:, None]
        flat_X = X.ravel()
        for _ in range(self.depth - 1):
            value = flat_X.take(row_start + self.feature.take(key))
            went_left = value <= self.threshold.take(key)
            if has_nan:
                went_left = np.where(np.isnan(value), self.missing_left.take(key), went_left)
            key = self.child.take(key + went_left)
        # One row per tree (the baseline first), one column per row of X. Summed
        # down the columns, tree after tree in order, as scikit-learn adds them:
        # numpy sums pairwise (which rounds differently) only along the contiguous
        # axis (numpy.sum, Notes), and down the columns is not that axis unless
        # there is a single column; that one is accumulated, in order by definition.
        scores = np.empty((self.n_trees + 1, X.shape[0]), dtype=np.float64)
        scores[0] = self.baseline
        scores[1:] = self.leaf_value.take(key.T)
        if X.shape[0] == 1:
            return np.add.accumulate(scores, axis=0)[-1]
        return np.add.reduce(scores, axis=0)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        return self.loss.predict_proba(self.raw_predict(X))

    def upper_bounds(
        self, feature_sets: Sequence[frozenset[int]]
    ) -> Callable[[np.ndarray], np.ndarray] | None:
        """A function giving, for each of `feature_sets` and each row of a matrix,
        a raw score no smaller than that of any row differing from it only in
        those features: each tree's leaf is replaced by its largest leaf over the
        features' sides, and the trees are added in order (floating-point addition
        is monotonic, so in the same order the bound holds with rounding; a slack
        of BOUND_SLACK covers any other order). (sets x rows); None for trees
        that split more than twice."""
        if self._bulk is None:
            return None
        bulk = self._bulk
        tables = [bulk.maximised(features) for features in feature_sets]
        # Every tree's table of every set end to end, and where each starts.
        flat = np.concatenate([t for maximised in tables for t in maximised.tables])
        sizes = [len(t) for maximised in tables for t in maximised.tables]
        offsets = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
        offsets = offsets.reshape(len(tables), self.n_trees)
        pair_of_tree = bulk.codes.pair_of_tree

        def bounds(X: np.ndarray) -> np.ndarray:
            X = np.ascontiguousarray(X, dtype=np.float64)
            out = np.empty((len(tables), X.shape[0]), dtype=np.float64)
            for start in range(0, X.shape[0], self.BOUND_CHUNK_ROWS):
                chunk = X[start : start + self.BOUND_CHUNK_ROWS]
                joint = bulk.codes.joint(chunk)[pair_of_tree]  # (trees x rows)
                for i in range(len(tables)):
                    # One gather for all trees, then added down the trees in order
                    # (as _raw_chunk does), the baseline first.
                    leaves = np.empty((self.n_trees + 1, len(chunk)), dtype=np.float64)
                    leaves[0] = self.baseline
                    flat.take(joint + offsets[i][:, None], out=leaves[1:], mode="clip")
                    summed = np.add.accumulate(leaves, axis=0)[-1]
                    out[i, start : start + len(chunk)] = summed + self.BOUND_SLACK
            return out

        return bounds

    def predict_proba_distinct(self, X: np.ndarray) -> np.ndarray:
        """predict_proba(X) with each distinct vector of side codes scored once:
        rows with the same codes take the same side at every split, so they get
        the same leaves in the same order, the same numbers. For batches that
        repeat a few shapes many times (a counteroffer's candidates: each denied
        row's own features with only the loan's terms changed)."""
        X = np.ascontiguousarray(X, dtype=np.float64)
        if self._bulk is not None and X.shape[0] >= self.BULK_MIN_ROWS:
            distinct = self._bulk.codes.distinct(X)
            if distinct is not None:
                first, inverse = distinct
                return self.predict_proba(X[first])[inverse]
        return self.predict_proba(X)


class _BulkTables:
    """Each tree's leaf value for each joint side code of its pair of features."""

    def __init__(self, codes: SplitCodes, tables: list[np.ndarray]) -> None:
        self.codes = codes
        self.tables = tables
        self.pair_of_tree = codes.pair_of_tree.tolist()

    @classmethod
    def of(cls, trees: list[np.ndarray], n_features: int) -> _BulkTables | None:
        """The tables of these trees, or None when a tree splits more than twice
        or the tables would be too large."""
        try:
            parsed = [two_split_tree(nodes) for nodes in trees]
        except DeeperTreeError:
            return None
        codes = SplitCodes(parsed, n_features)
        if codes.table_cells > MAX_TABLE_CELLS:
            return None
        leaves = [
            t.leaf if t is not None else np.asarray(nodes[0]["value"], dtype=np.float64)
            for t, nodes in zip(parsed, trees, strict=True)
        ]
        return cls(codes, [codes.table(t, v) for t, v in zip(parsed, leaves, strict=True)])

    def maximised(self, features: frozenset[int]) -> _BulkTables:
        """The same tables with each tree's value at a joint code replaced by its
        largest over every side of `features` (the other feature's side kept)."""
        pairs = [self.codes.pairs[p] for p in self.pair_of_tree]
        tables = []
        for table, (a, b) in zip(self.tables, pairs, strict=True):
            grid = table.reshape(int(self.codes.width[a]), int(self.codes.width[b]))
            if a in features:
                grid = np.broadcast_to(grid.max(axis=0, keepdims=True), grid.shape)
            if b in features:
                grid = np.broadcast_to(grid.max(axis=1, keepdims=True), grid.shape)
            tables.append(np.ascontiguousarray(grid).ravel())
        return _BulkTables(self.codes, tables)

    def raw(self, X: np.ndarray, baseline: float) -> np.ndarray:
        """baseline + each tree's leaf, added one tree at a time in order as
        scikit-learn does (rounding included)."""
        joint = self.codes.joint(X)
        raw = np.full(X.shape[0], baseline, dtype=np.float64)
        value = np.empty(X.shape[0], dtype=np.float64)
        for table, pair in zip(self.tables, self.pair_of_tree, strict=True):
            # mode="clip": the codes are in range by construction, and the
            # bounds check costs a third of the lookup.
            table.take(joint[pair], out=value, mode="clip")
            raw += value
        return raw


def _tree_depth(nodes: np.ndarray) -> int:
    """Splits on the longest root-to-leaf path."""
    depth, frontier = 0, [0]
    while True:
        splits = [i for i in frontier if not nodes["is_leaf"][i]]
        if not splits:
            return depth
        depth += 1
        frontier = [int(c) for i in splits for c in (nodes["left"][i], nodes["right"][i])]

"""Trees of at most two splits, and the sides a batch of rows takes at them.

Our boosted models (3 leaves a tree) read at most two features per tree, and
each feature is compared with a handful of thresholds over the whole model
(ours: at most 23). So a row's side at every split of every tree is known from
one small code per feature: how many of that feature's thresholds the value is
above (NaN its own code). Two trees reading the same pair of features share the
pair's joint code, and a tree's output for a row (its leaf, or an attribution
in tree_shapley.py) is one lookup of that code in a table made once per tree.
The probability of a row then costs two numpy operations per tree, and the
rules are still scikit-learn's: `x <= threshold` goes left, NaN goes where the
split says (`missing_go_to_left`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Past this many table cells in all (8 bytes each), tables of leaf values cost
# more memory than they save time: callers keep their general path instead.
MAX_TABLE_CELLS = 1 << 20
# Up to this many thresholds, a feature's codes are counted by comparisons
# (0.15 ns a value and threshold), past it found by binary search (40 ns a value).
FEW_THRESHOLDS = 64


@dataclass(frozen=True)
class TwoSplitTree:
    """A tree as its two splits: the root (feature a) and the root's one child
    that splits (feature b; the root again when there is none), and the leaf
    value for each pair of sides, leaf[r, s], r and s true when going left."""

    a: int
    a_threshold: float
    a_missing_left: bool
    b: int
    b_threshold: float
    b_missing_left: bool
    leaf: np.ndarray  # (2, 2), indexed [int(r), int(s)]


class DeeperTreeError(ValueError):
    """A tree splits more than twice."""


def two_split_tree(nodes: np.ndarray) -> TwoSplitTree | None:
    """The tree's splits, or None when it is a single leaf (a constant).
    Raises DeeperTreeError for a tree that splits more than twice."""
    root = nodes[0]
    if root["is_leaf"]:
        return None
    left, right = int(root["left"]), int(root["right"])
    splitting = [child for child in (left, right) if not nodes[child]["is_leaf"]]
    if len(splitting) > 1 or any(
        not nodes[c]["is_leaf"] for s in splitting for c in (nodes[s]["left"], nodes[s]["right"])
    ):
        raise DeeperTreeError(
            "a tree splits more than twice; only trees of 3 leaves at most are supported"
        )
    second = nodes[splitting[0]] if splitting else root
    leaf = np.empty((2, 2), dtype=np.float64)
    for r, child in ((1, left), (0, right)):
        for s in (0, 1):
            if nodes[child]["is_leaf"]:
                leaf[r, s] = nodes[child]["value"]
            else:
                leaf[r, s] = nodes[int(second["left"] if s else second["right"])]["value"]
    return TwoSplitTree(
        int(root["feature_idx"]),
        float(root["num_threshold"]),
        bool(root["missing_go_to_left"]),
        int(second["feature_idx"]),
        float(second["num_threshold"]),
        bool(second["missing_go_to_left"]),
        leaf,
    )


class SplitCodes:
    """The joint side codes of rows for a list of two-split trees (None: a
    single leaf, which reads nothing) over `n_features` features."""

    def __init__(self, trees: list[TwoSplitTree | None], n_features: int) -> None:
        self.n_features = n_features
        split = [t for t in trees if t is not None]
        # Per feature, the distinct thresholds it is compared with, ascending.
        self.thresholds = [
            np.unique(
                [t.a_threshold for t in split if t.a == f]
                + [t.b_threshold for t in split if t.b == f]
            ).astype(np.float64)
            for f in range(n_features)
        ]
        # Codes 0..n: how many of the n thresholds the value is above; n + 1: NaN.
        self.width = np.array([len(t) + 2 for t in self.thresholds], dtype=np.intp)
        # A single leaf reads no feature: it is given the pair (0, 0) and a
        # table holding its value everywhere.
        pairs = [(t.a, t.b) if t is not None else (0, 0) for t in trees]
        self.pairs = sorted(set(pairs))
        self.pair_of_tree = np.array([self.pairs.index(p) for p in pairs], dtype=np.intp)
        self.table_cells = sum(int(self.width[a] * self.width[b]) for a, b in pairs)

    def feature_codes(self, X: np.ndarray) -> list[np.ndarray]:
        """Per feature, each row's code (the smallest unsigned integers that hold it)."""
        codes = []
        for f, thresholds in enumerate(self.thresholds):
            column = np.ascontiguousarray(X[:, f])
            small = len(thresholds) + 1 <= np.iinfo(np.uint8).max
            kind: type[np.unsignedinteger] = np.uint8 if small else np.uint16
            if len(thresholds) <= FEW_THRESHOLDS:
                # Counted by comparisons on small integers, many values per
                # instruction: ten times faster than a binary search per value.
                code = np.zeros(X.shape[0], dtype=kind)
                for threshold in thresholds.tolist():
                    np.add(code, column > threshold, out=code)
            else:
                # side="left": the first threshold >= x, so x <= thresholds[k] iff code <= k.
                code = np.searchsorted(thresholds, column, side="left").astype(kind)
            missing = np.isnan(column)
            if missing.any():
                code[missing] = len(thresholds) + 1
            codes.append(code)
        return codes

    def distinct(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(the first row of each distinct vector of feature codes, each row's
        distinct vector): rows with the same codes take the same side at every
        split. None when the codes of a row do not fit one int64 key."""
        if np.prod(self.width.astype(np.float64)) >= 2.0**62:
            return None
        key = np.zeros(X.shape[0], dtype=np.int64)
        for width, code in zip(self.width.tolist(), self.feature_codes(X), strict=True):
            key *= width
            key += code
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        return first, inverse

    def joint(self, X: np.ndarray) -> np.ndarray:
        """(pairs x rows) the joint code of each pair of features for each row."""
        codes = self.feature_codes(X)
        joint = np.empty((len(self.pairs), X.shape[0]), dtype=np.intp)
        for i, (a, b) in enumerate(self.pairs):
            np.multiply(codes[a], self.width[b], out=joint[i])
            joint[i] += codes[b]
        return joint

    def sides(self, tree: TwoSplitTree) -> tuple[np.ndarray, np.ndarray]:
        """r and s (as 0 or 1) for each joint code of the tree's pair of features."""
        r = self._goes_left(tree.a, tree.a_threshold, tree.a_missing_left)
        s = self._goes_left(tree.b, tree.b_threshold, tree.b_missing_left)
        return np.repeat(r, self.width[tree.b]), np.tile(s, self.width[tree.a])

    def table(self, tree: TwoSplitTree | None, values: np.ndarray) -> np.ndarray:
        """What the tree gives (values[r, s], a 2x2 table; for a single leaf, its
        value) for each joint code of its pair of features."""
        if tree is None:
            return np.full(int(self.width[0] * self.width[0]), float(values), dtype=np.float64)
        r, s = self.sides(tree)
        return np.asarray(values, dtype=np.float64)[r, s]

    def _goes_left(self, feature: int, threshold: float, missing_left: bool) -> np.ndarray:
        thresholds = self.thresholds[feature]
        k = int(np.searchsorted(thresholds, threshold, side="left"))
        codes = np.arange(len(thresholds) + 2)
        return np.where(codes == len(thresholds) + 1, missing_left, codes <= k).astype(np.intp)

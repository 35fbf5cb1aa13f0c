"""Per-feature contributions to a LightGBM booster's raw score (its margin, the log-odds of the
uncalibrated P(correct)), numpy only, from a compact tree table written into the bundle.

Two halves:

- :func:`tree_table` (training side, given a ``lightgbm.Booster``): the booster's trees as flat
  arrays (split feature, threshold, children, missing-value handling, categorical sets, leaf
  values and the training counts under every node); the exporter saves them as ``trees.npz``.
- :class:`TreeExplainer` (serving side, numpy only): steps every tree one depth level at a time
  for a few rows at once, finds each row's leaf per tree, and sums per-leaf attributions
  precomputed at load.

The attribution is **Saabas' path attribution**: along the path a row takes through a tree, each
split moves the expected value of the node (the training-count-weighted mean of its leaves) by
``mean(child) - mean(node)``, and that move is credited to the split's feature (or its group).
Per tree the moves telescope, so ``bias + sum(contributions) == raw score`` exactly (up to float
rounding), where ``bias`` is the sum of the trees' root means, the same expected value LightGBM's
TreeSHAP (``pred_contrib=True``) reports. It is an approximation of TreeSHAP: the same total, but a
feature's share depends on where it splits in the path (features split near the root get less
credit). tests/models/test_contributions.py and bench/explain.py measure the agreement with
LightGBM's exact values; a per-leaf attribution is what makes it cheap enough to serve.

Decisions follow LightGBM's own: ``x <= threshold`` goes left in float64; a NaN is 0 unless the
node tracks NaN as missing (then ``default_left`` decides); ``missing_type`` Zero sends 0 to the
default side; a categorical node sends a row left when ``int(x)`` is in its category set.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np

__all__ = [
    "TREE_TABLE_FIELDS",
    "TREE_DTYPE",
    "TreeExplainer",
    "CandidateExplainer",
    "tree_table",
    "tree_tables",
    "split_tables",
    "feature_groups",
    "CONTENT_GROUP",
    "CANDIDATE_GROUP",
]

#: the arrays of one booster's tree table, in this order
TREE_TABLE_FIELDS = ("feature", "threshold", "left", "right", "default_left", "missing", "categories", "value", "count", "roots")
#: the group that gathers every embedding dimension (the prompt's content as the encoder sees it)
CONTENT_GROUP = "prompt content"
#: the group of a pooled model's candidate columns (its index and its price/tier features)
CANDIDATE_GROUP = "candidate"
_MISSING = {"None": 0, "Zero": 1, "NaN": 2}
_ZERO = 1e-35  # LightGBM's kZeroThreshold


def tree_table(booster: Any) -> dict[str, np.ndarray]:
    """One LightGBM booster's trees as flat arrays (node-major, trees one after the other, every
    node before its children). Leaves have ``feature`` -1 and point to themselves."""
    rows: dict[str, list[Any]] = {k: [] for k in TREE_TABLE_FIELDS}

    def add(node: Mapping[str, Any]) -> int:
        index = len(rows["feature"])
        leaf = "leaf_value" in node
        rows["feature"].append(-1 if leaf else int(node["split_feature"]))
        rows["value"].append(float(node["leaf_value"]) if leaf else 0.0)
        rows["count"].append(float(node.get("leaf_count" if leaf else "internal_count", 0) or 0))
        rows["default_left"].append(bool(node.get("default_left", True)))
        rows["missing"].append(_MISSING.get(str(node.get("missing_type", "None")), 0))
        rows["categories"].append(0)
        rows["threshold"].append(np.inf)
        rows["left"].append(index)
        rows["right"].append(index)
        if leaf:
            return index
        if node.get("decision_type", "<=") == "==":
            cats = [int(c) for c in str(node["threshold"]).split("||") if c != ""]
            if any(c < 0 or c > 63 for c in cats):
                raise ValueError(f"a categorical split on categories {cats[:8]} (the tree table holds categories 0..63)")
            rows["categories"][index] = sum(1 << c for c in cats)
        else:
            rows["threshold"][index] = float(node["threshold"])
        rows["left"][index] = add(node["left_child"])
        rows["right"][index] = add(node["right_child"])
        return index

    for tree in booster.dump_model()["tree_info"]:
        rows["roots"].append(len(rows["feature"]))
        add(tree["tree_structure"])
    types = {
        "feature": np.int32,
        "threshold": np.float64,
        "left": np.int32,
        "right": np.int32,
        "default_left": np.bool_,
        "missing": np.int8,
        "categories": np.uint64,
        "value": np.float64,
        "count": np.float64,
        "roots": np.int32,
    }
    return {k: np.asarray(rows[k], dtype=types[k]) for k in TREE_TABLE_FIELDS}


#: the record of one node in the bundle's ``trees.npy`` (one structured array, every booster)
TREE_DTYPE = np.dtype(
    [
        ("booster", "<i4"),
        ("tree", "<i4"),
        ("feature", "<i4"),
        ("threshold", "<f8"),
        ("left", "<i4"),
        ("right", "<i4"),
        ("default_left", "u1"),
        ("missing", "i1"),
        ("categories", "<u8"),
        ("value", "<f8"),
        ("count", "<f8"),
    ]
)


def tree_tables(boosters: Sequence[Any]) -> np.ndarray:
    """Every booster's table as one structured array of :data:`TREE_DTYPE` (``np.save`` writes it
    byte for byte the same each time; children index rows of their own booster)."""
    parts = []
    for j, booster in enumerate(boosters):
        table = tree_table(booster)
        out = np.zeros(len(table["feature"]), dtype=TREE_DTYPE)
        out["booster"] = j
        tree = np.zeros(len(out), dtype=np.int32)
        tree[table["roots"][1:]] = 1
        out["tree"] = np.cumsum(tree)
        for name in TREE_TABLE_FIELDS[:-1]:
            out[name] = table[name]
        parts.append(out)
    return np.concatenate(parts)


def split_tables(records: np.ndarray) -> list[dict[str, np.ndarray]]:
    """:func:`tree_tables`' array back as one table per booster (ValueError when it is not one)."""
    if records.dtype != TREE_DTYPE or records.ndim != 1 or len(records) == 0:
        raise ValueError(f"expected a 1-d array of {TREE_DTYPE.descr}; got {records.dtype} of shape {records.shape}")
    tables = []
    for j in range(int(records["booster"].max()) + 1):
        rows = records[records["booster"] == j]
        table = {name: np.ascontiguousarray(rows[name]) for name in TREE_TABLE_FIELDS[:-1]}
        table["default_left"] = table["default_left"].astype(bool)
        table["roots"] = np.flatnonzero(np.diff(rows["tree"], prepend=-1) != 0).astype(np.int32)
        tables.append(table)
    return tables


def feature_groups(names: Sequence[str], extra: int = 0) -> tuple[tuple[str, ...], np.ndarray]:
    """(group names, group index per column) for a feature row: each signal its own group, every
    ``emb_*`` dimension in :data:`CONTENT_GROUP`, and ``extra`` trailing columns (a pooled model's
    candidate index and features) in :data:`CANDIDATE_GROUP`."""
    groups: list[str] = []
    index = []
    for name in [*names, *[CANDIDATE_GROUP] * extra]:
        label = CONTENT_GROUP if name.startswith("emb_") else name
        if label not in groups:
            groups.append(label)
        index.append(groups.index(label))
    return tuple(groups), np.asarray(index, dtype=np.int64)


class TreeExplainer:
    """Saabas contributions of one booster's tree table, by feature group (immutable after build).

    ``explainer.contributions(X)`` -> (n, G) per group; ``explainer.bias`` the expected value;
    ``contributions(X).sum(1) + bias == raw(X)`` (the booster's margin)."""

    def __init__(self, table: Mapping[str, np.ndarray], groups: np.ndarray, n_groups: int) -> None:
        t = {k: np.asarray(table[k]) for k in TREE_TABLE_FIELDS}
        n = len(t["feature"])
        if any(len(t[k]) != n for k in TREE_TABLE_FIELDS if k != "roots") or n == 0 or len(t["roots"]) == 0:
            raise ValueError(f"tree table arrays of different lengths {[len(t[k]) for k in TREE_TABLE_FIELDS]}")
        internal = t["feature"] >= 0
        if (t["left"] < 0).any() or (t["left"] >= n).any() or (t["right"] < 0).any() or (t["right"] >= n).any():
            raise ValueError("tree table children point outside the table")
        if internal.any() and int(t["feature"].max()) >= len(groups):
            raise ValueError(f"the trees split on feature {int(t['feature'].max())}; the rows have {len(groups)} columns")
        self.n_trees, self.n_columns, self.n_groups = len(t["roots"]), len(groups), n_groups
        self.roots = t["roots"].astype(np.int64)
        self.feature_table = t["feature"].astype(np.int64)  # -1 at leaves
        self.feature = np.where(internal, t["feature"], 0).astype(np.int64)
        self.threshold = np.where(internal, t["threshold"], np.inf)
        self.child = np.column_stack([t["left"], t["right"]]).astype(np.int64).ravel()  # child[2n + went_right]
        self.value = t["value"].astype(np.float64)
        self.default_left, self.missing = t["default_left"].astype(bool), t["missing"].astype(np.int8)
        self.categories = t["categories"].astype(np.uint64)
        self.is_categorical = internal & (self.categories > 0)
        self._general = bool((self.missing[internal] == 1).any() or self.is_categorical.any())
        levels = _levels(self.roots, t["left"], t["right"], internal)
        self.depth = len(levels) - 1
        mean = _node_means(levels, t["left"], t["right"], internal, self.value, t["count"])
        self.bias = float(mean[self.roots].sum())
        self.path = _path_contributions(
            levels, t["left"], t["right"], internal, mean, np.asarray(groups, dtype=np.int64)[self.feature], n_groups
        )

    def leaves(self, X: np.ndarray) -> np.ndarray:
        """(n, trees) the leaf each row reaches in each tree (all trees stepped together)."""
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_columns:
            raise ValueError(f"expected rows of {self.n_columns} features; got shape {X.shape}")
        n = len(X)
        flat = X.ravel()
        node = np.tile(self.roots, n)
        base = np.repeat(np.arange(n, dtype=np.int64) * self.n_columns, self.n_trees)
        general = self._general or bool(np.isnan(flat).any())
        for _ in range(self.depth):
            x = flat[base + self.feature[node]]
            right = self.went_right(node, x) if general else x > self.threshold[node]
            node = self.child[2 * node + right]
        return node.reshape(n, self.n_trees)

    def went_right(self, node: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Whether value ``x`` goes right at ``node`` (elementwise), by LightGBM's rules for
        missing values and categorical splits."""
        kind = self.missing[node]
        x = np.where(np.isnan(x) & (kind != 2), 0.0, x)
        missing = ((kind == 1) & (np.abs(x) <= _ZERO)) | ((kind == 2) & np.isnan(x))
        right = np.where(missing, ~self.default_left[node], x > self.threshold[node])
        cat = self.is_categorical[node]
        if cat.any():
            xc = x[cat]
            code = np.where(np.isnan(xc) | (xc < 0) | (xc >= 64), -1, np.nan_to_num(xc)).astype(np.int64)
            bits = (self.categories[node[cat]] >> np.maximum(code, 0).astype(np.uint64)) & np.uint64(1)
            right[cat] = (code < 0) | (bits == 0)
        return cast(np.ndarray, right)

    def raw(self, X: np.ndarray) -> np.ndarray:
        """(n,) the booster's raw score (margin) per row."""
        return cast(np.ndarray, self.value[self.leaves(X)].sum(axis=1))

    def contributions(self, X: np.ndarray) -> np.ndarray:
        """(n, groups) each group's share of the margin; add :attr:`bias` for the margin itself."""
        return cast(np.ndarray, self.path[self.leaves(X)].sum(axis=1))


class CandidateExplainer:
    """Contributions of one request row for a few candidates at a time, the fast way: every split
    of a candidate's trees is decided at once (one gather and one compare over the whole forest),
    then each tree's exit leaf is the leftmost leaf not struck out by the splits the row went right
    at (each strikes its left subtree from the tree's leaf bit set: QuickScorer). Trees of at most
    16 leaves use 16-bit sets and a lookup table, up to 64 leaves 64-bit sets.

    ``parts[j]`` = (the explainer of candidate j's booster, the values of its trailing candidate
    columns or None). A pooled booster is shared by every candidate with those columns fixed: the
    splits on them are decided once here (their moves still count, to :data:`CANDIDATE_GROUP`)."""

    def __init__(self, parts: Sequence[tuple[TreeExplainer, np.ndarray | None]], n_request: int) -> None:
        bases: dict[int, int] = {}  # id(explainer) -> its first row in the joint leaf table
        joint: list[np.ndarray] = []
        leaves = max(_max_leaves(explainer) for explainer, _ in parts)
        if leaves > 64:
            raise ValueError(f"a tree has {leaves} leaves; explanations serve trees of at most 64")
        self.wide = leaves > 16
        self._parts: list[tuple[np.ndarray, ...]] = []
        self.bias: list[float] = []
        for explainer, tail in parts:
            if id(explainer) not in bases:
                bases[id(explainer)] = sum(len(v) for v in joint)
                joint.append(np.column_stack([explainer.path, explainer.value]))  # the margin rides along
            self._parts.append(_quick_tables(explainer, n_request, tail, bases[id(explainer)], self.wide))
            self.bias.append(explainer.bias)
        self.n_request, self.n_groups = n_request, parts[0][0].n_groups
        self.joint = np.concatenate(joint)

    def explain(self, row: np.ndarray, candidates: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """(contributions (k, groups), margins (k,)) of one request row for ``candidates``; each
        margin = that candidate's bias + its contributions' sum (the booster's raw score)."""
        row = np.asarray(row, dtype=np.float64).ravel()
        if len(row) != self.n_request:
            raise ValueError(f"expected a row of {self.n_request} request features; got {len(row)}")
        has_nan = bool(np.isnan(row).any())
        out = []
        for j in candidates:
            feature, threshold, nan_right, strike, starts, tree_base, leaf_at = self._parts[j]
            x = row[feature]
            right = x > threshold
            if has_nan:
                right |= np.isnan(x) & nan_right
            struck = np.bitwise_or.reduceat(strike * right, starts)
            rank = _FIRST_ZERO[struck] if not self.wide else np.log2((~struck & (struck + np.uint64(1))).astype(np.float64))
            out.append(self.joint[leaf_at[tree_base + rank.astype(np.int64)]].sum(axis=0))
        both = np.stack(out)
        return both[:, :-1], both[:, -1]


_FIRST_ZERO = np.array([(~v & (v + 1)).bit_length() - 1 for v in range(1 << 16)], dtype=np.int64)  # of a 16-bit set


def _max_leaves(explainer: TreeExplainer) -> int:
    ends = np.append(explainer.roots[1:], len(explainer.value))
    leaf_before = np.concatenate([[0], np.cumsum(explainer.feature_table < 0)])
    return int((leaf_before[ends] - leaf_before[explainer.roots]).max())


def _quick_tables(explainer: TreeExplainer, n_request: int, tail: np.ndarray | None, offset: int, wide: bool) -> tuple[np.ndarray, ...]:
    """One candidate's QuickScorer arrays, one slot per split plus an always-left slot closing each
    tree: (column read, threshold, NaN goes right, the leaf bits a right turn strikes, each tree's
    first slot, each tree's first entry in the next, (tree, leaf rank) -> row in the joint leaf table)."""
    table = explainer.feature_table
    internal, fixed = table >= 0, table >= n_request
    if fixed.any() and tail is None:
        raise ValueError(f"the trees split on column {int(table.max())}; request rows have {n_request}")
    if (internal & ~fixed & (explainer.is_categorical | (explainer.missing == 1))).any():
        raise ValueError("the trees split categorically or with zero-as-missing on request features")
    n, width = len(table), 64 if wide else 16
    leaf_before = np.concatenate([[0], np.cumsum(~internal)])  # leaves with a smaller index (preorder: left to right)
    feature, threshold = np.where(fixed, 0, explainer.feature).astype(np.int64), explainer.threshold.copy()
    nan_right = np.where(explainer.missing == 0, 0.0 > threshold, ~explainer.default_left)
    if fixed.any():  # decided once: +-inf thresholds send every value (NaN via nan_right) the decided way
        nodes = np.flatnonzero(fixed)
        decided = explainer.went_right(nodes, np.asarray(tail, dtype=np.float64)[table[nodes] - n_request])
        threshold[nodes], nan_right[nodes] = np.where(decided, -np.inf, np.inf), decided
    tree = np.searchsorted(explainer.roots, np.arange(n), side="right") - 1
    splits = np.flatnonzero(internal)
    base = leaf_before[explainer.roots[tree[splits]]]
    lo = (leaf_before[explainer.child[2 * splits]] - base).astype(np.uint64)  # the left subtree's leaf ranks [lo, hi)
    hi = (leaf_before[explainer.child[2 * splits + 1]] - base).astype(np.uint64)
    strike = np.zeros(n, dtype=np.uint64)
    strike[splits] = (np.uint64(1) << hi) - (np.uint64(1) << lo)
    strike = strike.astype(np.uint64 if wide else np.uint16)
    slots = np.concatenate([splits, np.full(len(explainer.roots), -1)])
    slots = slots[np.lexsort((slots < 0, np.concatenate([tree[splits], np.arange(len(explainer.roots))])))]
    real, pick = slots >= 0, np.maximum(slots, 0)
    leaf_at = np.zeros(len(explainer.roots) * width, dtype=np.int64)
    leaves = np.flatnonzero(~internal)
    leaf_at[tree[leaves] * width + leaf_before[leaves] - leaf_before[explainer.roots[tree[leaves]]]] = leaves + offset
    return (
        np.where(real, feature[pick], 0),
        np.where(real, threshold[pick], np.inf),
        np.where(real, nan_right[pick], False),
        np.where(real, strike[pick], 0).astype(strike.dtype),
        np.concatenate([[0], np.flatnonzero(~real)[:-1] + 1]),
        np.arange(len(explainer.roots), dtype=np.int64) * width,
        leaf_at,
    )


def _levels(roots: np.ndarray, left: np.ndarray, right: np.ndarray, internal: np.ndarray) -> list[np.ndarray]:
    """The nodes at each depth (level 0: the roots)."""
    levels = [np.asarray(roots, dtype=np.int64)]
    while True:
        parents = levels[-1][internal[levels[-1]]]
        if len(parents) == 0:
            return levels
        if len(levels) > 4096:
            raise ValueError("the tree table has a cycle")
        levels.append(np.concatenate([left[parents], right[parents]]).astype(np.int64))


def _node_means(
    levels: list[np.ndarray], left: np.ndarray, right: np.ndarray, internal: np.ndarray, value: np.ndarray, count: np.ndarray
) -> np.ndarray:
    """Each node's expected value: its leaves' values weighted by their training counts."""
    mean, cover = value.astype(np.float64).copy(), count.astype(np.float64).copy()
    for level in reversed(levels):
        nodes = level[internal[level]]
        if len(nodes) == 0:
            continue
        lc, rc = cover[left[nodes]], cover[right[nodes]]
        total = lc + rc
        wl = np.where(total > 0, lc / np.where(total > 0, total, 1.0), 0.5)
        mean[nodes] = wl * mean[left[nodes]] + (1.0 - wl) * mean[right[nodes]]
        cover[nodes] = total
    return mean


def _path_contributions(
    levels: list[np.ndarray],
    left: np.ndarray,
    right: np.ndarray,
    internal: np.ndarray,
    mean: np.ndarray,
    node_group: np.ndarray,
    n_groups: int,
) -> np.ndarray:
    """(nodes, groups): the Saabas attribution of reaching each node from its tree's root."""
    path = np.zeros((len(mean), n_groups), dtype=np.float64)
    for level in levels[:-1]:
        parents = level[internal[level]]
        for side in (left, right):
            children = side[parents]
            path[children] = path[parents]
            path[children, node_group[parents]] += mean[children] - mean[parents]
    return path

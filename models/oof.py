"""The out-of-fold sweep: a policy's knob swept over out-of-fold predictions of the training requests.

It measures each knob value's accuracy and cost per query on the judged outcomes, and the standard
error of its per-request difference from a reference (the best single candidate, or the tree), the
figure the objectives' margins are made of (:mod:`tierroute.models.objective`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

import numpy as np

from tierroute.models.hull import aiq as hull_aiq

__all__ = ["OOFSweep"]


@dataclass(frozen=True)
class OOFSweep:
    """A policy's knob swept over out-of-fold predictions of the training requests.

    ``values`` (K,) knob values, cheapest end first; ``picks`` (K, n) the candidate chosen per
    request at each value; ``correct`` / ``cost`` (n, m) the judged outcomes (observed, or
    doubly-robust pseudo-outcomes for logged requests; NaN counts as wrong and free); ``weight``
    (n,) request weights or None; ``groups`` (n,) the requests' task labels or None (the errors then
    allow for the requests of one task erring together)."""

    values: np.ndarray
    picks: np.ndarray
    correct: np.ndarray
    cost: np.ndarray
    weight: np.ndarray | None = None
    groups: np.ndarray | None = None

    def points(self, rows: np.ndarray | None = None, picks: np.ndarray | None = None) -> list[tuple[float, float]]:
        """(cost per query, accuracy) per knob value, on ``rows`` (default: all requests); ``picks``
        ((K, n), default the sweep's own) measures other choices the same way (the tree's, say)."""
        rows = np.arange(self.correct.shape[0]) if rows is None else np.asarray(rows)
        w = None if self.weight is None else self.weight[rows]
        picks = (self.picks if picks is None else np.asarray(picks))[:, rows]
        acc = np.average(np.nan_to_num(self.correct[rows[None, :], picks], nan=0.0), axis=1, weights=w)
        spent = np.average(np.nan_to_num(self.cost[rows[None, :], picks], nan=0.0), axis=1, weights=w)
        return list(zip(spent.tolist(), acc.tolist()))

    def singles(self, rows: np.ndarray | None = None) -> list[tuple[float, float]]:
        """(cost per query, accuracy) of always choosing each candidate, on ``rows``."""
        rows = np.arange(self.correct.shape[0]) if rows is None else np.asarray(rows)
        w = None if self.weight is None else self.weight[rows]
        acc = np.average(np.nan_to_num(self.correct[rows], nan=0.0), axis=0, weights=w)
        spent = np.average(np.nan_to_num(self.cost[rows], nan=0.0), axis=0, weights=w)
        return list(zip(spent.tolist(), acc.tolist()))

    def best_single(self) -> int:
        """The index of the candidate most accurate alone, measured as the points are (NaN wrong)."""
        return int(np.argmax([a for _, a in self.singles()]))

    def paired_se(self, reference: np.ndarray, picks: np.ndarray | None = None) -> np.ndarray:
        """(K,) the standard error of each knob value's mean per-request difference from
        ``reference`` ((n,) a candidate index per request), weighted as the sweep is; ``picks``
        ((K, n), default the sweep's own) measures other choices the same way.

        The error of a weighted mean, sqrt(sum w_i^2 (d_i - mean)^2) with the weights summing to 1;
        when the requests come from two or more tasks, the larger of that and the task-clustered
        error, sqrt(G / (G - 1) sum_g (sum_{i in g} w_i (d_i - mean))^2) over the G tasks. Gains a
        router makes on one task alone are less sure, on new traffic, than the same gains spread
        over many: the clustered error says so, the per-request one does not."""
        picks = self.picks if picks is None else np.asarray(picks)
        n = self.correct.shape[0]
        w = np.ones(n) if self.weight is None else np.asarray(self.weight, dtype=np.float64)
        if n < 2 or not w.sum() > 0:
            return np.zeros(len(picks))
        rows = np.arange(n)
        correct = np.nan_to_num(self.correct, nan=0.0)
        diff = correct[rows[None, :], picks] - correct[rows, np.asarray(reference)][None, :]
        w = w / w.sum()
        centred = (diff - (diff @ w)[:, None]) * w
        se = np.sqrt((centred**2).sum(axis=1))
        if self.groups is None:
            return cast(np.ndarray, se)
        groups = np.asarray(self.groups)
        if groups.shape != (n,):
            raise ValueError(f"OOFSweep.groups must hold one task label per request ({n}); got shape {groups.shape}.")
        _, task = np.unique(groups, return_inverse=True)
        weighed = np.bincount(task, weights=w) > 0  # a task of weight 0 counts for nothing
        G = int(weighed.sum())
        if G < 2:
            return cast(np.ndarray, se)
        per_task = np.array([np.bincount(task, weights=row)[weighed] for row in centred])
        clustered = np.sqrt(G / (G - 1) * (per_task**2).sum(axis=1))
        return cast(np.ndarray, np.maximum(se, clustered))

    def aiq(self, rows: np.ndarray | None = None) -> float:
        """AIQ of the swept curve over the single candidates' cost range, on ``rows``."""
        costs = [c for c, _ in self.singles(rows)]
        return hull_aiq(self.points(rows), min(costs), max(costs))

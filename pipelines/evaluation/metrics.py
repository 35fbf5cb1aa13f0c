"""Router metrics on a cost-quality plane: the numbers routers are compared by.

- ``aiq``: area under the router's non-decreasing convex hull of (cost, quality) points, over the
  single candidates' cost range [c_min, c_max], divided by (c_max - c_min) (RouterBench's AIQ;
  outside its own cost range the hull is extended flat). 1.0 = perfect quality at every budget.
- ``apgr`` / ``cpt``: for two candidates (RouteLLM). PGR = (quality - weak) / (strong - weak);
  APGR = area under PGR against the share of calls to the strong model; CPT(x) = the smallest
  share of strong calls reaching PGR x.
- ``ece``: expected calibration error, equal-width bins.
- ``bootstrap_diff``: a percentile CI of a per-request difference, resampling requests.
"""

from __future__ import annotations

import numpy as np

from tierroute.models.hull import aiq, cost_at_quality, quality_at_cost, upper_hull

__all__ = ["upper_hull", "aiq", "pgr_curve", "apgr", "cpt", "ece", "bootstrap_diff", "quality_at_cost", "cost_at_quality"]


def pgr_curve(strong_share: np.ndarray, quality: np.ndarray, weak: float, strong: float) -> tuple[np.ndarray, np.ndarray]:
    """(share of strong calls, PGR) sorted by share, with the (0, 0) and (1, 1) ends added."""
    gap = strong - weak
    pgr = (np.asarray(quality) - weak) / gap if gap else np.zeros(len(quality))
    share = np.concatenate([[0.0], np.asarray(strong_share, dtype=float), [1.0]])
    pgr = np.concatenate([[0.0], pgr, [1.0]])
    order = np.lexsort((-pgr, share))  # by share, the best PGR first at equal share
    return share[order], pgr[order]


def apgr(strong_share: np.ndarray, quality: np.ndarray, weak: float, strong: float) -> float:
    """Area under the PGR curve against the strong-call share (a random router scores ~0.5)."""
    share, pgr = pgr_curve(strong_share, quality, weak, strong)
    # the best PGR reachable at each share (a router can always spend less than its budget)
    best = np.maximum.accumulate(pgr)
    return float(np.trapezoid(best, share))


def cpt(strong_share: np.ndarray, quality: np.ndarray, weak: float, strong: float, target: float) -> float:
    """Smallest share of strong calls whose PGR reaches ``target`` (interpolated)."""
    share, pgr = pgr_curve(strong_share, quality, weak, strong)
    best = np.maximum.accumulate(pgr)
    for i in range(len(share)):
        if best[i] >= target:
            if i == 0:
                return float(share[0])
            s0, s1, p0, p1 = share[i - 1], share[i], best[i - 1], best[i]
            return float(s0 + (target - p0) * (s1 - s0) / (p1 - p0)) if p1 > p0 else float(s1)
    return 1.0


def ece(proba: np.ndarray, labels: np.ndarray, n_bins: int = 10, weight: np.ndarray | None = None) -> float:
    """Expected calibration error over equal-width probability bins; ``weight`` per outcome (e.g.
    1 / propensity for logged outcomes, so they stand for all traffic), None: all 1."""
    proba = np.asarray(proba, dtype=float).ravel()
    labels = np.asarray(labels, dtype=float).ravel()
    w = np.ones_like(proba) if weight is None else np.asarray(weight, dtype=float).ravel()
    keep = ~np.isnan(proba) & ~np.isnan(labels)
    proba, labels, w = proba[keep], labels[keep], w[keep]
    if not len(proba):
        return float("nan")
    bins = np.minimum((proba * n_bins).astype(int), n_bins - 1)
    total = 0.0
    for b in range(n_bins):
        sel = bins == b
        if sel.any():
            total += w[sel].sum() * abs(np.average(proba[sel], weights=w[sel]) - np.average(labels[sel], weights=w[sel]))
    return float(total / w.sum())


def bootstrap_diff(a: np.ndarray, b: np.ndarray, n_boot: int = 1000, seed: int = 0) -> tuple[float, float, float]:
    """Mean of ``a - b`` (paired per request) and its 95% percentile bootstrap CI."""
    diff = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diff), size=(n_boot, len(diff)))
    means = diff[idx].mean(axis=1)
    return float(diff.mean()), float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))

"""The cost-quality hull of a router's operating points, and AIQ (RouterBench's area under it).

- ``upper_hull``: the non-decreasing upper convex hull of (cost, quality) points;
- ``aiq``: area under that hull over the single candidates' cost range [c_min, c_max], divided by
  (c_max - c_min) (flat beyond the hull's own ends). 1.0 = perfect quality at every budget.

Numpy only: training picks its family and its operating point by these, and the evaluation
reports them (:mod:`tierroute.pipelines.evaluation.metrics` re-exports them).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["upper_hull", "quality_at_cost", "cost_at_quality", "aiq"]


def upper_hull(points: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """The non-decreasing upper convex hull of (cost, quality) points, cheapest first."""
    pts = sorted({(float(c), float(q)) for c, q in points})
    hull: list[tuple[float, float]] = []
    for c, q in pts:
        if hull and q <= hull[-1][1]:
            continue  # costs more, no better: never on a non-decreasing frontier
        if hull and hull[-1][0] == c:
            hull.pop()  # same cost, better quality: the lower point is dominated
        while len(hull) >= 2:
            (c1, q1), (c2, q2) = hull[-2], hull[-1]
            if (q2 - q1) * (c - c1) <= (q - q1) * (c2 - c1):  # hull[-1] lies under the chord
                hull.pop()
            else:
                break
        hull.append((c, q))
    return hull


def quality_at_cost(hull: Sequence[tuple[float, float]], cost: float) -> float:
    """Interpolated hull quality at ``cost`` (flat beyond the ends)."""
    cs = np.array([c for c, _ in hull])
    qs = np.array([q for _, q in hull])
    return float(np.interp(cost, cs, qs))


def cost_at_quality(points: Sequence[tuple[float, float]], quality: float) -> float | None:
    """The cheapest interpolated cost at which the hull reaches ``quality`` (None if never)."""
    hull = upper_hull(points)
    for (c1, q1), (c2, q2) in zip(hull, hull[1:]):
        if q1 >= quality:
            return c1
        if q2 >= quality:
            return c1 + (quality - q1) * (c2 - c1) / (q2 - q1)
    return hull[-1][0] if hull and hull[-1][1] >= quality else None


def aiq(points: Sequence[tuple[float, float]], c_min: float, c_max: float, n_grid: int = 2001) -> float:
    """Average quality of the router's hull over [c_min, c_max] (the single candidates' costs)."""
    if c_max <= c_min:
        return quality_at_cost(upper_hull(points), c_min)
    hull = upper_hull(points)
    grid = np.linspace(c_min, c_max, n_grid)
    values = np.interp(grid, [c for c, _ in hull], [q for _, q in hull])
    return float(np.trapezoid(values, grid) / (c_max - c_min))

"""Objectives: the user's goal picks the policy's operating point, from an out-of-fold curve.

A trained router has one policy kind (lambda, threshold or share) and a knob. Sweeping the knob on
*out-of-fold* training predictions gives a curve of (knob -> expected accuracy, cost per query):
the :class:`KnobCurve`, saved in every bundle. An objective names a point on it:

- ``match-best``: the cheapest point reaching the best single candidate's accuracy (x ``target``);
- ``match-heuristic``: the cheapest point reaching the article's tree's accuracy;
- ``max-accuracy``: the most accurate point (the cheapest among equals);
- ``budget=USD``: the most accurate point costing at most USD per query (the data's cost unit).

When an objective cannot be reached out of fold, the point says so (``reached`` False, ``note``)
and the nearest reachable point is taken; no objective but a budget ever takes a point below the
tree's accuracy when the curve has one at or above it.

    curve.pick("match-best").knob          # -> Policy(kind, knob)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierroute.errors import ConfigError, describe

__all__ = ["OBJECTIVES", "DEFAULT_OBJECTIVE", "check_objective", "OOFSweep", "CurvePoint", "ObjectivePoint", "KnobCurve"]

#: the named objectives; ``budget=USD`` is the fourth kind
OBJECTIVES = ("match-best", "match-heuristic", "max-accuracy")
DEFAULT_OBJECTIVE = "match-best"


def check_objective(objective: object, owner: str = "objective") -> str:
    """``objective`` if it is one of :data:`OBJECTIVES` or ``budget=USD`` (USD >= 0), else ConfigError."""
    if isinstance(objective, str):
        if objective in OBJECTIVES:
            return objective
        if objective.startswith("budget="):
            try:
                value = float(objective.removeprefix("budget="))
            except ValueError:
                value = math.nan
            if math.isfinite(value) and value >= 0:
                return objective
    raise ConfigError(
        f"The {owner} must be one of {OBJECTIVES} or 'budget=USD_PER_QUERY' (a number >= 0, e.g. "
        f"budget=0.002). Got {describe(objective)} instead."
    )


@dataclass(frozen=True)
class OOFSweep:
    """A policy's knob swept over out-of-fold predictions of the training requests.

    ``values`` (K,) knob values, cheapest end first; ``picks`` (K, n) the candidate chosen per
    request at each value; ``correct`` / ``cost`` (n, m) the judged outcomes (observed, or
    doubly-robust pseudo-outcomes for logged requests; NaN counts as wrong and free); ``weight``
    (n,) request weights or None."""

    values: np.ndarray
    picks: np.ndarray
    correct: np.ndarray
    cost: np.ndarray
    weight: np.ndarray | None = None

    def points(self, rows: np.ndarray | None = None) -> list[tuple[float, float]]:
        """(cost per query, accuracy) per knob value, on ``rows`` (default: all requests)."""
        rows = np.arange(self.correct.shape[0]) if rows is None else np.asarray(rows)
        w = None if self.weight is None else self.weight[rows]
        picks = self.picks[:, rows]
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

    def aiq(self, rows: np.ndarray | None = None) -> float:
        """AIQ of the swept curve over the single candidates' cost range, on ``rows``."""
        from tierroute.models.hull import aiq

        costs = [c for c, _ in self.singles(rows)]
        return aiq(self.points(rows), min(costs), max(costs))


@dataclass(frozen=True)
class CurvePoint:
    knob: float
    accuracy: float
    cost_per_query: float

    def to_dict(self) -> dict[str, float]:
        return {"knob": self.knob, "accuracy": self.accuracy, "cost_per_query": self.cost_per_query}


@dataclass(frozen=True)
class ObjectivePoint:
    """Where an objective lands on the curve, and whether it was reached out of fold."""

    objective: str
    knob: float
    accuracy: float
    cost_per_query: float
    reached: bool
    note: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "knob": self.knob,
            "accuracy": self.accuracy,
            "cost_per_query": self.cost_per_query,
            "reached": self.reached,
            "note": self.note,
        }


@dataclass(frozen=True)
class KnobCurve:
    """The out-of-fold knob curve and the accuracies the named objectives aim at."""

    points: tuple[CurvePoint, ...]
    best_single_accuracy: float
    heuristic_accuracy: float
    target: float = 1.0
    default: str = DEFAULT_OBJECTIVE
    heuristic_cost_per_query: float | None = None

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("A KnobCurve needs at least one point; sweep the knob on at least one request.")
        check_objective(self.default, "default objective of the KnobCurve")

    @classmethod
    def from_sweep(
        cls,
        sweep: OOFSweep,
        heuristic_accuracy: float,
        target: float = 1.0,
        default: str = DEFAULT_OBJECTIVE,
        best_single_accuracy: float | None = None,
        heuristic_cost_per_query: float | None = None,
    ) -> KnobCurve:
        """The curve of ``sweep``; the best single's accuracy is read off the sweep unless given."""
        pts = tuple(CurvePoint(float(v), float(a), float(c)) for v, (c, a) in zip(sweep.values, sweep.points()))
        best = max(a for _, a in sweep.singles()) if best_single_accuracy is None else best_single_accuracy
        return cls(
            pts,
            float(best),
            float(heuristic_accuracy),
            float(target),
            default,
            None if heuristic_cost_per_query is None else float(heuristic_cost_per_query),
        )

    def report_objectives(self) -> tuple[str, ...]:
        """The four points a report shows: the three named objectives and a budget (the default's,
        if it is one, else the tree's cost per query: what the router does with the tree's spend)."""
        budget = (
            self.default
            if self.default.startswith("budget=")
            else (f"budget={self.heuristic_cost_per_query:.6g}" if self.heuristic_cost_per_query is not None else None)
        )
        return (*OBJECTIVES, *(() if budget is None else (budget,)))

    def pick(self, objective: str | None = None) -> ObjectivePoint:
        """The operating point for ``objective`` (default: the curve's own default)."""
        objective = check_objective(self.default if objective is None else objective)
        pts = self.points
        most = max(pts, key=lambda p: (p.accuracy, -p.cost_per_query))
        if objective.startswith("budget="):
            budget = float(objective.removeprefix("budget="))
            within = [p for p in pts if p.cost_per_query <= budget]
            if within:
                return _point(
                    objective,
                    max(within, key=lambda p: (p.accuracy, -p.cost_per_query)),
                    True,
                    f"the most accurate point within {budget:g}/query",
                )
            cheapest = min(pts, key=lambda p: (p.cost_per_query, -p.accuracy))
            return _point(
                objective,
                cheapest,
                False,
                f"no point costs {budget:g}/query or less out of fold; took the cheapest ({cheapest.cost_per_query:.6g}/query)",
            )
        if objective == "max-accuracy":
            return _point(objective, most, True, "the most accurate point")
        if objective == "match-best":
            goal, label = self.target * self.best_single_accuracy, "the best single candidate's accuracy"
            if self.target != 1.0:
                label = f"{self.target:g} x {label}"
        else:
            goal, label = self.heuristic_accuracy, "the tree's accuracy"
        floor = max(goal, self.heuristic_accuracy) if any(p.accuracy >= self.heuristic_accuracy for p in pts) else goal
        reaching = [p for p in pts if p.accuracy >= goal - 1e-12]
        if reaching:
            chosen = min(reaching, key=lambda p: (p.cost_per_query, -p.accuracy))
            if chosen.accuracy < floor - 1e-12:  # cheaper than the tree's accuracy allows: the floor wins
                chosen = min((p for p in pts if p.accuracy >= floor - 1e-12), key=lambda p: (p.cost_per_query, -p.accuracy))
            return _point(objective, chosen, True, f"the cheapest point reaching {label} ({goal:.4f}) out of fold")
        return _point(
            objective, most, False, f"{label} ({goal:.4f}) is not reached out of fold; took the most accurate point ({most.accuracy:.4f})"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [p.to_dict() for p in self.points],
            "best_single_accuracy": self.best_single_accuracy,
            "heuristic_accuracy": self.heuristic_accuracy,
            "target": self.target,
            "default": self.default,
            "heuristic_cost_per_query": self.heuristic_cost_per_query,
        }

    @classmethod
    def from_dict(cls, raw: object, where: str = "knob curve") -> KnobCurve:
        """A curve from its JSON form; ConfigError naming what is wrong."""
        try:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("points"), Sequence):
                raise TypeError("expected an object with a 'points' list")
            pts = tuple(CurvePoint(float(p["knob"]), float(p["accuracy"]), float(p["cost_per_query"])) for p in raw["points"])
            spent = raw.get("heuristic_cost_per_query")
            return cls(
                pts,
                float(raw["best_single_accuracy"]),
                float(raw["heuristic_accuracy"]),
                float(raw.get("target", 1.0)),
                str(raw.get("default", DEFAULT_OBJECTIVE)),
                None if spent is None else float(spent),
            )
        except (TypeError, KeyError, ValueError) as exc:
            raise ConfigError(f"The {where} is damaged ({exc}); got {describe(raw)}. Re-export the bundle.") from None


def _point(objective: str, p: CurvePoint, reached: bool, note: str) -> ObjectivePoint:
    return ObjectivePoint(objective, p.knob, p.accuracy, p.cost_per_query, reached, note)

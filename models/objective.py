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

A point that *just* reaches a goal out of fold falls short of it on new requests about half the
time (its accuracy is an estimate, and the cheapest of the points clearing a bar is the one most
likely to be overestimated). So each point also carries the standard errors of its per-request
difference from the best single candidate (``se_best``) and from the tree (``se_tree``), and the
match objectives count a point as reaching a goal only when its accuracy less ``margin_z``
(:data:`MARGIN_Z`) of those errors does. Where the router agrees with the reference the
difference is 0: the margin charges only for the requests it sends elsewhere, and the reference's
own point needs none. Curves from before this (no errors, ``margin_z`` 0) pick as they always did.

    curve.pick("match-best").knob          # -> Policy(kind, knob)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from tierroute.errors import ConfigError, describe

__all__ = ["OBJECTIVES", "DEFAULT_OBJECTIVE", "MARGIN_Z", "check_objective", "OOFSweep", "CurvePoint", "ObjectivePoint", "KnobCurve"]

#: the named objectives; ``budget=USD`` is the fourth kind
OBJECTIVES = ("match-best", "match-heuristic", "max-accuracy")
DEFAULT_OBJECTIVE = "match-best"
#: standard errors a point's accuracy must clear a match objective's goal by (one-sided, about 95%)
MARGIN_Z = 1.645


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

    def paired_se(self, reference: np.ndarray) -> np.ndarray:
        """(K,) the standard error of each knob value's mean per-request difference from
        ``reference`` ((n,) a candidate index per request), weighted as the sweep is."""
        n = self.correct.shape[0]
        w = np.ones(n) if self.weight is None else np.asarray(self.weight, dtype=np.float64)
        if n < 2 or not w.sum() > 0:
            return np.zeros(len(self.values))
        rows = np.arange(n)
        correct = np.nan_to_num(self.correct, nan=0.0)
        diff = correct[rows[None, :], self.picks] - correct[rows, reference][None, :]
        w = w / w.sum()
        centred = diff - (diff @ w)[:, None]  # the SE of a weighted mean: sqrt(sum w_i^2 (d_i - mean)^2)
        return cast(np.ndarray, np.sqrt((centred**2) @ (w**2)))

    def aiq(self, rows: np.ndarray | None = None) -> float:
        """AIQ of the swept curve over the single candidates' cost range, on ``rows``."""
        from tierroute.models.hull import aiq

        costs = [c for c, _ in self.singles(rows)]
        return aiq(self.points(rows), min(costs), max(costs))


@dataclass(frozen=True)
class CurvePoint:
    """One knob value out of fold: its accuracy and cost per query, and the standard errors of its
    per-request difference from the best single candidate and from the tree (0 when unknown)."""

    knob: float
    accuracy: float
    cost_per_query: float
    se_best: float = 0.0
    se_tree: float = 0.0

    def __post_init__(self) -> None:
        for name in ("se_best", "se_tree"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"A knob curve point's {name} must be a finite number >= 0; got {value!r}.")

    def to_dict(self) -> dict[str, float]:
        errors = {"se_best": self.se_best, "se_tree": self.se_tree} if self.se_best or self.se_tree else {}
        return {"knob": self.knob, "accuracy": self.accuracy, "cost_per_query": self.cost_per_query, **errors}


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
    margin_z: float = 0.0  # standard errors a point must clear a match goal by (0: curves from before errors)

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("A KnobCurve needs at least one point; sweep the knob on at least one request.")
        check_objective(self.default, "default objective of the KnobCurve")
        if not (math.isfinite(self.margin_z) and self.margin_z >= 0):
            raise ConfigError(f"The margin_z of a KnobCurve must be a number >= 0; got {self.margin_z!r}.")

    @classmethod
    def from_sweep(
        cls,
        sweep: OOFSweep,
        heuristic_accuracy: float,
        target: float = 1.0,
        default: str = DEFAULT_OBJECTIVE,
        best_single_accuracy: float | None = None,
        heuristic_cost_per_query: float | None = None,
        tree_picks: np.ndarray | None = None,
        margin_z: float = MARGIN_Z,
        best_index: int | None = None,
    ) -> KnobCurve:
        """The curve of ``sweep``; the best single's accuracy (and, for its errors, its index) is
        read off the sweep unless given. With ``tree_picks`` ((n,) the tree's candidate per
        request), each point carries its paired standard errors and the match objectives keep
        ``margin_z`` of them to spare; without, there are none and ``margin_z`` is 0."""
        singles = [a for _, a in sweep.singles()]
        best = max(singles) if best_single_accuracy is None else best_single_accuracy
        n, K = sweep.correct.shape[0], len(sweep.values)
        se_best = se_tree = np.zeros(K)
        if tree_picks is not None:
            se_best = sweep.paired_se(np.full(n, int(np.argmax(singles)) if best_index is None else best_index))
            se_tree = sweep.paired_se(np.asarray(tree_picks))
        pts = tuple(
            CurvePoint(float(v), float(a), float(c), float(sb), float(st))
            for v, (c, a), sb, st in zip(sweep.values, sweep.points(), se_best, se_tree)
        )
        return cls(
            pts,
            float(best),
            float(heuristic_accuracy),
            float(target),
            default,
            None if heuristic_cost_per_query is None else float(heuristic_cost_per_query),
            float(margin_z) if tree_picks is not None else 0.0,
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
        if objective.startswith("budget="):
            budget = float(objective.removeprefix("budget="))
            within = [p for p in pts if p.cost_per_query <= budget]
            if within:
                return _point(objective, _most_accurate(within), True, f"the most accurate point within {budget:g}/query")
            cheapest = _cheapest(pts)
            return _point(
                objective,
                cheapest,
                False,
                f"no point costs {budget:g}/query or less out of fold; took the cheapest ({cheapest.cost_per_query:.6g}/query)",
            )
        if objective == "max-accuracy":
            return _point(objective, _most_accurate(pts), True, "the most accurate point")
        return self._match(objective)

    def _match(self, objective: str) -> ObjectivePoint:
        """match-best / match-heuristic: the cheapest point whose accuracy, less ``margin_z``
        standard errors, reaches the goal, among the points :meth:`_floor` allows; when none does,
        the most accurate point it allows."""
        z, pts = self.margin_z, self.points
        if objective == "match-best":
            goal, label = self.target * self.best_single_accuracy, "the best single candidate's accuracy"
            if self.target != 1.0:
                label = f"{self.target:g} x {label}"
            sure = [p.accuracy - z * p.se_best for p in pts]
        else:
            goal, label = self.heuristic_accuracy, "the tree's accuracy"
            sure = [p.accuracy - z * p.se_tree for p in pts]
        allowed = self._floor()
        reaching = [k for k in allowed if sure[k] >= goal - 1e-12]
        if reaching:
            spare = f", by {z:g} standard errors" if z else ""
            chosen = _cheapest([pts[k] for k in reaching])
            return _point(objective, chosen, True, f"the cheapest point reaching {label} ({goal:.4f}) out of fold{spare}")
        most = _most_accurate([pts[k] for k in allowed])
        spare = f" (by {z:g} standard errors)" if z else ""
        note = f"{label} ({goal:.4f}) is not reached out of fold{spare}; took the most accurate point ({most.accuracy:.4f})"
        return _point(objective, most, False, note)

    def _floor(self) -> list[int]:
        """The points a match objective may take: those whose accuracy, less ``margin_z`` standard
        errors of their difference from the tree, holds the tree's accuracy, when some point's does;
        else those whose accuracy does, when some point's does; else all."""
        tree, z = self.heuristic_accuracy, self.margin_z
        for held in ([p.accuracy - z * p.se_tree for p in self.points], [p.accuracy for p in self.points]):
            if any(a >= tree for a in held):
                return [k for k, a in enumerate(held) if a >= tree - 1e-12]
        return list(range(len(self.points)))

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [p.to_dict() for p in self.points],
            "best_single_accuracy": self.best_single_accuracy,
            "heuristic_accuracy": self.heuristic_accuracy,
            "target": self.target,
            "default": self.default,
            "heuristic_cost_per_query": self.heuristic_cost_per_query,
            **({"margin_z": self.margin_z} if self.margin_z else {}),
        }

    @classmethod
    def from_dict(cls, raw: object, where: str = "knob curve") -> KnobCurve:
        """A curve from its JSON form; ConfigError naming what is wrong."""
        try:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("points"), Sequence):
                raise TypeError("expected an object with a 'points' list")
            pts = tuple(
                CurvePoint(
                    float(p["knob"]),
                    float(p["accuracy"]),
                    float(p["cost_per_query"]),
                    float(p.get("se_best", 0.0)),
                    float(p.get("se_tree", 0.0)),
                )
                for p in raw["points"]
            )
            spent = raw.get("heuristic_cost_per_query")
            return cls(
                pts,
                float(raw["best_single_accuracy"]),
                float(raw["heuristic_accuracy"]),
                float(raw.get("target", 1.0)),
                str(raw.get("default", DEFAULT_OBJECTIVE)),
                None if spent is None else float(spent),
                float(raw.get("margin_z", 0.0)),
            )
        except (TypeError, KeyError, ValueError, AttributeError, ConfigError) as exc:
            raise ConfigError(f"The {where} is damaged ({exc}); got {describe(raw)}. Re-export the bundle.") from None


def _cheapest(points: Sequence[CurvePoint]) -> CurvePoint:
    return min(points, key=lambda p: (p.cost_per_query, -p.accuracy))


def _most_accurate(points: Sequence[CurvePoint]) -> CurvePoint:
    return max(points, key=lambda p: (p.accuracy, -p.cost_per_query))


def _point(objective: str, p: CurvePoint, reached: bool, note: str) -> ObjectivePoint:
    return ObjectivePoint(objective, p.knob, p.accuracy, p.cost_per_query, reached, note)

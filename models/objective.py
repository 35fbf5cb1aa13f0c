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
own point needs none. When the training requests come from several tasks, an error is the larger of
the per-request one and the task-clustered one (:meth:`OOFSweep.paired_se`): gains made on one task
alone are less sure on new traffic. Curves from before this (no errors, ``margin_z`` 0) pick as
they always did.

The tree's floor has a last guard, the curve's *anchor*: every request to the best single candidate
(``share`` at 100%, :func:`tierroute.models.policy.always`). When no point of the curve holds the
tree's accuracy with its margin to spare but the anchor does, the match objectives take the anchor:
a router that cannot show it beats the tree sends everything where the tree's accuracy is surest.
``max-accuracy`` and budgets count the anchor as one more point.

    curve.policy(curve.pick("match-best"))  # -> Policy(kind, knob), or every request to the anchor
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tierroute.errors import ConfigError, describe
from tierroute.models.oof import OOFSweep
from tierroute.models.policy import POLICY_KINDS, Policy, always

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
class CurvePoint:
    """One knob value out of fold: its accuracy and cost per query, and the standard errors of its
    per-request difference from the best single candidate and from the tree (0 when unknown).
    ``candidate`` is set on a curve's anchor only: every request to that candidate, not a knob."""

    knob: float
    accuracy: float
    cost_per_query: float
    se_best: float = 0.0
    se_tree: float = 0.0
    candidate: int | None = None

    def __post_init__(self) -> None:
        for name in ("se_best", "se_tree"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ConfigError(f"A knob curve point's {name} must be a finite number >= 0; got {value!r}.")
        if self.candidate is not None:
            if isinstance(self.candidate, bool) or not (isinstance(self.candidate, int | np.integer) and self.candidate >= 0):
                raise ConfigError(f"A knob curve anchor's candidate must be a candidate index (an int >= 0); got {self.candidate!r}.")
            object.__setattr__(self, "candidate", int(self.candidate))  # a plain int (JSON), from numpy's too

    def to_dict(self) -> dict[str, Any]:
        errors = {"se_best": self.se_best, "se_tree": self.se_tree} if self.se_best or self.se_tree else {}
        anchor = {} if self.candidate is None else {"candidate": self.candidate}
        return {"knob": self.knob, "accuracy": self.accuracy, "cost_per_query": self.cost_per_query, **errors, **anchor}

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> CurvePoint:
        candidate = raw.get("candidate")
        return cls(
            float(raw["knob"]),
            float(raw["accuracy"]),
            float(raw["cost_per_query"]),
            float(raw.get("se_best", 0.0)),
            float(raw.get("se_tree", 0.0)),
            None if candidate is None else _index(candidate),
        )


@dataclass(frozen=True)
class ObjectivePoint:
    """Where an objective lands on the curve, and whether it was reached out of fold. ``candidate``:
    the anchor's candidate, when the point is the curve's anchor (every request to it)."""

    objective: str
    knob: float
    accuracy: float
    cost_per_query: float
    reached: bool
    note: str
    candidate: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "objective": self.objective,
            "knob": self.knob,
            "accuracy": self.accuracy,
            "cost_per_query": self.cost_per_query,
            "reached": self.reached,
            "note": self.note,
            **({} if self.candidate is None else {"candidate": self.candidate}),
        }


@dataclass(frozen=True)
class KnobCurve:
    """The out-of-fold knob curve and the accuracies the named objectives aim at.

    ``kind`` / ``frontier``: the policy whose knob the points set (None on curves from before they
    were recorded: the served policy's). ``anchor``: the point sending every request to the best
    single candidate (``share`` at 100%), the match objectives' last guard of the tree's floor."""

    points: tuple[CurvePoint, ...]
    best_single_accuracy: float
    heuristic_accuracy: float
    target: float = 1.0
    default: str = DEFAULT_OBJECTIVE
    heuristic_cost_per_query: float | None = None
    margin_z: float = 0.0  # standard errors a point must clear a match goal by (0: curves from before errors)
    anchor: CurvePoint | None = None
    kind: str | None = None
    frontier: int | None = None

    def __post_init__(self) -> None:
        if not self.points:
            raise ConfigError("A KnobCurve needs at least one point; sweep the knob on at least one request.")
        check_objective(self.default, "default objective of the KnobCurve")
        if not (math.isfinite(self.margin_z) and self.margin_z >= 0):
            raise ConfigError(f"The margin_z of a KnobCurve must be a number >= 0; got {self.margin_z!r}.")
        if self.kind is not None and self.kind not in POLICY_KINDS:
            raise ConfigError(f"The kind of a KnobCurve must be one of {POLICY_KINDS}; got {self.kind!r}.")
        if self.anchor is not None and self.anchor.candidate is None:
            raise ConfigError("A KnobCurve's anchor must name its candidate (CurvePoint(..., candidate=j)).")

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
        policy: Policy | None = None,
        anchor_picks: np.ndarray | None = None,
    ) -> KnobCurve:
        """The curve of ``sweep`` (the knob of ``policy``, whose value is ignored); the best single's
        accuracy (and, for its errors, its index) is read off the sweep unless given. With
        ``tree_picks`` ((n,) the tree's candidate per request), each point carries its paired
        standard errors, the curve an anchor, and the match objectives keep ``margin_z`` of the
        errors to spare; without, there are none and ``margin_z`` is 0. The anchor sends every
        request to :meth:`OOFSweep.best_single`; ``anchor_picks`` ((n,)) are its choices where SLAs
        rule that candidate out (``choose(always(j), ...)``; default: that candidate everywhere)."""
        j = sweep.best_single()  # the most accurate alone as the curve measures (NaN wrong): the anchor's
        best = sweep.singles()[j][1] if best_single_accuracy is None else best_single_accuracy
        n, K = sweep.correct.shape[0], len(sweep.values)
        se_best = se_tree = np.zeros(K)
        anchor = None
        if tree_picks is not None:
            best_picks = np.full(n, j if best_index is None else int(best_index))
            se_best = sweep.paired_se(best_picks)
            se_tree = sweep.paired_se(np.asarray(tree_picks))
            # the anchor, measured the way the points and the tree are (an anchor that is the tree ties it)
            alone = (np.full(n, j) if anchor_picks is None else np.asarray(anchor_picks))[None, :]
            (spent, accuracy) = sweep.points(picks=alone)[0]
            errors = float(sweep.paired_se(best_picks, alone)[0]), float(sweep.paired_se(np.asarray(tree_picks), alone)[0])
            anchor = CurvePoint(always(j).value, accuracy, spent, *errors, j)
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
            anchor,
            None if policy is None else policy.kind,
            None if policy is None else policy.frontier,
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

    def policy(self, point: ObjectivePoint, served: Policy | None = None) -> Policy:
        """The policy ``point`` stands for: the curve's (``served``'s, for a curve from before the
        curve recorded its own) at the point's knob, or every request to the anchor's candidate."""
        if point.candidate is not None:
            return always(point.candidate)
        if self.kind is not None:
            return Policy(self.kind, point.knob, self.frontier)
        if served is None:
            raise ConfigError("This knob curve does not record its policy kind; pass the served policy.")
        return Policy(served.kind, point.knob, served.frontier)

    def pick(self, objective: str | None = None) -> ObjectivePoint:
        """The operating point for ``objective`` (default: the curve's own default)."""
        objective = check_objective(self.default if objective is None else objective)
        pts = (*self.points, *(() if self.anchor is None else (self.anchor,)))
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
        z = self.margin_z
        goal, label = self.heuristic_accuracy, "the tree's accuracy"
        if objective == "match-best":
            goal, label = self.target * self.best_single_accuracy, "the best single candidate's accuracy"
            if self.target != 1.0:
                label = f"{self.target:g} x {label}"
        allowed = self._floor()
        if objective == "match-best":
            reaching = [p for p in allowed if p.accuracy - z * p.se_best >= goal - 1e-12]
        else:
            reaching = [p for p in allowed if p.accuracy - z * p.se_tree >= goal - 1e-12]
        chosen = _cheapest(reaching) if reaching else _most_accurate(allowed)
        if chosen is self.anchor:
            note = (
                f"no point of the curve holds the tree's accuracy ({self.heuristic_accuracy:.4f}) out of fold by {z:g} "
                f"standard errors; every request goes to the most accurate single candidate ({chosen.accuracy:.4f})"
            )
        elif reaching:
            spare = f", by {z:g} standard errors" if z else ""
            note = f"the cheapest point reaching {label} ({goal:.4f}) out of fold{spare}"
        else:
            spare = f" (by {z:g} standard errors)" if z else ""
            note = f"{label} ({goal:.4f}) is not reached out of fold{spare}; took the most accurate point ({chosen.accuracy:.4f})"
        return _point(objective, chosen, bool(reaching), note)

    def _floor(self) -> list[CurvePoint]:
        """The points a match objective may take: those whose accuracy, less ``margin_z`` standard
        errors of their difference from the tree, holds the tree's accuracy, when some point's does;
        else the anchor, when its does; else those whose accuracy does, when some point's does;
        else all (the anchor is never one of these)."""
        tree, z = self.heuristic_accuracy, self.margin_z
        sure = [p.accuracy - z * p.se_tree for p in self.points]
        if any(a >= tree for a in sure):
            return [p for p, a in zip(self.points, sure) if a >= tree - 1e-12]
        if self.anchor is not None and self.anchor.accuracy - z * self.anchor.se_tree >= tree - 1e-12:
            return [self.anchor]
        if any(p.accuracy >= tree for p in self.points):
            return [p for p in self.points if p.accuracy >= tree - 1e-12]
        return list(self.points)

    def to_dict(self) -> dict[str, Any]:
        return {
            "points": [p.to_dict() for p in self.points],
            "best_single_accuracy": self.best_single_accuracy,
            "heuristic_accuracy": self.heuristic_accuracy,
            "target": self.target,
            "default": self.default,
            "heuristic_cost_per_query": self.heuristic_cost_per_query,
            **({"margin_z": self.margin_z} if self.margin_z else {}),
            **({} if self.anchor is None else {"anchor": self.anchor.to_dict()}),
            **({} if self.kind is None else {"kind": self.kind, "frontier": self.frontier}),
        }

    @classmethod
    def from_dict(cls, raw: object, where: str = "knob curve") -> KnobCurve:
        """A curve from its JSON form; ConfigError naming what is wrong."""
        try:
            if not isinstance(raw, Mapping) or not isinstance(raw.get("points"), Sequence):
                raise TypeError("expected an object with a 'points' list")
            if any(p.get("candidate") is not None for p in raw["points"]):
                raise ValueError("only the anchor names a candidate")
            spent, anchor, frontier = raw.get("heuristic_cost_per_query"), raw.get("anchor"), raw.get("frontier")
            return cls(
                tuple(CurvePoint.from_dict(p) for p in raw["points"]),
                float(raw["best_single_accuracy"]),
                float(raw["heuristic_accuracy"]),
                float(raw.get("target", 1.0)),
                str(raw.get("default", DEFAULT_OBJECTIVE)),
                None if spent is None else float(spent),
                float(raw.get("margin_z", 0.0)),
                None if anchor is None else CurvePoint.from_dict(anchor),
                None if raw.get("kind") is None else str(raw["kind"]),
                None if frontier is None else _index(frontier),
            )
        except (TypeError, KeyError, ValueError, AttributeError, ConfigError) as exc:
            raise ConfigError(f"The {where} is damaged ({exc}); got {describe(raw)}. Re-export the bundle.") from None


def _index(value: object) -> int:
    """A candidate index from JSON (an int, or a float with no fraction); ValueError otherwise."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value != int(value) or value < 0:
        raise ValueError(f"a candidate index must be an integer >= 0, not {value!r}")
    return int(value)


def _cheapest(points: Sequence[CurvePoint]) -> CurvePoint:
    return min(points, key=lambda p: (p.cost_per_query, -p.accuracy))


def _most_accurate(points: Sequence[CurvePoint]) -> CurvePoint:
    return max(points, key=lambda p: (p.accuracy, -p.cost_per_query))


def _point(objective: str, p: CurvePoint, reached: bool, note: str) -> ObjectivePoint:
    return ObjectivePoint(objective, p.knob, p.accuracy, p.cost_per_query, reached, note, p.candidate)

"""The learned decision, written once: from raw model scores to a chosen candidate.

Training (:class:`~tierroute.models.learned.LearnedRouter`), the Dask engine and the serving
:class:`~tierroute.serving.router.Router` differ only in how they produce *raw* scores (a LightGBM
booster, an ONNX session, a numpy kNN); everything after that is this module, numpy only:

- calibration tables applied to raw scores (``Calibration``, ``CalibrationSet``);
- the token count read from the feature matrix by *name* (``token_column``);
- expected cost per candidate (a + b x prompt tokens);
- SLA feasibility (catalogue p95 latency against the request's SLA);
- the policy's choice, with the knob set by an objective (:mod:`tierroute.models.objective`).

    core = DecisionCore.build(candidates, feature_names, calibrations, intercept, slope, p95, policy, curve)
    proba = core.probabilities(raw)                       # (n, m) calibrated P(correct)
    picks = core.choose(proba, core.expected_cost(tokens), core.feasible(slas))
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np

from tierroute.errors import BundleError, describe
from tierroute.models.objective import KnobCurve, ObjectivePoint
from tierroute.models.policy import Policy, choose, choose_row

__all__ = [
    "Calibration",
    "CalibrationSet",
    "DecisionCore",
    "TOKEN_FEATURE",
    "token_column",
    "feature_matrix",
    "expected_cost",
    "sla_feasible",
]

#: the request feature the expected-cost model reads (the prompt's exact token count)
TOKEN_FEATURE = "n_tokens"


def token_column(feature_names: Sequence[str]) -> int:
    """Index of the token count in a feature row, by name (never by position)."""
    try:
        return list(feature_names).index(TOKEN_FEATURE)
    except ValueError:
        raise BundleError(
            "feature_spec_mismatch",
            f"The feature list has no {TOKEN_FEATURE!r} column (got "
            f"{list(feature_names)[:6]}...); the expected-cost model needs it. Re-export the bundle.",
        ) from None


def feature_matrix(signals: Any, embedding: np.ndarray | None) -> np.ndarray:
    """(n, d) float32 request features: the signal columns, then the embedding's (FeatureSpec order)."""
    if embedding is None:
        return np.asarray(signals, dtype=np.float32)
    embedded = np.asarray(embedding, dtype=np.float32)
    n = len(signals)
    if not n or embedded.ndim != 2 or len(embedded) != n:  # not the serving shape: let numpy say what does not fit
        return np.hstack([np.asarray(signals, dtype=np.float32), embedded])
    k = len(signals[0])
    X = np.empty((n, k + embedded.shape[1]), dtype=np.float32)  # one allocation, rows converted in place: the hot path
    X[:, :k] = signals
    X[:, k:] = embedded
    return X


def expected_cost(intercept: np.ndarray, slope: np.ndarray, tokens: np.ndarray) -> np.ndarray:
    """(n, m) expected cost: intercept + slope x prompt tokens, never below 0."""
    return cast(np.ndarray, np.maximum(np.asarray(intercept)[None, :] + np.outer(np.asarray(tokens, dtype=np.float64), slope), 0.0))


def sla_feasible(p95_ms: np.ndarray, sla_ms: Sequence[float | None]) -> np.ndarray | None:
    """(n, m) True where the candidate's p95 latency fits the request's SLA; an unknown latency or
    a missing SLA fits, and an SLA nobody meets goes to the fastest candidate. None when no request
    has an SLA or no latency is known (every candidate fits)."""
    p95 = np.asarray(p95_ms, dtype=np.float64)
    if not np.isfinite(p95).any() or all(s is None for s in sla_ms):
        return None
    sla = np.array([np.nan if s is None else s for s in sla_ms], dtype=np.float64)
    fits = ~(p95[None, :] > sla[:, None])
    fits[~fits.any(axis=1), int(np.nanargmin(p95))] = True
    return fits


@dataclass(frozen=True)
class Calibration:
    """One candidate's calibration map as plain numbers: ``isotonic`` piecewise-linear knots (x, y),
    clipped at the ends; ``sigmoid`` P = 1 / (1 + exp(-(a logit(score) + b))); ``none`` identity."""

    method: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def from_calibrator(cls, calibrator: Any) -> Calibration:
        """The table of a fitted trainer-side calibrator (``method`` and a scikit-learn ``model``)."""
        model = getattr(calibrator, "model", None)
        if model is None:
            return cls("none")
        if calibrator.method == "isotonic":
            return cls("isotonic", np.asarray(model.X_thresholds_, dtype=np.float64), np.asarray(model.y_thresholds_, dtype=np.float64))
        return cls("sigmoid", a=float(model.coef_[0][0]), b=float(model.intercept_[0]))

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Calibration:
        method = raw.get("method") if isinstance(raw, Mapping) else None
        if method == "none":
            return cls("none")
        if method == "isotonic":
            try:
                x, y = np.asarray(raw.get("x"), dtype=np.float64), np.asarray(raw.get("y"), dtype=np.float64)
            except (TypeError, ValueError):
                x = y = np.zeros(0)
            if x.ndim != 1 or x.shape != y.shape or len(x) < 1 or not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise BundleError(
                    "bundle_invalid",
                    f"{where}: isotonic knots must be two equal-length finite lists; "
                    f"got x {describe(raw.get('x'))}, y {describe(raw.get('y'))}. Re-export the bundle.",
                )
            return cls("isotonic", x, y)
        if method == "sigmoid" and all(isinstance(raw.get(k), (int, float)) for k in ("a", "b")):
            return cls("sigmoid", a=float(raw["a"]), b=float(raw["b"]))
        raise BundleError(
            "bundle_invalid",
            f"{where}: expected a calibration with method isotonic (x, y), sigmoid "
            f"(a, b) or none; got {describe(raw)}. Re-export the bundle.",
        )

    def to_dict(self) -> dict[str, Any]:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": [float(v) for v in self.x], "y": [float(v) for v in self.y]}  # type: ignore[union-attr]
        if self.method == "sigmoid":
            return {"method": "sigmoid", "a": self.a, "b": self.b}
        return {"method": "none"}

    def apply(self, scores: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)  # type: ignore[arg-type]
        if self.method == "sigmoid":
            clipped = np.clip(scores, 1e-6, 1 - 1e-6)
            logit = np.log(clipped / np.clip(1 - scores, 1e-6, 1))
            return cast(np.ndarray, 1.0 / (1.0 + np.exp(-(self.a * logit + self.b))))
        return np.asarray(scores, dtype=np.float64)


class CalibrationSet:
    """All candidates' calibrations applied to an (n, m) score matrix at once. Isotonic maps are
    laid end to end on one axis (candidate j's knots shifted by 2j, scores clipped to its own knot
    range first), so one ``np.interp`` serves every candidate: the same numbers as applying each
    map alone, for a fraction of the per-call overhead on the serving path."""

    def __init__(self, calibrations: Sequence[Calibration]) -> None:
        self.calibrations = tuple(calibrations)
        self.isotonic = bool(self.calibrations) and all(c.method == "isotonic" for c in self.calibrations)
        if self.isotonic:
            self.shift = 2.0 * np.arange(len(self.calibrations))
            self.lo = np.array([c.x[0] for c in self.calibrations])  # type: ignore[index]
            self.hi = np.array([c.x[-1] for c in self.calibrations])  # type: ignore[index]
            self.x = np.concatenate([c.x + self.shift[j] for j, c in enumerate(self.calibrations)])
            self.y = np.concatenate([c.y for c in self.calibrations])
            # the same arrays as plain floats, for apply_row
            self._bounds = tuple(zip(self.lo.tolist(), self.hi.tolist(), self.shift.tolist()))
            self._xs, self._ys = self.x.tolist(), self.y.tolist()

    def apply(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.isotonic:
            placed = np.minimum(np.maximum(scores, self.lo), self.hi) + self.shift
            return cast(np.ndarray, np.interp(placed.ravel(), self.x, self.y).reshape(scores.shape))
        return np.column_stack([c.apply(scores[:, j]) for j, c in enumerate(self.calibrations)])

    def apply_row(self, scores: Sequence[float]) -> list[float]:
        """:meth:`apply` for one request's scores, on plain floats: the same numbers bit for bit (the
        clip, shift and ``np.interp`` arithmetic, which has no fused multiply-add in numpy's x86-64
        baseline; a test checks them against each other) for a fraction of the overhead."""
        if not self.isotonic:
            return cast(list[float], self.apply(np.asarray([scores], dtype=np.float64))[0].tolist())
        xs, ys = self._xs, self._ys
        last = len(xs) - 1
        out = []
        for s, (lo, hi, shift) in zip(scores, self._bounds):
            v = min(max(s, lo), hi) + shift  # NaN stays NaN, as np.maximum / np.minimum keep it
            j = bisect_right(xs, v) - 1
            if not last:  # one knot in all: its value, NaN or not (numpy's special case)
                out.append(ys[0])
            elif v != v:
                out.append(v)
            elif j < 0:
                out.append(ys[0])
            elif j >= last or xs[j] == v:
                out.append(ys[min(j, last)])
            else:  # numpy's interp: slope x (x - x_j) + y_j, from the other knot when that is NaN
                slope = (ys[j + 1] - ys[j]) / (xs[j + 1] - xs[j])
                y = slope * (v - xs[j]) + ys[j]
                if y != y:
                    y = slope * (v - xs[j + 1]) + ys[j + 1]
                    if y != y and ys[j] == ys[j + 1]:
                        y = ys[j]
                out.append(y)
        return out


@dataclass(frozen=True)
class DecisionCore:
    """Everything between raw scores and a choice, for one trained router (immutable, thread-safe).

    ``curve`` (the out-of-fold knob curve) lets a caller name an objective instead of a knob; a
    router trained before objectives existed has none and serves its fixed ``policy``."""

    candidates: tuple[str, ...]
    token_index: int
    calibration: CalibrationSet
    cost_intercept: np.ndarray
    cost_slope: np.ndarray
    p95_ms: np.ndarray
    policy: Policy
    curve: KnobCurve | None = None
    _points: dict[str, ObjectivePoint] = field(default_factory=dict, repr=False, compare=False)
    _p95: list[float] = field(default_factory=list, repr=False, compare=False)
    _fastest: int = field(default=-1, repr=False, compare=False)
    _cost_terms: tuple[tuple[float, float], ...] = field(default=(), repr=False, compare=False)

    @classmethod
    def build(
        cls,
        candidates: Sequence[str],
        feature_names: Sequence[str],
        calibrations: Sequence[Calibration],
        cost_intercept: Any,
        cost_slope: Any,
        p95_ms: Any,
        policy: Policy,
        curve: KnobCurve | None = None,
    ) -> DecisionCore:
        p95 = np.asarray(p95_ms, dtype=np.float64)
        fastest = int(np.nanargmin(p95)) if np.isfinite(p95).any() else -1
        core = cls(
            tuple(candidates),
            token_column(feature_names),
            CalibrationSet(calibrations),
            np.asarray(cost_intercept, dtype=np.float64),
            np.asarray(cost_slope, dtype=np.float64),
            p95,
            policy,
            curve,
            {},
            p95.tolist(),
            fastest,
            tuple(zip(np.asarray(cost_intercept, dtype=np.float64).tolist(), np.asarray(cost_slope, dtype=np.float64).tolist())),
        )
        if curve is not None:  # the named objectives, resolved once (budgets are resolved per call)
            for name in ("match-best", "match-heuristic", "max-accuracy"):
                core._points[name] = curve.pick(name)
        return core

    # -- the steps ------------------------------------------------------------------------------
    def probabilities(self, raw: np.ndarray) -> np.ndarray:
        """(n, m) calibrated P(correct) from raw scores."""
        return self.calibration.apply(raw)

    def probabilities_row(self, raw: Sequence[float]) -> list[float]:
        """:meth:`probabilities` for one request, on plain floats (the same numbers)."""
        return self.calibration.apply_row(raw)

    def expected_cost(self, tokens: np.ndarray) -> np.ndarray:
        return expected_cost(self.cost_intercept, self.cost_slope, tokens)

    def expected_cost_row(self, tokens: float) -> list[float]:
        """:meth:`expected_cost` for one request, on plain floats (the same IEEE arithmetic)."""
        return [max(a + tokens * s, 0.0) for a, s in self._cost_terms]

    def feasible(self, sla_ms: Sequence[float | None]) -> np.ndarray | None:
        return sla_feasible(self.p95_ms, sla_ms)

    def feasible_row(self, sla_ms: float | None) -> list[bool] | None:
        """:meth:`feasible` for one request, on plain floats (the same rule; a test checks them
        against each other): None when every candidate fits."""
        if sla_ms is None or self._fastest < 0:
            return None
        fits = [not (p > sla_ms) for p in self._p95]  # NaN (unknown latency) fits
        if not any(fits):
            fits[self._fastest] = True
        return fits

    def point(self, objective: str | None) -> ObjectivePoint | None:
        """The curve's operating point for ``objective`` (None: the trained policy as it is)."""
        if objective is None or self.curve is None:
            if objective is not None:
                raise BundleError(
                    "bundle_invalid",
                    f"This router was trained without an out-of-fold knob curve, so it "
                    f"serves its fixed policy and cannot take objective {objective!r}. Retrain it with "
                    "this tierroute to choose objectives at serve time.",
                )
            return None
        return self._points.get(objective) or self.curve.pick(objective)

    def policy_for(self, objective: str | None) -> Policy:
        point = self.point(objective)
        if point is None or self.curve is None:
            return self.policy
        return self.curve.policy(point, self.policy)

    def choose(self, proba: np.ndarray, cost: np.ndarray, feasible: np.ndarray | None, policy: Policy | None = None) -> np.ndarray:
        return choose(policy or self.policy, proba, cost, feasible)

    def choose_row(self, proba: list[float], cost: list[float], feasible: list[bool] | None, policy: Policy | None = None) -> int:
        return choose_row(policy or self.policy, proba, cost, feasible)

    def finite(self, proba: np.ndarray) -> bool:
        return bool(np.isfinite(proba).all()) if proba.size > 8 else all(map(math.isfinite, proba.ravel().tolist()))

"""Decision policies: turn calibrated P(correct) per candidate into one choice per request.

Score, then decide: the router estimates probabilities, a policy (with one explicit knob) picks.

- ``threshold`` (default): the cheapest candidate whose P clears the quality target ``value``,
  among those that fit the request's SLA; if none clears it, the most likely one.
- ``lambda``: willingness to pay, argmax P - value * expected cost (cost in the same unit as the
  expected-cost matrix).
- ``share``: a target share of traffic to the most capable candidate (the frontier): the
  threshold on P(frontier) - P(best cheaper) that sends that share of recent requests up
  (RouteLLM's calibrated threshold, for N candidates).

Minimum cost per correct answer alone degenerates to "always the cheapest": routers are compared
at equal quality, and the knob is chosen on out-of-fold training predictions, never on test data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any, cast

import numpy as np

from tierroute._params import check_number
from tierroute.errors import ConfigError

__all__ = ["Policy", "POLICY_KINDS", "ALL_TO_FRONTIER", "always", "choose", "choose_row", "sweep", "pick_knob"]

POLICY_KINDS = ("threshold", "lambda", "share")
#: a ``share`` knob below any gain (a difference of probabilities is >= -1): every request to the frontier
ALL_TO_FRONTIER = -2.0


@dataclass(frozen=True)
class Policy:
    """A policy kind and its knob value (logged, and saved in the model's manifest)."""

    kind: str = "threshold"
    value: float = 0.7
    frontier: int | None = None  # share: the candidate the share goes to (fixed at fit time)

    def __post_init__(self) -> None:
        if self.kind not in POLICY_KINDS:
            raise ConfigError(f"The 'kind' parameter of Policy must be one of {POLICY_KINDS}. Got {self.kind!r} instead.")
        check_number(self.value, "value", "Policy", 0.0 if self.kind == "lambda" else None)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def rule(self, candidates: Sequence[str]) -> str:
        """The policy as a rule in words, naming ``candidates`` (explanations, the training summary)."""
        if self.kind == "threshold":
            return f"the cheapest candidate that fits the SLA with P(correct) >= {self.value:.4g}; if none, the likeliest"
        if self.kind == "lambda":
            return f"the candidate that fits the SLA with the highest P(correct) - {self.value:.4g} x expected cost (USD)"
        frontier = candidates[self.frontier] if self.frontier is not None else "the likeliest candidate"
        if self.value <= ALL_TO_FRONTIER:
            return f"every request to {frontier} when it fits the SLA; otherwise the likeliest candidate that does"
        return (
            f"{frontier} when its P(correct) beats the best other candidate that fits the SLA by more than "
            f"{self.value:.4g}; otherwise that other candidate"
        )

    @cached_property
    def label(self) -> str:
        """``"<kind> policy (knob <value>)"``: how decisions name it (formatted once per policy)."""
        return f"{self.kind} policy (knob {self.value:.6g})"


def always(candidate: int) -> Policy:
    """The policy sending every request to ``candidate`` (when it fits the request's SLA; else the
    likeliest candidate that does): ``share`` at 100%."""
    return Policy("share", ALL_TO_FRONTIER, int(candidate))


def choose_row(policy: Policy, proba: list[float], cost: list[float], feasible: list[bool] | None = None) -> int:
    """:func:`choose` for one request, on plain lists (the serving path decides one request in a
    few microseconds this way); the same choice, ties included (a test checks them against each other)."""
    m = len(proba)
    ok = feasible if feasible is not None and any(feasible) else [True] * m
    if policy.kind == "threshold":
        clears = [k for k in range(m) if ok[k] and proba[k] >= policy.value]
        if clears:
            return min(clears, key=cost.__getitem__)
        return max((k for k in range(m) if ok[k]), key=proba.__getitem__)
    if policy.kind == "lambda":
        value = policy.value
        return max((k for k in range(m) if ok[k]), key=lambda k: proba[k] - value * cost[k])
    frontier = policy.frontier if policy.frontier is not None else max(range(m), key=proba.__getitem__)
    others = [proba[k] if ok[k] and k != frontier else -math.inf for k in range(m)]
    best_other = max(range(m), key=others.__getitem__)
    if not ok[frontier]:
        return best_other
    if not any(math.isfinite(o) for o in others):
        return frontier
    return frontier if proba[frontier] - proba[best_other] > policy.value else best_other


def choose(policy: Policy, proba: np.ndarray, cost: np.ndarray, feasible: np.ndarray | None = None) -> np.ndarray:
    """Index of the chosen candidate per request.

    ``proba`` (n, m) P(correct); ``cost`` (n, m) expected cost; ``feasible`` (n, m) True where the
    candidate fits the request's SLA (all True when None). A request with no feasible candidate
    considers them all.
    """
    proba = np.asarray(proba, dtype=np.float64)
    cost = np.asarray(cost, dtype=np.float64)
    n, m = proba.shape
    ok = np.ones((n, m), dtype=bool) if feasible is None else np.asarray(feasible, dtype=bool)
    ok = np.where(ok.any(axis=1, keepdims=True), ok, True)
    if policy.kind == "threshold":
        clears = ok & (proba >= policy.value)
        cheapest = np.where(clears, cost, np.inf).argmin(axis=1)
        likeliest = np.where(ok, proba, -np.inf).argmax(axis=1)
        return cast(np.ndarray, np.where(clears.any(axis=1), cheapest, likeliest))
    if policy.kind == "lambda":
        utility = np.where(ok, proba - policy.value * cost, -np.inf)
        return cast(np.ndarray, utility.argmax(axis=1))
    # share: frontier = the candidate with the highest mean P; send it the requests where its gain
    # over the best cheaper feasible candidate exceeds the knob (a gain threshold).
    frontier = policy.frontier if policy.frontier is not None else int(np.argmax(proba.mean(axis=0)))
    others = np.where(ok, proba, -np.inf)
    others[:, frontier] = -np.inf
    best_other = others.argmax(axis=1)
    gain = proba[:, frontier] - proba[np.arange(n), best_other]
    frontier_ok = ok[:, frontier]
    any_other = np.isfinite(others).any(axis=1)
    return np.where(~frontier_ok, best_other, np.where(~any_other | (gain > policy.value), frontier, best_other))


def share_threshold(proba: np.ndarray, share: float) -> float:
    """The ``share`` policy's knob that sends ``share`` of these requests to the frontier."""
    check_number(share, "share", "share_threshold", 0.0, 1.0)
    frontier = int(np.argmax(proba.mean(axis=0)))
    others = np.delete(proba, frontier, axis=1)
    gain = proba[:, frontier] - others.max(axis=1)
    if share <= 0:
        return float(gain.max() + 1e-9)
    return float(np.quantile(gain, 1.0 - share) - 1e-12)


def sweep(
    kind: str, proba: np.ndarray, cost: np.ndarray, feasible: np.ndarray | None = None, n_points: int = 61
) -> list[tuple[float, np.ndarray]]:
    """(knob value, choices) over the knob's useful range, cheapest end first."""
    if kind == "threshold":
        # ascending: -0.01 lets every candidate clear (the cheapest wins), 1.01 none (the likeliest)
        values = np.unique(np.concatenate([[1.01], np.quantile(proba, np.linspace(1, 0, n_points)), [-0.01]]))
    elif kind == "lambda":
        spread = np.nanmax(cost) - np.nanmin(cost)
        scale = 1.0 / spread if spread > 0 else 1.0
        values = np.concatenate([[np.inf], scale * np.geomspace(1e3, 1e-4, n_points), [0.0]])
    elif kind == "share":
        values = np.array([share_threshold(proba, s) for s in np.linspace(0, 1, n_points)])
    else:
        raise ConfigError(f"Unknown policy kind {kind!r}; expected one of {POLICY_KINDS}.")
    frontier = int(np.argmax(np.nanmean(proba, axis=0))) if kind == "share" else None
    out = []
    for v in values:
        value = float(v) if np.isfinite(v) else 1e30
        out.append((value, choose(Policy(kind, value, frontier), proba, cost, feasible)))
    return out


def pick_knob(
    kind: str,
    proba: np.ndarray,
    cost: np.ndarray,
    outcome: np.ndarray,
    realized_cost: np.ndarray,
    target_accuracy: float,
    feasible: np.ndarray | None = None,
    weight: np.ndarray | None = None,
) -> Policy:
    """The cheapest knob value whose accuracy on these (out-of-fold) predictions reaches
    ``target_accuracy``; when none does, the most accurate one.

    ``outcome`` (n, m) realised correctness and ``realized_cost`` (n, m) realised cost of every
    candidate (NaN where unknown: such choices count as wrong and cost nothing); doubly-robust
    pseudo-outcomes work the same way. ``weight`` (n,): per-request weights of the means."""
    if len(proba) == 0:
        raise ConfigError("pick_knob got no requests to choose on; pass at least one.")
    rows = np.arange(len(proba))
    w = None if weight is None else np.asarray(weight, dtype=np.float64)
    best: tuple[float, float, float] | None = None  # (cost, -accuracy, value)
    fallback: tuple[float, float, float] | None = None
    for value, picks in sweep(kind, proba, cost, feasible):
        acc = float(np.average(np.nan_to_num(outcome[rows, picks], nan=0.0), weights=w))
        spent = float(np.average(np.nan_to_num(realized_cost[rows, picks], nan=0.0), weights=w))
        if acc >= target_accuracy and (best is None or (spent, -acc) < (best[0], best[1])):
            best = (spent, -acc, value)
        if fallback is None or (-acc, spent) < (fallback[1], fallback[0]):
            fallback = (spent, -acc, value)
    chosen = best if best is not None else fallback
    frontier = int(np.argmax(np.nanmean(proba, axis=0))) if kind == "share" else None
    return Policy(kind, chosen[2], frontier)  # type: ignore[index]

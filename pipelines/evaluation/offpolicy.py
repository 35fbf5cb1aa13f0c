"""Off-policy estimates of a routing policy's value from logs that hold the outcome of the chosen
model only (production logs), using the propensities the serving policy logged.

    est = doubly_robust(rewards, logged, propensities, target, q_hat)
    est.value, est.ci_low, est.ci_high, est.estimator          # "dr"

- ``ips``: inverse propensity scoring, mean of 1[target = logged] * reward / propensity. Unbiased
  when every propensity is right and positive wherever the target acts; high variance.
- ``snips``: self-normalised IPS (divides by the mean weight instead of n): slightly biased, much
  steadier when weights are large.
- ``dr``: doubly robust, mean of q_hat(x, target) + 1[target = logged] * (reward - q_hat(x, logged))
  / propensity: unbiased if either the propensities or the outcome model q_hat is right, and
  lower variance than IPS when q_hat is good (the learned router's P(correct) is a natural q_hat).

A reward is whatever is being estimated per request: correctness (1/0) for accuracy, cost for cost
per query. Every figure says which estimator made it. The 95% interval is the normal approximation
over the per-request terms (for SNIPS, by the delta method).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierroute.errors import DataValidationError

__all__ = ["Estimate", "ips", "snips", "doubly_robust", "policy_estimates", "ESTIMATORS"]

ESTIMATORS = ("ips", "snips", "dr")
_Z = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    """A policy value estimate: ``estimator`` (ips, snips, dr), ``value`` and its 95% interval,
    ``n`` logged requests, ``matched`` how many of them the target policy agrees with."""

    estimator: str
    value: float
    ci_low: float
    ci_high: float
    n: int
    matched: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _inputs(rewards: Any, logged: Any, propensities: Any, target: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    r = np.asarray(rewards, dtype=np.float64)
    a = np.asarray(logged)
    p = np.asarray(propensities, dtype=np.float64)
    t = np.asarray(target)
    if not (r.ndim == a.ndim == p.ndim == t.ndim == 1) or not (len(r) == len(a) == len(p) == len(t)) or len(r) == 0:
        shapes = ", ".join(f"{k} {np.shape(v)}" for k, v in (("rewards", r), ("logged", a), ("propensities", p), ("target", t)))
        raise DataValidationError(
            f"Off-policy estimates need four equal-length non-empty 1-D arrays; got {shapes}. Pass one entry per logged request."
        )
    bad = ~np.isfinite(p) | (p <= 0) | (p > 1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"Propensities must be in (0, 1]; logged request {i} has {float(p[i])!r} ({int(bad.sum())} such). "
            "Log the serving policy's probability of the chosen model (Decision.propensity)."
        )
    if not np.isfinite(r).all():
        i = int(np.flatnonzero(~np.isfinite(r))[0])
        raise DataValidationError(f"Rewards must be finite; logged request {i} has {float(r[i])!r}. Quarantine that row first.")
    return r, a, p, t


def _estimate(name: str, terms: np.ndarray, matched: int) -> Estimate:
    value = float(terms.mean())
    half = _Z * float(terms.std(ddof=1)) / np.sqrt(len(terms)) if len(terms) > 1 else float("inf")
    return Estimate(name, value, value - half, value + half, len(terms), matched)


def ips(rewards: Any, logged: Any, propensities: Any, target: Any) -> Estimate:
    """Inverse propensity scoring of the ``target`` actions' mean reward."""
    r, a, p, t = _inputs(rewards, logged, propensities, target)
    match = a == t
    return _estimate("ips", np.where(match, r / p, 0.0), int(match.sum()))


def snips(rewards: Any, logged: Any, propensities: Any, target: Any) -> Estimate:
    """Self-normalised IPS; its interval comes from the delta method."""
    r, a, p, t = _inputs(rewards, logged, propensities, target)
    match = a == t
    w = np.where(match, 1.0 / p, 0.0)
    if w.sum() == 0:
        raise DataValidationError(
            "The target policy never agrees with the logged choices, so SNIPS has nothing to "
            "weigh. Log with exploration (epsilon > 0) or use dr."
        )
    value = float((w * r).sum() / w.sum())
    terms = w * (r - value) / w.mean()  # influence terms: their mean is 0, their spread the estimate's
    half = _Z * float(terms.std(ddof=1)) / np.sqrt(len(r)) if len(r) > 1 else float("inf")
    return Estimate("snips", value, value - half, value + half, len(r), int(match.sum()))


def doubly_robust(rewards: Any, logged: Any, propensities: Any, target: Any, q_hat: Any) -> Estimate:
    """Doubly robust estimate; ``q_hat`` (n, m) is the outcome model's expected reward of every
    action, and actions (``logged``, ``target``) are column indices into it."""
    r, a, p, t = _inputs(rewards, logged, propensities, target)
    q = np.asarray(q_hat, dtype=np.float64)
    if q.ndim != 2 or len(q) != len(r) or not np.isfinite(q).all():
        raise DataValidationError(
            f"q_hat must be a finite (n, m) array with n = {len(r)} logged requests; got shape "
            f"{q.shape}. Pass the outcome model's estimate for every action."
        )
    m = q.shape[1]
    for name, actions in (("logged", a), ("target", t)):
        if actions.dtype.kind not in "iu" or actions.min() < 0 or actions.max() >= m:
            raise DataValidationError(
                f"With q_hat, '{name}' actions must be column indices in [0, {m}); got values "
                f"from {actions.min().item()!r} to {actions.max().item()!r}. Map model names to their columns first."
            )
    rows = np.arange(len(r))
    match = a == t
    terms = q[rows, t] + np.where(match, (r - q[rows, a]) / p, 0.0)
    return _estimate("dr", terms, int(match.sum()))


def policy_estimates(
    correct: np.ndarray,
    cost: np.ndarray,
    logged: np.ndarray,
    propensities: np.ndarray,
    picks: dict[str, np.ndarray],
    q_correct: np.ndarray,
    q_cost: np.ndarray,
) -> dict[str, Any]:
    """Every estimator's figure for several deterministic policies on the same logged requests.

    ``correct``/``cost`` (n,) the logged choice's observed outcome; ``logged`` (n,) its column;
    ``picks`` policy name -> (n,) columns it would choose; ``q_correct``/``q_cost`` (n, m) the
    outcome model for DR. Returns ``{name: {"accuracy": {"ips": ..., "snips": ..., "dr": ...},
    "cost_per_query": {...}}}`` with each entry an :class:`Estimate` as a dict (SNIPS is left out,
    with the reason, when a policy never agrees with a logged choice)."""
    out: dict[str, Any] = {}
    for name, target in picks.items():
        figures: dict[str, Any] = {}
        for metric, reward, q in (("accuracy", correct, q_correct), ("cost_per_query", cost, q_cost)):
            entry: dict[str, Any] = {"ips": ips(reward, logged, propensities, target).to_dict()}
            try:
                entry["snips"] = snips(reward, logged, propensities, target).to_dict()
            except DataValidationError as exc:
                entry["snips"] = {"estimator": "snips", "value": None, "reason": str(exc)}
            entry["dr"] = doubly_robust(reward, logged, propensities, target, q).to_dict()
            figures[metric] = entry
        out[name] = figures
    return out

"""The evaluation harness: the learned router against the article's tree, every single candidate,
random and the oracle, on the same requests, with the learned router's whole cost-quality curve.

Quality is accuracy (share of requests answered correctly); cost is the realised mean USD per
request; cost per correct answer = total cost / correct answers. AIQ integrates the learned
curve's non-decreasing convex hull over the single candidates' cost range (linear cost), divided
by that range. Comparisons at equal quality read the curve's cost where it reaches a baseline's
accuracy.
"""

from __future__ import annotations

from collections.abc import Container
from typing import Any

import numpy as np

from tierroute.errors import DataValidationError
from tierroute.models.catalogue import Catalogue
from tierroute.models.heuristic import HeuristicTree, tree_picks
from tierroute.models.policy import choose, sweep
from tierroute.pipelines.data.dataset import RoutingData
from tierroute.pipelines.evaluation.metrics import aiq, apgr, bootstrap_diff, cost_at_quality, cpt, ece
from tierroute.pipelines.evaluation.offpolicy import policy_estimates
from tierroute.pipelines.evaluation.report import write_report
from tierroute.pipelines.evaluation.stability import StabilityConfig, decision_stability

__all__ = ["evaluate", "point", "write_report", "heuristic_picks"]


def point(name: str, data: RoutingData, picks: np.ndarray, catalogue: Catalogue) -> dict[str, Any]:
    """Accuracy, cost per query, cost per correct and tier shares of one choice per request."""
    rows = np.arange(data.n_requests)
    correct = data.correct[rows, picks]
    cost = data.cost[rows, picks]
    tiers = [catalogue.tier_of(data.candidates[j]) for j in picks]
    frontier = catalogue.tiers[-1]
    return {
        "name": name,
        "accuracy": float(correct.mean()),
        "cost_per_query": float(cost.mean()),
        "cost_per_correct": float(cost.sum() / correct.sum()) if correct.sum() else None,
        "frontier_share": float(np.mean([t == frontier for t in tiers])),
        "tier_share": {t: float(np.mean([x == t for x in tiers])) for t in catalogue.tiers},
    }


def _oracle(data: RoutingData) -> np.ndarray:
    ok = data.correct == 1
    cheapest = np.nanargmin(np.nanmean(data.cost, axis=0))
    best = np.where(ok, data.cost, np.inf).argmin(axis=1)
    return np.where(ok.any(axis=1), best, cheapest)


def _per_task(data: RoutingData, picks: dict[str, np.ndarray]) -> dict[str, dict[str, Any]]:
    """Per task: request count and, per router, accuracy and cost per query."""
    rows = np.arange(data.n_requests)
    out: dict[str, dict[str, Any]] = {}
    for task in np.unique(data.tasks):
        sel = data.tasks == task
        out[str(task)] = {"requests": int(sel.sum())} | {
            name: {
                "accuracy": float(data.correct[rows[sel], chosen[sel]].mean()),
                "cost_per_query": float(data.cost[rows[sel], chosen[sel]].mean()),
            }
            for name, chosen in picks.items()
        }
    return out


def _overlap(router: Any, data: RoutingData) -> int:
    """How many evaluated requests the router saw in training (their figures are not held out)."""
    from tierroute.pipelines.data.records import prompt_hash

    seen: Container[str] = getattr(router, "train_prompt_hashes_", frozenset())
    return sum(prompt_hash(r.prompt) in seen for r in data.requests)


def _outcome_weights(data: RoutingData, logged: np.ndarray) -> np.ndarray:
    """(n, m) 1 for benchmarked outcomes, 1 / propensity for a logged request's outcome: the logged
    outcomes then stand for all traffic, not only what the logging policy chose."""
    w = np.ones(data.correct.shape)
    if logged.any():
        w[logged] = (1.0 / data.propensity[logged])[:, None]  # type: ignore[index]
    return w


def _calibration_bins(proba: np.ndarray, labels: np.ndarray, n_bins: int = 10) -> list[dict[str, float]]:
    bins = np.minimum((proba * n_bins).astype(int), n_bins - 1)
    return [
        {
            "bin": b / n_bins,
            "mean_p": float(proba[bins == b].mean()),
            "observed": float(labels[bins == b].mean()),
            "count": int((bins == b).sum()),
        }
        for b in range(n_bins)
        if (bins == b).any()
    ]


def _sla_violations(data: RoutingData, picks: dict[str, np.ndarray]) -> dict[str, float] | None:
    """Per router: the share of requests with an SLA and a measured latency whose chosen
    candidate answered slower than the SLA (None when the data has no latency)."""
    if data.latency is None:
        return None
    sla = np.array([np.nan if r.latency_sla_ms is None else r.latency_sla_ms for r in data.requests])
    rows = np.arange(data.n_requests)
    out = {}
    for name, chosen in picks.items():
        latency = data.latency[rows, chosen]
        known = ~np.isnan(sla) & ~np.isnan(latency)
        if known.any():
            out[name] = float(np.mean(latency[known] > sla[known]))
    return out or None


def _cheapest_reaching(curve: list[dict[str, Any]], accuracy: float) -> dict[str, Any] | None:
    """The cheapest swept point of the learned curve (a real knob setting, not a hull mixture)
    whose accuracy reaches ``accuracy``; None when none does."""
    reaching = [c for c in curve if c["accuracy"] >= accuracy - 1e-12]
    if not reaching:
        return None
    best = min(reaching, key=lambda c: c["cost_per_query"])
    cpc = best["cost_per_query"] / best["accuracy"] if best["accuracy"] else None
    return {**best, "cost_per_correct": cpc}


def heuristic_picks(data: RoutingData, catalogue: Catalogue, tree: HeuristicTree | None = None) -> np.ndarray:
    """The article's tree's choice per request, as candidate indices (its tier mapped onto the
    candidates present: the tier's model, else the nearest tier above)."""
    return tree_picks(data.requests, catalogue, data.candidates, tree)


def objective_points(
    router: Any, data: RoutingData, proba: np.ndarray, expected_cost: np.ndarray, feasible: np.ndarray | None, catalogue: Catalogue
) -> list[dict[str, Any]]:
    """Each report objective's point: where it lands on the out-of-fold knob curve (chosen on
    training data) and what that knob does on ``data``. Empty for routers trained before objectives."""
    curve = getattr(router, "knob_curve_", None)
    if curve is None:
        return []
    rows = []
    for name in curve.report_objectives():
        at = curve.pick(name)
        policy = curve.policy(at, router.policy_)
        picks = choose(policy, proba, expected_cost, feasible)
        test = point(name, data, picks, catalogue)
        rows.append(
            {
                "objective": name,
                "chosen": name == router.config.objective,
                "knob": at.knob,
                "policy": policy.to_dict(),
                "reached_out_of_fold": at.reached,
                "note": at.note,
                "oof_accuracy": at.accuracy,
                "oof_cost_per_query": at.cost_per_query,
                "accuracy": test["accuracy"],
                "cost_per_query": test["cost_per_query"],
                "cost_per_correct": test["cost_per_correct"],
            }
        )
    return rows


def evaluate(
    router: Any,
    data: RoutingData,
    catalogue: Catalogue,
    seed: int = 0,
    tree: HeuristicTree | None = None,
    stability: StabilityConfig | None = None,
) -> dict[str, Any]:
    """Judge a fitted LearnedRouter on ``data``. Benchmarked requests (every candidate's outcome)
    are judged as observed; logged ones (the chosen model's outcome and its propensity) by
    doubly-robust pseudo-outcomes with this router as the outcome model, so every figure is then a
    DR estimate (``estimator``), and ``off_policy`` gives IPS, SNIPS and DR on the logged requests
    alone. Other partial requests are left out, and counted. ``stability``: how decision stability
    under prompt perturbations is sampled (``stability.py``; default 300 requests, seeded by
    ``seed``; ``max_requests=0`` leaves it out). Returns a JSON-able dict."""
    full = data
    keep = np.flatnonzero(full.mask.all(axis=1) | full.logged_only)
    if not len(keep):
        lacking = [m for j, m in enumerate(full.candidates) if not full.mask[:, j].any()]
        raise DataValidationError(
            f"No request in the evaluation data has an outcome for every candidate, nor a logged choice with its "
            f"propensity ({len(full.request_ids)} requests; no outcomes at all for {lacking or 'none'}). Evaluate on "
            f"outcomes of all of {list(full.candidates)}, or on production logs with 'chosen' and 'propensity'."
        )
    observed = full.subset(keep)
    proba, expected_cost = router.predict_proba(observed.requests)
    logged = observed.logged_only
    data = observed.with_estimates(proba, expected_cost)
    rows = np.arange(data.n_requests)
    chosen = router.decide(data.requests)
    singles = [point(m, data, np.full(data.n_requests, j), catalogue) for j, m in enumerate(data.candidates)]
    costs = [s["cost_per_query"] for s in singles]
    best_single = max(singles, key=lambda s: (s["accuracy"], -s["cost_per_query"]))
    cheapest = min(singles, key=lambda s: s["cost_per_query"])
    tree_picks = heuristic_picks(data, catalogue, tree)
    heuristic = point("heuristic", data, tree_picks, catalogue)
    benchmarked = data.subset(~logged)
    oracle = (
        point("oracle", benchmarked, _oracle(benchmarked), catalogue)
        if benchmarked.n_requests
        else {"name": "oracle", "accuracy": None, "cost_per_query": None, "cost_per_correct": None}
    )
    if logged.any():
        oracle["note"] = f"benchmarked requests only ({benchmarked.n_requests}): a logged request's oracle is unknown"
    random: dict[str, Any] = {
        "name": "random",
        "accuracy": float(np.mean([s["accuracy"] for s in singles])),
        "cost_per_query": float(np.mean(costs)),
    }
    random["cost_per_correct"] = random["cost_per_query"] / random["accuracy"] if random["accuracy"] else None
    learned = point("learned", data, chosen, catalogue)
    learned["policy"] = router.policy_.to_dict()

    curve = []
    feasible = router.feasible(data.requests)
    frontier = np.array([catalogue.tier_of(m) == catalogue.tiers[-1] for m in data.candidates])
    for value, picks in sweep(router.config.policy, proba, expected_cost, feasible):  # the kind the knob curve sweeps
        curve.append(
            {
                "knob": value,
                "accuracy": float(data.correct[rows, picks].mean()),
                "cost_per_query": float(data.cost[rows, picks].mean()),
                "strong_share": float(np.mean(picks == data.candidates.index(best_single["name"]))),
                "frontier_share": float(frontier[picks].mean()),
            }
        )
    pts = [(c["cost_per_query"], c["accuracy"]) for c in curve]
    at_heuristic = cost_at_quality(pts, heuristic["accuracy"])
    at_best = cost_at_quality(pts, best_single["accuracy"])
    mask = observed.mask
    acc_diff = bootstrap_diff(data.correct[rows, chosen], data.correct[rows, tree_picks], seed=seed)
    cost_diff = bootstrap_diff(data.cost[rows, chosen], data.cost[rows, tree_picks], seed=seed)
    report: dict[str, Any] = {
        "requests": data.n_requests,
        "requests_left_out": full.n_requests - data.n_requests,
        "logged_requests": int(logged.sum()),
        "estimator": "observed" if not logged.any() else ("dr" if logged.all() else "observed + dr"),
        "candidates": list(data.candidates),
        "aiq": aiq(pts, min(costs), max(costs)),
        "aiq_normalisation": "mean hull quality over [cheapest, dearest single candidate cost], linear cost",
        "accuracy": learned["accuracy"],
        "cost_per_query": learned["cost_per_query"],
        "cost_per_correct": learned["cost_per_correct"],
        "learned": learned,
        "ece": ece(proba[mask], observed.correct[mask], weight=_outcome_weights(observed, logged)[mask]),
        "calibration": _calibration_bins(proba[mask], observed.correct[mask]),
        # read off the TEST curve's hull (a test-chosen point, possibly a mix of two settings): for
        # comparison at equal quality, not an operating point the router would pick by itself
        "at_heuristic_accuracy": {
            "cost_per_query": at_heuristic,
            "source": "test-curve hull",
            "cost_ratio": None if at_heuristic is None else at_heuristic / heuristic["cost_per_query"],
            "curve_point": _cheapest_reaching(curve, heuristic["accuracy"]),
        },
        "at_best_single_accuracy": {
            "model": best_single["name"],
            "cost_per_query": at_best,
            "source": "test-curve hull",
            "cost_ratio": None if at_best is None else at_best / best_single["cost_per_query"],
            "curve_point": _cheapest_reaching(curve, best_single["accuracy"]),
        },
        "overlap_with_training": _overlap(router, data),
        "learned_minus_heuristic": {
            "accuracy": dict(zip(("mean", "ci_low", "ci_high"), acc_diff)),
            "cost_per_query": dict(zip(("mean", "ci_low", "ci_high"), cost_diff)),
        },
        "baselines": {
            "heuristic": heuristic,
            "oracle": oracle,
            "random": random,
            "cheapest": cheapest,
            "best_single": best_single,
            "singles": singles,
        },
        "curve": curve,
        "sla_violation_rate": _sla_violations(
            data, {"learned": chosen, "heuristic": tree_picks, **{m: np.full(data.n_requests, j) for j, m in enumerate(data.candidates)}}
        ),
        "per_task": _per_task(
            data,
            {
                "learned": chosen,
                "heuristic": tree_picks,
                "best_single": np.full(data.n_requests, data.candidates.index(best_single["name"])),
            },
        ),
    }
    if logged.any():
        at = np.flatnonzero(logged)
        assert observed.logged is not None and observed.propensity is not None  # there are logged requests
        a, p = observed.logged[at], observed.propensity[at]
        logged_picks = {
            "learned": chosen[at],
            "heuristic": tree_picks[at],
            **{m: np.full(len(at), j) for j, m in enumerate(data.candidates)},
        }
        report["off_policy"] = {
            "requests": len(at),
            **policy_estimates(observed.correct[at, a], observed.cost[at, a], a, p, logged_picks, proba[at], expected_cost[at]),
        }
    report["objectives"] = objective_points(router, data, proba, expected_cost, feasible, catalogue)
    report["stability"] = decision_stability(router, data, catalogue, stability or StabilityConfig(seed=seed), tree)
    if len(data.candidates) == 2:
        strong = data.candidates.index(best_single["name"])
        weak_acc, strong_acc = singles[1 - strong]["accuracy"], singles[strong]["accuracy"]
        share = np.array([c["strong_share"] for c in curve])
        quality = np.array([c["accuracy"] for c in curve])
        report["apgr"] = apgr(share, quality, weak_acc, strong_acc)
        report["cpt50"] = cpt(share, quality, weak_acc, strong_acc, 0.5)
        report["cpt80"] = cpt(share, quality, weak_acc, strong_acc, 0.8)
    return report

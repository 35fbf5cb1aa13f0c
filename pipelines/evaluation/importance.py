"""Global feature importances of a trained router, per candidate: the mean |contribution| of each
feature group to the model's margin (embedding dimensions as one ``prompt content`` group), for
the evaluation report; and how the served explanations (Saabas path attribution from the bundle's
tree table, :mod:`tierroute.models.contributions`) agree with LightGBM's exact TreeSHAP.

LightGBM kinds use ``pred_contrib=True`` (exact TreeSHAP, training side); the low-rank family its
exact linear shares; kNN has no per-feature contributions (its score is the outcome share of
similar training prompts) and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from tierroute.models.contributions import CandidateExplainer, TreeExplainer, feature_groups, tree_table
from tierroute.request import Request

__all__ = ["group_importances", "importance_markdown", "saabas_agreement", "MAX_REQUESTS"]

#: requests the importances are averaged over (a seeded sample of the evaluation data beyond it)
MAX_REQUESTS = 500
_TOP_GROUPS = 8


def _sample(requests: Sequence[Request], seed: int) -> list[Request]:
    if len(requests) <= MAX_REQUESTS:
        return list(requests)
    keep = np.sort(np.random.default_rng(seed).choice(len(requests), MAX_REQUESTS, replace=False))
    return [requests[i] for i in keep]


def _pooled_rows(X: np.ndarray, cand: np.ndarray, j: int) -> np.ndarray:
    return np.hstack([X, np.full((len(X), 1), float(j)), np.repeat(cand[j][None, :], len(X), axis=0)]).astype(np.float32)


def group_importances(router: Any, requests: Sequence[Request], seed: int = 0) -> dict[str, Any]:
    """``{"method", "requests", "groups", "candidates": {model: {group: mean |contribution|}}}``
    (margin units), or ``{"method": None, "note": ...}`` for a family without them."""
    model = router.model_
    kind = getattr(getattr(model, "params", None), "kind", None)
    sample = _sample(requests, seed)
    X = router.features(sample)
    names = router.feature_spec_.names
    cand = np.asarray(getattr(model, "candidate_features_", np.zeros((len(router.candidates_), 0))), dtype=np.float32)
    if kind in ("pooled", "per_candidate"):
        extra = 1 + cand.shape[1] if kind == "pooled" else 0
        groups, index = feature_groups(names, extra)
        method = "TreeSHAP (LightGBM pred_contrib)"
        per = []
        for j in range(len(router.candidates_)):
            rows, booster = (_pooled_rows(X, cand, j), model.models_[0]) if kind == "pooled" else (X, model.models_[j])
            exact = booster.predict(rows, pred_contrib=True)[:, :-1]
            grouped = np.zeros((len(rows), len(groups)))
            np.add.at(grouped, (slice(None), index), exact)  # type: ignore[arg-type]
            per.append(np.abs(grouped).mean(axis=0))
    elif kind == "lowrank":
        groups, index = feature_groups(names)
        method = "exact linear shares (low-rank)"
        scorer = model.models_  # the fitted LowRankScorer
        z = scorer.inputs(X)
        weights = np.asarray(scorer.V) @ np.asarray(scorer.W)
        per = []
        for j in range(len(router.candidates_)):
            grouped = np.zeros((len(X), len(groups)))
            np.add.at(grouped, (slice(None), index), z * weights[j])  # type: ignore[arg-type]
            per.append(np.abs(grouped).mean(axis=0))
    else:
        return {"method": None, "note": f"per-feature contributions are not available for the {kind or 'this'} family"}
    return {
        "method": method,
        "units": "mean |contribution| to the margin (log-odds of the uncalibrated P(correct))",
        "requests": len(sample),
        "groups": list(groups),
        "candidates": {c: [float(v) for v in imp] for c, imp in zip(router.candidates_, per)},
    }


def importance_markdown(importances: dict[str, Any]) -> list[str]:
    """A compact table: the top feature groups (by mean over candidates) x candidates."""
    if not importances.get("method"):
        return [f"Feature importances: {importances.get('note', 'not available')}."]
    groups, per = importances["groups"], importances["candidates"]
    table = np.array([per[c] for c in per])  # (m, groups)
    order = np.argsort(-table.mean(axis=0), kind="stable")[:_TOP_GROUPS]
    lines = [
        f"Global feature importances per candidate: {importances['units']}, {importances['method']}, "
        f"{importances['requests']} requests; top {len(order)} of {len(groups)} groups:",
        "",
        "| feature group | " + " | ".join(per) + " |",
        "|---|" + "---|" * len(per),
    ]
    for g in order:
        lines.append(f"| {groups[g]} | " + " | ".join(f"{table[j, g]:.4f}" for j in range(len(per))) + " |")
    return lines


def saabas_agreement(router: Any, requests: Sequence[Request]) -> dict[str, float]:
    """How the served Saabas contributions of a pooled LightGBM router agree with exact TreeSHAP
    by feature group: the largest |sum + bias - raw score|, |bias - TreeSHAP's expected value|,
    the Pearson correlation of all (row, group) values, the share of rows whose largest group is
    the same, and the mean |difference|."""
    model = router.model_
    if getattr(getattr(model, "params", None), "kind", None) != "pooled":
        raise ValueError("saabas_agreement takes a pooled LightGBM router")
    X = router.features(list(requests))
    cand = np.asarray(model.candidate_features_, dtype=np.float32)
    m, d = len(cand), X.shape[1]
    groups, index = feature_groups(router.feature_spec_.names, 1 + cand.shape[1])
    booster = model.models_[0]
    explainer = TreeExplainer(tree_table(booster), index, len(groups))
    fast = CandidateExplainer([(explainer, np.r_[float(j), cand[j]]) for j in range(m)], d)
    rows = np.vstack([_pooled_rows(X[i : i + 1], cand, j) for i in range(len(X)) for j in range(m)])
    exact = booster.predict(rows, pred_contrib=True)
    exact_groups = np.zeros((len(rows), len(groups)))
    np.add.at(exact_groups, (slice(None), index), exact[:, :-1])  # type: ignore[arg-type]
    saabas = np.vstack([fast.explain(x, range(m))[0] for x in X])
    raw = booster.predict(rows, raw_score=True)
    agree = np.abs(saabas).argmax(axis=1) == np.abs(exact_groups).argmax(axis=1)
    return {
        "rows": len(rows),
        "groups": len(groups),
        "max_sum_error": float(np.abs(saabas.sum(axis=1) + explainer.bias - raw).max()),
        "max_bias_error": float(np.abs(exact[:, -1] - explainer.bias).max()),
        "pearson": float(np.corrcoef(saabas.ravel(), exact_groups.ravel())[0, 1]),
        "top_group_agreement": float(agree.mean()),
        "mean_abs_difference": float(np.abs(saabas - exact_groups).mean()),
    }

"""Why a decision went where it did: ``Router.route(..., explain=True)``, ``POST /v1/route?explain=1``
and ``tierroute route --explain`` attach an ``explanation`` to the Decision:

- ``candidates``: the chosen model and the runner-up (what the policy picks when the chosen one
  is taken away), each with its calibrated P(correct), the model's raw score, and the top
  contributions to that score: additive per-feature-group shares of the **margin** (the log-odds
  of the uncalibrated P(correct)) that sum with ``bias`` to the margin; ``raw = sigmoid(margin)``
  and the candidate's calibration map (isotonic or sigmoid) turns ``raw`` into ``p_correct``. The
  embedding's dimensions read as one group, ``prompt content``; a pooled model's candidate
  columns as ``candidate``. Then its expected cost, whether it fits the SLA, and its term in the
  policy (clears the threshold, utility, or gain).
- ``policy``: the policy kind, its knob and the objective that set it, as a rule in words.
- ``tree``: the heuristic tree's path for the same request (each test, the value it read, whether
  it held) and the model the tree would have sent it to.

LightGBM bundles: Saabas path attributions from the bundle's ``trees.npy`` (numpy only; see
:mod:`tierroute.models.contributions` for the method and how it relates to TreeSHAP). Bundles
exported before ``trees.npy`` existed say so and carry the policy and the tree only. Low-rank
bundles: exact linear shares (the model is linear in its standardised inputs before the
sigmoid). kNN bundles: no per-feature contributions (its score is the outcome share of similar
training prompts, not a function of separate features); the explanation says so.
A fallback (heuristic) decision carries only the tree's path.
"""

from __future__ import annotations

import functools
import math
import threading
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tierroute.models.contributions import CONTENT_GROUP, CandidateExplainer, TreeExplainer, feature_groups, split_tables
from tierroute.models.heuristic import HeuristicTree
from tierroute.models.policy import Policy

__all__ = [
    "ExplainerSlot",
    "attach_contributions",
    "explain_learned",
    "tree_path",
    "with_tree_path",
    "explain_flag",
    "explain_heuristic",
    "summary",
    "TOP_K",
    "METHODS",
]

#: contributions listed per candidate (the rest are summed into ``other_features``)
TOP_K = 5
#: how each model family's contributions are computed (``method`` in the explanation)
METHODS = {"pooled": "saabas", "per_candidate": "saabas", "lowrank": "linear", "knn": None}
_OLD_BUNDLE = (
    "explanations need a bundle exported by this release: this bundle has no trees.npy tree table (manifest "
    "model.trees), so per-feature contributions are not available. Re-export it with `tierroute export` to get them"
)
_KNN = (
    "per-feature contributions are not available for the knn family: its raw score is the similarity-weighted share "
    "of the nearest training prompts that the candidate answered correctly (shrunk toward its mean), not a sum over "
    "features"
)


class ExplainerSlot:
    """A bundle's contribution model, built on first use (thread-safe) or the reason there is none."""

    def __init__(self, bundle: Any) -> None:
        self.bundle = bundle
        self._lock = threading.Lock()
        self._built: tuple[Any, str | None] | None = None

    def get(self) -> tuple[Any, str | None]:
        """((group names, explainer) or None, why not)."""
        if self._built is None:
            with self._lock:
                if self._built is None:
                    self._built = _build(self.bundle)
        return self._built


def _build(bundle: Any) -> tuple[Any, str | None]:
    kind = bundle.kind
    if kind == "knn":
        return None, _KNN
    names = (*bundle.extractor.feature_names, *(f"emb_{i}" for i in range(0 if bundle.encoder is None else bundle.encoder.dims)))
    if kind == "lowrank":
        linear = _LinearExplainer(bundle.scorer, names)
        return (linear.groups, linear), None
    name = (bundle.manifest.get("model") or {}).get("trees")
    if not isinstance(name, str) or name not in (bundle.manifest.get("files") or {}):
        return None, _OLD_BUNDLE
    try:
        tables = split_tables(np.load(bundle.path / name, allow_pickle=False))
        extra = bundle.candidate_features.shape[1] + 1 if kind == "pooled" else 0
        groups, index = feature_groups(names, extra)
        trees = [TreeExplainer(t, index, len(groups)) for t in tables]
        m = len(bundle.candidates)
        if kind == "pooled":
            parts = [(trees[0], np.r_[float(j), bundle.candidate_features[j]]) for j in range(m)]
        else:
            parts = [(trees[j], None) for j in range(m)]
        return (groups, CandidateExplainer(parts, len(names))), None
    except (OSError, IndexError, KeyError) as exc:
        return None, f"the bundle's tree table {name!r} cannot be read ({type(exc).__name__}: {exc}); re-export the bundle"
    except ValueError as exc:  # a damaged table, or trees this explainer does not serve (over 64 leaves, ...)
        return None, f"per-feature contributions are not available for this bundle's trees ({exc})"


class _LinearExplainer:
    """Low-rank: margin_j = b_j + sum_i (V_j W)_i z_i over the standardised inputs z (exact)."""

    def __init__(self, scorer: Any, names: Sequence[str]) -> None:
        self.scorer = scorer
        self.groups, self.index = feature_groups(names)
        self.weights = np.asarray(scorer.V, dtype=np.float64) @ np.asarray(scorer.W, dtype=np.float64)  # (m, d)
        self.bias = np.asarray(scorer.b, dtype=np.float64).tolist()

    def explain(self, row: np.ndarray, candidates: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        z = self.scorer.inputs(np.asarray(row, dtype=np.float64)[None, :])[0]
        shares = self.weights[list(candidates)] * z
        grouped = np.zeros((len(candidates), len(self.groups)))
        np.add.at(grouped, (slice(None), self.index), shares)  # type: ignore[arg-type]  # numpy's stubs reject a tuple index
        return grouped, grouped.sum(axis=1) + np.asarray(self.bias)[list(candidates)]


def _runner_up(policy: Policy, proba: list[float], cost: list[float], feasible: list[bool] | None, j: int) -> int | None:
    """What the policy picks with the chosen candidate taken away (the likeliest other when it
    would pick it anyway, e.g. no other fits the SLA)."""
    from tierroute.models.policy import choose_row

    m = len(proba)
    if m < 2:
        return None
    without = list(feasible) if feasible is not None else [True] * m
    without[j] = False
    k = choose_row(policy, proba, cost, without)
    return k if k != j else max((i for i in range(m) if i != j), key=proba.__getitem__)


def _policy_term(policy: Policy, proba: list[float], cost: list[float], k: int) -> dict[str, Any]:
    if policy.kind == "threshold":
        return {"clears_threshold": proba[k] >= policy.value}
    if policy.kind == "lambda":
        return {"utility": proba[k] - policy.value * cost[k]}
    return {"is_frontier": policy.frontier == k}


def explain_learned(
    slot: ExplainerSlot,
    bundle: Any,
    row: np.ndarray,
    proba: list[float],
    cost: list[float],
    feasible: list[bool] | None,
    served: int,
    greedy: int,
    policy: Policy,
    objective: str | None,
) -> dict[str, Any]:
    """The explanation of one learned decision (the tree's path is added by :func:`with_tree_path`).
    ``row``: the request's feature row; ``served``/``greedy``: the model sent to and the policy's
    own pick (they differ on an exploration draw, and the greedy pick is then the runner-up)."""
    second = greedy if served != greedy else _runner_up(policy, proba, cost, feasible, served)
    picks = [served] if second is None else [served, second]
    explainer, why_not = slot.get()
    out: dict[str, Any] = {
        "source": "learned",
        "family": bundle.kind,
        "method": METHODS.get(bundle.kind) if explainer else None,
        "units": "margin: the log-odds of the model's uncalibrated P(correct); raw = sigmoid(margin), "
        "then the candidate's calibration gives p_correct",
    }
    shares = margins = None
    if explainer is not None:
        groups, model = explainer
        shares, margins = model.explain(row, picks)
        values = np.asarray(row, dtype=np.float64).tolist()
    else:
        out["note"] = why_not
    entries = []
    for i, k in enumerate(picks):
        entry: dict[str, Any] = {
            "model": bundle.candidates[k],
            "role": "chosen" if i == 0 else "runner_up",
            "p_correct": proba[k],
            "expected_cost_usd": cost[k],
            "fits_sla": True if feasible is None else bool(feasible[k]),
            **_policy_term(policy, proba, cost, k),
        }
        if shares is not None and margins is not None:
            bias = float(model.bias[k])
            entry |= _contributions(bundle, groups, values, shares[i], float(margins[i]), bias, k, proba[k])
        entries.append(entry)
    out["candidates"] = entries
    out["policy"] = {"kind": policy.kind, "knob": policy.value, "objective": objective, "rule": policy.rule(bundle.candidates)}
    return out


def _contributions(
    bundle: Any, groups: Sequence[str], row: list[float], shares: np.ndarray, margin: float, bias: float, k: int, p: float
) -> dict[str, Any]:
    values = shares.tolist()  # plain floats: a few dozen groups sort faster in Python than through numpy calls
    top = [g for g in sorted(range(len(values)), key=lambda g: -abs(values[g]))[:TOP_K] if values[g] != 0.0]
    raw = 1.0 / (1.0 + math.exp(-margin)) if margin > -700 else 0.0
    out = {
        "margin": margin,
        "bias": bias,
        "raw_score": raw,
        "contributions": [{"feature": groups[g], "value": _value(bundle, groups[g], row, k), "contribution": values[g]} for g in top],
        "other_features": sum(values) - sum(values[g] for g in top),
    }
    again = float(bundle.calibrations[k].apply(np.array([raw]))[0])
    if abs(again - p) > 1e-3:  # the tree table should be the served model's own trees
        out["note"] = (
            f"calibrating sigmoid(margin) gives P(correct) {again:.4f}, the served model {p:.4f}: the tree "
            "table does not match the ONNX model; re-export the bundle"
        )
    return out


@functools.lru_cache(maxsize=16)
def _columns(names: tuple[str, ...]) -> dict[str, int]:
    return {name: i for i, name in enumerate(names)}


def _value(bundle: Any, group: str, row: list[float], k: int) -> Any:
    """The feature's value in this request (None for the embedding group)."""
    if group == CONTENT_GROUP:
        return None
    if group == "candidate":
        return bundle.candidates[k]
    column = _columns(tuple(bundle.extractor.feature_names)).get(group)
    v = math.nan if column is None else row[column]
    return None if not math.isfinite(v) else (int(v) if v.is_integer() else v)


def tree_path(tree: HeuristicTree, tier_models: Mapping[str, str], signals: Mapping[str, Any]) -> dict[str, Any]:
    """The heuristic tree's path for measured signals: each test in the order the tree reads them
    (up to the first that fails, per rule), the node and tier it lands on and that tier's model."""
    p = tree.params
    tokens, structured = int(signals["token_count"]), bool(signals["is_structured"])
    depth, sensitive = int(signals["depth"]), bool(signals["latency_sensitive"])
    rules = {
        "rule1": [
            (f"token_count < {p.token_limit}", tokens, tokens < p.token_limit),
            ("is_structured (an output schema is given)", structured, structured),
            (f"depth <= {p.tier1_max_depth}", depth, depth <= p.tier1_max_depth),
        ],
        "rule2": [
            (f"depth <= {p.tier2_max_depth}", depth, depth <= p.tier2_max_depth),
            ("not latency_sensitive", sensitive, not sensitive),
        ],
    }
    path = []
    for node, tests in rules.items():
        for test, value, holds in tests:
            path.append({"node": node, "test": test, "value": value, "holds": holds})
            if not holds:
                break
        else:
            break
    verdict = tree.decide(tokens, structured, depth, sensitive)
    return {"tier": verdict.tier, "node": verdict.node, "model": tier_models.get(verdict.tier), "path": path, "reason": verdict.reason}


def with_tree_path(decision: Any, tree: HeuristicTree, tier_models: Mapping[str, str]) -> Any:
    """``decision`` with the tree's path in its explanation (a fallback's explanation is the path alone)."""
    base = (
        dict(decision.explanation or {})
        if decision.source == "learned"
        else {
            "source": "heuristic",
            "note": "the heuristic tree decided"
            + (f" (fallback: {decision.fallback})" if decision.fallback else "")
            + "; only its path explains it",
        }
    )
    try:
        base["tree"] = tree_path(tree, tier_models, decision.signals)
    except (KeyError, TypeError, ValueError) as exc:
        base["tree"] = {"error": f"the decision's signals cannot be replayed ({type(exc).__name__}: {exc})"}
    return replace(decision, explanation=base)


def attach_contributions(
    slot: ExplainerSlot,
    bundle: Any,
    decisions: Sequence[Any],
    X: np.ndarray,
    proba: Sequence[list[float]],
    cost: Sequence[list[float]],
    feasible: Sequence[list[bool] | None],
    policy: Policy,
    objective: str | None,
) -> list[Any]:
    """The learned ``decisions`` with their explanations (heuristic ones, e.g. low confidence, as
    they are: :func:`with_tree_path` explains those). Never raises: a failure is the explanation's
    ``error``, and the decision stands."""
    out = []
    for i, d in enumerate(decisions):
        if d.source == "learned":
            try:
                served, greedy = bundle.candidates.index(d.model), bundle.candidates.index(d.greedy_model or d.model)
                d = replace(
                    d, explanation=explain_learned(slot, bundle, X[i], proba[i], cost[i], feasible[i], served, greedy, policy, objective)
                )
            except Exception as exc:  # noqa: BLE001 - an explanation must never cost the decision
                d = replace(d, explanation={"source": "learned", "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
        out.append(d)
    return out


def explain_flag(value: str | None, header: str | None = None) -> bool:
    """``?explain=`` (or the ``header`` named) as a bool (absent: False); RequestError naming the
    accepted values otherwise."""
    if value is None:
        return False
    if value.lower() in ("1", "true", "yes", "on", ""):
        return True
    if value.lower() in ("0", "false", "no", "off"):
        return False
    from tierroute.errors import RequestError

    if header is not None:
        raise RequestError(
            f"The {header} header must be a flag: 1 (or true) for an explanation, 0 (or false) or no header without; got {value!r}."
        )
    raise RequestError(f"explain={value!r} is not a flag; pass explain=1 (or true) for an explanation, explain=0 or nothing without.")


def explain_heuristic(decision: Any, tree: HeuristicTree, catalogue: Any) -> Any:
    """A :class:`~tierroute.serving.decision.HeuristicPolicy` decision with the tree's path."""
    from tierroute.models.heuristic import TIERS

    return with_tree_path(decision, tree, {t: catalogue.serving_model(t) for t in TIERS})


def summary(explanation: Mapping[str, Any]) -> str:
    """One indented line per candidate and one for the tree (``tierroute route --explain`` text)."""
    lines = []
    for c in explanation.get("candidates", []):
        terms = ", ".join(f"{e['feature']} {e['contribution']:+.3f}" for e in c.get("contributions", []))
        score = f"margin {c['margin']:+.3f} = bias {c['bias']:+.3f} + {terms}, others {c['other_features']:+.3f}" if terms else ""
        head = f"  {c['role']}: {c['model']} P(correct) {c['p_correct']:.3f}, cost {c['expected_cost_usd']:.6g}"
        lines.append(f"{head}; {score}" if score else head)
    if explanation.get("note"):
        lines.append(f"  note: {explanation['note']}")
    if "policy" in explanation:
        lines.append(f"  policy: {explanation['policy']['rule']}")
    tree = explanation.get("tree") or {}
    if "path" in tree:
        steps = "; ".join(f"{s['test']} ({s['value']}): {'yes' if s['holds'] else 'no'}" for s in tree["path"])
        lines.append(f"  tree: {steps} -> {tree['node']}, {tree['tier']} ({tree['model']})")
    return "\n".join(lines)

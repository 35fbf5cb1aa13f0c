"""The serving router: a learned decision from a RouterBundle when it can answer safely, the
article's heuristic tree when it cannot. A well-formed request always gets a Decision.

    router = Router.load("bundle/")                  # or "models:/tierroute@champion"
    router.route(Request(prompt="...", output_schema={...}, latency_sla_ms=300))
    router.route({"messages": [{"role": "user", "content": "..."}]})
    router.route_batch([...])

Fallback reasons (``Decision.fallback``): ``no_bundle``, ``bundle_unreadable``, ``bundle_invalid``,
``checksum_mismatch``, ``feature_spec_mismatch``, ``unknown_schema_version``, ``onnx_error``,
``tokenizer_error``, ``embedding_error``, ``non_finite_output``, ``prompt_too_large``,
``deadline_exceeded``, ``low_confidence``, ``internal_error``, ``model_error`` (a numpy-served
family's scorer failed).

Thread-safe: a Router holds only immutable state and onnxruntime sessions (whose ``run`` is
thread-safe); reloading builds a new Router rather than mutating one.

RouterConfig and the fallback plumbing live in :mod:`tierroute.serving.router_config`, the learned
path's feature and model steps in :mod:`tierroute.serving.learned_path`.
"""

from __future__ import annotations

import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from typing import Any

from tierroute.errors import ConfigError, RequestError, describe
from tierroute.models.catalogue import Catalogue, builtin_catalogue
from tierroute.models.heuristic import HeuristicTree
from tierroute.models.objective import OBJECTIVES, check_objective
from tierroute.models.policy import Policy
from tierroute.request import Request, parse_request
from tierroute.serving.bundle import Bundle, BundleError, load_bundle
from tierroute.serving.decision import Decision, stamp_request_ids
from tierroute.serving.decision_log import DecisionLog, Explorer, RequestIds, request_id_for
from tierroute.serving.explain import ExplainerSlot, attach_contributions, with_tree_path
from tierroute.serving.learned_path import raw_scores, request_matrix
from tierroute.serving.router_config import FALLBACK_REASONS, PER_REQUEST, Fallback, RouterConfig, tree_signals, tree_tier_models
from tierroute.serving.source import resolve_source

__all__ = ["Router", "RouterConfig", "FALLBACK_REASONS"]

NON_FINITE = "the model returned a non-finite probability"


class Router:
    """Routes requests with a bundle's learned policy, falling back to the heuristic tree."""

    def __init__(
        self,
        bundle: Bundle | None = None,
        config: RouterConfig | None = None,
        catalogue: Catalogue | None = None,
        unavailable: BundleError | None = None,
        decision_log: DecisionLog | None = None,
    ) -> None:
        self.config = config if config is not None else RouterConfig()
        self.decision_log = decision_log
        self.bundle = bundle
        self.catalogue = bundle.catalogue if bundle is not None else (catalogue or builtin_catalogue("article"))
        self.tree = HeuristicTree(signals=bundle.extractor.config) if bundle is not None else HeuristicTree()
        if bundle is None and unavailable is None:
            unavailable = BundleError("no_bundle", "No bundle was given; every decision comes from the heuristic tree.")
        self.unavailable = unavailable
        self.tier_models = tree_tier_models(self.catalogue)
        self._tiers = () if bundle is None else tuple(bundle.catalogue.tier_of(c) for c in bundle.candidates)
        # the configured objective's policy, resolved once (BundleError: the bundle has no knob curve)
        self.policy = None if bundle is None else bundle.core.policy_for(self.config.objective)
        self.explainer = None if bundle is None else ExplainerSlot(bundle)  # built on the first explain=True
        self.explorer = (
            Explorer(self.config.epsilon, bundle.candidates, self._tiers, self.config.seed)
            if bundle is not None and self.config.epsilon > 0
            else None
        )
        self._request_ids = RequestIds()  # generated request ids, drawn from the OS in batches
        self.tree.extractor.counter.count("")  # load the BPE table now, not inside the first decision

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        source: str | os.PathLike[str] | None,
        config: RouterConfig | None = None,
        *,
        strict: bool = False,
        catalogue: Catalogue | None = None,
        tracking_uri: str | None = None,
        decision_log: DecisionLog | None = None,
    ) -> Router:
        """A Router serving the bundle at ``source`` (a folder, or an MLflow ``models:/`` /
        ``runs:/`` URI). A bundle that cannot be served gives a Router that answers with the tree
        (``router.unavailable`` says why); with ``strict=True`` it raises BundleError instead."""
        config = config if config is not None else RouterConfig()
        if source is None:
            if strict:
                raise BundleError("no_bundle", "No bundle was given. Pass a bundle folder or a models:/ URI.")
            return cls(None, config, catalogue, decision_log=decision_log)
        folder = None
        try:
            folder = resolve_source(source, tracking_uri)
            bundle = load_bundle(folder[0], config.intra_op_threads, config.verify_checksums)
        except BundleError as exc:
            if strict:
                raise
            return cls(None, config, catalogue, unavailable=exc, decision_log=decision_log)
        finally:
            if folder is not None and folder[1] is not None:  # an MLflow download: all of it is in memory now
                shutil.rmtree(folder[1], ignore_errors=True)
        try:
            return cls(bundle, config, decision_log=decision_log)
        except BundleError as exc:  # e.g. an objective asked of a bundle without a knob curve
            if strict:
                raise
            return cls(None, config, catalogue, unavailable=exc, decision_log=decision_log)

    @property
    def learned(self) -> bool:
        """True when learned decisions are available (a verified bundle is loaded)."""
        return self.bundle is not None

    @property
    def bundle_id(self) -> str | None:
        return None if self.bundle is None else self.bundle.bundle_id

    def describe(self) -> dict[str, Any]:
        """What this router serves (for readiness checks and logs)."""
        out: dict[str, Any] = {
            "learned": self.learned,
            "bundle_id": self.bundle_id,
            "catalogue": self.catalogue.name,
            "config": self.config.to_dict(),
        }
        if self.bundle is not None:
            out |= {
                "bundle": str(self.bundle.path),
                "candidates": list(self.bundle.candidates),
                "policy": (self.policy or self.bundle.policy).to_dict(),
                "objective": self._policy_for(None)[1],
                "objectives": None
                if self.bundle.core.curve is None
                else {name: self.bundle.core.point(name).to_dict() for name in OBJECTIVES},  # type: ignore[union-attr]
                "feature_spec": self.bundle.manifest.get("feature_spec_fingerprint"),
            }
        else:
            out |= {
                "fallback": self.unavailable.code if self.unavailable else None,
                "detail": str(self.unavailable) if self.unavailable else None,
            }
        return out

    # -- deciding -------------------------------------------------------------------------------
    def route(
        self, request: Request | Mapping[str, Any], objective: str | None = None, *, log: bool = True, explain: bool = False
    ) -> Decision:
        """Decide for one request. RequestError when it is malformed (or names an objective the
        bundle cannot serve); otherwise never raises. ``objective`` overrides the configured one
        for this request; ``explain`` adds the decision's explanation (:mod:`tierroute.serving.explain`)."""
        return self.route_batch([request], objective, log=log, explain=explain)[0]

    def route_batch(
        self, requests: Sequence[Request | Mapping[str, Any]], objective: str | None = None, *, log: bool = True, explain: bool = False
    ) -> list[Decision]:
        """Decide for many requests in one model call. RequestError (naming the first malformed
        item) when any is malformed; otherwise never raises. With an exploration slice, decisions
        carry their propensity; with a decision log, each is appended to it. An ``objective`` field
        in the request objects (one value for the whole batch) overrides the configured objective.
        Each decision carries its ``request_id`` (the request's ``id``, else a generated one);
        ``log=False`` leaves the logging to the caller (the proxy logs after the upstream answered)."""
        policy, named = self._policy_for(_batch_objective(requests, objective))
        parsed, decisions = self._route_batch(requests, policy, named, explain)
        decisions = stamp_request_ids(
            decisions, [request_id_for(item, self._request_ids) for item in requests]
        )  # fresh: none handed out yet
        if explain:
            decisions = [with_tree_path(d, self.tree, self.tier_models) for d in decisions]
        if self.decision_log is not None and log:  # with log_features, each line adds the feature vector (privacy mode)
            for request, decision, extra in zip(parsed, decisions, self.decision_log.features_for(self.bundle, parsed)):
                self.decision_log.write(request, decision, decision.request_id, extra)
        return decisions

    def _policy_for(self, objective: str | None) -> tuple[Policy | None, str | None]:
        """(the policy for ``objective``, the objective's name as decisions record it)."""
        try:
            if objective is not None:
                check_objective(objective, "request's objective")
            named = objective if objective is not None else self.config.objective
            if self.bundle is not None and named is None and self.bundle.core.curve is not None:
                named = self.bundle.core.curve.default
            if objective is None or self.bundle is None:
                return self.policy, named
            return self.bundle.core.policy_for(objective), named
        except (ConfigError, BundleError) as exc:
            raise RequestError(str(exc)) from None

    def _route_batch(
        self, requests: Sequence[Request | Mapping[str, Any]], policy: Policy | None, objective: str | None, explain: bool = False
    ) -> tuple[list[Request], list[Decision]]:
        start = time.perf_counter()
        parsed = []
        for i, item in enumerate(requests):
            try:
                parsed.append(parse_request(item))
            except RequestError as exc:
                raise RequestError(str(exc) if len(requests) == 1 else f"request [{i}]: {exc}") from None
        if not parsed:
            return parsed, []
        if self.bundle is None or policy is None:
            code = self.unavailable.code if self.unavailable else "no_bundle"
            return parsed, [self._heuristic(r, start, code, len(parsed), objective=objective) for r in parsed]
        try:
            return parsed, self._decide(parsed, start, policy, objective, explain)
        except Fallback as fb:
            if len(parsed) > 1 and fb.code in PER_REQUEST:
                # one request's prompt must not take the learned decisions of the rest of its batch:
                # decide each alone, as route() would
                return parsed, [self._decide_or_fall_back([r], time.perf_counter(), policy, objective, explain)[0] for r in parsed]
            return parsed, [self._heuristic(r, start, fb.code, len(parsed), str(fb), objective) for r in parsed]

    def _decide(
        self, requests: list[Request], start: float, policy: Policy, objective: str | None, explain: bool = False
    ) -> list[Decision]:
        """The learned decisions; Fallback when they cannot be had, any other error as internal_error."""
        try:
            return self._learned(requests, start, policy, objective, explain)
        except Fallback:
            raise
        except Exception as exc:  # noqa: BLE001 - a well-formed request must always get an answer
            raise Fallback("internal_error", f"{type(exc).__name__}: {exc}") from None

    def _decide_or_fall_back(
        self, requests: list[Request], start: float, policy: Policy, objective: str | None, explain: bool = False
    ) -> list[Decision]:
        try:
            return self._decide(requests, start, policy, objective, explain)
        except Fallback as fb:
            return [self._heuristic(r, start, fb.code, len(requests), str(fb), objective) for r in requests]

    def _learned(
        self, requests: list[Request], start: float, policy: Policy, objective: str | None, explain: bool = False
    ) -> list[Decision]:
        b = self.bundle
        assert b is not None
        core, n = b.core, len(requests)
        X, measured = request_matrix(b, requests, self.config.max_prompt_chars)
        raw = raw_scores(b, X)
        if n == 1:  # one request: on plain floats (the same IEEE arithmetic, less overhead)
            proba_rows = [core.probabilities_row(raw[0].tolist())]
            if not all(map(math.isfinite, proba_rows[0])):
                raise Fallback("non_finite_output", NON_FINITE)
            cost_rows = [core.expected_cost_row(float(X[0, core.token_index]))]
            feasible_rows = [core.feasible_row(requests[0].latency_sla_ms)]
            picks = [core.choose_row(proba_rows[0], cost_rows[0], feasible_rows[0], policy)]
        else:
            proba = core.probabilities(raw)
            if not core.finite(proba):
                raise Fallback("non_finite_output", NON_FINITE)
            cost = core.expected_cost(X[:, core.token_index])
            feasible = core.feasible([r.latency_sla_ms for r in requests])
            picks = core.choose(proba, cost, feasible, policy).tolist()
            proba_rows, cost_rows = proba.tolist(), cost.tolist()
            feasible_rows = [None] * n if feasible is None else feasible.tolist()
        elapsed = (time.perf_counter() - start) * 1000.0
        if self.config.deadline_ms is not None and elapsed > self.config.deadline_ms * n:
            raise Fallback("deadline_exceeded", f"the learned path took {elapsed:.2f} ms, over the {self.config.deadline_ms} ms deadline")
        decisions = [
            self._learned_decision(req, sig, j, proba_rows[i], cost_rows[i], feasible_rows[i], policy, objective, start, elapsed / n, n)
            for i, (req, sig, j) in enumerate(zip(requests, measured, picks))
        ]
        return (
            attach_contributions(self.explainer, b, decisions, X, proba_rows, cost_rows, feasible_rows, policy, objective)
            if explain and self.explainer
            else decisions
        )

    def _learned_decision(
        self,
        req: Request,
        sig: Any,
        j: int,
        probabilities: list[float],
        costs: list[float],
        feasible: list[bool] | None,
        policy: Policy,
        objective: str | None,
        start: float,
        elapsed_ms: float,
        n: int,
    ) -> Decision:
        b = self.bundle
        assert b is not None
        p = probabilities[j]
        if self.config.min_confidence is not None and p < self.config.min_confidence:
            return self._heuristic(
                req,
                start,
                "low_confidence",
                n,
                f"P(correct)={p:.3f} for {b.candidates[j]} < min_confidence={self.config.min_confidence}",
                objective,
            )
        why = f"{policy.label}: P(correct)={p:.3f}, expected cost {costs[j]:.6g}"
        if objective is not None:
            why = f"{why}; objective {objective}"
        k, propensity, explored = (j, 1.0, False) if self.explorer is None else self.explorer.draw(j, feasible)
        if explored:
            why = f"explored (epsilon {self.config.epsilon:g}): drew {b.candidates[k]} instead of {b.candidates[j]}; {why}"
        return Decision(
            tier=self._tiers[k],
            model=b.candidates[k],
            source="learned",
            reason=why,
            propensity=propensity,
            greedy_model=b.candidates[j],
            explored=explored,
            probabilities=dict(zip(b.candidates, probabilities)),
            expected_cost_usd=costs[k],
            elapsed_ms=elapsed_ms,
            signals={
                "token_count": sig.token_count,
                "depth": sig.depth,
                "is_structured": req.output_schema is not None,
                "latency_sensitive": sig.latency_sensitive,
            },
            bundle_id=b.bundle_id,
            objective=objective,
        )

    def _heuristic(
        self, request: Request, start: float, code: str, n: int, detail: str | None = None, objective: str | None = None
    ) -> Decision:
        try:
            verdict = self.tree.route(request)
        except Exception:  # noqa: BLE001 - the exact counter failed (e.g. a lone surrogate): chars/4
            tokens = len(request.prompt) // 4
            hits = self.tree.extractor.matcher.hits(request.prompt).total
            verdict = self.tree.decide(
                tokens,
                request.output_schema is not None,
                self.tree.extractor.depth(hits, tokens),
                self.tree.extractor.is_latency_sensitive(request.latency_sla_ms),
            )
        model = self.tier_models[verdict.tier]
        cost = self.catalogue.candidate(model).cost(verdict.token_count, self.config.expected_output_tokens)
        why = code if detail is None else f"{code} ({detail})"
        return Decision(
            tier=verdict.tier,
            model=model,
            source="heuristic",
            reason=f"{why}; {verdict.reason}",
            node=verdict.node,
            expected_cost_usd=cost,
            elapsed_ms=(time.perf_counter() - start) * 1000.0 / n,
            signals=tree_signals(verdict),
            fallback=code,
            bundle_id=self.bundle_id,
            objective=objective,
        )


def _batch_objective(requests: Sequence[Request | Mapping[str, Any]], given: str | None) -> str | None:
    """The objective named by the call or by the request objects' ``objective`` field (one value);
    RequestError when they name several, or a value that is not a string."""
    if given is None and len(requests) == 1 and type(requests[0]) is dict and requests[0].get("objective") is None:
        return None  # route()'s usual case, without the loop
    named: set[str] = set() if given is None else {_objective_text(given, " (the call's)")}
    for i, item in enumerate(requests):
        value = item.get("objective") if type(item) is dict or isinstance(item, Mapping) else None  # exact type first: cheap
        if value is not None:
            named.add(_objective_text(value, "" if len(requests) == 1 else f" (request [{i}])"))
    if len(named) > 1:
        raise RequestError(
            f"The requests name different objectives {sorted(named)}; one call serves one "
            "objective. Send one 'objective' for the whole batch, or separate calls."
        )
    return named.pop() if named else None


def _objective_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise RequestError(
            f"'objective' must be a string{where}: one of {OBJECTIVES} or 'budget=USD_PER_QUERY'; got "
            f'{describe(value)}. Send e.g. "objective": "match-best".'
        )
    return value

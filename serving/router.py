"""The serving router: a learned decision from a RouterBundle when it can answer safely, the
article's heuristic tree when it cannot. A well-formed request always gets a Decision.

    router = Router.load("bundle/")                  # or "models:/tierroute@champion"
    router.route(Request(prompt="...", output_schema={...}, latency_sla_ms=300))
    router.route({"messages": [{"role": "user", "content": "..."}]})
    router.route_batch([...])

Fallback reasons (``Decision.fallback``): ``no_bundle``, ``bundle_unreadable``, ``bundle_invalid``,
``checksum_mismatch``, ``feature_spec_mismatch``, ``unknown_schema_version``, ``onnx_error``,
``tokenizer_error``, ``embedding_error``, ``non_finite_output``, ``prompt_too_large``,
``deadline_exceeded``, ``low_confidence``, ``internal_error``.

Thread-safe: a Router holds only immutable state and onnxruntime sessions (whose ``run`` is
thread-safe); reloading builds a new Router rather than mutating one.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import RequestError
from tierroute.models.catalogue import Catalogue, builtin_catalogue
from tierroute.models.heuristic import TIERS, HeuristicTree
from tierroute.models.policy import choose, choose_row
from tierroute.request import Request, parse_request
from tierroute.serving.bundle import Bundle, BundleError, bundle_rows, load_bundle
from tierroute.serving.decision import Decision
from tierroute.serving.decision_log import DecisionLog, Explorer

__all__ = ["Router", "RouterConfig", "FALLBACK_REASONS"]

FALLBACK_REASONS = (
    "no_bundle", "bundle_unreadable", "bundle_invalid", "checksum_mismatch", "feature_spec_mismatch",
    "unknown_schema_version", "onnx_error", "tokenizer_error", "embedding_error", "non_finite_output",
    "prompt_too_large", "deadline_exceeded", "low_confidence", "internal_error",
)


@dataclass(frozen=True)
class RouterConfig:
    """How a Router serves. ``deadline_ms``: a learned decision slower than this is replaced by the
    tree's (None: no deadline); ``min_confidence``: below this P(correct) for the chosen candidate,
    the tree decides (None: off); ``max_prompt_chars``: longer prompts go to the tree;
    ``epsilon``: the exploration slice (that share of learned decisions goes to a uniformly drawn
    candidate, propensities recorded; ``seed`` seeds the draws)."""

    intra_op_threads: int = 1
    max_prompt_chars: int = 200_000
    deadline_ms: float | None = 50.0
    min_confidence: float | None = None
    expected_output_tokens: int = 256
    verify_checksums: bool = True
    epsilon: float = 0.0
    seed: int | None = None

    def __post_init__(self) -> None:
        check_int(self.intra_op_threads, "intra_op_threads", "RouterConfig", 1)
        check_int(self.max_prompt_chars, "max_prompt_chars", "RouterConfig", 1)
        check_int(self.expected_output_tokens, "expected_output_tokens", "RouterConfig", 0)
        if self.deadline_ms is not None:
            check_number(self.deadline_ms, "deadline_ms", "RouterConfig", 0.0)
        if self.min_confidence is not None:
            check_number(self.min_confidence, "min_confidence", "RouterConfig", 0.0, 1.0)
        check_number(self.epsilon, "epsilon", "RouterConfig", 0.0, 1.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


#: fallbacks that one request's prompt causes: a batch that meets one is decided request by request
_PER_REQUEST = ("prompt_too_large", "tokenizer_error", "embedding_error")


_OUTPUT = ["probabilities"]


class _Fallback(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def _resolve(source: str | os.PathLike[str], tracking_uri: str | None) -> tuple[str, str | None]:
    """(a local bundle folder for ``source``, the temporary download to delete once loaded or
    None); an MLflow ``models:/`` or ``runs:/`` URI is downloaded (mlflow is imported only then)."""
    text = os.fspath(source)
    if not (text.startswith("models:/") or text.startswith("runs:/")):
        return text, None
    try:
        import mlflow
    except ImportError:
        raise BundleError("no_bundle", f"{text!r} is an MLflow URI but mlflow is not installed. Install "
                          "'tierroute[train]', or pass a bundle folder.") from None
    from pathlib import Path

    from tierroute.pipelines.tracking import DEFAULT_TRACKING_URI, registry_uri_for

    # the URI given, else $MLFLOW_TRACKING_URI, else the project's store (mlflow's own default would be a new ./mlflow.db)
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI
    if uri.startswith("sqlite:///") and not uri.startswith("sqlite:////"):  # relative: pin it to this folder
        uri = "sqlite:///" + os.path.abspath(uri.removeprefix("sqlite:///"))
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(registry_uri_for(uri))  # models:/ URIs resolve in the registry
    download = tempfile.mkdtemp(prefix="tierroute-bundle-")
    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=text, dst_path=download))
    except Exception as exc:  # noqa: BLE001 - mlflow raises many kinds for a missing model
        shutil.rmtree(download, ignore_errors=True)
        raise BundleError("no_bundle", f"MLflow could not resolve {text!r} ({type(exc).__name__}: {str(exc)[:200]}). "
                          "Check the model name, alias or version, and the tracking URI.") from None
    found = sorted(local.rglob("manifest.json"), key=lambda p: len(p.parts))
    for manifest in found:
        if '"tierroute.router_bundle"' in manifest.read_text(encoding="utf-8", errors="replace"):
            return str(manifest.parent), download
    shutil.rmtree(download, ignore_errors=True)
    raise BundleError("no_bundle", f"{text!r} resolved to {str(local)!r}, which holds no router bundle. Log the model "
                      "with `tierroute train` (it logs the bundle) or pass a bundle folder.")


class Router:
    """Routes requests with a bundle's learned policy, falling back to the heuristic tree."""

    def __init__(self, bundle: Bundle | None = None, config: RouterConfig | None = None,
                 catalogue: Catalogue | None = None, unavailable: BundleError | None = None,
                 decision_log: DecisionLog | None = None) -> None:
        self.config = config if config is not None else RouterConfig()
        self.decision_log = decision_log
        self.bundle = bundle
        self.catalogue = bundle.catalogue if bundle is not None else (catalogue or builtin_catalogue("article"))
        self.tree = HeuristicTree(signals=bundle.extractor.config) if bundle is not None else HeuristicTree()
        if bundle is None and unavailable is None:
            unavailable = BundleError("no_bundle", "No bundle was given; every decision comes from the heuristic tree.")
        self.unavailable = unavailable
        self.tier_models = _tree_tier_models(self.catalogue)
        known = None if bundle is None else bundle.p95_ms
        self._p95 = [] if bundle is None else bundle.p95_ms.tolist()
        self._intercepts = [] if bundle is None else bundle.cost_intercept.tolist()
        self._slopes = [] if bundle is None else bundle.cost_slope.tolist()
        self._tiers = () if bundle is None else tuple(bundle.catalogue.tier_of(c) for c in bundle.candidates)
        self._fastest = None if known is None or not np.isfinite(known).any() else int(np.nanargmin(known))
        self.explorer = (Explorer(self.config.epsilon, bundle.candidates, self._tiers, self.config.seed)
                         if bundle is not None and self.config.epsilon > 0 else None)
        self.tree.extractor.counter.count("")  # load the BPE table now, not inside the first decision

    # -- loading --------------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | os.PathLike[str] | None, config: RouterConfig | None = None, *,
             strict: bool = False, catalogue: Catalogue | None = None, tracking_uri: str | None = None,
             decision_log: DecisionLog | None = None) -> Router:
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
            folder = _resolve(source, tracking_uri)
            bundle = load_bundle(folder[0], config.intra_op_threads, config.verify_checksums)
        except BundleError as exc:
            if strict:
                raise
            return cls(None, config, catalogue, unavailable=exc, decision_log=decision_log)
        finally:
            if folder is not None and folder[1] is not None:  # an MLflow download: all of it is in memory now
                shutil.rmtree(folder[1], ignore_errors=True)
        return cls(bundle, config, decision_log=decision_log)

    @property
    def learned(self) -> bool:
        """True when learned decisions are available (a verified bundle is loaded)."""
        return self.bundle is not None

    @property
    def bundle_id(self) -> str | None:
        return None if self.bundle is None else self.bundle.bundle_id

    def describe(self) -> dict[str, Any]:
        """What this router serves (for readiness checks and logs)."""
        out: dict[str, Any] = {"learned": self.learned, "bundle_id": self.bundle_id, "catalogue": self.catalogue.name,
                               "config": self.config.to_dict()}
        if self.bundle is not None:
            out |= {"bundle": str(self.bundle.path), "candidates": list(self.bundle.candidates),
                    "policy": self.bundle.policy.to_dict(), "feature_spec": self.bundle.manifest.get("feature_spec_fingerprint")}
        else:
            out |= {"fallback": self.unavailable.code if self.unavailable else None,
                    "detail": str(self.unavailable) if self.unavailable else None}
        return out

    # -- deciding -------------------------------------------------------------------------------
    def route(self, request: Request | Mapping[str, Any]) -> Decision:
        """Decide for one request. RequestError when it is malformed; otherwise never raises."""
        return self.route_batch([request])[0]

    def route_batch(self, requests: Sequence[Request | Mapping[str, Any]]) -> list[Decision]:
        """Decide for many requests in one model call. RequestError (naming the first malformed
        item) when any is malformed; otherwise never raises. With an exploration slice, decisions
        carry their propensity; with a decision log, each is appended to it."""
        parsed, decisions = self._route_batch(requests)
        if self.decision_log is not None:
            for item, request, decision in zip(requests, parsed, decisions):
                self.decision_log.write(request, decision, item.get("id") if isinstance(item, Mapping) else None)
        return decisions

    def _route_batch(self, requests: Sequence[Request | Mapping[str, Any]]) -> tuple[list[Request], list[Decision]]:
        start = time.perf_counter()
        parsed = []
        for i, item in enumerate(requests):
            try:
                parsed.append(parse_request(item))
            except RequestError as exc:
                raise RequestError(str(exc) if len(requests) == 1 else f"request [{i}]: {exc}") from None
        if not parsed:
            return parsed, []
        if self.bundle is None:
            code = self.unavailable.code if self.unavailable else "no_bundle"
            return parsed, [self._heuristic(r, start, code, len(parsed)) for r in parsed]
        try:
            return parsed, self._decide(parsed, start)
        except _Fallback as fb:
            if len(parsed) > 1 and fb.code in _PER_REQUEST:
                # one request's prompt must not take the learned decisions of the rest of its batch:
                # decide each alone, as route() would
                return parsed, [self._decide_or_fall_back([r], time.perf_counter())[0] for r in parsed]
            return parsed, [self._heuristic(r, start, fb.code, len(parsed), str(fb)) for r in parsed]

    def _decide(self, requests: list[Request], start: float) -> list[Decision]:
        """The learned decisions; _Fallback when they cannot be had, any other error as internal_error."""
        try:
            return self._learned(requests, start)
        except _Fallback:
            raise
        except Exception as exc:  # noqa: BLE001 - a well-formed request must always get an answer
            raise _Fallback("internal_error", f"{type(exc).__name__}: {exc}") from None

    def _decide_or_fall_back(self, requests: list[Request], start: float) -> list[Decision]:
        try:
            return self._decide(requests, start)
        except _Fallback as fb:
            return [self._heuristic(r, start, fb.code, len(requests), str(fb)) for r in requests]

    def _learned(self, requests: list[Request], start: float) -> list[Decision]:
        b = self.bundle
        assert b is not None
        config = self.config
        too_long = [r for r in requests if len(r.prompt) > config.max_prompt_chars]
        if too_long:
            raise _Fallback("prompt_too_large", f"a prompt of {len(too_long[0].prompt):,} characters exceeds "
                                                f"max_prompt_chars={config.max_prompt_chars:,}")
        encoder = b.encoder
        # count once: the static encoder's BPE ids are the token counter's (same tokenizer)
        shared = encoder is not None and encoder.tokenizer == b.extractor.counter.id
        try:
            if shared:
                token_ids = [encoder.ids(r.prompt) for r in requests]
                measured = [b.extractor.signals(r, token_count=len(t)) for r, t in zip(requests, token_ids)]
            else:
                measured = [b.extractor.signals(r) for r in requests]
        except Exception as exc:  # noqa: BLE001 - tokenizer or schema summary failure
            raise _Fallback("tokenizer_error", f"{type(exc).__name__}: {exc}") from None
        n, m, width = len(requests), len(b.candidates), len(b.extractor.feature_names)
        X = np.empty((n, b.n_features), dtype=np.float32)
        X[:, :width] = [s.as_vector() for s in measured]
        if encoder is not None:
            try:
                X[:, width:] = encoder.encode_many_ids(token_ids) if shared else encoder.encode([r.prompt for r in requests])
            except Exception as exc:  # noqa: BLE001
                raise _Fallback("embedding_error", f"{type(exc).__name__}: {exc}") from None
        try:
            inputs = bundle_rows(b, X)
            raw = [s.run(_OUTPUT, {"input": x}, b.run_options)[0][:, 1] for s, x in zip(b.sessions, inputs)]
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise _Fallback("onnx_error", f"{type(exc).__name__}: {str(exc)[:200]}") from None
        scores = raw[0].reshape(n, m) if b.kind == "pooled" else np.column_stack(raw)
        proba = b.calibration_set.apply(scores)
        if n == 1:  # one request: the rest on plain floats (the same IEEE arithmetic, less overhead)
            proba_rows = proba.tolist()
            if not all(map(math.isfinite, proba_rows[0])):
                raise _Fallback("non_finite_output", "the model returned a non-finite probability")
            tokens_1 = float(X[0, 0])
            cost_rows = [[max(a + tokens_1 * s, 0.0) for a, s in zip(self._intercepts, self._slopes)]]
            feasible_rows = [self._feasible_row(requests[0])]
            picks = [choose_row(b.policy, proba_rows[0], cost_rows[0], feasible_rows[0])]
        else:
            if not np.isfinite(proba).all():
                raise _Fallback("non_finite_output", "the model returned a non-finite probability")
            tokens = X[:, 0].astype(np.float64)
            cost = np.maximum(b.cost_intercept + tokens[:, None] * b.cost_slope, 0.0)
            feasible = self._feasible(requests)
            picks = choose(b.policy, proba, cost, feasible).tolist()
            proba_rows, cost_rows = proba.tolist(), cost.tolist()
            feasible_rows = [None] * n if feasible is None else feasible.tolist()
        elapsed = (time.perf_counter() - start) * 1000.0
        if config.deadline_ms is not None and elapsed > config.deadline_ms * n:
            raise _Fallback("deadline_exceeded", f"the learned path took {elapsed:.2f} ms, over the {config.deadline_ms} ms deadline")
        decisions = []
        policy = f"{b.policy.kind} policy (knob {b.policy.value:.6g})"
        for i, (req, sig, j) in enumerate(zip(requests, measured, picks)):
            row = proba_rows[i]
            p = row[j]
            if config.min_confidence is not None and p < config.min_confidence:
                decisions.append(self._heuristic(req, start, "low_confidence", n,
                                                 f"P(correct)={p:.3f} for {b.candidates[j]} < min_confidence={config.min_confidence}"))
                continue
            why = f"{policy}: P(correct)={p:.3f}, expected cost {cost_rows[i][j]:.6g}"
            k, propensity, explored = (j, 1.0, False) if self.explorer is None else self.explorer.draw(j, feasible_rows[i])
            if explored:
                why = f"explored (epsilon {self.config.epsilon:g}): drew {b.candidates[k]} instead of {b.candidates[j]}; {why}"
            model = b.candidates[k]
            expected = cost_rows[i][k]
            decisions.append(Decision(
                tier=self._tiers[k], model=model, source="learned", reason=why, propensity=propensity,
                greedy_model=b.candidates[j], explored=explored,
                probabilities=dict(zip(b.candidates, row)), expected_cost_usd=expected, elapsed_ms=elapsed / n,
                signals={"token_count": sig.token_count, "depth": sig.depth, "is_structured": req.output_schema is not None,
                         "latency_sensitive": sig.latency_sensitive},
                bundle_id=b.bundle_id,
            ))
        return decisions

    def _feasible_row(self, request: Request) -> list[bool] | None:
        """:meth:`_feasible` for one request, as a list."""
        sla = request.latency_sla_ms
        if sla is None or self._fastest is None:
            return None
        fits = [not (p > sla) for p in self._p95]  # NaN (unknown latency) fits
        if not any(fits):
            fits[self._fastest] = True
        return fits

    def _feasible(self, requests: list[Request]) -> np.ndarray | None:
        b = self.bundle
        assert b is not None
        if all(r.latency_sla_ms is None for r in requests) or self._fastest is None:
            return None  # no SLA to meet (or no latency known): every candidate fits
        sla = np.array([np.nan if r.latency_sla_ms is None else r.latency_sla_ms for r in requests])
        fits = ~(b.p95_ms[None, :] > sla[:, None])
        fits[~fits.any(axis=1), self._fastest] = True  # an SLA nobody meets: the fastest candidate
        return fits

    def _heuristic(self, request: Request, start: float, code: str, n: int, detail: str | None = None) -> Decision:
        try:
            verdict = self.tree.route(request)
        except Exception:  # noqa: BLE001 - the exact counter failed (e.g. a lone surrogate): chars/4
            tokens = len(request.prompt) // 4
            hits = self.tree.extractor.matcher.hits(request.prompt).total
            verdict = self.tree.decide(tokens, request.output_schema is not None, self.tree.extractor.depth(hits, tokens),
                                       self.tree.extractor.is_latency_sensitive(request.latency_sla_ms))
        model = self.tier_models[verdict.tier]
        cost = self.catalogue.candidate(model).cost(verdict.token_count, self.config.expected_output_tokens)
        why = code if detail is None else f"{code} ({detail})"
        return Decision(
            tier=verdict.tier, model=model, source="heuristic", reason=f"{why}; {verdict.reason}", node=verdict.node,
            expected_cost_usd=cost, elapsed_ms=(time.perf_counter() - start) * 1000.0 / n,
            signals=_tree_signals(verdict), fallback=code, bundle_id=self.bundle_id,
        )


def _tree_tier_models(catalogue: Catalogue) -> dict[str, str]:
    """The model serving each of the tree's tiers: the catalogue's tier of that name, else the
    catalogue tier at the same relative position (cheapest, middle, dearest); empty tiers serve
    from the nearest tier above."""
    out = {}
    for rank, tier in enumerate(TIERS):
        if tier not in catalogue.tiers:
            tier = catalogue.tiers[round(rank * (len(catalogue.tiers) - 1) / (len(TIERS) - 1))]
        out[TIERS[rank]] = catalogue.serving_model(tier)
    return out


def _tree_signals(verdict: Any) -> dict[str, Any]:
    return {"token_count": verdict.token_count, "depth": verdict.depth, "is_structured": verdict.is_structured,
            "latency_sensitive": verdict.latency_sensitive}

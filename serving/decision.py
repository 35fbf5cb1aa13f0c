"""The routing decision every policy returns, and the heuristic policy that always can answer."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

from tierroute.models.catalogue import Catalogue, builtin_catalogue
from tierroute.models.heuristic import HeuristicTree
from tierroute.request import Request, parse_request

__all__ = ["Decision", "HeuristicPolicy", "DECISION_SCHEMA_VERSION", "stamp_request_ids"]

#: Version of the JSON form of a Decision (``Decision.to_dict``); bumped on any breaking change.
DECISION_SCHEMA_VERSION = 1


@dataclass(frozen=True, slots=True)
class Decision:
    """Where to send one request.

    ``source`` is ``"learned"`` or ``"heuristic"``; ``reason`` says why (for the heuristic: the
    rule that fired and its signals; for a fallback: what failed). ``probabilities`` maps candidate
    model -> P(correct) when a learned router decided (empty for the heuristic).
    ``expected_cost_usd`` is the chosen candidate's catalogue price for this prompt's tokens and
    ``expected_output_tokens`` (None when unknown). ``elapsed_ms`` is the time the decision took.
    ``fallback`` is the machine-readable reason the learned path did not answer (None when it did,
    or when the heuristic was asked for); ``bundle_id`` names the bundle loaded, if any.
    ``propensity`` is the probability the serving policy had of choosing ``model`` (1 unless an
    exploration slice is on); ``explored`` says the model was drawn at random instead of
    ``greedy_model``, the policy's own choice. ``objective`` names the operating point the
    learned policy served (``match-best``, ..., ``budget=USD``; None for a bundle without a knob
    curve, or no bundle). ``request_id`` names the decision for feedback (the caller's ``id``,
    else generated; set by :meth:`Router.route_batch`, in ``to_dict`` only when set).
    ``explanation`` (``route(..., explain=True)`` only; see :mod:`tierroute.serving.explain`): the
    chosen and runner-up candidates' top contributions, the policy's terms and the tree's path.
    """

    tier: str
    model: str
    source: str
    reason: str
    node: str | None = None
    probabilities: Mapping[str, float] = field(default_factory=dict)
    expected_cost_usd: float | None = None
    elapsed_ms: float = 0.0
    signals: Mapping[str, Any] = field(default_factory=dict)
    fallback: str | None = None
    bundle_id: str | None = None
    propensity: float = 1.0
    greedy_model: str | None = None
    explored: bool = False
    objective: str | None = None
    request_id: str | int | None = None
    explanation: Mapping[str, Any] | None = None

    def named(self, request_id: str | int | None) -> Decision:
        """This decision under ``request_id``: a copy with that one field set (what
        ``dataclasses.replace`` does, without re-running the constructor on a hot path)."""
        named = object.__new__(Decision)
        for name in _FIELDS:
            object.__setattr__(named, name, getattr(self, name))
        object.__setattr__(named, "request_id", request_id)  # a fresh copy: no other holder sees the change
        return named

    def to_dict(self) -> dict[str, Any]:
        """The stable JSON form (``tierroute route --json`` prints one per request)."""
        return {
            "schema_version": DECISION_SCHEMA_VERSION,
            "tier": self.tier,
            "model": self.model,
            "source": self.source,
            "reason": self.reason,
            "node": self.node,
            "probabilities": dict(self.probabilities),
            "expected_cost_usd": self.expected_cost_usd,
            "elapsed_ms": round(self.elapsed_ms, 4),
            "signals": dict(self.signals),
            "fallback": self.fallback,
            "bundle_id": self.bundle_id,
            "propensity": self.propensity,
            "explored": self.explored,
            "objective": self.objective,
            **({"request_id": self.request_id} if self.request_id is not None else {}),
            **({"explanation": dict(self.explanation)} if self.explanation is not None else {}),
        }


_FIELDS = tuple(f.name for f in fields(Decision))


def stamp_request_ids(decisions: list[Decision], request_ids: Sequence[str | int | None]) -> list[Decision]:
    """Give decisions this call has just built, and handed to no one yet, their request ids, in
    place (as a frozen dataclass's own ``__init__`` sets its fields): the hot path's alternative to
    :meth:`Decision.named`'s copy per decision."""
    for decision, request_id in zip(decisions, request_ids, strict=True):
        object.__setattr__(decision, "request_id", request_id)
    return decisions


class HeuristicPolicy:
    """The article's tree mapped onto a catalogue: the tier's default model answers.

    >>> policy = HeuristicPolicy()
    >>> policy.route({"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}}).model
    'claude-3-haiku'
    """

    def __init__(self, catalogue: Catalogue | None = None, tree: HeuristicTree | None = None, expected_output_tokens: int = 256) -> None:
        self.catalogue = catalogue if catalogue is not None else builtin_catalogue("article")
        self.tree = tree if tree is not None else HeuristicTree()
        self.expected_output_tokens = expected_output_tokens
        for tier in ("tier1", "tier2", "tier3"):
            self.catalogue.serving_model(tier)  # fail now, not per request, if the tiers are unknown
        self.tree.extractor.counter.count("")  # load the BPE table now, not inside the first decision

    def route(self, request: Request | Mapping[str, Any]) -> Decision:
        """Decide for one request (a Request or a plain dict; RequestError when malformed)."""
        start = time.perf_counter()
        req = parse_request(request)
        verdict = self.tree.route(req)
        model = self.catalogue.serving_model(verdict.tier)
        cost = self.catalogue.candidate(model).cost(verdict.token_count, self.expected_output_tokens)
        return Decision(
            tier=verdict.tier,
            model=model,
            source="heuristic",
            reason=verdict.reason,
            node=verdict.node,
            expected_cost_usd=cost,
            elapsed_ms=(time.perf_counter() - start) * 1000.0,
            signals={
                "token_count": verdict.token_count,
                "depth": verdict.depth,
                "is_structured": verdict.is_structured,
                "latency_sensitive": verdict.latency_sensitive,
            },
        )

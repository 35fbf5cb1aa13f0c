"""The article's 5-node routing tree, reproduced exactly: the baseline to beat and the permanent
fallback of the learned router.

    1. token_count < 500 and is_structured and reasoning_depth <= 2  -> tier1
    2. otherwise reasoning_depth <= 3 and not is_latency_sensitive   -> tier2
    3. otherwise                                                      -> tier3

Every threshold is a parameter with the article's value as default (tree thresholds here, signal
thresholds and the keyword list in :class:`~tierroute.features.signals.SignalConfig`). The article's
quirk is kept on purpose: a latency-sensitive request that misses rule 1 goes to tier3, the slowest
tier. A missing SLA is treated as "not latency-sensitive" (the article's code would crash on None).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

from tierroute._params import check_int
from tierroute.errors import DataValidationError
from tierroute.features.signals import SignalConfig, SignalExtractor
from tierroute.models.catalogue import Catalogue
from tierroute.request import Request

__all__ = ["TIERS", "NODES", "HeuristicParams", "HeuristicDecision", "HeuristicBatch", "HeuristicTree", "tier_candidate", "tree_picks"]

#: The article's tiers, cheapest first.
TIERS: tuple[str, ...] = ("tier1", "tier2", "tier3")
#: Which rule decided: index i is rule i+1; rule3 is the fall-through.
NODES: tuple[str, ...] = ("rule1", "rule2", "rule3")


@dataclass(frozen=True)
class HeuristicParams:
    """Tree thresholds (the article's defaults)."""

    token_limit: int = 500
    tier1_max_depth: int = 2
    tier2_max_depth: int = 3

    def __post_init__(self) -> None:
        check_int(self.token_limit, "token_limit", "HeuristicParams", 1)
        check_int(self.tier1_max_depth, "tier1_max_depth", "HeuristicParams", 1)
        check_int(self.tier2_max_depth, "tier2_max_depth", "HeuristicParams", 1)

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class HeuristicDecision:
    """The tree's answer for one request, with the signals it saw and why it decided."""

    tier: str
    node: str
    reason: str
    token_count: int
    depth: int
    is_structured: bool
    latency_sensitive: bool

    def to_dict(self) -> dict[str, object]:
        return {
            "tier": self.tier,
            "node": self.node,
            "reason": self.reason,
            "token_count": self.token_count,
            "depth": self.depth,
            "is_structured": self.is_structured,
            "latency_sensitive": self.latency_sensitive,
        }


@dataclass(frozen=True, slots=True)
class HeuristicBatch:
    """Vectorised answers: ``tier_index`` into :data:`TIERS`, ``node_index`` into :data:`NODES`."""

    tier_index: np.ndarray
    node_index: np.ndarray

    @property
    def tiers(self) -> list[str]:
        return [TIERS[i] for i in self.tier_index]

    @property
    def nodes(self) -> list[str]:
        return [NODES[i] for i in self.node_index]


@dataclass(frozen=True)
class HeuristicTree:
    """The article's tree over the project's signals.

    >>> tree = HeuristicTree()
    >>> tree.route(Request("Extract the order id.", output_schema={"order_id": "string"})).tier
    'tier1'
    >>> tree.route(Request("Step by step, analyze and compare.", latency_sla_ms=150)).tier
    'tier3'
    """

    params: HeuristicParams = field(default_factory=HeuristicParams)
    signals: SignalConfig = field(default_factory=SignalConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_extractor", SignalExtractor(self.signals))

    @property
    def extractor(self) -> SignalExtractor:
        return self._extractor  # type: ignore[attr-defined,no-any-return]

    def decide(self, token_count: int, is_structured: bool, depth: int, latency_sensitive: bool) -> HeuristicDecision:
        """Apply the tree to already-measured signals."""
        p = self.params
        small = token_count < p.token_limit
        shallow = depth <= p.tier1_max_depth
        if small and is_structured and shallow:
            tier, node = "tier1", "rule1"
            reason = f"rule1: {token_count} tokens < {p.token_limit}, output schema given, depth {depth} <= {p.tier1_max_depth}"
        else:
            why_not = (
                f"{token_count} tokens >= {p.token_limit}"
                if not small
                else "no output schema"
                if not is_structured
                else f"depth {depth} > {p.tier1_max_depth}"
            )
            if depth <= p.tier2_max_depth and not latency_sensitive:
                tier, node = "tier2", "rule2"
                reason = f"rule2: not rule1 ({why_not}); depth {depth} <= {p.tier2_max_depth}, not latency-sensitive"
            else:
                tier, node = "tier3", "rule3"
                why = f"depth {depth} > {p.tier2_max_depth}" if depth > p.tier2_max_depth else "latency-sensitive"
                reason = f"rule3: not rule1 ({why_not}); not rule2 ({why})"
        return HeuristicDecision(
            tier=tier,
            node=node,
            reason=reason,
            token_count=token_count,
            depth=depth,
            is_structured=is_structured,
            latency_sensitive=latency_sensitive,
        )

    def route(self, request: Request) -> HeuristicDecision:
        """Measure the four signals of ``request`` and apply the tree. Never looks inside the schema
        (the article's ``is_structured = output_schema is not None``), so it cannot fail on one."""
        return self.decide(*self.extractor.tree_signals(request))

    def decide_batch(
        self,
        token_count: Sequence[int] | np.ndarray,
        is_structured: Sequence[bool] | np.ndarray,
        depth: Sequence[int] | np.ndarray,
        latency_sensitive: Sequence[bool] | np.ndarray,
    ) -> HeuristicBatch:
        """The tree over arrays of signals (numpy, no Python loop)."""
        p = self.params
        tokens = np.asarray(token_count)
        structured = np.asarray(is_structured, dtype=bool)
        depths = np.asarray(depth)
        sensitive = np.asarray(latency_sensitive, dtype=bool)
        rule1 = (tokens < p.token_limit) & structured & (depths <= p.tier1_max_depth)
        rule2 = ~rule1 & (depths <= p.tier2_max_depth) & ~sensitive
        index = np.where(rule1, 0, np.where(rule2, 1, 2)).astype(np.int8)
        return HeuristicBatch(tier_index=index, node_index=index.copy())

    def route_batch(self, requests: Iterable[Request]) -> HeuristicBatch:
        """Measure many requests, then apply :meth:`decide_batch`."""
        signals = [self.extractor.tree_signals(r) for r in requests]
        if not signals:
            empty = np.zeros(0, dtype=np.int8)
            return HeuristicBatch(tier_index=empty, node_index=empty.copy())
        tokens, structured, depth, sensitive = zip(*signals)
        return self.decide_batch(tokens, structured, depth, sensitive)


def tier_candidate(catalogue: Catalogue, tier: str, available: Sequence[str]) -> str:
    """The model that serves the tree's ``tier`` among the ``available`` candidates: the tier's
    default if present, else its cheapest present model, else the nearest tier above (then below)."""
    rank = catalogue.tier_rank(tier)
    for candidate_tier in (*catalogue.tiers[rank:], *reversed(catalogue.tiers[:rank])):
        members = [c.model for c in catalogue.models_in_tier(candidate_tier) if c.model in available]
        if members:
            default = catalogue.default_model(candidate_tier)
            return default if default in members else members[0]
    raise DataValidationError(
        f"None of the candidates {list(available)} is in catalogue {catalogue.name!r}; the tree's "
        "tiers cannot be mapped onto them. Pass a catalogue that lists them."
    )


def tree_picks(
    requests: Sequence[Request], catalogue: Catalogue, candidates: Sequence[str], tree: HeuristicTree | None = None
) -> np.ndarray:
    """The tree's choice per request, as indices into ``candidates`` (its tier mapped onto them)."""
    tiers = (tree or HeuristicTree()).route_batch(requests).tiers
    index = {t: list(candidates).index(tier_candidate(catalogue, t, candidates)) for t in set(tiers)}
    return np.array([index[t] for t in tiers], dtype=np.int64)

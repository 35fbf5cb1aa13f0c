"""How a serving Router is configured and how it falls back: :class:`RouterConfig`, the fallback
reasons (``Decision.fallback``), the :class:`Fallback` the learned path raises when it cannot decide,
and what the article's heuristic tree serves with (the model per tree tier, the signals it reports).
:mod:`tierroute.serving.router` re-exports the public names (their import path of earlier releases).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from tierroute._params import check_int, check_number
from tierroute.models.catalogue import Catalogue
from tierroute.models.heuristic import TIERS
from tierroute.models.objective import check_objective

__all__ = ["FALLBACK_REASONS", "PER_REQUEST", "Fallback", "RouterConfig", "tree_signals", "tree_tier_models"]

FALLBACK_REASONS = (
    "no_bundle",
    "bundle_unreadable",
    "bundle_invalid",
    "checksum_mismatch",
    "feature_spec_mismatch",
    "unknown_schema_version",
    "onnx_error",
    "tokenizer_error",
    "embedding_error",
    "non_finite_output",
    "prompt_too_large",
    "deadline_exceeded",
    "low_confidence",
    "internal_error",
    "model_error",
)

#: fallbacks that one request's prompt causes: a batch that meets one is decided request by request
PER_REQUEST = ("prompt_too_large", "tokenizer_error", "embedding_error")


@dataclass(frozen=True)
class RouterConfig:
    """How a Router serves. ``deadline_ms``: a learned decision slower than this is replaced by the
    tree's (None: no deadline); ``min_confidence``: below this P(correct) for the chosen candidate,
    the tree decides (None: off); ``max_prompt_chars``: longer prompts go to the tree;
    ``epsilon``: the exploration slice (that share of learned decisions goes to a uniformly drawn
    candidate, propensities recorded; ``seed`` seeds the draws); ``objective``: the operating
    point on the bundle's out-of-fold knob curve (``match-best``, ``match-heuristic``,
    ``max-accuracy`` or ``budget=USD``; None: the one the bundle was trained for)."""

    intra_op_threads: int = 1
    max_prompt_chars: int = 200_000
    deadline_ms: float | None = 50.0
    min_confidence: float | None = None
    expected_output_tokens: int = 256
    verify_checksums: bool = True
    epsilon: float = 0.0
    seed: int | None = None
    objective: str | None = None

    def __post_init__(self) -> None:
        if self.objective is not None:
            check_objective(self.objective, "'objective' parameter of RouterConfig")
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


class Fallback(Exception):
    """Why the learned path cannot decide: ``code`` is one of FALLBACK_REASONS; the Router answers with the tree."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code = code


def tree_tier_models(catalogue: Catalogue) -> dict[str, str]:
    """The model serving each of the tree's tiers: the catalogue's tier of that name, else the
    catalogue tier at the same relative position (cheapest, middle, dearest); empty tiers serve
    from the nearest tier above."""
    out = {}
    for rank, tier in enumerate(TIERS):
        if tier not in catalogue.tiers:
            tier = catalogue.tiers[round(rank * (len(catalogue.tiers) - 1) / (len(TIERS) - 1))]
        out[TIERS[rank]] = catalogue.serving_model(tier)
    return out


def tree_signals(verdict: Any) -> dict[str, Any]:
    """The signals a tree decision reports (``Decision.signals``)."""
    return {
        "token_count": verdict.token_count,
        "depth": verdict.depth,
        "is_structured": verdict.is_structured,
        "latency_sensitive": verdict.latency_sensitive,
    }

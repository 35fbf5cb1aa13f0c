"""Request signals: the heuristic's four inputs and the learned router's scalar features, from one
code path used by training and serving alike (train/serve skew starts where two copies differ)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property

import numpy as np

from tierroute._params import check_number
from tierroute.errors import ConfigError
from tierroute.features.keywords import REASONING_KEYWORDS, KeywordHits, KeywordMatcher, check_depth_params, reasoning_depth
from tierroute.features.logged import LoggedRequest, logged_matrix, logged_signal
from tierroute.features.shape import SHAPE_FEATURE_NAMES, PromptShape, prompt_shape
from tierroute.features.spec import FEATURE_VERSION, FeatureSpec
from tierroute.features.tokens import DEFAULT_ENCODING, TokenCounter, make_token_counter, make_token_counter_id
from tierroute.request import Request
from tierroute.schema import SCHEMA_FEATURE_NAMES, SchemaSummary, summarize_schema

__all__ = ["SignalConfig", "RequestSignals", "SignalExtractor"]


@dataclass(frozen=True)
class SignalConfig:
    """How signals are computed. Defaults are the article's values.

    ``latency_sensitive_ms``: an SLA strictly below this is latency-sensitive; a missing SLA is not.
    """

    tokenizer: str = f"bpe:{DEFAULT_ENCODING}"
    keywords: tuple[str, ...] = REASONING_KEYWORDS
    keyword_cap: int = 2
    long_prompt_tokens: int = 1000
    very_long_prompt_tokens: int = 3000
    max_depth: int = 5
    latency_sensitive_ms: float = 200.0

    def __post_init__(self) -> None:
        if isinstance(self.keywords, str):
            raise ConfigError(
                "The 'keywords' parameter of SignalConfig must be a list of strings, not one string. "
                f"Got {self.keywords!r} instead; write ({self.keywords!r},) for a single keyword."
            )
        object.__setattr__(self, "keywords", KeywordMatcher(tuple(self.keywords)).keywords)
        make_token_counter_id(self.tokenizer)
        check_depth_params(self.keyword_cap, self.long_prompt_tokens, self.very_long_prompt_tokens, self.max_depth, "SignalConfig")
        check_number(self.latency_sensitive_ms, "latency_sensitive_ms", "SignalConfig", 0.0)

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["keywords"] = list(self.keywords)
        return d


@dataclass(frozen=True, slots=True)
class RequestSignals:
    """Everything measured about one request, before it becomes a vector."""

    token_count: int
    keywords: KeywordHits
    depth: int
    schema: SchemaSummary
    sla_ms: float | None
    latency_sensitive: bool
    shape: PromptShape

    @property
    def is_structured(self) -> bool:
        return self.schema.present

    def as_vector(self) -> tuple[float, ...]:
        """Values in the order of :attr:`SignalExtractor.feature_names`."""
        kw = self.keywords  # ints stay ints here: they become float32 in the matrix (fewer calls on the serving path)
        return (
            self.token_count,
            *kw.present,
            *kw.word_present,
            kw.total,
            kw.word_total,
            kw.occurrences,
            self.depth,
            math.nan if self.sla_ms is None else float(self.sla_ms),
            1.0 if self.sla_ms is None else 0.0,
            1.0 if self.latency_sensitive else 0.0,
            *self.schema.as_vector(),
            *self.shape.as_vector(),
        )


@dataclass(frozen=True)
class SignalExtractor:
    """Computes :class:`RequestSignals` and feature vectors for requests.

    >>> ex = SignalExtractor()
    >>> ex.signals(Request("Compare these and explain why.")).depth
    3
    >>> len(ex.feature_names) == ex.vector(Request("hi")).shape[0]
    True
    """

    config: SignalConfig = field(default_factory=SignalConfig)

    @cached_property
    def counter(self) -> TokenCounter:
        return make_token_counter(self.config.tokenizer)

    @cached_property
    def matcher(self) -> KeywordMatcher:
        return KeywordMatcher(self.config.keywords)

    @cached_property
    def feature_names(self) -> tuple[str, ...]:
        return (
            "n_tokens",
            *self.matcher.feature_names,
            "kw_total",
            "kw_word_total",
            "kw_occurrences",
            "depth_score",
            "sla_ms",
            "sla_missing",
            "latency_sensitive",
            *SCHEMA_FEATURE_NAMES,
            *SHAPE_FEATURE_NAMES,
        )

    @cached_property
    def spec(self) -> FeatureSpec:
        return FeatureSpec(names=self.feature_names, version=FEATURE_VERSION, tokenizer=self.counter.id, signals=self.config.to_dict())

    def depth(self, keyword_hits: int, token_count: int) -> int:
        cfg = self.config
        return reasoning_depth(
            keyword_hits,
            token_count,
            keyword_cap=cfg.keyword_cap,
            long_prompt_tokens=cfg.long_prompt_tokens,
            very_long_prompt_tokens=cfg.very_long_prompt_tokens,
            max_depth=cfg.max_depth,
        )

    def is_latency_sensitive(self, sla_ms: float | None) -> bool:
        return sla_ms is not None and sla_ms < self.config.latency_sensitive_ms

    def tree_signals(self, request: Request) -> tuple[int, bool, int, bool]:
        """The heuristic tree's four inputs: token count, is_structured, depth, latency-sensitive.
        ``is_structured`` is the article's ``output_schema is not None`` (requests from
        :func:`~tierroute.request.parse_request` carry None for "no schema"). A
        :class:`~tierroute.features.logged.LoggedRequest` (no text) is replayed from its vector's
        named signals (``n_tokens``, ``schema_present``, ``depth_score``, ``latency_sensitive``)."""
        if isinstance(request, LoggedRequest):
            names = self.feature_names
            return (
                int(logged_signal(request, names, "n_tokens")),
                logged_signal(request, names, "schema_present") > 0,
                int(logged_signal(request, names, "depth_score")),
                logged_signal(request, names, "latency_sensitive") > 0,
            )
        tokens = self.counter.count(request.prompt)
        depth = self.depth(self.matcher.hits(request.prompt).total, tokens)
        return tokens, request.output_schema is not None, depth, self.is_latency_sensitive(request.latency_sla_ms)

    def signals(self, request: Request, token_count: int | None = None) -> RequestSignals:
        """Measure one request. A malformed output schema raises FeatureError. ``token_count``:
        the prompt's count when the caller already tokenized it with this extractor's tokenizer
        (the serving path counts once for the count and the embedding)."""
        tokens = self.counter.count(request.prompt) if token_count is None else token_count
        hits = self.matcher.hits(request.prompt)
        return RequestSignals(
            token_count=tokens,
            keywords=hits,
            depth=self.depth(hits.total, tokens),
            schema=request.schema_summary if request.schema_summary is not None else summarize_schema(request.output_schema),
            sla_ms=request.latency_sla_ms,
            latency_sensitive=self.is_latency_sensitive(request.latency_sla_ms),
            shape=prompt_shape(request.prompt),
        )

    def vector(self, request: Request) -> np.ndarray:
        """One float32 feature vector (NaN marks a missing SLA)."""
        return np.asarray(self.signals(request).as_vector(), dtype=np.float32)

    def matrix(self, requests: Iterable[Request] | Sequence[Request]) -> np.ndarray:
        """Feature vectors of many requests, one row each, float32 (a LoggedRequest: its vector's
        signal columns, which its FeatureSpec lays out first)."""
        requests = list(requests)
        if any(isinstance(r, LoggedRequest) for r in requests):
            out = np.empty((len(requests), len(self.feature_names)), dtype=np.float32)
            logged = [i for i, r in enumerate(requests) if isinstance(r, LoggedRequest)]
            text = [i for i, r in enumerate(requests) if not isinstance(r, LoggedRequest)]
            out[logged] = logged_matrix([requests[i] for i in logged], len(self.feature_names))
            out[text] = self.matrix([requests[i] for i in text])
            return out
        rows = [self.signals(r).as_vector() for r in requests]
        if not rows:
            return np.zeros((0, len(self.feature_names)), dtype=np.float32)
        return np.asarray(rows, dtype=np.float32)

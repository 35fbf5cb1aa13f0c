"""The learned router as one object: features (signals + embedding), the LightGBM estimate of
P(correct) per candidate, an expected-cost model, and the decision policy with its knob.

    router = LearnedRouter(config).fit(train_data, catalogue)
    router.decide(requests)            # candidate index per request
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from tierroute._params import check_number
from tierroute.errors import ConfigError
from tierroute.features.embeddings import ENCODERS, EmbeddingCache, Encoder
from tierroute.features.signals import SignalConfig, SignalExtractor
from tierroute.features.spec import FeatureSpec
from tierroute.models.catalogue import Catalogue
from tierroute.models.policy import POLICY_KINDS, Policy, choose, pick_knob
from tierroute.models.router import LGBMRouter, RouterParams
from tierroute.request import Request

__all__ = ["LearnedConfig", "CostModel", "LearnedRouter", "candidate_features"]


@dataclass(frozen=True)
class LearnedConfig:
    """Everything that defines a learned router before it sees data.

    ``target``: the policy knob is picked (out of fold, on training data) as the cheapest setting
    whose accuracy reaches ``target`` x the best single candidate's training accuracy.
    """

    encoder: str = "static"
    router: RouterParams = field(default_factory=RouterParams)
    signals: SignalConfig = field(default_factory=SignalConfig)
    policy: str = "lambda"
    target: float = 1.0
    # logged requests (chosen model only) train with weight 1 / propensity, clipped here (1: unweighted)
    max_ips_weight: float = 20.0

    def __post_init__(self) -> None:
        check_number(self.max_ips_weight, "max_ips_weight", "LearnedConfig", 1.0)
        if self.encoder not in (*ENCODERS, "none"):
            raise ConfigError(
                f"The 'encoder' parameter of LearnedConfig must be one of {(*ENCODERS, 'none')}. Got {self.encoder!r} instead."
            )
        if self.policy not in POLICY_KINDS:
            raise ConfigError(f"The 'policy' parameter of LearnedConfig must be one of {POLICY_KINDS}. Got {self.policy!r} instead.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signals"] = self.signals.to_dict()
        return d


def candidate_features(catalogue: Catalogue, candidates: Sequence[str]) -> np.ndarray:
    """Per candidate: tier rank and log prices (what the pooled model shares across candidates)."""
    rows = []
    for model in candidates:
        c = catalogue.candidate(model)
        rows.append([catalogue.tier_rank(c.tier), np.log(max(c.input_per_1k, 1e-9)), np.log(max(c.output_per_1k, 1e-9))])
    return np.asarray(rows, dtype=np.float32)


@dataclass
class CostModel:
    """Expected cost of each candidate for a request: a + b x prompt tokens, fitted per candidate
    on realised costs (output length is unknown before the call; its mean lands in ``a``)."""

    intercept: np.ndarray = field(default_factory=lambda: np.zeros(0))
    slope: np.ndarray = field(default_factory=lambda: np.zeros(0))

    def fit(self, tokens: np.ndarray, cost: np.ndarray) -> CostModel:
        m = cost.shape[1]
        self.intercept, self.slope = np.zeros(m), np.zeros(m)
        for j in range(m):
            known = ~np.isnan(cost[:, j])
            if known.sum() >= 2 and np.ptp(tokens[known]) > 0:
                self.slope[j], self.intercept[j] = np.polyfit(tokens[known], cost[known, j], 1)
            elif known.any():
                self.intercept[j] = cost[known, j].mean()
        for j in np.flatnonzero(self.slope < 0):  # cost cannot fall with length: use the mean instead
            known = ~np.isnan(cost[:, j])
            self.slope[j], self.intercept[j] = 0.0, cost[known, j].mean()
        return self

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        return np.maximum(self.intercept[None, :] + np.outer(tokens, self.slope), 0.0)


def _weighted_mean(values: np.ndarray, weight: np.ndarray | None) -> float:
    known = ~np.isnan(values)
    if not known.any():
        return float("nan")
    return float(np.average(values[known], weights=None if weight is None else weight[known]))


class LearnedRouter:
    """Features -> calibrated P(correct) per candidate -> policy -> choice."""

    def __init__(self, config: LearnedConfig | None = None, encoder: Encoder | None = None,
                 cache: EmbeddingCache | None = None) -> None:
        self.config = config if config is not None else LearnedConfig()
        self.encoder = encoder
        self.cache = cache
        self.extractor = SignalExtractor(self.config.signals)

    @property
    def spec(self) -> FeatureSpec:
        base = self.extractor.spec
        if self.encoder is None:
            return base
        names = (*base.names, *(f"emb_{i}" for i in range(self.encoder.dims)))
        return FeatureSpec(names, base.version, base.tokenizer, base.signals, self.encoder.id, self.encoder.dims)

    def features(self, requests: Sequence[Request], progress: Any = None) -> np.ndarray:
        scalar = self.extractor.matrix(requests)
        if self.encoder is None:
            return scalar
        texts = [r.prompt for r in requests]
        emb = (self.cache.encode(self.encoder, texts, progress=progress) if self.cache is not None
               else self.encoder.encode(texts))
        return np.hstack([scalar, emb]).astype(np.float32)

    def fit(self, data: Any, catalogue: Catalogue, progress: Any = None, engine: Any = None) -> LearnedRouter:
        """``data``: a RoutingData of training requests; ``progress``: a
        :class:`tierroute.progress.Progress` for bars (None: silent); ``engine``: a connected
        :class:`tierroute.pipelines.distributed.DaskEngine` computes the features and fits the
        boosters on its cluster (None: here)."""
        from tierroute.progress import bar

        X = engine.features(self, data.requests) if engine is not None else self.features(data.requests, progress)
        from tierroute.pipelines.records import prompt_hash

        self.train_prompt_hashes_ = frozenset(prompt_hash(r.prompt) for r in data.requests)
        self.candidates_ = tuple(data.candidates)
        self.catalogue_ = catalogue
        self.candidate_features_ = candidate_features(catalogue, self.candidates_)
        params = self.config.router
        with bar(progress, params.n_folds + 1, f"fitting {params.kind} LightGBM ({params.n_folds} folds + final)") as step:
            self.model_ = LGBMRouter(params).fit(X, np.nan_to_num(data.correct), data.mask, self.candidate_features_,
                                                 data.tasks, step=step, sample_weight=data.training_weights(self.config.max_ips_weight),
                                                 trainer=None if engine is None else engine.fit_booster)
        tokens = X[:, 0]
        self.cost_model_ = CostModel().fit(tokens, data.cost)
        expected_cost = self.cost_model_.predict(tokens)
        # logged requests (chosen model only) are judged by doubly-robust pseudo-outcomes, with the
        # out-of-fold P(correct) and the expected cost as the outcome model; benchmarked ones as observed
        judged = data.with_estimates(np.nan_to_num(self.model_.oof_proba_, nan=0.5), expected_cost)
        weight = data.weight
        best_single = float(np.nanmax([_weighted_mean(judged.correct[:, j], weight) for j in range(len(self.candidates_))]))
        self.target_accuracy_ = self.config.target * best_single
        self.policy_ = pick_knob(self.config.policy, self.model_.oof_proba_, expected_cost, judged.correct,
                                 judged.cost, self.target_accuracy_, self.feasible(data.requests), weight=weight)
        self.feature_spec_ = self.spec
        return self

    def predict_proba(self, requests: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        """(P(correct) (n, m), expected cost (n, m)) for ``requests``."""
        X = self.features(requests)
        return self.model_.predict_proba(X), self.cost_model_.predict(X[:, 0])

    def feasible(self, requests: Sequence[Request]) -> np.ndarray:
        """(n, m) True where the candidate's catalogue p95 latency fits the request's SLA (an
        unknown latency or a missing SLA fits)."""
        p95 = np.array([np.nan if (c := self.catalogue_.candidate(m).p95_latency_ms) is None else c for m in self.candidates_])
        sla = np.array([np.nan if r.latency_sla_ms is None else r.latency_sla_ms for r in requests])
        fits = ~(p95[None, :] > sla[:, None])
        if np.isfinite(p95).any():  # an SLA nobody meets: the fastest candidate, not all of them
            fastest = int(np.nanargmin(p95))
            fits[~fits.any(axis=1), fastest] = True
        return fits

    def decide(self, requests: Sequence[Request], policy: Policy | None = None) -> np.ndarray:
        """Index into ``candidates_`` per request, under ``policy`` (default: the fitted one),
        among the candidates whose p95 latency fits the request's SLA."""
        proba, cost = self.predict_proba(requests)
        return choose(policy or self.policy_, proba, cost, self.feasible(requests))

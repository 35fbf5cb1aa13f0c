"""The learned router (the trained routing policy) as one object: features (signals +
embedding), an estimate of P(correct) per candidate (a LightGBM or other estimator family), an
expected-cost model, and the decision policy with its knob.

    router = LearnedRouter(config).fit(train_data, catalogue)
    router.decide(requests)            # candidate index per request
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, cast

import numpy as np

from tierroute._params import check_number
from tierroute.errors import ConfigError
from tierroute.features.embeddings import ENCODERS, EmbeddingCache, Encoder
from tierroute.features.logged import check_logged_spec, is_logged, logged_matrix
from tierroute.features.signals import SignalConfig, SignalExtractor
from tierroute.features.spec import FeatureSpec
from tierroute.hashing import prompt_hash
from tierroute.models.catalogue import Catalogue
from tierroute.models.decision import Calibration, DecisionCore, feature_matrix, sla_feasible, token_column
from tierroute.models.families import FAMILY_KINDS, FamilyParams, make_estimator
from tierroute.models.heuristic import HeuristicTree, tree_picks
from tierroute.models.objective import DEFAULT_OBJECTIVE, KnobCurve, OOFSweep, check_objective
from tierroute.models.policy import POLICY_KINDS, Policy, always, choose, sweep
from tierroute.models.router import RouterParams
from tierroute.request import Request

__all__ = ["LearnedConfig", "CostModel", "LearnedRouter", "candidate_features", "request_features", "assembled_spec"]


@dataclass(frozen=True)
class LearnedConfig:
    """Everything that defines a learned router before it sees data.

    ``objective`` picks the policy's operating point on the out-of-fold knob curve (see
    :mod:`tierroute.models.objective`): ``match-best`` (default; the cheapest point reaching
    ``target`` x the best single candidate's training accuracy), ``match-heuristic``,
    ``max-accuracy`` or ``budget=USD``. The curve ships with the bundle, so serving can change it.
    """

    encoder: str = "static"
    # the P(correct) family and its parameters: RouterParams (LightGBM, kind pooled or
    # per_candidate), KNNParams or LowRankParams (tierroute.models.families)
    router: FamilyParams = field(default_factory=RouterParams)
    signals: SignalConfig = field(default_factory=SignalConfig)
    policy: str = "lambda"
    target: float = 1.0
    # logged requests (chosen model only) train with weight 1 / propensity, clipped here (1: unweighted)
    max_ips_weight: float = 20.0
    objective: str = DEFAULT_OBJECTIVE

    def __post_init__(self) -> None:
        check_number(self.max_ips_weight, "max_ips_weight", "LearnedConfig", 1.0)
        check_objective(self.objective, "'objective' parameter of LearnedConfig")
        if self.encoder not in (*ENCODERS, "none"):
            raise ConfigError(
                f"The 'encoder' parameter of LearnedConfig must be one of {(*ENCODERS, 'none')}. Got {self.encoder!r} instead."
            )
        if self.policy not in POLICY_KINDS:
            raise ConfigError(f"The 'policy' parameter of LearnedConfig must be one of {POLICY_KINDS}. Got {self.policy!r} instead.")
        if getattr(self.router, "kind", None) not in FAMILY_KINDS:
            raise ConfigError(
                f"The 'router' parameter of LearnedConfig must be the params of one of {FAMILY_KINDS} "
                f"(RouterParams, KNNParams or LowRankParams). Got {self.router!r} instead."
            )

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["signals"] = self.signals.to_dict()
        return d

    @classmethod
    def carried_over(cls, settings: Any) -> LearnedConfig:
        """The settings of a trained router (possibly unpickled from an earlier release, which lacks
        newer fields) as a LearnedConfig: every field it has, the default for the others."""
        default = cls()
        return cls(**{f.name: getattr(settings, f.name, getattr(default, f.name)) for f in fields(cls)})


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
        for k in np.flatnonzero(self.slope < 0):  # cost cannot fall with length: use the mean instead
            known = ~np.isnan(cost[:, k])
            self.slope[k], self.intercept[k] = 0.0, cost[known, k].mean()
        return self

    def predict(self, tokens: np.ndarray) -> np.ndarray:
        return cast(np.ndarray, np.maximum(self.intercept[None, :] + np.outer(tokens, self.slope), 0.0))


def _weighted_mean(values: np.ndarray, weight: np.ndarray | None) -> float:
    known = ~np.isnan(values)
    if not known.any():
        return float("nan")
    return float(np.average(values[known], weights=None if weight is None else weight[known]))


def assembled_spec(extractor: SignalExtractor, encoder: Encoder | None) -> FeatureSpec:
    """The FeatureSpec of what :func:`request_features` assembles: the signals, then the embedding."""
    base = extractor.spec
    if encoder is None:
        return base
    names = (*base.names, *(f"emb_{i}" for i in range(encoder.dims)))
    return FeatureSpec(names, base.version, base.tokenizer, base.signals, encoder.id, encoder.dims)


def request_features(
    extractor: SignalExtractor,
    encoder: Encoder | None,
    requests: Sequence[Request],
    cache: EmbeddingCache | None = None,
    progress: Any = None,
) -> np.ndarray:
    """(n, d) float32 features of ``requests``: the signals, then the prompt embedding (through
    ``cache`` when given). The one feature assembly of training, the Dask workers and evaluation.
    A :class:`~tierroute.features.logged.LoggedRequest` (privacy mode: no text) gives its logged
    vector instead, when it was logged under this assembly's FeatureSpec (else FeatureError, naming
    both fingerprints)."""
    logged = is_logged(requests)
    if logged.any():
        spec = assembled_spec(extractor, encoder)
        check_logged_spec(requests, spec)
        out = np.empty((len(requests), spec.n_features), dtype=np.float32)
        out[logged] = logged_matrix([requests[int(i)] for i in np.flatnonzero(logged)], spec.n_features)
        if not logged.all():
            text = [requests[int(i)] for i in np.flatnonzero(~logged)]
            out[~logged] = request_features(extractor, encoder, text, cache, progress)
        return out
    scalar = extractor.matrix(requests)
    if encoder is None:
        return feature_matrix(scalar, None)
    texts = [r.prompt for r in requests]
    emb = cache.encode(encoder, texts, progress=progress) if cache is not None else encoder.encode(texts)
    return feature_matrix(scalar, emb)


class LearnedRouter:
    """The trained routing policy: features -> a P(correct) estimator (one of
    :mod:`tierroute.models.families`, e.g. :class:`tierroute.models.router.LGBMEstimator`) ->
    calibrated P(correct) per candidate -> expected cost -> decision policy -> choice.

    Not the serving runtime: a fitted LearnedRouter is exported as a RouterBundle, which
    :class:`tierroute.serving.router.Router` loads and serves."""

    def __init__(self, config: LearnedConfig | None = None, encoder: Encoder | None = None, cache: EmbeddingCache | None = None) -> None:
        self.config = config if config is not None else LearnedConfig()
        self.encoder = encoder
        self.cache = cache
        self.extractor = SignalExtractor(self.config.signals)

    @property
    def spec(self) -> FeatureSpec:
        return assembled_spec(self.extractor, self.encoder)

    def features(self, requests: Sequence[Request], progress: Any = None) -> np.ndarray:
        """(n, d) float32 request features in :attr:`spec` order (embeddings through the cache)."""
        return request_features(self.extractor, self.encoder, requests, self.cache, progress)

    def fit(self, data: Any, catalogue: Catalogue, progress: Any = None, engine: Any = None) -> LearnedRouter:
        """``data``: a RoutingData of training requests; ``progress``: a
        :class:`tierroute.progress.Progress` for bars (None: silent); ``engine``: a connected Dask
        engine computes the features and fits the boosters on its cluster (None: here)."""
        from tierroute.progress import bar

        X = engine.features(self, data.requests) if engine is not None else self.features(data.requests, progress)
        self.train_prompt_hashes_ = frozenset(
            prompt_hash(r.prompt) for r, vector in zip(data.requests, is_logged(data.requests)) if not vector
        )  # a logged vector has no prompt to hash
        self.candidates_ = tuple(data.candidates)
        self.catalogue_ = catalogue
        self.candidate_features_ = candidate_features(catalogue, self.candidates_)
        self.feature_spec_ = self.spec
        params = self.config.router
        label = f"{params.kind} LightGBM" if params.kind in ("pooled", "per_candidate") else params.kind
        with bar(progress, params.n_folds + 1, f"fitting {label} ({params.n_folds} folds + final)") as step:
            self.model_ = make_estimator(params.kind, params).fit(
                X,
                np.nan_to_num(data.correct),
                data.mask,
                self.candidate_features_,
                data.tasks,
                step=step,
                sample_weight=data.training_weights(self.config.max_ips_weight),
                trainer=None if engine is None else engine.fit_booster,
            )
        tokens = X[:, token_column(self.feature_spec_.names)]
        self.cost_model_ = CostModel().fit(tokens, data.cost)
        self._fit_operating_point(data, self.cost_model_.predict(tokens))
        return self

    def _fit_operating_point(self, data: Any, expected_cost: np.ndarray) -> None:
        """The out-of-fold knob curve and the objective's point on it. Logged requests (chosen
        model only) are judged by doubly-robust pseudo-outcomes, with the out-of-fold P(correct)
        and the expected cost as the outcome model; benchmarked ones as observed."""
        oof = self.model_.oof_proba_
        judged = data.with_estimates(np.nan_to_num(oof, nan=0.5), expected_cost)
        weight = data.weight
        singles = [_weighted_mean(judged.correct[:, j], weight) for j in range(len(self.candidates_))]
        best_single = float(np.nanmax(singles))
        self.target_accuracy_ = self.config.target * best_single
        feasible = self.feasible(data.requests)
        swept = sweep(self.config.policy, oof, expected_cost, feasible)
        frontier = int(np.argmax(np.nanmean(oof, axis=0))) if self.config.policy == "share" else None
        self.oof_sweep_ = OOFSweep(
            np.array([v for v, _ in swept]),
            np.array([p for _, p in swept], dtype=np.int32),
            judged.correct,
            judged.cost,
            weight,
            np.asarray(data.tasks),
        )
        tree = tree_picks(data.requests, self.catalogue_, self.candidates_, HeuristicTree(signals=self.config.signals))
        spent, heuristic = self.oof_sweep_.points(picks=tree[None, :])[0]  # measured as the curve's points are
        self.knob_curve_ = KnobCurve.from_sweep(
            self.oof_sweep_,
            heuristic,
            self.config.target,
            self.config.objective,
            best_single_accuracy=best_single,
            heuristic_cost_per_query=spent,
            tree_picks=tree,
            best_index=int(np.nanargmax(singles)),
            policy=Policy(self.config.policy, 0.0, frontier),
            anchor_picks=choose(always(self.oof_sweep_.best_single()), oof, expected_cost, feasible),
        )
        self.objective_point_ = self.knob_curve_.pick(self.config.objective)
        self.policy_ = self.knob_curve_.policy(self.objective_point_)

    @property
    def core_(self) -> DecisionCore:
        """The decision core (the one serving runs), built from this router's fitted parts."""
        p95 = [np.nan if (c := self.catalogue_.candidate(m).p95_latency_ms) is None else c for m in self.candidates_]
        return DecisionCore.build(
            self.candidates_,
            self.feature_spec_.names,
            [Calibration.from_calibrator(c) for c in self.model_.calibrators_],
            self.cost_model_.intercept,
            self.cost_model_.slope,
            p95,
            self.policy_,
            getattr(self, "knob_curve_", None),
        )

    def predict_proba(self, requests: Sequence[Request]) -> tuple[np.ndarray, np.ndarray]:
        """(P(correct) (n, m), expected cost (n, m)) for ``requests``."""
        X = self.features(requests)
        core = self.core_
        return core.probabilities(self.model_.predict_raw(X)), core.expected_cost(X[:, core.token_index])

    def feasible(self, requests: Sequence[Request]) -> np.ndarray:
        """(n, m) True where the candidate's catalogue p95 latency fits the request's SLA (an
        unknown latency or a missing SLA fits; an SLA nobody meets: the fastest candidate)."""
        p95 = np.array([np.nan if (c := self.catalogue_.candidate(m).p95_latency_ms) is None else c for m in self.candidates_])
        fits = sla_feasible(p95, [r.latency_sla_ms for r in requests])
        return np.ones((len(requests), len(self.candidates_)), dtype=bool) if fits is None else fits

    def decide(self, requests: Sequence[Request], policy: Policy | None = None, objective: str | None = None) -> np.ndarray:
        """Index into ``candidates_`` per request, under ``policy`` (default: the point of
        ``objective`` on the knob curve, else the fitted policy), among the candidates whose p95
        latency fits the request's SLA."""
        proba, cost = self.predict_proba(requests)
        core = self.core_
        return core.choose(proba, cost, self.feasible(requests), policy or core.policy_for(objective))

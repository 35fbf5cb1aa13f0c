"""kNN outcome estimator: P(candidate j is right | request) from the outcomes of the most similar
training prompts.

For a request, the ``k`` training prompts nearest by cosine similarity are found once; candidate
j's raw score is their similarity-weighted mean outcome for j, shrunk toward j's mean over all
training prompts with a pseudo-neighbour of similarity 1 and weight ``prior``:

    score_j = (sum_i s_i w_ij y_ij + prior * mean_j) / (sum_i s_i w_ij + prior)

``s_i`` = max(cosine, 0); ``w_ij`` = the outcome's sample weight, 0 where it is unknown (so a
neighbour without an outcome for j does not count for j, and a lone neighbour gives no 0/1).

Representation: with ``embedding_start`` set, the request's columns from there on (the prompt
embedding, after the scalar signals) centred by the training mean; with None, every column
standardised (z-score; the scalar signals have no common unit). Either way the rows are
L2-normalised, so the dot product is the cosine; a non-finite feature (a missing SLA is NaN) sits
at the training mean. The default is None: on out-of-fold AIQ of the training data (5 folds,
k=64) all columns standardised scored 0.8381 against the embedding's 0.8358 on RouterBench and
0.7652 against 0.7640 on RouteLLM MMLU+GSM8K (bench/families.py prints both); k=64 beat 8-32 and
tied 128 on both. bench/families.py measures both.

Identical training prompts are one neighbour carrying their summed weights and hits (a prompt
logged several times pools its outcomes). Out of fold by construction: a fold's requests are
scored against the other folds' prompts (:mod:`tierroute.models.crossfit`). Serving needs numpy only: :func:`knn_arrays` gives the plain
arrays and :class:`KNNScorer` scores with them (the fitted estimator scores with the same class).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError
from tierroute.models.crossfit import CrossFitEstimator, check_crossfit_params, column_moments

__all__ = [
    "KNNParams",
    "KNNEstimator",
    "KNNScorer",
    "knn_arrays",
    "KNN_ARRAYS",
    "KNNRouter",  # old name, kept so pickles from earlier releases load
]

KNN_ARRAYS = ("center", "scale", "keys", "weight", "hits", "prior")
_BLOCK = 256  # query rows scored at once (bounds the (rows, n_train) similarity block)


@dataclass(frozen=True)
class KNNParams:
    """Hyper-parameters of a :class:`KNNEstimator`. ``k`` neighbours; ``prior`` the weight of the
    pseudo-neighbour carrying the candidate's mean (in similarity units: 1 = one identical
    prompt)."""

    kind: str = "knn"
    k: int = 64
    prior: float = 1.0
    n_folds: int = 5
    calibration: str = "isotonic"
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "KNNParams"
        if self.kind != "knn":
            raise ConfigError(f"The 'kind' parameter of {owner} must be one of ('knn',). Got {self.kind!r} instead.")
        check_int(self.k, "k", owner, 1)
        check_number(self.prior, "prior", owner, 0.0)
        check_crossfit_params(owner, self.n_folds, self.calibration, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class KNNScorer:
    """Raw kNN scores from plain arrays (numpy only; what serving loads).

    ``arrays``: ``center`` (d',), ``scale`` (d',) the representation's shift and scale;
    ``keys`` (N, d') the training prompts' normalised representations; ``weight`` (N, m) each
    outcome's sample weight (0 where unknown); ``hits`` (N, m) weight x outcome; ``prior`` (m,)
    each candidate's weighted mean outcome. ``params``: ``k``, ``prior`` (strength),
    ``embedding_start`` (int or None), ``n_features``.

    ``scorer(X)``: X (n, n_features) float32 request features -> (n, m) float64 raw scores. The
    similarities are one matrix product: serve with one BLAS thread (``OPENBLAS_NUM_THREADS=1``,
    as the ONNX sessions use one intra-op thread): waking a BLAS thread pool per request on a
    busy machine costs milliseconds (bench/families.py --only serve)."""

    def __init__(self, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> None:
        missing = [name for name in KNN_ARRAYS if name not in arrays]
        if missing:
            raise ConfigError(f"KNNScorer got arrays {sorted(arrays)}; it needs {list(KNN_ARRAYS)} (missing {missing}).")
        self.center = np.asarray(arrays["center"], dtype=np.float64)
        self.scale = np.asarray(arrays["scale"], dtype=np.float64)
        self.keys = np.asarray(arrays["keys"], dtype=np.float64)
        self.weight = np.asarray(arrays["weight"], dtype=np.float64)
        self.hits = np.asarray(arrays["hits"], dtype=np.float64)
        self.prior = np.asarray(arrays["prior"], dtype=np.float64)
        self.k = int(params["k"])
        self.strength = float(params["prior"])
        start = params.get("embedding_start")
        self.start = 0 if start is None else int(start)
        self.n_features = int(params["n_features"])
        n, m = self.weight.shape
        d = self.n_features - self.start
        if (
            self.keys.shape != (n, d)
            or self.hits.shape != (n, m)
            or self.prior.shape != (m,)
            or self.center.shape != (d,)
            or self.scale.shape != (d,)
            or n < 1
            or self.k < 1
        ):
            raise ConfigError(
                f"KNNScorer got keys {self.keys.shape}, weight {self.weight.shape}, hits {self.hits.shape}, prior "
                f"{self.prior.shape}, center {self.center.shape}, scale {self.scale.shape}, k {self.k} for "
                f"{self.n_features} features from column {self.start}; expected keys (N, {d}), weight and hits "
                f"(N, m), prior (m,), center and scale ({d},), N >= 1 and k >= 1."
            )
        self.params = {"k": self.k, "prior": self.strength, "embedding_start": start, "n_features": self.n_features}

    @property
    def arrays(self) -> dict[str, np.ndarray]:
        """The plain arrays this scorer loads from (keys, weight and hits as float32: exact, since
        they are float32 values held in float64)."""
        small = {"keys": self.keys, "weight": self.weight, "hits": self.hits}
        return {"center": self.center, "scale": self.scale, **{k: v.astype(np.float32) for k, v in small.items()}, "prior": self.prior}

    def represent(self, X: np.ndarray) -> np.ndarray:
        """Rows of X as unit vectors in the neighbour space (a zero row stays zero)."""
        return _unit_rows(X, self.start, self.center, self.scale)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ConfigError(f"X has shape {X.shape}; this kNN scorer was fitted on {self.n_features} features.")
        out = np.empty((len(X), self.weight.shape[1]))
        k = min(self.k, len(self.keys))
        for lo in range(0, len(X), _BLOCK):
            sims = self.represent(X[lo : lo + _BLOCK]) @ self.keys.T  # (b, N) cosine similarities
            if k < sims.shape[1]:
                idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
            else:
                idx = np.broadcast_to(np.arange(k), sims.shape)
            s = np.maximum(np.take_along_axis(sims, idx, axis=1), 0.0)  # (b, k)
            num = np.einsum("bk,bkm->bm", s, self.hits[idx]) + self.strength * self.prior
            den = np.einsum("bk,bkm->bm", s, self.weight[idx]) + self.strength
            out[lo : lo + _BLOCK] = np.where(den > 0, num / np.where(den > 0, den, 1.0), self.prior)
        return out


def _unit_rows(X: np.ndarray, start: int, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    Z = (np.asarray(X, dtype=np.float64)[:, start:] - center) / scale
    Z = np.where(np.isfinite(Z), Z, 0.0)  # a missing feature sits at the training mean
    norm = np.sqrt(np.einsum("ij,ij->i", Z, Z))
    return Z / np.where(norm > 0, norm, 1.0)[:, None]


def _fit_scorer(
    X: np.ndarray, Y: np.ndarray, mask: np.ndarray, W: np.ndarray | None, rows: np.ndarray, params: KNNParams, embedding_start: int | None
) -> KNNScorer:
    """A scorer over the training prompts ``rows`` (representation fitted on them alone)."""
    start = 0 if embedding_start is None else embedding_start
    center, std = column_moments(X[rows, start:])
    scale = std if embedding_start is None else np.ones_like(center)
    known = mask[rows]
    weight = np.where(known, 1.0 if W is None else np.nan_to_num(W[rows]), 0.0)
    hits = weight * np.where(known, np.nan_to_num(Y[rows]), 0.0)
    total = weight.sum(axis=0)
    prior = np.where(total > 0, hits.sum(axis=0) / np.where(total > 0, total, 1.0), 0.5)
    keys = _unit_rows(X[rows], start, center, scale).astype(np.float32)
    # one key per distinct prompt: a repeated prompt's outcomes (logged for different candidates,
    # say) pool into one neighbour, and no exact ties are left for the top-k to break
    keys, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    merged_weight, merged_hits = np.zeros((len(keys), weight.shape[1])), np.zeros((len(keys), weight.shape[1]))
    np.add.at(merged_weight, inverse, weight)
    np.add.at(merged_hits, inverse, hits)
    # keys, weights and hits are kept (and shipped) as float32: half the bytes, scored in float64
    arrays = {
        "center": center,
        "scale": scale,
        "keys": keys,
        "weight": merged_weight.astype(np.float32),
        "hits": merged_hits.astype(np.float32),
        "prior": prior,
    }
    return KNNScorer(arrays, {"k": params.k, "prior": params.prior, "embedding_start": embedding_start, "n_features": X.shape[1]})


class KNNEstimator(CrossFitEstimator):
    """P(correct) per candidate from the nearest training prompts' outcomes (see the module
    docstring). ``embedding_start``: the first embedding column of X (None: all columns,
    standardised). Same contract as :class:`tierroute.models.router.LGBMEstimator`;
    ``feature_importance()`` is all zeros (a neighbour vote weighs no feature by itself)."""

    uses_validation = False

    def __init__(self, params: KNNParams | None = None, embedding_start: int | None = None) -> None:
        self.params = params if params is not None else KNNParams()
        if embedding_start is not None:
            check_int(embedding_start, "embedding_start", "KNNEstimator", 0)
        self.embedding_start = embedding_start

    def fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray,
        candidate_features: np.ndarray,
        strata: np.ndarray | None = None,
        step: Callable[..., None] | None = None,
        sample_weight: np.ndarray | None = None,
        trainer: Callable[..., Any] | None = None,
    ) -> KNNEstimator:
        """As :meth:`tierroute.models.router.LGBMEstimator.fit`; ``trainer`` is ignored (nothing to boost)."""
        X = np.asarray(X, dtype=np.float32)
        if self.embedding_start is not None and X.ndim == 2 and self.embedding_start >= X.shape[1]:
            raise ConfigError(
                f"KNNEstimator has embedding_start={self.embedding_start} but X has {X.shape[1]} columns; "
                "pass the first embedding column (or None to use every column)."
            )
        self._crossfit(X, Y, mask, candidate_features, strata, step, sample_weight)
        return self

    def _fit_models(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray,
        cand: np.ndarray,
        train_idx: np.ndarray,
        valid_idx: np.ndarray | None,
        budget: int | None,
        W: np.ndarray | None,
    ) -> tuple[KNNScorer, None]:
        return _fit_scorer(X, Y, mask, W, train_idx, self.params, self.embedding_start), None

    def _raw(self, models: KNNScorer, X: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return models(X)


def knn_arrays(estimator: KNNEstimator) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A fitted estimator's final scorer as plain arrays (float32 keys, weights and hits) and
    JSON-able params: ``KNNScorer(*knn_arrays(estimator))(X)`` equals ``estimator.predict_raw(X)``."""
    estimator._check_fitted()
    scorer: KNNScorer = estimator.models_
    return dict(scorer.arrays), dict(scorer.params)


# old name, kept so pickles from earlier releases load
KNNRouter = KNNEstimator

"""Low-rank P(correct) estimator: RouteLLM's matrix factorisation for N candidates, in numpy.

    score(request, j) = sigmoid(v_j . (W x) + b_j)

``x``: the request features, each squashed by sign(x) log(1 + |x|) (token counts and character
counts are heavy-tailed), standardised on the training requests and clipped to [-5, 5] (a
non-finite feature, such as a missing SLA's NaN, is 0: the training mean); ``W``
(rank, d) projects the request, ``v_j`` (rank,) and ``b_j`` are candidate j's embedding and
bias. (RouteLLM scores ``c . (normalise(p_j) * W x)`` and compares two models; with absolute
per-candidate outcomes that is the same bilinear family.)

Trained by minibatch Adam on the known (request, candidate) outcomes, each weighted by its sample
weight (weighted log loss, L2 on W and V), for at most ``max_epochs`` epochs, early-stopped on
the inner validation split the cross-fitting hands each fold; the final model trains for the
folds' median best epoch on every request (:mod:`tierroute.models.crossfit`). Deterministic for
a seed. Serving needs numpy only: :func:`lowrank_arrays` and :class:`LowRankScorer`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError
from tierroute.models.crossfit import CrossFitEstimator, check_crossfit_params, column_moments

__all__ = [
    "LowRankParams",
    "LowRankEstimator",
    "LowRankScorer",
    "lowrank_arrays",
    "LOWRANK_ARRAYS",
    "LowRankRouter",  # old name, kept so pickles from earlier releases load
]

LOWRANK_ARRAYS = ("center", "scale", "W", "V", "b")
_CLIP = 5.0


@dataclass(frozen=True)
class LowRankParams:
    """Hyper-parameters of a :class:`LowRankEstimator`."""

    kind: str = "lowrank"
    rank: int = 16
    max_epochs: int = 200
    batch_size: int = 256
    learning_rate: float = 0.003
    l2: float = 1e-4
    patience: int = 10
    n_folds: int = 5
    calibration: str = "isotonic"
    seed: int = 0

    def __post_init__(self) -> None:
        owner = "LowRankParams"
        if self.kind != "lowrank":
            raise ConfigError(f"The 'kind' parameter of {owner} must be one of ('lowrank',). Got {self.kind!r} instead.")
        check_int(self.rank, "rank", owner, 1)
        check_int(self.max_epochs, "max_epochs", owner, 1)
        check_int(self.batch_size, "batch_size", owner, 1)
        check_number(self.learning_rate, "learning_rate", owner, 1e-6, 1.0)
        check_number(self.l2, "l2", owner, 0.0)
        check_int(self.patience, "patience", owner, 1)
        check_crossfit_params(owner, self.n_folds, self.calibration, self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _squash(X: np.ndarray) -> np.ndarray:
    X = np.asarray(X, dtype=np.float64)
    return cast(np.ndarray, np.sign(X) * np.log1p(np.abs(X)))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free


class LowRankScorer:
    """Raw low-rank scores from plain arrays (numpy only; what serving loads).

    ``arrays``: ``center``, ``scale`` (d,) the standardisation of the squashed features; ``W``
    (rank, d); ``V`` (m, rank); ``b`` (m,). ``params``: ``n_features``, ``rank``.
    ``scorer(X)``: X (n, d) float32 -> (n, m) float64 P(correct) before calibration."""

    def __init__(self, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> None:
        missing = [name for name in LOWRANK_ARRAYS if name not in arrays]
        if missing:
            raise ConfigError(f"LowRankScorer got arrays {sorted(arrays)}; it needs {list(LOWRANK_ARRAYS)} (missing {missing}).")
        self.center, self.scale, self.W, self.V, self.b = (np.asarray(arrays[k], dtype=np.float64) for k in LOWRANK_ARRAYS)
        self.n_features = int(params["n_features"])
        d, r, m = self.n_features, self.W.shape[0] if self.W.ndim == 2 else -1, len(self.b)
        if (
            self.center.shape != (d,)
            or self.scale.shape != (d,)
            or self.W.shape != (r, d)
            or self.V.shape != (m, r)
            or self.b.shape != (m,)
        ):
            raise ConfigError(
                f"LowRankScorer got center {self.center.shape}, scale {self.scale.shape}, W {self.W.shape}, "
                f"V {self.V.shape}, b {self.b.shape} for {d} features; expected center and scale ({d},), "
                f"W (rank, {d}), V (m, rank), b (m,)."
            )
        self.arrays = {k: np.asarray(arrays[k], dtype=np.float64) for k in LOWRANK_ARRAYS}
        self.params = {"n_features": d, "rank": r}

    def inputs(self, X: np.ndarray) -> np.ndarray:
        """The model's input: squashed, standardised and clipped features (non-finite: 0, the mean)."""
        Z = (_squash(X) - self.center) / self.scale
        return np.clip(np.where(np.isfinite(Z), Z, 0.0), -_CLIP, _CLIP)

    def __call__(self, X: np.ndarray) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ConfigError(f"X has shape {X.shape}; this low-rank scorer was fitted on {self.n_features} features.")
        return _sigmoid((self.inputs(X) @ self.W.T) @ self.V.T + self.b)


class _Adam:
    def __init__(self, shapes: list[tuple[int, ...]], lr: float) -> None:
        self.lr, self.t = lr, 0
        self.m = [np.zeros(s) for s in shapes]
        self.v = [np.zeros(s) for s in shapes]

    def step(self, params: list[np.ndarray], grads: list[np.ndarray]) -> None:
        self.t += 1
        c1, c2 = 1 - 0.9**self.t, 1 - 0.999**self.t
        for p, g, m, v in zip(params, grads, self.m, self.v):
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            p -= self.lr * (m / c1) / (np.sqrt(v / c2) + 1e-8)


def _loss(Z: np.ndarray, y: np.ndarray, w: np.ndarray, W: np.ndarray, V: np.ndarray, b: np.ndarray) -> float:
    """Weighted mean log loss over the known outcomes (w = 0 where unknown)."""
    p = np.clip(_sigmoid((Z @ W.T) @ V.T + b), 1e-7, 1 - 1e-7)
    total = w.sum()
    return float(-(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / total) if total > 0 else 0.0


def _gradients(Z: np.ndarray, y: np.ndarray, w: np.ndarray, W: np.ndarray, V: np.ndarray, b: np.ndarray, l2: float) -> list[np.ndarray]:
    """Gradients of sum(w * log loss) / sum(w) + l2 / 2 (|W|^2 + |V|^2) in [W, V, b]."""
    H = Z @ W.T  # (B, r)
    g = (_sigmoid(H @ V.T + b) - y) * w / w.sum()  # d loss / d logit, (B, m)
    return [(g @ V).T @ Z + l2 * W, g.T @ H + l2 * V, g.sum(axis=0)]


def _train(
    Z: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    Zva: np.ndarray | None,
    yva: np.ndarray | None,
    wva: np.ndarray | None,
    epochs: int,
    p: LowRankParams,
) -> tuple[list[np.ndarray], int]:
    """Adam on rows of Z (n, d) with outcomes y (n, m) weighted by w (n, m); early-stopped on the
    validation rows when given. Returns ([W, V, b] at the best epoch, that epoch)."""
    rng = np.random.default_rng(p.seed)
    n, d = Z.shape
    m = y.shape[1]
    mean = np.clip((w * y).sum(axis=0) / np.maximum(w.sum(axis=0), 1e-12), 1e-3, 1 - 1e-3)
    W = rng.normal(0.0, 1.0 / np.sqrt(d), size=(p.rank, d))
    V = rng.normal(0.0, 0.1 / np.sqrt(p.rank), size=(m, p.rank))
    b = np.log(mean / (1 - mean))
    params = [W, V, b]
    adam = _Adam([W.shape, V.shape, b.shape], p.learning_rate)
    stop = Zva is not None and wva is not None and wva.sum() > 0
    best, best_epoch, since = np.inf, epochs, 0
    kept = [a.copy() for a in params]
    for epoch in range(1, epochs + 1):
        order = rng.permutation(n)
        for lo in range(0, n, p.batch_size):
            rows = order[lo : lo + p.batch_size]
            if w[rows].sum() > 0:
                adam.step(params, _gradients(Z[rows], y[rows], w[rows], W, V, b, p.l2))
        if stop:
            loss = _loss(Zva, yva, wva, W, V, b)  # type: ignore[arg-type]
            if loss < best - 1e-6:
                best, best_epoch, since = loss, epoch, 0
                kept = [a.copy() for a in params]
            else:
                since += 1
                if since >= p.patience:
                    break
    return (kept if stop else params), best_epoch


class LowRankEstimator(CrossFitEstimator):
    """P(correct) per candidate from a learned low-rank bilinear model of request x candidate
    (see the module docstring). Same contract as :class:`tierroute.models.router.LGBMEstimator`;
    ``feature_importance()`` is each feature's norm in the projection ``W`` (after
    standardisation: comparable across features); ``best_epochs_`` and ``n_epochs_`` are the
    folds' early-stopping points and the final model's epochs."""

    def __init__(self, params: LowRankParams | None = None) -> None:
        self.params = params if params is not None else LowRankParams()

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
    ) -> LowRankEstimator:
        """As :meth:`tierroute.models.router.LGBMEstimator.fit`; ``trainer`` is ignored (no booster)."""
        result = self._crossfit(X, Y, mask, candidate_features, strata, step, sample_weight)
        self.best_epochs_ = result.budgets
        self.n_epochs_ = result.budget
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
    ) -> tuple[LowRankScorer, int]:
        center, scale = column_moments(_squash(X[train_idx]))
        d = X.shape[1]
        shell = LowRankScorer(
            {"center": center, "scale": scale, "W": np.zeros((1, d)), "V": np.zeros((Y.shape[1], 1)), "b": np.zeros(Y.shape[1])},
            {"n_features": d},
        )

        def part(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            known = mask[rows]
            w = np.where(known, 1.0 if W is None else np.nan_to_num(W[rows]), 0.0)
            return shell.inputs(X[rows]), np.where(known, np.nan_to_num(Y[rows]), 0.0), w

        Z, y, w = part(train_idx)
        Zva, yva, wva = part(valid_idx) if valid_idx is not None and budget is None else (None, None, None)
        (Wm, V, b), epoch = _train(Z, y, w, Zva, yva, wva, budget or self.params.max_epochs, self.params)
        return LowRankScorer({"center": center, "scale": scale, "W": Wm, "V": V, "b": b}, {"n_features": d}), epoch

    def _raw(self, models: LowRankScorer, X: np.ndarray, cand: np.ndarray) -> np.ndarray:
        return models(X)

    def feature_importance(self) -> np.ndarray:
        """Each request feature's column norm in the (standardised) projection W."""
        self._check_fitted()
        return np.linalg.norm(self.models_.W, axis=0)  # type: ignore[no-any-return]


def lowrank_arrays(estimator: LowRankEstimator) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """A fitted estimator's final model as plain float64 arrays and JSON-able params:
    ``LowRankScorer(*lowrank_arrays(estimator))(X)`` equals ``estimator.predict_raw(X)``."""
    estimator._check_fitted()
    scorer: LowRankScorer = estimator.models_
    return dict(scorer.arrays), dict(scorer.params)


# old name, kept so pickles from earlier releases load
LowRankRouter = LowRankEstimator

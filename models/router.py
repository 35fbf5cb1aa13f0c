"""LightGBM P(correct) estimators: estimate P(candidate answers correctly | request) for N
candidates (the estimator inside the learned router, :class:`tierroute.models.learned.LearnedRouter`).

Two shapes, same contract (``fit`` returns self, learned attributes end in ``_``):

- ``pooled``: one model over (request features, candidate features) rows; the candidate's id,
  price and tier are features, so candidates share what they have in common.
- ``per_candidate``: one model per candidate on the request features alone.

Both are fit with K folds over requests (stratified by task): each fold's model predicts its
held-out requests, so every training request gets an out-of-fold probability. Those calibrate the
scores (isotonic or Platt per candidate) and let the decision policy's knob be picked honestly on
training data, never on the test set. The final model is refit on all requests with the fold
models' median best iteration. The folds and calibration are :mod:`tierroute.models.crossfit`'s,
shared with the other estimator families (:mod:`tierroute.models.families`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, cast

import numpy as np

from tierroute._params import check_fraction, check_int, check_number
from tierroute.errors import ConfigError
from tierroute.models.crossfit import CALIBRATIONS, Calibrator, CrossFitEstimator, stratified_folds

__all__ = [
    "RouterParams",
    "LGBMEstimator",
    "ROUTER_KINDS",
    "CALIBRATIONS",
    "stratified_folds",
    "LGBMRouter",  # old name, kept so pickles from earlier releases load
]

ROUTER_KINDS = ("pooled", "per_candidate")
# routers pickled by earlier releases name their calibrators tierroute.models.router._Calibrator
_Calibrator = Calibrator


@dataclass(frozen=True)
class RouterParams:
    """Hyper-parameters of an :class:`LGBMEstimator` (logged whole with every run)."""

    kind: str = "pooled"
    n_estimators: int = 600
    learning_rate: float = 0.03
    num_leaves: int = 15
    min_child_samples: int = 20
    feature_fraction: float = 0.8
    bagging_fraction: float = 0.8
    lambda_l2: float = 1.0
    early_stopping_rounds: int = 50
    n_folds: int = 5
    calibration: str = "isotonic"
    seed: int = 0
    n_threads: int = 2

    def __post_init__(self) -> None:
        owner = "RouterParams"
        if self.kind not in ROUTER_KINDS:
            raise ConfigError(f"The 'kind' parameter of {owner} must be one of {ROUTER_KINDS}. Got {self.kind!r} instead.")
        if self.calibration not in CALIBRATIONS:
            raise ConfigError(f"The 'calibration' parameter of {owner} must be one of {CALIBRATIONS}. Got {self.calibration!r} instead.")
        check_int(self.n_estimators, "n_estimators", owner, 1)
        check_number(self.learning_rate, "learning_rate", owner, 1e-6, 1.0)
        check_int(self.num_leaves, "num_leaves", owner, 2)
        check_int(self.min_child_samples, "min_child_samples", owner, 1)
        check_fraction(self.feature_fraction, "feature_fraction", owner)
        check_fraction(self.bagging_fraction, "bagging_fraction", owner)
        check_number(self.lambda_l2, "lambda_l2", owner, 0.0)
        check_int(self.early_stopping_rounds, "early_stopping_rounds", owner, 1)
        check_int(self.n_folds, "n_folds", owner, 2)
        check_int(self.seed, "seed", owner, 0)
        check_int(self.n_threads, "n_threads", owner, 1)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def lgb_params(self) -> dict[str, Any]:
        return {
            "objective": "binary",
            "learning_rate": self.learning_rate,
            "num_leaves": self.num_leaves,
            "min_data_in_leaf": self.min_child_samples,
            "feature_fraction": self.feature_fraction,
            "bagging_fraction": self.bagging_fraction,
            "bagging_freq": 1 if self.bagging_fraction < 1 else 0,
            "lambda_l2": self.lambda_l2,
            "seed": self.seed,
            "deterministic": True,
            "num_threads": self.n_threads,
            "verbosity": -1,
        }


class LGBMEstimator(CrossFitEstimator):
    """P(correct) for every (request, candidate), by LightGBM (formerly ``LGBMRouter``).

    >>> estimator = LGBMEstimator(RouterParams(n_estimators=20, n_folds=2))   # doctest: +SKIP
    >>> estimator.fit(X, Y, mask, candidate_features, strata).predict_proba(X).shape   # doctest: +SKIP
    (n_requests, n_candidates)
    """

    def __init__(self, params: RouterParams | None = None) -> None:
        self.params = params if params is not None else RouterParams()

    # -- design matrices ---------------------------------------------------------------------
    def _pooled_rows(self, X: np.ndarray, cand: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.hstack([X[rows], cols[:, None].astype(np.float32), cand[cols]]).astype(np.float32)

    def _fit_one(
        self,
        Xtr: np.ndarray,
        ytr: np.ndarray,
        Xva: np.ndarray | None,
        yva: np.ndarray | None,
        rounds: int,
        categorical: list[int],
        wtr: np.ndarray | None = None,
        wva: np.ndarray | None = None,
    ) -> Any:
        import lightgbm as lgb

        if len(ytr) == 0:
            raise ConfigError(
                "A candidate has no known outcome in a training fold; give every candidate outcomes for more "
                "requests, use fewer folds, or drop that candidate."
            )
        trainer = getattr(self, "_trainer", None)
        if trainer is not None:  # another engine (Dask) fits the booster; same data, same parameters
            return trainer(self.params, Xtr, ytr, wtr, Xva, yva, wva, rounds, categorical)
        train = lgb.Dataset(Xtr, ytr, weight=wtr, categorical_feature=categorical or "auto", free_raw_data=False)
        usable = Xva is not None and yva is not None and len(yva) > 0 and len(np.unique(ytr)) > 1
        valid = [lgb.Dataset(Xva, yva, weight=wva, reference=train)] if usable else []
        callbacks: list[Callable[..., Any]] = [lgb.early_stopping(self.params.early_stopping_rounds, verbose=False)] if valid else []
        return lgb.train(self.params.lgb_params(), train, num_boost_round=rounds, valid_sets=valid, callbacks=callbacks)

    def _fit_models(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray,
        cand: np.ndarray,
        train_idx: np.ndarray,
        valid_idx: np.ndarray | None,
        budget: int | None,
        W: np.ndarray | None = None,
    ) -> tuple[list[Any], int]:
        """Boosters on ``train_idx`` (``budget`` rounds; None: ``n_estimators`` with early stopping
        on ``valid_idx``) and the median round they stopped at."""
        models = self._boosters(X, Y, mask, cand, train_idx, valid_idx, budget or self.params.n_estimators, W)
        return models, int(np.median([mdl.best_iteration or mdl.current_iteration() for mdl in models]))

    def _boosters(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray,
        cand: np.ndarray,
        train_idx: np.ndarray,
        valid_idx: np.ndarray | None,
        rounds: int,
        W: np.ndarray | None,
    ) -> list[Any]:
        p = self.params
        m = Y.shape[1]
        if p.kind == "pooled":

            def long(idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
                rows, cols = np.nonzero(mask[idx])
                w = None if W is None else W[idx[rows], cols]
                return self._pooled_rows(X, cand, idx[rows], cols), Y[idx[rows], cols], w

            Xtr, ytr, wtr = long(train_idx)
            Xva, yva, wva = long(valid_idx) if valid_idx is not None else (None, None, None)
            return [self._fit_one(Xtr, ytr, Xva, yva, rounds, [X.shape[1]], wtr, wva)]
        models = []
        for j in range(m):
            tr = train_idx[mask[train_idx, j]]
            va = valid_idx[mask[valid_idx, j]] if valid_idx is not None else None
            models.append(
                self._fit_one(
                    X[tr],
                    Y[tr, j],
                    None if va is None else X[va],
                    None if va is None else Y[va, j],
                    rounds,
                    [],
                    None if W is None else W[tr, j],
                    None if W is None or va is None else W[va, j],
                )
            )
        return models

    def _raw(self, models: list[Any], X: np.ndarray, cand: np.ndarray) -> np.ndarray:
        n, m = len(X), len(cand)
        if self.params.kind == "pooled":
            rows = np.repeat(np.arange(n), m)
            cols = np.tile(np.arange(m), n)
            return cast(np.ndarray, models[0].predict(self._pooled_rows(X, cand, rows, cols)).reshape(n, m))
        return np.column_stack([model.predict(X) for model in models])

    # -- estimator API -----------------------------------------------------------------------
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
    ) -> LGBMEstimator:
        """``X`` (n, d) request features; ``Y`` (n, m) 0/1 correctness; ``mask`` (n, m) True where the
        outcome is known; ``candidate_features`` (m, k); ``strata`` (n,) task labels for the folds.
        ``step()`` is called after each of the ``n_folds + 1`` fits (a progress bar's).
        ``sample_weight`` (n, m): a weight per known outcome (inverse propensities for logged
        requests, less for older data), used by the trees and the calibration; None: all 1.
        ``trainer``: fits one booster instead of ``lightgbm.train`` (the Dask engine's
        :meth:`tierroute.pipelines.training.distributed.DaskEngine.fit_booster`); not kept after fit."""
        self._trainer = trainer
        try:
            return self._fit(X, Y, mask, candidate_features, strata, step, sample_weight)
        finally:
            del self._trainer

    def _fit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray,
        candidate_features: np.ndarray,
        strata: np.ndarray | None,
        step: Callable[..., None] | None,
        sample_weight: np.ndarray | None,
    ) -> LGBMEstimator:
        result = self._crossfit(X, Y, mask, candidate_features, strata, step, sample_weight)
        self.best_iterations_ = result.budgets
        self.n_estimators_ = result.budget
        return self

    def feature_importance(self) -> np.ndarray:
        """Total gain per request feature (pooled: candidate columns dropped), summed over models."""
        self._check_fitted()
        gains = [mdl.feature_importance(importance_type="gain")[: self.n_features_in_] for mdl in self.models_]
        return cast(np.ndarray, np.sum(gains, axis=0))


# old name, kept so pickles from earlier releases load (router.pkl, MLflow pyfunc models)
LGBMRouter = LGBMEstimator

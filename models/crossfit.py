"""Cross-fitting shared by every P(correct) estimator family: K folds over requests (stratified
by task), raw scores out of fold, per-candidate calibration, cross-fitted calibrated probabilities, final refit.

A family says how to fit its models on some training rows and how to score requests with them;
:func:`crossfit` does the rest, the same way for all of them:

1. requests are split into ``n_folds`` folds (:func:`stratified_folds`); for each fold, models
   are fit on the other folds (with, when the family asks for one, an inner early-stopping split:
   one tenth of those rows, again stratified) and score the held-out requests: ``oof_raw``;
2. one :class:`Calibrator` per candidate is fit on all out-of-fold scores (the served map);
3. ``oof_proba``: each fold's out-of-fold scores calibrated by maps fit on the other folds' scores
   only, so a policy knob picked on them is not tuned on in-sample calibration;
4. the final models are refit on every request, with the median of the folds' budgets (boosting
   rounds, epochs) when the family reports one.

:class:`CrossFitEstimator` wraps this in the estimator contract every family keeps (``fit`` returns
self; ``predict_raw``, ``predict_proba``, ``feature_importance``; learned attributes end in ``_``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from tierroute._params import check_int
from tierroute.errors import ConfigError

__all__ = [
    "CALIBRATIONS",
    "Calibrator",
    "stratified_folds",
    "FitFn",
    "RawFn",
    "CrossFit",
    "crossfit",
    "CrossFitEstimator",
    "INNER_FOLDS",
    "check_crossfit_params",
    "column_moments",
    "CrossFitRouter",  # old name, kept so pickles from earlier releases load
]

CALIBRATIONS = ("isotonic", "sigmoid", "none")
INNER_FOLDS = 10  # the early-stopping split: one of this many inner folds of the training rows

# fit(train rows, early-stopping rows or None, budget or None (None: the family's maximum with
# early stopping)) -> (models, the budget they used, or None for families without one)
FitFn = Callable[[np.ndarray, "np.ndarray | None", "int | None"], "tuple[Any, int | None]"]
# raw(models, rows of X) -> (len(rows), m) scores
RawFn = Callable[[Any, np.ndarray], np.ndarray]


def check_crossfit_params(owner: str, n_folds: object, calibration: object, seed: object) -> None:
    """The checks every family's params share, worded as everywhere (:mod:`tierroute._params`)."""
    if calibration not in CALIBRATIONS:
        raise ConfigError(f"The 'calibration' parameter of {owner} must be one of {CALIBRATIONS}. Got {calibration!r} instead.")
    check_int(n_folds, "n_folds", owner, 2)
    check_int(seed, "seed", owner, 0)


def column_moments(E: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) per column over its finite values, for the numpy families' standardisation:
    a column with none has mean 0, a constant one std 1. Non-finite features (a missing SLA is
    NaN) are then imputed at the mean, i.e. 0 once standardised (the signals flag them apart)."""
    E = np.asarray(E, dtype=np.float64)
    finite = np.isfinite(E)
    count = finite.sum(axis=0)
    zeroed = np.where(finite, E, 0.0)
    mean = zeroed.sum(axis=0) / np.maximum(count, 1)
    var = (np.where(finite, E - mean, 0.0) ** 2).sum(axis=0) / np.maximum(count, 1)
    std = np.sqrt(var)
    return mean, np.where(std > 1e-12, std, 1.0)


def stratified_folds(strata: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """A fold number per request, balanced within each stratum (task) and overall: the fold
    counter runs on across strata, so many small tasks still fill every fold."""
    rng = np.random.default_rng(seed)
    folds = np.empty(len(strata), dtype=np.int64)
    offset = 0
    for value in np.unique(strata):
        idx = np.flatnonzero(strata == value)
        rng.shuffle(idx)
        folds[idx] = (offset + np.arange(len(idx))) % n_folds
        offset += len(idx)
    return folds


def _logit(scores: np.ndarray) -> np.ndarray:
    return cast(np.ndarray, np.log(np.clip(scores, 1e-6, 1 - 1e-6) / np.clip(1 - scores, 1e-6, 1)))


class Calibrator:
    """Maps one candidate's raw scores to calibrated probabilities: ``isotonic`` (clipped to
    [0, 1]), ``sigmoid`` (Platt on the score's logit) or ``none``; a candidate whose labels hold
    one class only keeps its raw scores. (``tierroute.models.router._Calibrator`` is this class:
    routers pickled by earlier releases name it there.)"""

    def __init__(self, method: str) -> None:
        self.method = method
        self.model: Any = None

    def fit(self, scores: np.ndarray, labels: np.ndarray, weight: np.ndarray | None = None) -> Calibrator:
        if self.method == "isotonic" and len(np.unique(labels)) > 1:
            from sklearn.isotonic import IsotonicRegression

            self.model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels, sample_weight=weight)
        elif self.method == "sigmoid" and len(np.unique(labels)) > 1:
            from sklearn.linear_model import LogisticRegression

            self.model = LogisticRegression(C=1.0).fit(_logit(scores).reshape(-1, 1), labels, sample_weight=weight)
        return self

    def transform(self, scores: np.ndarray) -> np.ndarray:
        if self.model is None:
            return scores
        if self.method == "isotonic":
            return np.asarray(self.model.predict(scores), dtype=np.float64)
        return self.model.predict_proba(_logit(scores).reshape(-1, 1))[:, 1]  # type: ignore[no-any-return]


@dataclass
class CrossFit:
    """What :func:`crossfit` learned: ``folds`` (n,) fold per request; ``oof_raw`` (n, m) raw
    out-of-fold scores; ``budgets`` the budget each fold's models used (empty when the family has
    none); ``budget`` the final models' (median of ``budgets``, at least 1; None without);
    ``calibrators`` one per candidate, fit on every out-of-fold score; ``oof_proba`` (n, m)
    cross-fitted calibrated out-of-fold probabilities; ``models`` the final refit."""

    folds: np.ndarray
    oof_raw: np.ndarray
    budgets: list[int]
    budget: int | None
    calibrators: list[Calibrator]
    oof_proba: np.ndarray
    models: Any


def crossfit(
    fit: FitFn,
    raw: RawFn,
    Y: np.ndarray,
    mask: np.ndarray,
    strata: np.ndarray,
    *,
    n_folds: int,
    seed: int,
    calibration: str,
    weight: np.ndarray | None = None,
    validation: bool = True,
    step: Callable[..., None] | None = None,
) -> CrossFit:
    """Cross-fit one family (see the module docstring). ``fit`` and ``raw`` close over the
    features; ``Y`` (n, m) 0/1, ``mask`` (n, m) known outcomes, ``weight`` (n, m) or None;
    ``validation``: give ``fit`` an inner early-stopping split (else all other folds train);
    ``step()`` after each of the ``n_folds + 1`` fits."""
    step = step or (lambda n=1: None)
    n, m = Y.shape
    folds = stratified_folds(strata, n_folds, seed)
    oof = np.full((n, m), np.nan)
    budgets: list[int] = []
    for k in range(n_folds):
        held = np.flatnonzero(folds == k)
        rest = np.flatnonzero(folds != k)
        if validation:
            inner = stratified_folds(strata[rest], INNER_FOLDS, seed + k + 1)
            models, used = fit(rest[inner != 0], rest[inner == 0], None)
        else:
            models, used = fit(rest, None, None)
        if used is not None:
            budgets.append(int(used))
        oof[held] = raw(models, held)
        step()
    budget = max(1, int(np.median(budgets))) if budgets else None

    def calibrator(rows: np.ndarray, j: int) -> Calibrator:
        return Calibrator(calibration).fit(oof[rows, j], Y[rows, j], None if weight is None else weight[rows, j])

    calibrators = [calibrator(mask[:, j], j) for j in range(m)]
    oof_proba = np.full((n, m), np.nan)
    for k in range(n_folds):
        held, rest = folds == k, folds != k
        for j in range(m):
            oof_proba[held, j] = calibrator(rest & mask[:, j], j).transform(oof[held, j])
    models, _ = fit(np.arange(n), None, budget)
    step()
    return CrossFit(folds, oof, budgets, budget, calibrators, oof_proba, models)


class CrossFitEstimator:
    """The estimator contract every family keeps, on :func:`crossfit`. A family sets ``params``
    (with ``n_folds``, ``calibration`` and ``seed``) and implements :meth:`_fit_models` (anything
    learned from data, a standardisation included, is learned there from the training rows, so
    out-of-fold scores stay out of fold) and :meth:`_raw`; ``uses_validation`` says whether its
    fold fits get an inner early-stopping split.

    Learned attributes: ``oof_raw_``, ``oof_proba_``, ``calibrators_``, ``folds_``, ``models_``,
    ``candidate_features_``, ``n_features_in_``, ``n_candidates_``."""

    params: Any
    uses_validation: bool = True

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
    ) -> tuple[Any, int | None]:
        raise NotImplementedError

    def _raw(self, models: Any, X: np.ndarray, cand: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _crossfit(
        self,
        X: np.ndarray,
        Y: np.ndarray,
        mask: np.ndarray,
        candidate_features: np.ndarray,
        strata: np.ndarray | None,
        step: Callable[..., None] | None,
        sample_weight: np.ndarray | None,
    ) -> CrossFit:
        """Check the inputs, cross-fit, and set the shared learned attributes."""
        name = type(self).__name__
        p = self.params
        X = np.asarray(X, dtype=np.float32)
        Y = np.asarray(Y, dtype=np.float64)
        mask = np.asarray(mask, dtype=bool)
        cand = np.asarray(candidate_features, dtype=np.float32)
        n, m = Y.shape
        if X.ndim != 2 or X.shape[0] != n or mask.shape != Y.shape or cand.shape[0] != m:
            raise ConfigError(
                f"{name}.fit got X {X.shape}, Y {Y.shape}, mask {mask.shape}, candidate_features {cand.shape}; "
                "expected X (n, d), Y and mask (n, m), candidate_features (m, k)."
            )
        W = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
        if W is not None and (W.shape != Y.shape or not np.isfinite(W[mask]).all() or (W[mask] < 0).any()):
            raise ConfigError(
                f"{name}.fit got sample_weight of shape {W.shape}; expected finite weights >= 0 of "
                f"shape {Y.shape} (one per request and candidate)."
            )
        strata = np.zeros(n, dtype=np.int64) if strata is None else np.asarray(strata)

        def fit(train_idx: np.ndarray, valid_idx: np.ndarray | None, budget: int | None) -> tuple[Any, int | None]:
            return self._fit_models(X, Y, mask, cand, train_idx, valid_idx, budget, W)

        result = crossfit(
            fit,
            lambda models, rows: self._raw(models, X[rows], cand),
            Y,
            mask,
            strata,
            n_folds=p.n_folds,
            seed=p.seed,
            calibration=p.calibration,
            weight=W,
            validation=self.uses_validation,
            step=step,
        )
        self.calibrators_ = result.calibrators
        self.oof_raw_ = result.oof_raw
        self.oof_proba_ = result.oof_proba
        self.folds_ = result.folds
        self.models_ = result.models
        self.candidate_features_ = cand
        self.n_features_in_ = X.shape[1]
        self.n_candidates_ = m
        return result

    def _calibrate(self, raw: np.ndarray) -> np.ndarray:
        return np.column_stack([c.transform(raw[:, j]) for j, c in enumerate(self.calibrators_)])

    def _check_fitted(self, X: np.ndarray | None = None) -> np.ndarray:
        if not hasattr(self, "models_"):
            raise ConfigError(f"This {type(self).__name__} is not fitted yet. Call 'fit' with training data first.")
        if X is None:
            return np.zeros((0, self.n_features_in_), dtype=np.float32)
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ConfigError(f"X has shape {X.shape}; this estimator was fitted on {self.n_features_in_} features.")
        return X

    def predict_raw(self, X: np.ndarray) -> np.ndarray:
        """Uncalibrated scores, (n, m)."""
        X = self._check_fitted(X)
        return self._raw(self.models_, X, self.candidate_features_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """Calibrated P(correct), (n, m)."""
        return self._calibrate(self.predict_raw(X))

    def feature_importance(self) -> np.ndarray:
        """(n_features_in_,) importance per request feature; zeros for a family that has none."""
        self._check_fitted()
        return np.zeros(self.n_features_in_)


# old name, kept so pickles from earlier releases load
CrossFitRouter = CrossFitEstimator

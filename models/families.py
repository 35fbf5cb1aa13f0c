"""P(correct) estimator families by name: build any family's estimator, and get the plain arrays a numpy-only
family serves from.

    estimator = make_estimator("knn", RouterParams(n_folds=5, seed=0), k=32, embedding_start=47)
    estimator.fit(X, Y, mask, candidate_features, strata, sample_weight=W)
    arrays, params = estimator_arrays(estimator)          # None for the LightGBM kinds (ONNX)
    scorer = load_scorer("knn", arrays, params)           # numpy only
    scorer(X)  == estimator.predict_raw(X)                # raw scores; calibrators_ map them

Every family keeps the estimator contract of :class:`Estimator` and is cross-fitted by
:mod:`tierroute.models.crossfit` (same folds for the same ``n_folds``, ``seed`` and strata).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tierroute.errors import ConfigError
from tierroute.models.knn import KNNEstimator, KNNParams, KNNScorer, knn_arrays
from tierroute.models.lowrank import LowRankEstimator, LowRankParams, LowRankScorer, lowrank_arrays
from tierroute.models.router import ROUTER_KINDS, LGBMEstimator, RouterParams

__all__ = [
    "FAMILY_KINDS",
    "SCORER_KINDS",
    "Estimator",
    "FamilyParams",
    "family_params",
    "make_estimator",
    "estimator_arrays",
    "load_scorer",
]

FAMILY_KINDS = ("pooled", "per_candidate", "knn", "lowrank")
SCORER_KINDS = ("knn", "lowrank")  # served from plain arrays by numpy; the others by ONNX
FamilyParams = RouterParams | KNNParams | LowRankParams
_PARAMS: dict[str, type[Any]] = {"pooled": RouterParams, "per_candidate": RouterParams, "knn": KNNParams, "lowrank": LowRankParams}
_SHARED = ("n_folds", "calibration", "seed")  # carried over from another family's params
_CONSTRUCTOR: dict[str, tuple[str, ...]] = {"knn": ("embedding_start",)}


@runtime_checkable
class Estimator(Protocol):
    """What every family's estimator offers (besides ``oof_raw_``, ``oof_proba_``,
    ``calibrators_``, ``models_``, ``candidate_features_``, ``n_features_in_``, ``n_candidates_``
    after fit)."""

    params: Any

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
    ) -> Any: ...

    def predict_raw(self, X: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, X: np.ndarray) -> np.ndarray: ...

    def feature_importance(self) -> np.ndarray: ...


def _check_kind(kind: object, owner: str, kinds: tuple[str, ...] = FAMILY_KINDS) -> str:
    if kind not in kinds:
        raise ConfigError(f"The 'kind' parameter of {owner} must be one of {kinds}. Got {kind!r} instead.")
    return kind


def family_params(kind: str, params: FamilyParams | None = None, **overrides: Any) -> FamilyParams:
    """``kind``'s params: ``params`` itself when it is that family's class, else the family's
    defaults with ``n_folds``, ``calibration`` and ``seed`` taken from ``params`` (so every family
    cross-fits on the same folds); then ``overrides`` (field names of the family's params)."""
    _check_kind(kind, "family_params")
    cls = _PARAMS[kind]
    fields = {f.name for f in dataclasses.fields(cls)} - {"kind"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ConfigError(f"family_params got {unknown} for kind {kind!r}; {cls.__name__} has {sorted(fields)}.")
    if isinstance(params, cls):
        base = params
    else:
        shared = {} if params is None else {name: getattr(params, name) for name in _SHARED}
        base = cls(**shared)
    return dataclasses.replace(base, **overrides, **({"kind": kind} if cls is RouterParams else {}))  # type: ignore[no-any-return]


def make_estimator(kind: str, params: FamilyParams | None = None, **kw: Any) -> Estimator:
    """An unfitted estimator of family ``kind`` (one of :data:`FAMILY_KINDS`).

    ``params``: the family's own params, or another family's (a RouterParams, as LearnedConfig
    holds) whose ``n_folds``, ``calibration`` and ``seed`` carry over; ``kw``: the family's params
    fields to override (``k=16``, ``rank=8``, ``n_estimators=300``...) and its constructor
    arguments (knn: ``embedding_start``, the first embedding column of X; None: every column)."""
    _check_kind(kind, "make_estimator")
    ctor = {name: kw.pop(name) for name in _CONSTRUCTOR.get(kind, ()) if name in kw}
    chosen = family_params(kind, params, **kw)
    if kind in ROUTER_KINDS:
        return LGBMEstimator(chosen)  # type: ignore[arg-type]
    if kind == "knn":
        return KNNEstimator(chosen, **ctor)  # type: ignore[arg-type]
    return LowRankEstimator(chosen)  # type: ignore[arg-type]


def estimator_arrays(estimator: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]] | None:
    """A fitted numpy-served estimator's (arrays, JSON-able params) for :func:`load_scorer`;
    None for the LightGBM kinds (exported as ONNX)."""
    if isinstance(estimator, KNNEstimator):
        return knn_arrays(estimator)
    if isinstance(estimator, LowRankEstimator):
        return lowrank_arrays(estimator)
    if isinstance(estimator, LGBMEstimator):
        return None
    raise ConfigError(f"estimator_arrays got a {type(estimator).__name__}; expected an estimator of one of {FAMILY_KINDS}.")


def load_scorer(kind: str, arrays: Mapping[str, np.ndarray], params: Mapping[str, Any]) -> Callable[[np.ndarray], np.ndarray]:
    """The numpy-only raw scorer of ``kind`` (``knn`` or ``lowrank``) from :func:`estimator_arrays`'
    output: ``scorer(X float32 (n, d)) -> (n, m) float64`` raw scores (calibrate them as usual)."""
    _check_kind(kind, "load_scorer", SCORER_KINDS)
    return KNNScorer(arrays, params) if kind == "knn" else LowRankScorer(arrays, params)

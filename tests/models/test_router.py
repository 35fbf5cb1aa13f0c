"""LGBMEstimator on tiny synthetic data: candidate 0 is right mostly when x0 > 0, candidate 1 is right
80% of the time whatever the request."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.router import CALIBRATIONS, ROUTER_KINDS, LGBMEstimator, RouterParams, stratified_folds

N = 300
CAND = np.array([[0.0], [1.0]])


@lru_cache(maxsize=None)
def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 3))
    p0 = np.where(X[:, 0] > 0, 0.9, 0.2)
    Y = np.column_stack([rng.random(N) < p0, rng.random(N) < 0.8]).astype(float)
    strata = np.where(rng.random(N) < 0.5, "qa", "code")
    X.setflags(write=False)
    Y.setflags(write=False)
    return X, Y, strata


def _params(**overrides: object) -> RouterParams:
    base: dict[str, object] = {
        "n_estimators": 30,
        "learning_rate": 0.1,
        "num_leaves": 4,
        "min_child_samples": 10,
        "early_stopping_rounds": 10,
        "n_folds": 2,
        "n_threads": 1,
    }
    base.update(overrides)
    return RouterParams(**base)  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def _fitted(kind: str, calibration: str = "isotonic") -> LGBMEstimator:
    X, Y, strata = _data()
    return LGBMEstimator(_params(kind=kind, calibration=calibration)).fit(X, Y, np.ones_like(Y, bool), CAND, strata)


# -- fitting and predicting -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_fit_predict_shape_range_and_separation(kind: str) -> None:
    X, _, _ = _data()
    router = _fitted(kind)
    proba = router.predict_proba(X)
    assert proba.shape == (N, 2)
    assert np.isfinite(proba).all()
    assert ((proba >= 0) & (proba <= 1)).all()
    pos = X[:, 0] > 0
    assert proba[pos, 0].mean() - proba[~pos, 0].mean() > 0.4
    # candidate 1 does not depend on x0
    assert abs(proba[pos, 1].mean() - proba[~pos, 1].mean()) < 0.2
    assert router.n_features_in_ == 3
    assert router.n_candidates_ == 2
    assert 1 <= router.n_estimators_ <= 30
    assert len(router.best_iterations_) == 2


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_oof_proba_covers_known_outcomes(kind: str) -> None:
    router = _fitted(kind)
    assert router.oof_proba_.shape == (N, 2)
    assert router.oof_raw_.shape == (N, 2)
    assert not np.isnan(router.oof_proba_).any()
    assert ((router.oof_proba_ >= 0) & (router.oof_proba_ <= 1)).all()
    X, _, _ = _data()
    pos = X[:, 0] > 0
    assert router.oof_proba_[pos, 0].mean() - router.oof_proba_[~pos, 0].mean() > 0.3


@pytest.mark.parametrize("calibration", CALIBRATIONS)
def test_calibrations(calibration: str) -> None:
    X, Y, _ = _data()
    router = _fitted("per_candidate", calibration)
    proba = router.predict_proba(X)
    assert proba.shape == (N, 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    raw = router.predict_raw(X)
    if calibration == "none":
        np.testing.assert_array_equal(proba, raw)
    else:
        assert not np.array_equal(proba, raw)
    # cross-fitted calibrated out-of-fold probabilities track the base rates (2 folds of 150: noisy)
    assert abs(router.oof_proba_[:, 1].mean() - Y[:, 1].mean()) < (0.05 if calibration != "none" else 0.1)


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_missing_outcomes(kind: str) -> None:
    X, Y, strata = _data()
    rng = np.random.default_rng(3)
    mask = rng.random(Y.shape) > 0.3
    Ymissing = np.where(mask, Y, np.nan)
    router = LGBMEstimator(_params(kind=kind)).fit(X, Ymissing, mask, CAND, strata)
    proba = router.predict_proba(X)
    assert proba.shape == (N, 2)
    assert not np.isnan(router.oof_proba_[mask]).any()
    assert ((proba >= 0) & (proba <= 1)).all()
    pos = X[:, 0] > 0
    assert proba[pos, 0].mean() > proba[~pos, 0].mean()


def test_no_strata_and_a_candidate_with_one_class() -> None:
    X, Y, _ = _data()
    Y = Y.copy()
    Y[:, 1] = 1.0  # always right: nothing to early-stop or calibrate on
    router = LGBMEstimator(_params(kind="per_candidate")).fit(X, Y, np.ones_like(Y, bool), CAND)
    proba = router.predict_proba(X)
    assert proba.shape == (N, 2)
    assert (proba[:, 1] > 0.9).all()


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_same_seed_same_predictions(kind: str) -> None:
    X, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    a = LGBMEstimator(_params(kind=kind, seed=4)).fit(X, Y, mask, CAND, strata)
    b = LGBMEstimator(_params(kind=kind, seed=4)).fit(X, Y, mask, CAND, strata)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_feature_importance(kind: str) -> None:
    importance = _fitted(kind).feature_importance()
    assert importance.shape == (3,)
    assert (importance >= 0).all()
    assert int(np.argmax(importance)) == 0


def test_default_params_are_used() -> None:
    assert LGBMEstimator().params == RouterParams()


# -- errors -----------------------------------------------------------------------------------


NOT_FITTED = "This LGBMEstimator is not fitted yet. Call 'fit' with training data first."


@pytest.mark.parametrize("method", ["predict_proba", "predict_raw", "feature_importance"])
def test_not_fitted(method: str) -> None:
    args = () if method == "feature_importance" else (np.zeros((1, 3)),)
    with pytest.raises(ConfigError, match=re.escape(NOT_FITTED)):
        getattr(LGBMEstimator(), method)(*args)


@pytest.mark.parametrize("shape", [(4, 2), (4, 5), (3,)])
def test_wrong_width(shape: tuple[int, ...]) -> None:
    message = f"X has shape {shape}; this estimator was fitted on 3 features."
    with pytest.raises(ConfigError, match=re.escape(message)):
        _fitted("pooled").predict_proba(np.zeros(shape))


def test_fit_shape_mismatch() -> None:
    X, Y, _ = _data()
    message = (
        "LGBMEstimator.fit got X (299, 3), Y (300, 2), mask (300, 2), candidate_features (2, 1); "
        "expected X (n, d), Y and mask (n, m), candidate_features (m, k)."
    )
    with pytest.raises(ConfigError, match=re.escape(message)):
        LGBMEstimator(_params()).fit(X[:-1], Y, np.ones_like(Y, bool), CAND)
    with pytest.raises(ConfigError, match=r"mask \(300, 3\)"):
        LGBMEstimator(_params()).fit(X, Y, np.ones((N, 3), bool), CAND)
    with pytest.raises(ConfigError, match=r"candidate_features \(3, 1\)"):
        LGBMEstimator(_params()).fit(X, Y, np.ones_like(Y, bool), np.zeros((3, 1)))


# -- RouterParams -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "x"}, "The 'kind' parameter of RouterParams must be one of ('pooled', 'per_candidate'). Got 'x' instead."),
        (
            {"calibration": "platt"},
            "The 'calibration' parameter of RouterParams must be one of ('isotonic', 'sigmoid', 'none'). Got 'platt' instead.",
        ),
        ({"n_folds": 1}, "The 'n_folds' parameter of RouterParams must be an int in the range [2, inf). Got 1 instead."),
        ({"n_estimators": 2.0}, "The 'n_estimators' parameter of RouterParams must be an int in the range [1, inf). Got 2.0 instead."),
        (
            {"learning_rate": 0.0},
            "The 'learning_rate' parameter of RouterParams must be a finite number in the range [1e-06, 1]. Got 0.0 instead.",
        ),
        (
            {"feature_fraction": 1.5},
            "The 'feature_fraction' parameter of RouterParams must be a finite number in the range [0, 1]. Got 1.5 instead.",
        ),
        ({"seed": -1}, "The 'seed' parameter of RouterParams must be an int in the range [0, inf). Got -1 instead."),
        ({"n_threads": True}, "The 'n_threads' parameter of RouterParams must be an int in the range [1, inf). Got True instead."),
    ],
)
def test_router_params_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        RouterParams(**kwargs)  # type: ignore[arg-type]


def test_router_params_to_dict_and_lgb_params() -> None:
    params = RouterParams(bagging_fraction=1.0, seed=3, n_threads=2)
    assert params.to_dict()["kind"] == "pooled"
    lgb = params.lgb_params()
    assert lgb["objective"] == "binary"
    assert lgb["bagging_freq"] == 0
    assert lgb["seed"] == 3
    assert lgb["num_threads"] == 2
    assert lgb["deterministic"] is True
    assert RouterParams().lgb_params()["bagging_freq"] == 1


def test_per_candidate_with_a_sparsely_observed_candidate() -> None:
    X, Y, _ = _data()
    Y = Y.copy()
    # candidate 1 known on 6 requests, all in the inner training part of their fold (none in the
    # early-stopping part), with both outcomes present
    folds = stratified_folds(np.zeros(N), 2, 0)
    fit_only = np.zeros(N, bool)
    for k in range(2):
        rest = np.flatnonzero(folds != k)
        fit_only[rest[stratified_folds(np.zeros(len(rest)), 10, k + 1) != 0]] = True
    known = np.flatnonzero(fit_only)[:6]
    Y[known, 1] = [0, 1, 0, 1, 0, 1]
    mask = np.ones_like(Y, bool)
    mask[:, 1] = False
    mask[known, 1] = True
    router = LGBMEstimator(_params(kind="per_candidate", min_child_samples=2)).fit(X, np.where(mask, Y, np.nan), mask, CAND)
    assert router.predict_proba(X).shape == (N, 2)


def test_fit_reports_one_step_per_fold_and_one_for_the_final_model() -> None:
    X, Y, strata = _data()
    steps: list[int] = []
    LGBMEstimator(_params(n_folds=3)).fit(X, Y, np.ones_like(Y, bool), CAND, strata, step=lambda n=1: steps.append(n))
    assert steps == [1, 1, 1, 1]


# -- sample weights ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ROUTER_KINDS)
def test_unit_sample_weights_are_the_unweighted_fit(kind: str) -> None:
    X, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    plain = _fitted(kind)
    ones = LGBMEstimator(_params(kind=kind)).fit(X, Y, mask, CAND, strata, sample_weight=np.ones_like(Y))
    np.testing.assert_array_equal(ones.predict_proba(X), plain.predict_proba(X))
    np.testing.assert_array_equal(ones.oof_proba_, plain.oof_proba_)
    none = LGBMEstimator(_params(kind=kind)).fit(X, Y, mask, CAND, strata, sample_weight=None)
    np.testing.assert_array_equal(none.predict_proba(X), plain.predict_proba(X))


@pytest.mark.parametrize("kind", ROUTER_KINDS)
@pytest.mark.parametrize("calibration", CALIBRATIONS)  # "none": the trees alone must follow the weights
def test_sample_weights_reach_the_trees_and_the_calibration(kind: str, calibration: str) -> None:
    X, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    # candidate 1 is right 80% of the time; counting its right answers 4 times over makes the
    # weighted base rate about 0.94, which the (weighted) calibration must follow
    W = np.ones_like(Y)
    W[:, 1] = np.where(Y[:, 1] > 0, 4.0, 1.0)
    plain = LGBMEstimator(_params(kind=kind, calibration=calibration)).fit(X, Y, mask, CAND, strata)
    heavy = LGBMEstimator(_params(kind=kind, calibration=calibration)).fit(X, Y, mask, CAND, strata, sample_weight=W)
    target = float(np.average(Y[:, 1], weights=W[:, 1]))
    assert target > 0.92
    assert abs(plain.oof_proba_[:, 1].mean() - Y[:, 1].mean()) < 0.05
    assert abs(heavy.oof_proba_[:, 1].mean() - target) < 0.04
    assert abs(heavy.predict_raw(X)[:, 1].mean() - target) < 0.04
    assert heavy.predict_proba(X)[:, 1].mean() > plain.predict_proba(X)[:, 1].mean() + 0.05
    # candidate 0 still separates on x0
    pos = X[:, 0] > 0
    proba = heavy.predict_proba(X)
    assert proba[pos, 0].mean() - proba[~pos, 0].mean() > 0.3


def test_zero_weights_change_the_fit() -> None:
    X, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    W = np.ones_like(Y)
    W[X[:, 0] > 0, 0] = 0.0  # candidate 0's outcomes where it is good count for nothing
    router = LGBMEstimator(_params(kind="per_candidate")).fit(X, Y, mask, CAND, strata, sample_weight=W)
    plain = _fitted("per_candidate")
    assert not np.array_equal(router.predict_proba(X), plain.predict_proba(X))
    # what is left of candidate 0 is its 20% side: it no longer looks good anywhere
    assert router.predict_proba(X)[:, 0].mean() < plain.predict_proba(X)[:, 0].mean() - 0.2


def test_weights_of_unknown_outcomes_are_ignored() -> None:
    X, Y, strata = _data()
    rng = np.random.default_rng(3)
    mask = rng.random(Y.shape) > 0.3
    Ymissing = np.where(mask, Y, np.nan)
    W = np.where(mask, 1.0, np.nan)  # NaN (or anything) where no outcome is known
    a = LGBMEstimator(_params()).fit(X, Ymissing, mask, CAND, strata, sample_weight=W)
    b = LGBMEstimator(_params()).fit(X, Ymissing, mask, CAND, strata)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


@pytest.mark.parametrize("bad", ["shape", "nan", "inf", "negative"])
def test_bad_sample_weights_are_refused(bad: str) -> None:
    X, Y, strata = _data()
    W = np.ones((N, 3)) if bad == "shape" else np.ones_like(Y)
    if bad != "shape":
        W[5, 1] = {"nan": np.nan, "inf": np.inf, "negative": -0.5}[bad]
    message = (
        f"LGBMEstimator.fit got sample_weight of shape {W.shape}; expected finite weights >= 0 of shape (300, 2) "
        "(one per request and candidate)."
    )
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LGBMEstimator(_params()).fit(X, Y, np.ones_like(Y, bool), CAND, strata, sample_weight=W)
    with pytest.raises(ConfigError, match=r"^LGBMEstimator\.fit got sample_weight of shape \(300,\)"):
        LGBMEstimator(_params()).fit(X, Y, np.ones_like(Y, bool), CAND, strata, sample_weight=np.ones(N))

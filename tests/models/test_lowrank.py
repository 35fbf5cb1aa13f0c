"""LowRankEstimator on small synthetic data: candidate 0 is right mostly when x0 > 0, candidate 1 is
right 80% of the time whatever the request; x2 is a heavy-tailed count."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.lowrank import LOWRANK_ARRAYS, LowRankEstimator, LowRankParams, LowRankScorer, _gradients, _sigmoid, lowrank_arrays

N = 240
CAND = np.array([[0.0], [1.0]])


@lru_cache(maxsize=None)
def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(N, 4))
    X[:, 2] = rng.lognormal(5.0, 2.0, size=N)  # a token count
    Y = np.column_stack([rng.random(N) < np.where(X[:, 0] > 0, 0.9, 0.2), rng.random(N) < 0.8]).astype(float)
    strata = np.where(rng.random(N) < 0.5, "qa", "code")
    for arr in (X, Y):
        arr.setflags(write=False)
    return X, Y, strata


def _params(**kw: object) -> LowRankParams:
    base: dict[str, object] = {"rank": 3, "max_epochs": 60, "batch_size": 64, "learning_rate": 0.03, "patience": 5, "n_folds": 2}
    base.update(kw)
    return LowRankParams(**base)  # type: ignore[arg-type]


def _fit(params: LowRankParams | None = None, **kw: object) -> LowRankEstimator:
    X, Y, strata = _data()
    mask = kw.pop("mask", np.ones_like(Y, bool))
    Y = kw.pop("Y", Y)
    return LowRankEstimator(params or _params()).fit(X, Y, mask, CAND, strata, **kw)  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def _fitted() -> LowRankEstimator:
    return _fit()


def test_fit_predict_shape_range_and_separation() -> None:
    X, Y, _ = _data()
    router = _fitted()
    proba = router.predict_proba(X)
    assert proba.shape == (N, 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    pos = X[:, 0] > 0
    assert proba[pos, 0].mean() - proba[~pos, 0].mean() > 0.4
    assert abs(proba[pos, 1].mean() - proba[~pos, 1].mean()) < 0.2
    assert router.oof_proba_[pos, 0].mean() - router.oof_proba_[~pos, 0].mean() > 0.3
    assert len(router.best_epochs_) == 2
    assert all(1 <= e <= 60 for e in router.best_epochs_)
    assert router.n_epochs_ == max(1, int(np.median(router.best_epochs_)))
    importance = router.feature_importance()
    assert importance.shape == (4,)
    assert int(np.argmax(importance)) == 0


def test_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    Z, y = rng.normal(size=(9, 4)), (rng.random((9, 3)) < 0.5).astype(float)
    w = rng.uniform(0, 2, size=(9, 3)) * (rng.random((9, 3)) < 0.8)
    W, V, b = rng.normal(size=(2, 4)), rng.normal(size=(3, 2)), rng.normal(size=3)
    l2 = 0.1

    def loss(W: np.ndarray, V: np.ndarray, b: np.ndarray) -> float:
        p = _sigmoid((Z @ W.T) @ V.T + b)
        nll = -(w * (y * np.log(p) + (1 - y) * np.log(1 - p))).sum() / w.sum()
        return float(nll + l2 / 2 * ((W**2).sum() + (V**2).sum()))

    grads = _gradients(Z, y, w, W, V, b, l2)
    params = [W, V, b]
    for which, (p, g) in enumerate(zip(params, grads)):
        numeric = np.zeros_like(p)
        for idx in np.ndindex(p.shape):
            up = [q.copy() for q in params]
            down = [q.copy() for q in params]
            up[which][idx] += 1e-6
            down[which][idx] -= 1e-6
            numeric[idx] = (loss(*up) - loss(*down)) / 2e-6
        np.testing.assert_allclose(g, numeric, atol=1e-6)


def test_a_rows_own_outcome_never_feeds_its_oof_score() -> None:
    X, Y, _ = _data()
    base = _fitted()
    for i in (5, 150):
        flipped = Y.copy()
        flipped[i] = 1 - flipped[i]
        other = _fit(Y=flipped)
        np.testing.assert_array_equal(other.oof_raw_[i], base.oof_raw_[i])
        assert not np.array_equal(other.oof_raw_, base.oof_raw_)


def test_unknown_outcomes_do_not_count_whatever_their_value() -> None:
    X, Y, _ = _data()
    mask = np.random.default_rng(2).random(Y.shape) > 0.3
    a = _fit(mask=mask, Y=np.where(mask, Y, np.nan))
    b = _fit(mask=mask, Y=np.where(mask, Y, 1.0))
    np.testing.assert_array_equal(a.predict_raw(X), b.predict_raw(X))
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)
    assert np.isfinite(a.oof_proba_).all()
    c = _fit(sample_weight=mask.astype(float))  # zero weights: the same as unknown
    np.testing.assert_array_equal(c.predict_raw(X), a.predict_raw(X))


def test_weights() -> None:
    X, Y, _ = _data()
    ones = _fit(sample_weight=np.ones_like(Y))
    np.testing.assert_array_equal(ones.predict_raw(X), _fitted().predict_raw(X))
    W = np.ones_like(Y)
    W[:, 1] = np.where(Y[:, 1] > 0, 4.0, 1.0)  # weighted base rate of candidate 1: ~0.94
    heavy = _fit(_params(calibration="none"), sample_weight=W)
    target = float(np.average(Y[:, 1], weights=W[:, 1]))
    assert abs(heavy.predict_raw(X)[:, 1].mean() - target) < 0.04
    assert abs(heavy.oof_proba_[:, 1].mean() - target) < 0.05


def test_deterministic_and_seeded() -> None:
    X, _, _ = _data()
    a, b = _fit(), _fit()
    np.testing.assert_array_equal(a.predict_raw(X), b.predict_raw(X))
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)
    c = _fit(_params(seed=3))
    assert not np.array_equal(c.predict_raw(X), a.predict_raw(X))


def test_scorer_from_plain_arrays_matches_predict_raw(tmp_path: Path) -> None:
    X, _, _ = _data()
    router = _fitted()
    arrays, params = lowrank_arrays(router)
    assert sorted(arrays) == sorted(LOWRANK_ARRAYS)
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
    (tmp_path / "params.json").write_text(json.dumps(params))
    loaded = LowRankScorer(
        {name: np.load(tmp_path / f"{name}.npy") for name in LOWRANK_ARRAYS}, json.loads((tmp_path / "params.json").read_text())
    )
    got = loaded(X.astype(np.float32))
    assert got.dtype == np.float64 and got.shape == (N, 2)
    np.testing.assert_allclose(got, router.predict_raw(X), rtol=0, atol=1e-6)
    np.testing.assert_allclose(loaded(X[7:8].astype(np.float32)), got[7:8], rtol=0, atol=1e-12)


def test_scorer_refuses_bad_arrays_and_widths() -> None:
    arrays, params = lowrank_arrays(_fitted())
    with pytest.raises(ConfigError, match=re.escape("missing ['b']")):
        LowRankScorer({k: v for k, v in arrays.items() if k != "b"}, params)
    with pytest.raises(ConfigError, match=re.escape("expected center and scale (4,), W (rank, 4), V (m, rank), b (m,)")):
        LowRankScorer({**arrays, "V": arrays["V"][:, :1]}, params)
    with pytest.raises(ConfigError, match=re.escape("X has shape (1, 3); this low-rank scorer was fitted on 4 features.")):
        LowRankScorer(arrays, params)(np.zeros((1, 3), np.float32))


def test_steps_and_trainer_ignored() -> None:
    steps: list[int] = []
    _fit(_params(max_epochs=3), step=lambda n=1: steps.append(n), trainer=lambda *a: 1 / 0)
    assert steps == [1, 1, 1]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"rank": 0}, "The 'rank' parameter of LowRankParams must be an int in the range [1, inf). Got 0 instead."),
        ({"max_epochs": 0}, "The 'max_epochs' parameter of LowRankParams must be an int in the range [1, inf). Got 0 instead."),
        ({"batch_size": 1.5}, "The 'batch_size' parameter of LowRankParams must be an int in the range [1, inf). Got 1.5 instead."),
        (
            {"learning_rate": 0.0},
            "The 'learning_rate' parameter of LowRankParams must be a finite number in the range [1e-06, 1]. Got 0.0 instead.",
        ),
        ({"l2": -1.0}, "The 'l2' parameter of LowRankParams must be a finite number in the range [0, inf). Got -1.0 instead."),
        ({"patience": 0}, "The 'patience' parameter of LowRankParams must be an int in the range [1, inf). Got 0 instead."),
        ({"kind": "knn"}, "The 'kind' parameter of LowRankParams must be one of ('lowrank',). Got 'knn' instead."),
        ({"n_folds": 1}, "The 'n_folds' parameter of LowRankParams must be an int in the range [2, inf). Got 1 instead."),
    ],
)
def test_params_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        LowRankParams(**kwargs)  # type: ignore[arg-type]


def test_not_fitted_and_shape_errors() -> None:
    X, Y, _ = _data()
    with pytest.raises(ConfigError, match=re.escape("This LowRankEstimator is not fitted yet. Call 'fit' with training data first.")):
        LowRankEstimator().predict_raw(X)
    with pytest.raises(ConfigError, match=re.escape("This LowRankEstimator is not fitted yet.")):
        LowRankEstimator().feature_importance()
    with pytest.raises(ConfigError, match=re.escape("LowRankEstimator.fit got X (240, 4), Y (240, 2), mask (240, 3)")):
        LowRankEstimator().fit(X, Y, np.ones((N, 3), bool), CAND)


def test_missing_features_sit_at_the_training_mean() -> None:
    """A NaN feature (a missing SLA) is imputed at the mean (0 once standardised), in training and
    at serving, instead of poisoning every score."""
    X, Y, strata = _data()
    X = X.copy()
    X[::4, 3] = np.nan
    router = LowRankEstimator(_params()).fit(X, Y, np.ones_like(Y, bool), CAND, strata)
    raw = router.predict_raw(X)
    assert np.isfinite(router.oof_raw_).all() and np.isfinite(raw).all()
    pos = X[:, 0] > 0
    assert raw[pos, 0].mean() - raw[~pos, 0].mean() > 0.4
    arrays, params = lowrank_arrays(router)
    filled = X.copy()
    filled[::4, 3] = np.sign(arrays["center"][3]) * np.expm1(abs(arrays["center"][3]))  # the squashed mean, unsquashed
    np.testing.assert_allclose(raw, router.predict_raw(filled), atol=1e-9)
    np.testing.assert_allclose(LowRankScorer(arrays, params)(X), raw, atol=1e-12)

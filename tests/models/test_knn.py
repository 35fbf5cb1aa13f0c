"""KNNEstimator on small synthetic data: requests in two clusters; candidate 0 is right in cluster A
only, candidate 1 about 70% of the time anywhere. Columns 0-1 are 'signals', 2.. the 'embedding'."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.crossfit import stratified_folds
from tierroute.models.knn import KNN_ARRAYS, KNNEstimator, KNNParams, KNNScorer, knn_arrays

N, START, DIMS = 240, 2, 6
CAND = np.array([[0.0], [1.0]])


@lru_cache(maxsize=None)
def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.random(N) < 0.5
    centre = np.where(a[:, None], 1.0, -1.0) * np.r_[1.0, 0.5, 0.0, 0.0, 0.0, 0.0][None, :]
    emb = centre + 0.4 * rng.normal(size=(N, DIMS))
    X = np.hstack([rng.normal(size=(N, START)) * [100.0, 1.0], emb]).astype(np.float32)
    Y = np.column_stack([rng.random(N) < np.where(a, 0.9, 0.1), rng.random(N) < 0.7]).astype(float)
    strata = np.where(rng.random(N) < 0.5, "qa", "code")
    for arr in (X, Y):
        arr.setflags(write=False)
    return X, Y, strata


def _fit(params: KNNParams | None = None, start: int | None = START, **kw: object) -> KNNEstimator:
    X, Y, strata = _data()
    mask = kw.pop("mask", np.ones_like(Y, bool))
    Y = kw.pop("Y", Y)
    return KNNEstimator(params or KNNParams(k=10, n_folds=3), embedding_start=start).fit(X, Y, mask, CAND, strata, **kw)  # type: ignore[arg-type]


@lru_cache(maxsize=None)
def _fitted(start: int | None = START) -> KNNEstimator:
    return _fit(start=start)


def _brute(
    router_params: KNNParams, X: np.ndarray, Y: np.ndarray, W: np.ndarray, train: np.ndarray, query: np.ndarray, start: int
) -> np.ndarray:
    """The module docstring's formula, one loop at a time."""
    E = X[train, start:].astype(np.float64)
    center = E.mean(axis=0)
    unit = lambda Z: (Z - center) / np.linalg.norm(Z - center, axis=1, keepdims=True)  # noqa: E731
    keys = unit(E)
    prior = (W[train] * Y[train]).sum(axis=0) / W[train].sum(axis=0)
    out = np.zeros((len(query), Y.shape[1]))
    for r, q in enumerate(unit(X[query, start:].astype(np.float64))):
        sims = keys @ q
        near = np.argsort(-sims)[: router_params.k]
        s = np.maximum(sims[near], 0)
        for j in range(Y.shape[1]):
            w = s * W[train[near], j]
            out[r, j] = ((w * Y[train[near], j]).sum() + router_params.prior * prior[j]) / (w.sum() + router_params.prior)
    return out


# -- what it learns ---------------------------------------------------------------------------


@pytest.mark.parametrize("start", [START, None])
def test_fit_predict_shape_range_and_separation(start: int | None) -> None:
    X, Y, _ = _data()
    router = _fitted(start)
    proba = router.predict_proba(X)
    assert proba.shape == (N, 2)
    assert ((proba >= 0) & (proba <= 1)).all()
    a = X[:, START] > 0
    assert proba[a, 0].mean() - proba[~a, 0].mean() > 0.5
    assert abs(router.oof_proba_[:, 1].mean() - Y[:, 1].mean()) < 0.05
    assert router.oof_proba_[a, 0].mean() - router.oof_proba_[~a, 0].mean() > 0.5
    assert router.n_features_in_ == X.shape[1] and router.n_candidates_ == 2
    assert router.oof_raw_.shape == router.oof_proba_.shape == (N, 2)
    np.testing.assert_array_equal(router.feature_importance(), np.zeros(X.shape[1]))


def test_scores_follow_the_formula() -> None:
    X, Y, strata = _data()
    params = KNNParams(k=7, prior=2.0, n_folds=3, calibration="none")
    router = _fit(params)
    W = np.ones_like(Y)
    np.testing.assert_allclose(router.predict_raw(X[:15]), _brute(params, X, Y, W, np.arange(N), np.arange(15), START), atol=1e-6)
    folds = stratified_folds(strata, 3, params.seed)
    held = np.flatnonzero(folds == 1)[:10]
    rest = np.flatnonzero(folds != 1)
    np.testing.assert_allclose(router.oof_raw_[held], _brute(params, X, Y, W, rest, held, START), atol=1e-6)


def test_a_lone_neighbour_is_shrunk_toward_the_candidate_mean() -> None:
    X, Y, _ = _data()
    router = _fit(KNNParams(k=1, prior=1.0, n_folds=3, calibration="none"))
    raw = router.predict_raw(X)
    assert ((raw > 0) & (raw < 1)).all()
    # its nearest neighbour is itself (similarity 1): (y + mean) / 2
    np.testing.assert_allclose(raw[:, 1], (Y[:, 1] + Y[:, 1].mean()) / 2, atol=1e-6)
    no_prior = _fit(KNNParams(k=1, prior=0.0, n_folds=3, calibration="none")).predict_raw(X)
    np.testing.assert_allclose(no_prior, Y, atol=1e-6)


# -- out of fold ------------------------------------------------------------------------------


def test_a_rows_own_outcome_never_feeds_its_oof_score() -> None:
    X, Y, _ = _data()
    base = _fitted()
    for i in (3, 100, 200):
        flipped = Y.copy()
        flipped[i] = 1 - flipped[i]
        other = _fit(Y=flipped)
        np.testing.assert_array_equal(other.oof_raw_[i], base.oof_raw_[i])
        assert not np.array_equal(other.predict_raw(X[i : i + 1]), base.predict_raw(X[i : i + 1]))


@pytest.mark.parametrize("same_fold", [True, False])
def test_a_planted_duplicate_is_seen_only_from_another_fold(same_fold: bool) -> None:
    """A unique prompt planted twice, right where everything near it is wrong: its OOF score is
    the prior's unless its twin sits in another fold."""
    X, Y, strata = _data()
    folds = stratified_folds(strata, 3, 0)
    i = 0
    twin = int(np.flatnonzero((folds == folds[i]) if same_fold else (folds != folds[i]))[1])
    X, Y = X.copy(), Y.copy()
    X[[i, twin], START:] = 50.0 * np.r_[0, 0, 0, 0, 1.0, 0]  # far from everything else
    Y[[i, twin], 1] = 1.0
    Y[:, 1][np.arange(N) != i] *= 0  # candidate 1 is wrong everywhere else...
    Y[twin, 1] = 1.0  # ...but on the twin
    router = KNNEstimator(KNNParams(k=1, prior=1.0, n_folds=3, calibration="none"), embedding_start=START).fit(
        X, Y, np.ones_like(Y, bool), CAND, strata
    )
    prior = Y[folds != folds[i], 1].mean()
    if same_fold:
        assert router.oof_raw_[i, 1] < 0.05  # its nearest other-fold neighbour is wrong
    else:
        assert router.oof_raw_[i, 1] == pytest.approx((1.0 + prior) / 2, abs=1e-6)


# -- unknown outcomes and weights -------------------------------------------------------------


def test_unknown_outcomes_do_not_count_whatever_their_value() -> None:
    X, Y, _ = _data()
    rng = np.random.default_rng(2)
    mask = rng.random(Y.shape) > 0.4
    a = _fit(mask=mask, Y=np.where(mask, Y, np.nan))
    b = _fit(mask=mask, Y=np.where(mask, Y, 1.0))
    np.testing.assert_array_equal(a.predict_raw(X), b.predict_raw(X))
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)
    assert np.isfinite(a.oof_proba_).all()
    # zero weights are unknown outcomes
    c = _fit(sample_weight=mask.astype(float))
    np.testing.assert_array_equal(c.predict_raw(X), a.predict_raw(X))


def test_a_candidate_unknown_among_all_neighbours_gets_its_mean() -> None:
    X, Y, _ = _data()
    mask = np.ones_like(Y, bool)
    mask[:, 1] = False
    mask[:5, 1] = True
    router = _fit(KNNParams(k=3, n_folds=3, calibration="none"), mask=mask)
    raw = router.predict_raw(X)
    far = np.setdiff1d(np.arange(N), np.arange(5))
    far = far[np.isin(far, np.arange(5), invert=True)]
    mean = Y[:5, 1].mean()
    assert np.isclose(raw[far, 1], mean).mean() > 0.9  # most requests have none of the 5 among their 3 nearest


def test_weights() -> None:
    X, Y, _ = _data()
    plain = _fitted()
    ones = _fit(sample_weight=np.ones_like(Y))
    np.testing.assert_array_equal(ones.predict_raw(X), plain.predict_raw(X))
    np.testing.assert_array_equal(ones.oof_proba_, plain.oof_proba_)
    params = KNNParams(k=7, prior=2.0, n_folds=3, calibration="none")
    W = np.where(Y > 0, 3.0, 1.0)
    heavy = _fit(params, sample_weight=W)
    np.testing.assert_allclose(heavy.predict_raw(X[:10]), _brute(params, X, Y, W, np.arange(N), np.arange(10), START), atol=1e-6)
    assert heavy.oof_proba_[:, 1].mean() > plain.oof_proba_[:, 1].mean() + 0.1


# -- serving ----------------------------------------------------------------------------------


@pytest.mark.parametrize("start", [START, None])
def test_scorer_from_plain_arrays_matches_predict_raw(start: int | None, tmp_path: Path) -> None:
    X, _, _ = _data()
    router = _fitted(start)
    arrays, params = knn_arrays(router)
    assert sorted(arrays) == sorted(KNN_ARRAYS)
    for name, value in arrays.items():
        np.save(tmp_path / f"{name}.npy", value)
    (tmp_path / "params.json").write_text(json.dumps(params))
    loaded = KNNScorer({name: np.load(tmp_path / f"{name}.npy") for name in KNN_ARRAYS}, json.loads((tmp_path / "params.json").read_text()))
    expected = router.predict_raw(X)
    got = loaded(X.astype(np.float32))
    assert got.dtype == np.float64 and got.shape == (N, 2)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    one_by_one = np.vstack([loaded(X[i : i + 1]) for i in range(0, N, 17)])
    np.testing.assert_allclose(one_by_one, expected[::17], rtol=0, atol=1e-6)
    assert arrays["keys"].dtype == np.float32


def test_scorer_refuses_bad_arrays_and_widths() -> None:
    arrays, params = knn_arrays(_fitted())
    with pytest.raises(ConfigError, match=re.escape("missing ['hits']")):
        KNNScorer({k: v for k, v in arrays.items() if k != "hits"}, params)
    with pytest.raises(ConfigError, match=r"expected keys \(N, 6\)"):
        KNNScorer({**arrays, "keys": arrays["keys"][:, :3]}, params)
    with pytest.raises(ConfigError, match=re.escape("X has shape (2, 5); this kNN scorer was fitted on 8 features.")):
        KNNScorer(arrays, params)(np.zeros((2, 5), np.float32))


def test_deterministic() -> None:
    X, Y, strata = _data()
    a, b = _fit(), _fit()
    np.testing.assert_array_equal(a.oof_proba_, b.oof_proba_)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))


def test_steps_and_trainer_ignored() -> None:
    steps: list[int] = []
    _fit(step=lambda n=1: steps.append(n), trainer=lambda *a: 1 / 0)
    assert steps == [1, 1, 1, 1]


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "The 'k' parameter of KNNParams must be an int in the range [1, inf). Got 0 instead."),
        ({"k": 2.5}, "The 'k' parameter of KNNParams must be an int in the range [1, inf). Got 2.5 instead."),
        ({"prior": -1.0}, "The 'prior' parameter of KNNParams must be a finite number in the range [0, inf). Got -1.0 instead."),
        ({"kind": "pooled"}, "The 'kind' parameter of KNNParams must be one of ('knn',). Got 'pooled' instead."),
        ({"n_folds": 1}, "The 'n_folds' parameter of KNNParams must be an int in the range [2, inf). Got 1 instead."),
        (
            {"calibration": "platt"},
            "The 'calibration' parameter of KNNParams must be one of ('isotonic', 'sigmoid', 'none'). Got 'platt' instead.",
        ),
        ({"seed": -2}, "The 'seed' parameter of KNNParams must be an int in the range [0, inf). Got -2 instead."),
    ],
)
def test_params_validation(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        KNNParams(**kwargs)  # type: ignore[arg-type]


def test_fit_and_predict_errors() -> None:
    X, Y, _ = _data()
    with pytest.raises(ConfigError, match=re.escape("This KNNEstimator is not fitted yet. Call 'fit' with training data first.")):
        KNNEstimator().predict_proba(X)
    with pytest.raises(ConfigError, match=re.escape("This KNNEstimator is not fitted yet.")):
        knn_arrays(KNNEstimator())
    with pytest.raises(ConfigError, match=re.escape("KNNEstimator.fit got X (239, 8), Y (240, 2)")):
        KNNEstimator().fit(X[:-1], Y, np.ones_like(Y, bool), CAND)
    with pytest.raises(ConfigError, match=re.escape("KNNEstimator has embedding_start=8 but X has 8 columns")):
        KNNEstimator(embedding_start=8).fit(X, Y, np.ones_like(Y, bool), CAND)
    with pytest.raises(
        ConfigError,
        match=re.escape("The 'embedding_start' parameter of KNNEstimator must be an int in the range [0, inf). Got -1 instead."),
    ):
        KNNEstimator(embedding_start=-1)
    with pytest.raises(ConfigError, match=re.escape("KNNEstimator.fit got sample_weight of shape (240,)")):
        KNNEstimator().fit(X, Y, np.ones_like(Y, bool), CAND, sample_weight=np.ones(N))
    with pytest.raises(ConfigError, match=re.escape("X has shape (3, 4); this estimator was fitted on 8 features.")):
        _fitted().predict_raw(np.zeros((3, 4)))


@pytest.mark.parametrize("start", [START, None])
def test_missing_features_sit_at_the_training_mean(start: int | None) -> None:
    """A NaN feature (a missing SLA) does not poison the similarities: it counts as the mean."""
    X, Y, strata = _data()
    X = X.copy()
    X[::3, 0] = np.nan  # a signal column
    X[::5, START + 5] = np.nan  # an embedding column
    router = KNNEstimator(KNNParams(k=10, n_folds=3), embedding_start=start).fit(X, Y, np.ones_like(Y, bool), CAND, strata)
    assert np.isfinite(router.oof_raw_).all() and np.isfinite(router.predict_raw(X)).all()
    a = X[:, START] > 0
    assert router.oof_proba_[a, 0].mean() - router.oof_proba_[~a, 0].mean() > 0.5
    filled = X.copy()
    center = np.nanmean(X[:, START + 5])
    filled[::5, START + 5] = center
    if start is None:
        filled[::3, 0] = np.nanmean(X[:, 0])
    np.testing.assert_allclose(router.predict_raw(X), router.predict_raw(filled), atol=1e-6)


def test_repeated_prompts_pool_into_one_neighbour() -> None:
    """Each request logged twice, once per candidate: the final scorer equals the one fit on the
    requests with both outcomes known."""
    X, Y, strata = _data()
    X2 = np.vstack([X, X])
    Y2 = np.vstack([Y, Y])
    mask = np.zeros_like(Y2, bool)
    mask[:N, 0] = True
    mask[N:, 1] = True
    twice = KNNEstimator(KNNParams(k=10, n_folds=3), embedding_start=START).fit(
        X2, np.where(mask, Y2, np.nan), mask, CAND, np.concatenate([strata, strata])
    )
    once = _fitted()
    arrays = knn_arrays(twice)[0]
    assert len(arrays["keys"]) == N
    np.testing.assert_allclose(twice.predict_raw(X), once.predict_raw(X), atol=1e-6)

"""The family registry: every family built by name keeps one estimator contract, cross-fits on the
same folds, and the numpy-served ones round-trip through plain arrays."""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.crossfit import stratified_folds
from tierroute.models.families import FAMILY_KINDS, SCORER_KINDS, Estimator, estimator_arrays, family_params, load_scorer, make_estimator
from tierroute.models.knn import KNNEstimator, KNNParams
from tierroute.models.lowrank import LowRankEstimator, LowRankParams
from tierroute.models.router import LGBMEstimator, RouterParams

N = 200
CAND = np.array([[0.0], [1.0]])
SMALL = RouterParams(
    n_estimators=20, learning_rate=0.1, num_leaves=4, min_child_samples=10, early_stopping_rounds=5, n_folds=2, n_threads=1, seed=3
)
KW: dict[str, dict[str, object]] = {
    "pooled": {},
    "per_candidate": {},
    "knn": {"k": 8, "embedding_start": 1},
    "lowrank": {"rank": 2, "max_epochs": 20, "learning_rate": 0.05, "batch_size": 64},
}


@lru_cache(maxsize=None)
def _data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(N, 4))
    Y = np.column_stack([rng.random(N) < np.where(X[:, 1] > 0, 0.9, 0.2), rng.random(N) < 0.7]).astype(float)
    strata = np.where(rng.random(N) < 0.5, "qa", "code")
    return X, Y, strata


def _fit(kind: str, Y: np.ndarray | None = None) -> Estimator:
    X, Y0, strata = _data()
    Y = Y0 if Y is None else Y
    est = make_estimator(kind, SMALL, **KW[kind])
    out = est.fit(X, Y, np.ones_like(Y, bool), CAND, strata)
    assert out is est
    return est


@lru_cache(maxsize=None)
def _fitted(kind: str) -> Estimator:
    return _fit(kind)


@pytest.mark.parametrize(
    ("kind", "cls", "params_cls"),
    [
        ("pooled", LGBMEstimator, RouterParams),
        ("per_candidate", LGBMEstimator, RouterParams),
        ("knn", KNNEstimator, KNNParams),
        ("lowrank", LowRankEstimator, LowRankParams),
    ],
)
def test_make_estimator_builds_each_family_with_the_shared_fold_settings(kind: str, cls: type, params_cls: type) -> None:
    est = make_estimator(kind, SMALL)
    assert type(est) is cls
    assert isinstance(est, Estimator)
    assert type(est.params) is params_cls
    assert est.params.kind == kind
    assert (est.params.n_folds, est.params.calibration, est.params.seed) == (2, "isotonic", 3)
    assert make_estimator(kind).params == family_params(kind)


def test_overrides_and_own_params() -> None:
    assert make_estimator("pooled", SMALL, num_leaves=8).params == RouterParams(**{**SMALL.to_dict(), "num_leaves": 8})
    assert make_estimator("per_candidate", SMALL).params.kind == "per_candidate"
    knn = make_estimator("knn", KNNParams(k=5, prior=2.0), embedding_start=47)
    assert knn.params == KNNParams(k=5, prior=2.0)
    assert knn.embedding_start == 47  # type: ignore[attr-defined]
    assert make_estimator("knn", SMALL).embedding_start is None  # type: ignore[attr-defined]
    assert make_estimator("lowrank", SMALL, rank=4).params == LowRankParams(rank=4, n_folds=2, seed=3)
    assert family_params("knn", LowRankParams(n_folds=7, calibration="sigmoid", seed=1)) == KNNParams(
        n_folds=7, calibration="sigmoid", seed=1
    )


def test_registry_errors() -> None:
    message = "The 'kind' parameter of make_estimator must be one of ('pooled', 'per_candidate', 'knn', 'lowrank'). Got 'mf' instead."
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        make_estimator("mf")
    with pytest.raises(ConfigError, match=re.escape("family_params got ['rank'] for kind 'knn'; KNNParams has")):
        make_estimator("knn", SMALL, rank=3)
    with pytest.raises(ConfigError, match=re.escape("family_params got ['embedding_start'] for kind 'lowrank'")):
        make_estimator("lowrank", SMALL, embedding_start=3)
    with pytest.raises(ConfigError, match=re.escape("The 'k' parameter of KNNParams must be an int in the range [1, inf). Got 0 instead.")):
        make_estimator("knn", SMALL, k=0)
    with pytest.raises(
        ConfigError, match=re.escape("The 'kind' parameter of load_scorer must be one of ('knn', 'lowrank'). Got 'pooled' instead.")
    ):
        load_scorer("pooled", {}, {})
    with pytest.raises(ConfigError, match=re.escape("estimator_arrays got a str")):
        estimator_arrays("knn")


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_every_family_keeps_the_contract(kind: str) -> None:
    X, Y, strata = _data()
    est = _fitted(kind)
    for attr in ("oof_raw_", "oof_proba_"):
        assert getattr(est, attr).shape == (N, 2)
    assert ((est.oof_proba_ >= 0) & (est.oof_proba_ <= 1)).all()  # type: ignore[attr-defined]
    assert len(est.calibrators_) == 2  # type: ignore[attr-defined]
    assert est.n_features_in_ == 4 and est.n_candidates_ == 2  # type: ignore[attr-defined]
    np.testing.assert_array_equal(est.candidate_features_, CAND.astype(np.float32))  # type: ignore[attr-defined]
    np.testing.assert_array_equal(est.folds_, stratified_folds(strata, 2, 3))  # type: ignore[attr-defined]
    proba = est.predict_proba(X)
    assert proba.shape == (N, 2) and ((proba >= 0) & (proba <= 1)).all()
    assert est.predict_raw(X).shape == (N, 2)
    assert est.feature_importance().shape == (4,)
    pos = X[:, 1] > 0
    assert proba[pos, 0].mean() > proba[~pos, 0].mean()


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_every_familys_oof_scores_are_out_of_fold(kind: str) -> None:
    _, Y, _ = _data()
    flipped = Y.copy()
    i = 11
    flipped[i] = 1 - flipped[i]
    other = _fit(kind, flipped)
    np.testing.assert_array_equal(other.oof_raw_[i], _fitted(kind).oof_raw_[i])  # type: ignore[attr-defined]


@pytest.mark.parametrize("kind", FAMILY_KINDS)
def test_arrays_and_scorers(kind: str) -> None:
    X, _, _ = _data()
    est = _fitted(kind)
    got = estimator_arrays(est)
    if kind not in SCORER_KINDS:
        assert got is None
        return
    assert got is not None
    arrays, params = got
    scorer = load_scorer(kind, arrays, params)
    np.testing.assert_allclose(scorer(X.astype(np.float32)), est.predict_raw(X), rtol=0, atol=1e-6)


def test_the_old_router_names_still_name_the_estimators() -> None:
    # router.pkl files and MLflow pyfunc models from earlier releases pickle the old names
    from tierroute.models import crossfit, knn, lowrank, router

    assert router.LGBMRouter is router.LGBMEstimator and "LGBMRouter" in router.__all__
    assert knn.KNNRouter is knn.KNNEstimator and "KNNRouter" in knn.__all__
    assert lowrank.LowRankRouter is lowrank.LowRankEstimator and "LowRankRouter" in lowrank.__all__
    assert crossfit.CrossFitRouter is crossfit.CrossFitEstimator and "CrossFitRouter" in crossfit.__all__

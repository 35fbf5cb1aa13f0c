"""The cross-fitting every family shares: folds, out-of-fold scores, cross-fitted calibration,
final refit; and the old pickled name of the calibrator."""

from __future__ import annotations

import pickle
import re

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.crossfit import (
    CALIBRATIONS,
    INNER_FOLDS,
    Calibrator,
    check_crossfit_params,
    column_moments,
    crossfit,
    stratified_folds,
)

N, M = 120, 2


def _data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=N)
    Y = np.column_stack([rng.random(N) < np.where(x > 0, 0.9, 0.1), rng.random(N) < 0.7]).astype(float)
    strata = np.where(rng.random(N) < 0.5, "a", "b")
    return x, Y, strata


class _MeanFamily:
    """Scores = per-candidate training mean plus x * the training covariance of x and y: enough
    to exercise calibration, and it records what every fit saw."""

    def __init__(self, x: np.ndarray, Y: np.ndarray, mask: np.ndarray) -> None:
        self.x, self.Y, self.mask = x, Y, mask
        self.calls: list[tuple[np.ndarray, np.ndarray | None, int | None]] = []

    def fit(self, train: np.ndarray, valid: np.ndarray | None, budget: int | None) -> tuple[np.ndarray, int | None]:
        self.calls.append((train, valid, budget))
        coef = np.array(
            [
                [np.nanmean(np.where(self.mask[train, j], self.Y[train, j], np.nan)), np.cov(self.x[train], self.Y[train, j])[0, 1]]
                for j in range(M)
            ]
        )
        return coef, len(train) % 7 + 1

    def raw(self, coef: np.ndarray, rows: np.ndarray) -> np.ndarray:
        return np.clip(coef[:, 0][None, :] + self.x[rows, None] * coef[:, 1][None, :], 0.01, 0.99)


def test_folds_are_balanced_per_stratum_and_overall() -> None:
    strata = np.array(["a"] * 7 + ["b"] * 5 + ["c"] * 3)
    folds = stratified_folds(strata, 3, seed=0)
    assert np.bincount(folds).tolist() == [5, 5, 5]
    for s in "abc":
        counts = np.bincount(folds[strata == s], minlength=3)
        assert counts.max() - counts.min() <= 1
    np.testing.assert_array_equal(folds, stratified_folds(strata, 3, seed=0))


@pytest.mark.parametrize("validation", [True, False])
def test_each_fold_fits_on_the_other_folds_and_the_final_on_all(validation: bool) -> None:
    x, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    family = _MeanFamily(x, Y, mask)
    steps: list[int] = []
    result = crossfit(
        family.fit,
        family.raw,
        Y,
        mask,
        strata,
        n_folds=3,
        seed=5,
        calibration="isotonic",
        validation=validation,
        step=lambda n=1: steps.append(n),
    )
    assert steps == [1] * 4
    folds = stratified_folds(strata, 3, 5)
    np.testing.assert_array_equal(result.folds, folds)
    for k, (train, valid, budget) in enumerate(family.calls[:3]):
        rest = np.flatnonzero(folds != k)
        assert budget is None
        if validation:
            inner = stratified_folds(strata[rest], INNER_FOLDS, 5 + k + 1)
            np.testing.assert_array_equal(train, rest[inner != 0])
            np.testing.assert_array_equal(valid, rest[inner == 0])
        else:
            np.testing.assert_array_equal(train, rest)
            assert valid is None
    train, valid, budget = family.calls[3]
    np.testing.assert_array_equal(train, np.arange(N))
    assert valid is None
    assert result.budgets == [len(c[0]) % 7 + 1 for c in family.calls[:3]]
    assert result.budget == max(1, int(np.median(result.budgets)))
    assert budget == result.budget


def test_oof_scores_never_see_their_own_outcome() -> None:
    x, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    family = _MeanFamily(x, Y, mask)
    base = crossfit(family.fit, family.raw, Y, mask, strata, n_folds=4, seed=0, calibration="none")
    for i in (0, 17, 99):
        flipped = Y.copy()
        flipped[i] = 1 - flipped[i]
        other = _MeanFamily(x, flipped, mask)
        result = crossfit(other.fit, other.raw, flipped, mask, strata, n_folds=4, seed=0, calibration="none")
        np.testing.assert_array_equal(result.oof_raw[i], base.oof_raw[i])
        assert not np.array_equal(result.oof_raw, base.oof_raw)  # it did reach the other folds


def test_calibration_is_cross_fitted_and_the_served_map_uses_every_oof_score() -> None:
    x, Y, strata = _data()
    mask = np.ones_like(Y, bool)
    family = _MeanFamily(x, Y, mask)
    result = crossfit(family.fit, family.raw, Y, mask, strata, n_folds=3, seed=0, calibration="isotonic")
    for j in range(M):
        served = Calibrator("isotonic").fit(result.oof_raw[:, j], Y[:, j])
        np.testing.assert_array_equal(served.transform(result.oof_raw[:, j]), result.calibrators[j].transform(result.oof_raw[:, j]))
        for k in range(3):
            held, rest = result.folds == k, result.folds != k
            cal = Calibrator("isotonic").fit(result.oof_raw[rest, j], Y[rest, j])
            np.testing.assert_array_equal(result.oof_proba[held, j], cal.transform(result.oof_raw[held, j]))


def test_unknown_outcomes_and_weights_reach_the_calibrators() -> None:
    x, Y, strata = _data()
    rng = np.random.default_rng(1)
    mask = rng.random(Y.shape) > 0.3
    W = np.where(mask, rng.uniform(0.5, 2.0, Y.shape), np.nan)
    family = _MeanFamily(x, np.where(mask, Y, 0.0), mask)
    result = crossfit(family.fit, family.raw, np.where(mask, Y, 0.0), mask, strata, n_folds=3, seed=0, calibration="sigmoid", weight=W)
    for j in range(M):
        known = mask[:, j]
        cal = Calibrator("sigmoid").fit(result.oof_raw[known, j], Y[known, j], W[known, j])
        np.testing.assert_allclose(result.calibrators[j].transform(result.oof_raw[:, j]), cal.transform(result.oof_raw[:, j]))
    assert np.isfinite(result.oof_proba).all()


@pytest.mark.parametrize("method", CALIBRATIONS)
def test_calibrator_methods_and_a_single_class(method: str) -> None:
    scores = np.linspace(0.05, 0.95, 50)
    labels = (scores > 0.5).astype(float)
    cal = Calibrator(method).fit(scores, labels)
    out = cal.transform(scores)
    assert ((out >= 0) & (out <= 1)).all()
    if method == "none":
        np.testing.assert_array_equal(out, scores)
    else:
        assert out[-1] > out[0]
    one = Calibrator(method).fit(scores, np.ones(50))
    assert one.model is None
    np.testing.assert_array_equal(one.transform(scores), scores)


def test_the_old_private_calibrator_name_still_unpickles() -> None:
    from tierroute.models import router

    assert router._Calibrator is Calibrator
    cal = router._Calibrator("isotonic").fit(np.linspace(0, 1, 20), np.r_[np.zeros(10), np.ones(10)])
    again = pickle.loads(pickle.dumps(cal))
    np.testing.assert_array_equal(again.transform(np.linspace(0, 1, 7)), cal.transform(np.linspace(0, 1, 7)))
    # a pickle that names tierroute.models.router._Calibrator (as earlier releases wrote) loads
    # (protocol 0 names the class as plain text lines: "ctierroute.models.crossfit\nCalibrator\n")
    legacy = pickle.dumps(cal, protocol=0).replace(b"ctierroute.models.crossfit\nCalibrator\n", b"ctierroute.models.router\n_Calibrator\n")
    assert b"tierroute.models.router\n_Calibrator" in legacy
    assert isinstance(pickle.loads(legacy), Calibrator)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((1, "isotonic", 0), "The 'n_folds' parameter of X must be an int in the range [2, inf). Got 1 instead."),
        ((5, "platt", 0), "The 'calibration' parameter of X must be one of ('isotonic', 'sigmoid', 'none'). Got 'platt' instead."),
        ((5, "none", -1), "The 'seed' parameter of X must be an int in the range [0, inf). Got -1 instead."),
    ],
)
def test_shared_params_checks(args: tuple[object, object, object], message: str) -> None:
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}$"):
        check_crossfit_params("X", *args)


def test_column_moments_skip_non_finite_values() -> None:
    E = np.array([[1.0, np.nan, 5.0, np.nan], [3.0, 2.0, 5.0, np.nan], [np.inf, 4.0, 5.0, np.nan]])
    mean, std = column_moments(E)
    np.testing.assert_allclose(mean, [2.0, 3.0, 5.0, 0.0])
    np.testing.assert_allclose(std, [1.0, 1.0, 1.0, 1.0])  # constant and empty columns: 1
    mean, std = column_moments(np.array([[0.0], [4.0]]))
    np.testing.assert_allclose([mean[0], std[0]], [2.0, 2.0])

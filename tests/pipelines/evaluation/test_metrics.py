"""Cost-quality metrics against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tierroute.pipelines.evaluation.metrics import (
    aiq,
    apgr,
    bootstrap_diff,
    cost_at_quality,
    cpt,
    ece,
    pgr_curve,
    quality_at_cost,
    upper_hull,
)

# -- upper_hull -------------------------------------------------------------------------------


def test_upper_hull_drops_dominated_and_under_chord_points() -> None:
    points = [(0.0, 0.2), (1.0, 0.3), (2.0, 0.8), (3.0, 0.7), (4.0, 0.9)]
    # (1, 0.3) lies under the chord (0, 0.2)-(2, 0.8) (0.5 there); (3, 0.7) is dominated by (2, 0.8)
    assert upper_hull(points) == [(0.0, 0.2), (2.0, 0.8), (4.0, 0.9)]


def test_upper_hull_sorts_cheapest_first_and_is_non_decreasing() -> None:
    hull = upper_hull([(4.0, 0.9), (0.0, 0.2), (2.0, 0.8)])
    assert hull == [(0.0, 0.2), (2.0, 0.8), (4.0, 0.9)]
    costs = [c for c, _ in hull]
    qualities = [q for _, q in hull]
    assert costs == sorted(costs)
    assert qualities == sorted(qualities)


def test_upper_hull_point_on_the_chord_is_dropped() -> None:
    assert upper_hull([(0.0, 0.0), (1.0, 0.5), (2.0, 1.0)]) == [(0.0, 0.0), (2.0, 1.0)]


def test_upper_hull_equal_quality_at_higher_cost_is_dropped() -> None:
    assert upper_hull([(0.0, 0.5), (1.0, 0.5), (2.0, 0.4)]) == [(0.0, 0.5)]


def test_upper_hull_duplicates_collapse() -> None:
    assert upper_hull([(1, 0.5), (1, 0.5), (2, 0.9), (2.0, 0.9)]) == [(1.0, 0.5), (2.0, 0.9)]


def test_upper_hull_same_cost_keeps_the_better_point_in_the_middle() -> None:
    assert upper_hull([(0.0, 0.3), (1.0, 0.5), (1.0, 0.7)]) == [(0.0, 0.3), (1.0, 0.7)]


def test_upper_hull_same_cost_at_the_cheapest_end_keeps_only_the_better_point() -> None:
    assert upper_hull([(1.0, 0.5), (1.0, 0.7), (2.0, 0.8)]) == [(1.0, 0.7), (2.0, 0.8)]


def test_upper_hull_empty() -> None:
    assert upper_hull([]) == []


# -- quality_at_cost / cost_at_quality --------------------------------------------------------

HULL = [(1.0, 0.4), (3.0, 0.8)]


@pytest.mark.parametrize(("cost", "expected"), [(0.0, 0.4), (-5.0, 0.4), (1.0, 0.4), (2.0, 0.6), (3.0, 0.8), (10.0, 0.8)])
def test_quality_at_cost_interpolates_and_is_flat_beyond_the_ends(cost: float, expected: float) -> None:
    assert quality_at_cost(HULL, cost) == pytest.approx(expected)


def test_cost_at_quality_interpolates_between_hull_points() -> None:
    points = [(1.0, 0.4), (3.0, 0.8), (2.0, 0.5)]  # (2, 0.5) is under the chord: ignored
    assert cost_at_quality(points, 0.6) == pytest.approx(2.0)
    assert cost_at_quality(points, 0.7) == pytest.approx(2.5)
    assert cost_at_quality(points, 0.8) == pytest.approx(3.0)


def test_cost_at_quality_below_the_cheapest_is_the_cheapest_cost() -> None:
    assert cost_at_quality(HULL, 0.1) == pytest.approx(1.0)
    assert cost_at_quality(HULL, 0.4) == pytest.approx(1.0)


def test_cost_at_quality_unreachable_is_none() -> None:
    assert cost_at_quality(HULL, 0.81) is None
    assert cost_at_quality([], 0.1) is None


def test_cost_at_quality_single_point() -> None:
    assert cost_at_quality([(2.0, 0.5)], 0.5) == pytest.approx(2.0)
    assert cost_at_quality([(2.0, 0.5)], 0.6) is None


# -- aiq --------------------------------------------------------------------------------------


def test_aiq_single_point_is_its_quality() -> None:
    assert aiq([(0.5, 0.7)], 0.0, 1.0) == pytest.approx(0.7)


def test_aiq_two_points_over_their_range() -> None:
    assert aiq([(0.0, 0.5), (1.0, 1.0)], 0.0, 1.0) == pytest.approx(0.75)


def test_aiq_flat_extension_outside_the_router_range() -> None:
    # hull (1, 0.5)-(2, 1.0) over [0, 3]: 0.5 on [0, 1], avg 0.75 on [1, 2], 1.0 on [2, 3] -> 0.75
    assert aiq([(1.0, 0.5), (2.0, 1.0)], 0.0, 3.0) == pytest.approx(0.75, abs=1e-5)


def test_aiq_ignores_dominated_points() -> None:
    base = aiq([(0.0, 0.5), (1.0, 1.0)], 0.0, 1.0)
    assert aiq([(0.0, 0.5), (1.0, 1.0), (0.5, 0.6), (0.8, 0.5)], 0.0, 1.0) == pytest.approx(base)


@pytest.mark.parametrize("c_max", [0.5, 0.2])
def test_aiq_empty_cost_range_is_quality_at_c_min(c_max: float) -> None:
    assert aiq([(0.0, 0.5), (1.0, 1.0)], 0.5, c_max) == pytest.approx(0.75)


# -- pgr_curve / apgr / cpt -------------------------------------------------------------------


def test_pgr_curve_adds_ends_and_sorts() -> None:
    share, pgr = pgr_curve(np.array([0.6, 0.2]), np.array([0.8, 0.6]), weak=0.5, strong=1.0)
    np.testing.assert_allclose(share, [0.0, 0.2, 0.6, 1.0])
    np.testing.assert_allclose(pgr, [0.0, 0.2, 0.6, 1.0])


def test_pgr_curve_zero_gap_is_zero_pgr() -> None:
    share, pgr = pgr_curve(np.array([0.5]), np.array([0.7]), weak=0.7, strong=0.7)
    np.testing.assert_allclose(share, [0.0, 0.5, 1.0])
    np.testing.assert_allclose(pgr, [0.0, 0.0, 1.0])


def test_apgr_random_line_is_half() -> None:
    share = np.linspace(0.1, 0.9, 9)
    weak, strong = 0.4, 0.8
    quality = weak + share * (strong - weak)
    assert apgr(share, quality, weak, strong) == pytest.approx(0.5)


def test_apgr_perfect_router_with_no_strong_calls_is_one() -> None:
    assert apgr(np.array([0.0]), np.array([0.8]), weak=0.4, strong=0.8) == pytest.approx(1.0)


def test_apgr_uses_the_best_pgr_reached_so_far() -> None:
    # points (0.5, 0.8) and (0.75, 0.4): the later, worse point is lifted to 0.8
    value = apgr(np.array([0.5, 0.75]), np.array([0.8, 0.4]), weak=0.0, strong=1.0)
    expected = 0.5 * 0.8 / 2 + 0.25 * 0.8 + 0.25 * (0.8 + 1.0) / 2
    assert value == pytest.approx(expected)


def test_apgr_does_not_depend_on_the_order_of_points_at_equal_share() -> None:
    a = apgr(np.array([0.5, 0.5]), np.array([0.3, 0.8]), weak=0.0, strong=1.0)
    b = apgr(np.array([0.5, 0.5]), np.array([0.8, 0.3]), weak=0.0, strong=1.0)
    assert a == pytest.approx(b)


@pytest.mark.parametrize(("target", "expected"), [(0.0, 0.0), (0.4, 0.25), (0.8, 0.5), (0.9, 0.75), (1.0, 1.0)])
def test_cpt_interpolates_the_share(target: float, expected: float) -> None:
    # curve (0, 0) - (0.5, 0.8) - (1, 1)
    assert cpt(np.array([0.5]), np.array([0.8]), 0.0, 1.0, target) == pytest.approx(expected)


def test_cpt_is_one_when_never_reached() -> None:
    assert cpt(np.array([0.5]), np.array([0.8]), 0.0, 1.0, 1.5) == 1.0


def test_cpt_perfect_router_at_zero_share() -> None:
    assert cpt(np.array([0.0]), np.array([1.0]), 0.0, 1.0, 0.8) == pytest.approx(0.0)


# -- ece --------------------------------------------------------------------------------------


def test_ece_perfectly_calibrated_bins_is_zero() -> None:
    proba = np.array([0.25] * 4 + [0.75] * 4)
    labels = np.array([1, 0, 0, 0, 1, 1, 1, 0])
    assert ece(proba, labels) == pytest.approx(0.0)


def test_ece_constant_prediction_on_balanced_labels() -> None:
    proba = np.full(10, 0.9)
    labels = np.array([1, 0] * 5)
    assert ece(proba, labels) == pytest.approx(0.4)


def test_ece_weights_bins_by_size() -> None:
    # bin 0.1: |0.1 - 0| = 0.1 on 3 rows; bin 0.9: |0.9 - 0| = 0.9 on 1 row -> (0.3 + 0.9) / 4
    assert ece(np.array([0.1, 0.1, 0.1, 0.9]), np.zeros(4)) == pytest.approx(0.3)


def test_ece_probability_one_falls_in_the_last_bin() -> None:
    assert ece(np.array([1.0, 0.95]), np.array([1.0, 1.0])) == pytest.approx(0.025)


def test_ece_ignores_nans() -> None:
    proba = np.array([0.9, 0.9, np.nan, 0.2])
    labels = np.array([1.0, 0.0, 1.0, np.nan])
    assert ece(proba, labels) == pytest.approx(0.4)


def test_ece_empty_is_nan() -> None:
    assert math.isnan(ece(np.array([]), np.array([])))
    assert math.isnan(ece(np.array([np.nan]), np.array([1.0])))


# -- bootstrap_diff ---------------------------------------------------------------------------


def test_bootstrap_diff_mean_and_ci() -> None:
    rng = np.random.default_rng(1)
    a = rng.random(200)
    b = rng.random(200)
    mean, lo, hi = bootstrap_diff(a, b, n_boot=300, seed=3)
    assert mean == pytest.approx(float(np.mean(a - b)))
    assert lo <= mean <= hi
    assert lo < hi


def test_bootstrap_diff_is_deterministic_for_a_seed() -> None:
    a = np.arange(50, dtype=float) % 7
    b = np.arange(50, dtype=float) % 3
    assert bootstrap_diff(a, b, n_boot=200, seed=5) == bootstrap_diff(a, b, n_boot=200, seed=5)
    assert bootstrap_diff(a, b, n_boot=200, seed=5) != bootstrap_diff(a, b, n_boot=200, seed=6)


def test_bootstrap_diff_constant_difference_has_zero_width() -> None:
    a = np.full(30, 0.75)
    b = np.full(30, 0.5)
    mean, lo, hi = bootstrap_diff(a, b, n_boot=100)
    assert mean == pytest.approx(0.25)
    assert lo == pytest.approx(0.25)
    assert hi == pytest.approx(0.25)


def test_ece_weights_count_like_repeated_outcomes() -> None:
    proba = np.array([0.15, 0.15, 0.85, 0.85])
    labels = np.array([0.0, 1.0, 1.0, 1.0])
    weight = np.array([1.0, 3.0, 2.0, 1.0])
    repeated = np.repeat(np.arange(4), weight.astype(int))
    assert ece(proba, labels, weight=weight) == pytest.approx(ece(proba[repeated], labels[repeated]))
    assert ece(proba, labels, weight=np.ones(4)) == pytest.approx(ece(proba, labels))

"""Decision policies on small hand-made probability / cost matrices."""

from __future__ import annotations

import re

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.policy import ALL_TO_FRONTIER, POLICY_KINDS, Policy, always, choose, choose_row, pick_knob, share_threshold, sweep

# -- Policy -----------------------------------------------------------------------------------


def test_policy_defaults_and_to_dict() -> None:
    policy = Policy()
    assert (policy.kind, policy.value) == ("threshold", 0.7)
    assert Policy("lambda", 2.0).to_dict() == {"kind": "lambda", "value": 2.0, "frontier": None}


def test_policy_unknown_kind() -> None:
    message = "The 'kind' parameter of Policy must be one of ('threshold', 'lambda', 'share'). Got 'x' instead."
    with pytest.raises(ConfigError, match=re.escape(message)):
        Policy("x", 0.5)


def test_policy_negative_lambda() -> None:
    message = "The 'value' parameter of Policy must be a finite number in the range [0, inf). Got -1.0 instead."
    with pytest.raises(ConfigError, match=re.escape(message)):
        Policy("lambda", -1.0)


def test_policy_non_finite_value() -> None:
    message = "The 'value' parameter of Policy must be a finite number in the range [-inf, inf). Got nan instead."
    with pytest.raises(ConfigError, match=re.escape(message)):
        Policy("threshold", float("nan"))


@pytest.mark.parametrize("kind", ["threshold", "share"])
def test_policy_negative_value_allowed_outside_lambda(kind: str) -> None:
    assert Policy(kind, -0.5).value == -0.5


# -- choose: threshold ------------------------------------------------------------------------

THRESHOLD_P = np.array(
    [
        [0.80, 0.90, 0.95],  # all clear 0.7 -> the cheapest
        [0.50, 0.75, 0.90],  # 1 and 2 clear -> the cheaper of them
        [0.30, 0.50, 0.60],  # none clears -> the likeliest (2)
        [0.30, 0.60, 0.50],  # none clears -> the likeliest (1)
    ]
)


def test_threshold_picks_the_cheapest_clearing_candidate() -> None:
    cost = np.tile([1.0, 2.0, 3.0], (4, 1))
    np.testing.assert_array_equal(choose(Policy("threshold", 0.7), THRESHOLD_P, cost), [0, 1, 2, 1])


def test_threshold_uses_cost_not_column_order() -> None:
    cost = np.tile([3.0, 1.0, 2.0], (4, 1))
    # row 0: all clear, candidate 1 is cheapest; row 1: 1 and 2 clear, 1 cheaper
    np.testing.assert_array_equal(choose(Policy("threshold", 0.7), THRESHOLD_P, cost), [1, 1, 2, 1])


def test_threshold_respects_feasibility() -> None:
    cost = np.tile([1.0, 2.0, 3.0], (4, 1))
    feasible = np.array(
        [
            [False, True, True],  # cheapest clearing feasible: 1
            [True, False, True],  # only 2 clears among feasible
            [True, True, False],  # none clears: likeliest feasible is 1
            [False, False, False],  # nothing feasible: all are considered -> likeliest 1
        ]
    )
    np.testing.assert_array_equal(choose(Policy("threshold", 0.7), THRESHOLD_P, cost, feasible), [1, 2, 1, 1])


def test_threshold_extremes() -> None:
    cost = np.tile([1.0, 2.0, 3.0], (4, 1))
    np.testing.assert_array_equal(choose(Policy("threshold", -0.01), THRESHOLD_P, cost), [0, 0, 0, 0])
    np.testing.assert_array_equal(choose(Policy("threshold", 1.01), THRESHOLD_P, cost), [2, 2, 2, 1])


# -- choose: lambda ---------------------------------------------------------------------------

LAMBDA_P = np.array([[0.5, 0.9, 0.7], [0.6, 0.65, 0.95]])
LAMBDA_C = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])


def test_lambda_zero_is_the_likeliest() -> None:
    np.testing.assert_array_equal(choose(Policy("lambda", 0.0), LAMBDA_P, LAMBDA_C), [1, 2])


def test_lambda_huge_is_the_cheapest() -> None:
    np.testing.assert_array_equal(choose(Policy("lambda", 1e6), LAMBDA_P, LAMBDA_C), [0, 0])


def test_lambda_trades_probability_for_cost() -> None:
    # row 0: 0.5, 0.9 - 0.3 = 0.6, 0.7 - 0.6 = 0.1 -> 1; row 1: 0.6, 0.35, 0.35 -> 0
    np.testing.assert_array_equal(choose(Policy("lambda", 0.3), LAMBDA_P, LAMBDA_C), [1, 0])
    # row 0: 0.5, 0.4, -0.3 -> 0
    np.testing.assert_array_equal(choose(Policy("lambda", 0.5), LAMBDA_P, LAMBDA_C), [0, 0])


def test_lambda_respects_feasibility() -> None:
    feasible = np.array([[False, True, True], [False, False, False]])
    # row 0: cheapest feasible is 1; row 1: nothing feasible -> all considered -> 0
    np.testing.assert_array_equal(choose(Policy("lambda", 1e6), LAMBDA_P, LAMBDA_C, feasible), [1, 0])
    feasible = np.array([[True, False, True], [True, True, False]])
    np.testing.assert_array_equal(choose(Policy("lambda", 0.0), LAMBDA_P, LAMBDA_C, feasible), [2, 1])


# -- choose: share ----------------------------------------------------------------------------

# column means 0.6, 0.45, 0.4: the frontier is candidate 0 (highest mean P), whatever its position
SHARE_P = np.array(
    [
        [0.90, 0.60, 0.50],  # gain over best other 0.30
        [0.75, 0.70, 0.40],  # gain 0.05
        [0.15, 0.05, 0.30],  # gain -0.15 (best other: 2)
    ]
)
SHARE_C = np.tile([3.0, 1.0, 2.0], (3, 1))


@pytest.mark.parametrize(
    ("value", "expected"), [(-1.0, [0, 0, 0]), (0.0, [0, 0, 2]), (0.1, [0, 1, 2]), (0.31, [1, 1, 2]), (0.5, [1, 1, 2])]
)
def test_share_gain_threshold(value: float, expected: list[int]) -> None:
    np.testing.assert_array_equal(choose(Policy("share", value), SHARE_P, SHARE_C), expected)


def test_share_best_other_respects_feasibility() -> None:
    feasible = np.array([[True, False, True], [True, True, True], [True, True, True]])
    # row 0: best feasible other is 2 (0.5): gain 0.4 > 0.35 -> frontier
    np.testing.assert_array_equal(choose(Policy("share", 0.35), SHARE_P, SHARE_C, feasible), [0, 1, 2])


def test_share_never_picks_an_infeasible_candidate() -> None:
    feasible = np.array([[False, True, True], [True, False, False], [True, True, True]])
    picks = choose(Policy("share", 0.0), SHARE_P, SHARE_C, feasible)
    assert feasible[np.arange(3), picks].all()


# -- share_threshold --------------------------------------------------------------------------


@pytest.mark.parametrize("share", [0.0, 0.3, 1.0])
def test_share_threshold_sends_the_requested_share(share: float) -> None:
    rng = np.random.default_rng(0)
    proba = rng.random((20, 3))
    proba[:, 2] += 0.3  # frontier: candidate 2
    knob = share_threshold(proba, share)
    picks = choose(Policy("share", knob), proba, np.tile([1.0, 2.0, 3.0], (20, 1)))
    sent = int((picks == 2).sum())
    assert abs(sent - share * 20) <= 1


def test_share_threshold_rejects_out_of_range_share() -> None:
    message = "The 'share' parameter of share_threshold must be a finite number in the range [0, 1]. Got 1.5 instead."
    with pytest.raises(ConfigError, match=re.escape(message)):
        share_threshold(np.full((2, 2), 0.5), 1.5)


# -- sweep ------------------------------------------------------------------------------------


def _monotone(n: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Three candidates, dearer ones more likely to be right on every request."""
    rng = np.random.default_rng(7)
    proba = np.column_stack([rng.uniform(0.2, 0.5, n), rng.uniform(0.5, 0.75, n), rng.uniform(0.8, 0.95, n)])
    cost = np.tile([1.0, 3.0, 10.0], (n, 1))
    return proba, cost


def _mean_cost(picks: np.ndarray, cost: np.ndarray) -> float:
    return float(cost[np.arange(len(picks)), picks].mean())


@pytest.mark.parametrize("kind", ["threshold", "lambda", "share"])
def test_sweep_starts_at_the_cheapest_end(kind: str) -> None:
    proba, cost = _monotone()
    points = sweep(kind, proba, cost, n_points=11)
    assert _mean_cost(points[0][1], cost) <= _mean_cost(points[-1][1], cost)


@pytest.mark.parametrize(
    ("kind", "cheapest"),
    # share never goes below the best non-frontier candidate (here always candidate 1, cost 3)
    [("threshold", 1.0), ("lambda", 1.0), ("share", 3.0)],
)
def test_sweep_spans_cheapest_to_dearest(kind: str, cheapest: float) -> None:
    assert kind in POLICY_KINDS
    proba, cost = _monotone()
    points = sweep(kind, proba, cost, n_points=11)
    costs = [_mean_cost(picks, cost) for _, picks in points]
    assert min(costs) == pytest.approx(cheapest)
    assert max(costs) == pytest.approx(10.0)
    for value, picks in points:
        assert np.isfinite(value)
        assert picks.shape == (40,)


def test_sweep_lambda_values() -> None:
    proba, cost = _monotone()
    values = [v for v, _ in sweep("lambda", proba, cost, n_points=5)]
    assert values[0] == 1e30  # inf is stored as a large finite knob
    assert values[-1] == 0.0
    assert len(values) == 7
    assert values == sorted(values, reverse=True)


def test_sweep_unknown_kind() -> None:
    message = "Unknown policy kind 'x'; expected one of ('threshold', 'lambda', 'share')."
    with pytest.raises(ConfigError, match=re.escape(message)):
        sweep("x", np.full((2, 2), 0.5), np.ones((2, 2)))


# -- pick_knob --------------------------------------------------------------------------------

# Cheap candidate 0 (cost 1) right on requests 0-1; dear candidate 1 (cost 10) right on all four.
KNOB_P = np.array([[0.90, 0.95], [0.70, 0.95], [0.50, 0.95], [0.30, 0.95]])
KNOB_C = np.tile([1.0, 10.0], (4, 1))
KNOB_Y = np.array([[1.0, 1.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]])


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (1.0, [0, 0, 1, 1]),  # accuracy 1.0 at mean cost 5.5 (all-dear reaches it too, at 10)
        (0.75, [0, 0, 0, 1]),  # accuracy 0.75 at mean cost 3.25
        (0.5, [0, 0, 0, 0]),  # accuracy 0.5 at mean cost 1
        (1.01, [0, 0, 1, 1]),  # unreachable: the most accurate (then cheapest) knob
    ],
)
@pytest.mark.parametrize("kind", ["threshold", "lambda"])
def test_pick_knob(kind: str, target: float, expected: list[int]) -> None:
    policy = pick_knob(kind, KNOB_P, KNOB_C, KNOB_Y, KNOB_C, target)
    assert isinstance(policy, Policy)
    assert policy.kind == kind
    np.testing.assert_array_equal(choose(policy, KNOB_P, KNOB_C), expected)


def test_pick_knob_threshold_value_range() -> None:
    policy = pick_knob("threshold", KNOB_P, KNOB_C, KNOB_Y, KNOB_C, 1.0)
    assert 0.5 < policy.value <= 0.7


def test_pick_knob_unknown_outcomes_count_as_wrong_and_free() -> None:
    outcome = KNOB_Y.copy()
    outcome[1, 0] = np.nan  # cheap on request 1 unknown: now wrong
    realized = KNOB_C.copy()
    realized[1, 0] = np.nan
    policy = pick_knob("threshold", KNOB_P, KNOB_C, outcome, realized, 1.0)
    np.testing.assert_array_equal(choose(policy, KNOB_P, KNOB_C), [0, 1, 1, 1])


def test_share_picks_the_frontier_when_only_it_fits() -> None:
    proba = np.array([[0.5, 0.3, 0.6], [0.1, 0.1, 0.9]])  # frontier: candidate 2
    feasible = np.array([[False, False, True], [True, True, True]])
    picks = choose(Policy("share", 0.5), proba, np.tile([1.0, 2.0, 3.0], (2, 1)), feasible)
    np.testing.assert_array_equal(picks, [2, 2])


def test_share_frontier_is_fixed_by_the_policy_not_the_batch() -> None:
    proba = np.array([[0.9, 0.2], [0.8, 0.3]])  # in this batch candidate 0 looks strongest
    cost = np.array([[1.0, 0.1], [1.0, 0.1]])
    fixed = Policy("share", 0.0, frontier=1)
    assert choose(fixed, proba, cost).tolist() == [0, 0]  # gain of 1 over 0 is negative: not sent up
    assert choose(Policy("share", 0.0), proba, cost).tolist() == [0, 0]
    assert choose(Policy("share", -1.0, frontier=1), proba, cost).tolist() == [1, 1]


@pytest.mark.parametrize(
    "kind,values", [("threshold", (0.0, 0.5, 0.7, 1.0)), ("lambda", (0.0, 0.5, 10.0)), ("share", (-1.0, 0.0, 0.1, 0.5))]
)
def test_choose_row_equals_choose_on_every_row(kind: str, values: tuple[float, ...]) -> None:
    from tierroute.models.policy import choose_row

    rng = np.random.default_rng(1)
    for m in (1, 2, 3, 11):
        proba = rng.choice([0.2, 0.5, 0.7, 0.9], size=(300, m))  # few distinct values: many ties
        cost = rng.choice([0.1, 1.0, 2.0], size=(300, m))
        feasible = rng.random((300, m)) < 0.6  # some rows with nothing feasible
        for value in values:
            for frontier in (None, 0, m - 1) if kind == "share" else (None,):
                policy = Policy(kind, value, frontier)
                for fz in (None, feasible):
                    expected = choose(policy, proba, cost, fz) if kind != "share" or frontier is not None else None
                    for i in range(len(proba)):
                        row_f = None if fz is None else fz[i].tolist()
                        got = choose_row(policy, proba[i].tolist(), cost[i].tolist(), row_f)
                        want = (
                            expected[i]
                            if expected is not None
                            else choose(policy, proba[i : i + 1], cost[i : i + 1], None if fz is None else fz[i : i + 1])[0]
                        )
                        assert got == want, (kind, value, frontier, i)


def test_pick_knob_weights_can_change_the_chosen_knob() -> None:
    # unweighted, target 0.75: cheap on requests 0-2 (request 2 wrong) reaches it at mean cost 3.25
    plain = pick_knob("threshold", KNOB_P, KNOB_C, KNOB_Y, KNOB_C, 0.75)
    np.testing.assert_array_equal(choose(plain, KNOB_P, KNOB_C), [0, 0, 0, 1])
    # request 2 weighs 10: getting it wrong costs 10 / 13 of the accuracy, so it must go dear too
    heavy = pick_knob("threshold", KNOB_P, KNOB_C, KNOB_Y, KNOB_C, 0.75, weight=np.array([1.0, 1.0, 10.0, 1.0]))
    np.testing.assert_array_equal(choose(heavy, KNOB_P, KNOB_C), [0, 0, 1, 1])
    # with requests 0-1 weighing nothing, all-cheap (accuracy 0.5 unweighted) scores 0 and the
    # cheapest knob reaching 0.5 sends request 3 dear (weighted accuracy 0.5, cost 5.5)
    np.testing.assert_array_equal(choose(pick_knob("lambda", KNOB_P, KNOB_C, KNOB_Y, KNOB_C, 0.5), KNOB_P, KNOB_C), [0, 0, 0, 0])
    light = pick_knob("lambda", KNOB_P, KNOB_C, KNOB_Y, KNOB_C, 0.5, weight=np.array([0.0, 0.0, 1.0, 1.0]))
    np.testing.assert_array_equal(choose(light, KNOB_P, KNOB_C), [0, 0, 0, 1])


@pytest.mark.parametrize("kind", ["threshold", "lambda", "share"])
@pytest.mark.parametrize("target", [0.5, 0.75, 1.0, 1.01])
def test_pick_knob_without_weights_or_with_equal_weights_is_unchanged(kind: str, target: float) -> None:
    base = pick_knob(kind, KNOB_P, KNOB_C, KNOB_Y, KNOB_C, target)
    assert pick_knob(kind, KNOB_P, KNOB_C, KNOB_Y, KNOB_C, target, weight=None) == base
    assert pick_knob(kind, KNOB_P, KNOB_C, KNOB_Y, KNOB_C, target, weight=np.full(4, 2.5)) == base


def test_pick_knob_takes_pseudo_outcomes_outside_zero_one() -> None:
    # doubly-robust pseudo-outcomes may leave [0, 1]; the weighted means still rank the knobs
    outcome = np.array([[1.0, 1.0], [1.0, 1.0], [-1.5, 3.0], [0.0, 1.0]])
    policy = pick_knob("threshold", KNOB_P, KNOB_C, outcome, KNOB_C, 0.875)
    np.testing.assert_array_equal(choose(policy, KNOB_P, KNOB_C), [0, 0, 1, 1])  # all-dear: 1.5 mean, dearer


def test_always_sends_every_request_to_its_candidate_where_the_sla_lets_it() -> None:
    policy = always(1)
    assert policy == Policy("share", ALL_TO_FRONTIER, 1)
    proba = np.array([[0.99, 0.01, 0.5], [0.0, 1.0, 0.2], [0.9, 0.0, 0.95]])
    cost = np.array([[0.1, 1.0, 0.5]] * 3)
    feasible = np.array([[True, True, True], [True, True, True], [True, False, True]])
    np.testing.assert_array_equal(choose(policy, proba, cost, feasible), [1, 1, 2])  # no room for 1: the likeliest that fits
    assert [choose_row(policy, p, c, f) for p, c, f in zip(proba.tolist(), cost.tolist(), feasible.tolist())] == [1, 1, 2]


def test_each_policy_reads_as_a_rule_naming_the_candidates() -> None:
    names = ("small", "large")
    assert Policy("threshold", 0.7).rule(names) == "the cheapest candidate that fits the SLA with P(correct) >= 0.7; if none, the likeliest"
    assert Policy("lambda", 2.5).rule(names) == "the candidate that fits the SLA with the highest P(correct) - 2.5 x expected cost (USD)"
    assert Policy("share", 0.1, 1).rule(names) == (
        "large when its P(correct) beats the best other candidate that fits the SLA by more than 0.1; otherwise that other candidate"
    )
    assert always(1).rule(names) == "every request to large when it fits the SLA; otherwise the likeliest candidate that does"

"""Objectives pick the operating point on the out-of-fold knob curve."""

from __future__ import annotations

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.objective import MARGIN_Z, CurvePoint, KnobCurve, OOFSweep, check_objective
from tierroute.models.policy import Policy

# knob -> (accuracy, cost/query): cheapest end first; the tree sits at 0.80 accuracy, the best single at 0.90
POINTS = ((5.0, 0.70, 0.10), (3.0, 0.80, 0.20), (2.0, 0.85, 0.30), (1.0, 0.90, 0.50), (0.5, 0.92, 0.90), (0.0, 0.92, 1.00))


def curve(best: float = 0.90, heuristic: float = 0.80, default: str = "match-best", target: float = 1.0) -> KnobCurve:
    return KnobCurve(tuple(CurvePoint(*p) for p in POINTS), best, heuristic, target, default, 0.25)


@pytest.mark.parametrize(
    ("objective", "knob", "reached"),
    [
        ("match-best", 1.0, True),
        ("match-heuristic", 3.0, True),
        ("max-accuracy", 0.5, True),  # the cheapest of the two most accurate points
        ("budget=0.3", 2.0, True),
        ("budget=0.25", 3.0, True),
        ("budget=0.05", 5.0, False),  # nothing that cheap: the cheapest point, said so
    ],
)
def test_each_objective_lands_where_it_says(objective: str, knob: float, reached: bool) -> None:
    point = curve().pick(objective)
    assert (point.knob, point.reached) == (knob, reached)
    assert point.objective == objective


def test_an_unreachable_target_takes_the_most_accurate_point_and_says_so() -> None:
    point = curve(best=0.95).pick("match-best")
    assert (point.knob, point.reached) == (0.5, False)
    assert point.note == ("the best single candidate's accuracy (0.9500) is not reached out of fold; took the most accurate point (0.9200)")


def test_match_best_never_falls_below_the_trees_accuracy() -> None:
    # the best single is *less* accurate than the tree (a weak pool): the tree's accuracy is the floor
    point = curve(best=0.72, heuristic=0.85).pick("match-best")
    assert point.accuracy >= 0.85 and point.knob == 2.0
    # a budget may go below it: that is what a budget is for
    assert curve(heuristic=0.85).pick("budget=0.1").accuracy == 0.70


def test_the_default_objective_and_the_report_objectives() -> None:
    c = curve(default="match-heuristic")
    assert c.pick().objective == "match-heuristic"
    assert c.report_objectives() == ("match-best", "match-heuristic", "max-accuracy", "budget=0.25")
    assert curve(default="budget=0.3").report_objectives()[-1] == "budget=0.3"


def test_the_curve_round_trips_and_refuses_damage() -> None:
    c = curve()
    assert KnobCurve.from_dict(c.to_dict()) == c
    with pytest.raises(ConfigError, match=r"^The knob curve is damaged \("):
        KnobCurve.from_dict({"points": [{"knob": 1}]})


@pytest.mark.parametrize("bad", ["cheap", "budget=", "budget=-1", "budget=nan", 3, None])
def test_objectives_are_checked(bad: object) -> None:
    with pytest.raises(
        ConfigError,
        match=r"^The objective must be one of \('match-best', 'match-heuristic', "
        r"'max-accuracy'\) or 'budget=USD_PER_QUERY'",
    ):
        check_objective(bad)


def test_the_sweep_measures_points_on_judged_outcomes_with_weights() -> None:
    correct = np.array([[1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])
    cost = np.array([[1.0, 10.0], [1.0, 10.0], [1.0, 10.0]])
    picks = np.array([[0, 0, 0], [0, 1, 0], [1, 1, 1]])
    sweep = OOFSweep(np.array([2.0, 1.0, 0.0]), picks, correct, cost)
    np.testing.assert_allclose(sweep.points(), [(1.0, 1 / 3), (4.0, 2 / 3), (10.0, 2 / 3)])
    np.testing.assert_allclose(sweep.singles(), [(1.0, 1 / 3), (10.0, 2 / 3)])
    weighted = OOFSweep(sweep.values, picks, correct, cost, np.array([1.0, 2.0, 1.0]))
    np.testing.assert_allclose(weighted.points()[1], (5.5, 0.75))
    assert 0.0 < sweep.aiq() <= 1.0
    np.testing.assert_allclose(sweep.points(np.array([0, 1])), [(1.0, 0.5), (5.5, 1.0), (10.0, 1.0)])


def _sweep() -> tuple[OOFSweep, np.ndarray]:
    """400 requests, two candidates (1 costs 10x) both right on 90% of them. On the first half they
    are wrong on different requests (20 each); on the second, candidate 0 is right on only 80%.
    Knob 2: everything to 0; knob 1: the first half to 0 (as accurate as candidate 1 out of fold,
    but by swapping 40 outcomes); knob 0: everything to 1. The tree sends everything to 0."""
    i = np.arange(400)
    first = i < 200
    correct = np.column_stack([np.where(first, i % 10 != 2, i % 5 != 0), i % 10 != 1]).astype(float)
    cost = np.column_stack([np.full(400, 1.0), np.full(400, 10.0)])
    picks = np.array([np.zeros(400), np.where(first, 0, 1), np.ones(400)], dtype=np.int32)
    return OOFSweep(np.array([2.0, 1.0, 0.0]), picks, correct, cost), np.zeros(400, dtype=np.int64)


def test_each_point_carries_the_paired_errors_of_the_requests_it_routes_elsewhere() -> None:
    sweep, tree = _sweep()
    se = sweep.paired_se(np.ones(400, dtype=np.int64))
    assert se[2] == 0.0  # the best single's own point: no difference, no error
    diff = sweep.correct[np.arange(400), sweep.picks[1]] - sweep.correct[:, 1]  # +1 on 20 requests, -1 on 20
    assert se[1] == pytest.approx(np.std(diff) / np.sqrt(400)) and se[1] > 0
    assert sweep.paired_se(tree)[0] == 0.0
    weighted = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, np.full(400, 3.0))
    np.testing.assert_allclose(weighted.paired_se(tree), sweep.paired_se(tree))  # a constant weight changes nothing


def test_a_point_that_only_just_reaches_the_best_single_is_passed_over_for_a_sure_one() -> None:
    sweep, tree = _sweep()
    plain = KnobCurve.from_sweep(sweep, 0.85, tree_picks=None)
    assert plain.margin_z == 0.0 and plain.pick("match-best").knob == 1.0  # before errors: the swapping point
    curve_ = KnobCurve.from_sweep(sweep, 0.85, tree_picks=tree)
    assert curve_.margin_z == MARGIN_Z
    point = curve_.pick("match-best")
    assert (point.knob, point.reached) == (0.0, True)  # the best single's own point clears it with nothing to spare
    assert point.note == "the cheapest point reaching the best single candidate's accuracy (0.9000) out of fold, by 1.645 standard errors"
    assert KnobCurve.from_dict(curve_.to_dict()) == curve_
    assert "margin_z" not in plain.to_dict() and "se_best" not in plain.to_dict()["points"][0]  # what older runtimes read


def test_when_nothing_reaches_with_its_margin_the_most_accurate_point_is_taken_and_said() -> None:
    sweep, tree = _sweep()
    curve_ = KnobCurve.from_sweep(sweep, 0.85, tree_picks=tree, best_single_accuracy=0.95, best_index=1)
    point = curve_.pick("match-best")
    assert (point.knob, point.reached) == (1.0, False)  # 0.90 either way: the cheaper
    assert point.note == (
        "the best single candidate's accuracy (0.9500) is not reached out of fold (by 1.645 standard errors); "
        "took the most accurate point (0.9000)"
    )
    with pytest.raises(ConfigError, match=r"^The margin_z of a KnobCurve must be a number >= 0; got -1.0\.$"):
        KnobCurve(curve_.points, 0.9, 0.85, margin_z=-1.0)
    with pytest.raises(ConfigError, match=r"^A knob curve point's se_tree must be a finite number >= 0; got nan\.$"):
        CurvePoint(1.0, 0.9, 0.1, 0.0, float("nan"))
    damaged = {**curve_.to_dict(), "margin_z": -2}
    with pytest.raises(ConfigError, match=r"^The knob curve is damaged \(The margin_z of a KnobCurve must be .*Re-export the bundle\.$"):
        KnobCurve.from_dict(damaged)


def test_the_trees_accuracy_stays_the_floor_with_margins() -> None:
    # no point holds the tree's 0.885 with its errors to spare: the floor falls back to the measured accuracies
    points = (CurvePoint(2.0, 0.884, 0.1, 0.0, 0.0005), CurvePoint(1.0, 0.886, 0.2, 0.0, 0.02))
    assert KnobCurve(points, 0.80, 0.885, margin_z=MARGIN_Z).pick("match-heuristic").knob == 1.0
    # the goal (the best single's 0.80) is reached surely below the tree; a point at or above the tree wins
    points = (CurvePoint(2.0, 0.82, 0.1, 0.001, 0.001), CurvePoint(1.0, 0.86, 0.2, 0.03, 0.03))
    point = KnobCurve(points, 0.80, 0.85, margin_z=MARGIN_Z).pick("match-best")
    assert (point.knob, point.reached) == (1.0, True)  # 0.86 - 1.645 x 0.03 reaches 0.80 too; 0.82 is below the tree
    # a point that holds the tree's accuracy with its errors to spare rules out the ones that only measure above it
    points = (CurvePoint(3.0, 0.90, 0.1, 0.0, 0.05), CurvePoint(2.0, 0.89, 0.3, 0.0, 0.0))
    assert KnobCurve(points, 0.80, 0.85, margin_z=MARGIN_Z).pick("match-best").knob == 2.0


def test_weights_count_in_the_paired_error() -> None:
    sweep, tree = _sweep()
    half = np.where(np.arange(400) % 2 == 0, 1.0, 0.0)  # zero weight on every other request
    weighted = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, half)
    rows = np.arange(0, 400, 2)
    alone = OOFSweep(sweep.values, sweep.picks[:, rows], sweep.correct[rows], sweep.cost[rows])
    np.testing.assert_allclose(weighted.paired_se(tree), alone.paired_se(tree[rows]))
    assert (OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, np.zeros(400)).paired_se(tree) == 0).all()


def _anchored(anchor_se_tree: float = 0.0, tree: float = 0.85) -> KnobCurve:
    """Curve points only just above the tree's accuracy (none holds it by 1.645 standard errors);
    the anchor (every request to candidate 1, the best single at 0.86) is as accurate as ``tree``
    plus 0.01, sure of it or not by ``anchor_se_tree``."""
    points = (CurvePoint(2.0, 0.852, 0.3, 0.01, 0.01), CurvePoint(1.0, 0.858, 0.6, 0.005, 0.01))
    anchor = CurvePoint(-2.0, 0.86, 1.0, 0.0, anchor_se_tree, candidate=1)
    return KnobCurve(points, 0.86, tree, margin_z=MARGIN_Z, anchor=anchor, kind="lambda")


def test_when_no_point_surely_holds_the_tree_the_anchor_does() -> None:
    curve_ = _anchored()
    for objective in ("match-best", "match-heuristic"):
        point = curve_.pick(objective)
        assert (point.candidate, point.reached) == (1, True)
        assert point.note == (
            "no point of the curve holds the tree's accuracy (0.8500) out of fold by 1.645 standard errors; "
            "every request goes to the most accurate single candidate (0.8600)"
        )
        assert curve_.policy(point) == Policy("share", -2.0, 1)  # share at 100%: every request to candidate 1
    assert curve_.pick("max-accuracy").candidate == 1  # the anchor is one more point to the other objectives
    assert curve_.pick("budget=0.7").knob == 1.0 and curve_.pick("budget=0.7").candidate is None
    # an anchor no surer of the tree's accuracy than the points: the floor as measured, as before anchors
    assert _anchored(anchor_se_tree=0.01).pick("match-heuristic").knob == 1.0
    # a point that surely holds the tree: the anchor is not needed
    assert _anchored(tree=0.80).pick("match-heuristic").knob == 2.0


def test_the_sweep_gives_the_curve_its_anchor_and_its_policy() -> None:
    sweep, tree = _sweep()
    curve_ = KnobCurve.from_sweep(sweep, 0.85, tree_picks=tree, policy=Policy("lambda", 0.0))
    assert curve_.anchor is not None and curve_.anchor.candidate == 1  # the best single
    assert (curve_.anchor.accuracy, curve_.anchor.cost_per_query, curve_.anchor.se_best) == (0.9, 10.0, 0.0)
    assert curve_.anchor.se_tree == pytest.approx(float(sweep.paired_se(tree, np.ones((1, 400), dtype=np.int32))[0]))
    assert (curve_.kind, curve_.frontier) == ("lambda", None)
    point = curve_.pick("match-best")
    assert curve_.policy(point) == Policy("lambda", point.knob)
    assert KnobCurve.from_dict(curve_.to_dict()) == curve_
    assert "anchor" not in KnobCurve.from_sweep(sweep, 0.85).to_dict()  # no tree, no errors, no anchor
    # where SLAs rule the best single out, the anchor is measured on the choices it makes instead
    sla = np.where(np.arange(400) < 200, 1, 0)
    ruled = KnobCurve.from_sweep(sweep, 0.85, tree_picks=tree, anchor_picks=sla).anchor
    assert ruled is not None and ruled.candidate == 1
    assert (ruled.cost_per_query, ruled.accuracy) == pytest.approx(sweep.points(picks=sla[None, :])[0])
    assert ruled.se_best > 0 and ruled.se_best == pytest.approx(float(sweep.paired_se(np.ones(400, dtype=np.int64), sla[None, :])[0]))


def test_a_curve_from_before_policies_were_recorded_takes_the_served_policy() -> None:
    old = curve()
    point = old.pick("match-best")
    assert old.policy(point, Policy("threshold", 0.3)) == Policy("threshold", point.knob)
    with pytest.raises(ConfigError, match=r"^This knob curve does not record its policy kind; pass the served policy\.$"):
        old.policy(point)
    assert "kind" not in old.to_dict() and "anchor" not in old.to_dict()


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"anchor": {"knob": -2, "accuracy": 0.9, "cost_per_query": 1}}, "must name its candidate"),
        ({"anchor": {"knob": -2, "accuracy": 0.9, "cost_per_query": 1, "candidate": -1}}, "integer >= 0"),
        ({"anchor": {"knob": -2, "accuracy": 0.9, "cost_per_query": 1, "candidate": 1.5}}, "integer >= 0"),
        ({"kind": "always"}, "kind of a KnobCurve must be one of"),
        ({"frontier": "first"}, "integer >= 0"),
    ],
)
def test_a_damaged_anchor_or_policy_is_refused(change: dict[str, object], why: str) -> None:
    with pytest.raises(ConfigError, match=rf"^The knob curve is damaged \(.*{why}.*Re-export the bundle\.$"):
        KnobCurve.from_dict({**_anchored().to_dict(), **change})
    raw = _anchored().to_dict()
    raw["points"][0]["candidate"] = 0
    with pytest.raises(ConfigError, match=r"only the anchor names a candidate"):
        KnobCurve.from_dict(raw)

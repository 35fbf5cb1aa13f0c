"""The decision core: the one place raw scores become a choice (training and serving both call it)."""

from __future__ import annotations

import numpy as np
import pytest

from tierroute.errors import BundleError
from tierroute.models.decision import Calibration, CalibrationSet, DecisionCore, expected_cost, sla_feasible, token_column
from tierroute.models.objective import CurvePoint, KnobCurve
from tierroute.models.policy import Policy

NAMES = ("n_tokens", "kw_analyze", "emb_0")


def core(curve: KnobCurve | None = None) -> DecisionCore:
    cal = [Calibration("isotonic", np.array([0.0, 1.0]), np.array([0.1, 0.9])), Calibration("none")]
    return DecisionCore.build(("cheap", "dear"), NAMES, cal, [0.001, 0.01], [1e-6, 1e-5], [100.0, 900.0], Policy("lambda", 10.0), curve)


def test_the_token_count_is_read_by_name() -> None:
    assert token_column(NAMES) == 0 and token_column(("emb_0", "n_tokens")) == 1
    with pytest.raises(BundleError, match=r"^The feature list has no 'n_tokens' column"):
        token_column(("emb_0",))


def test_expected_cost_rows_and_matrix_agree() -> None:
    c = core()
    tokens = np.array([0.0, 100.0, 5000.0])
    matrix = c.expected_cost(tokens)
    np.testing.assert_allclose(matrix, expected_cost(c.cost_intercept, c.cost_slope, tokens))
    for i, t in enumerate(tokens):
        assert c.expected_cost_row(float(t)) == matrix[i].tolist()
    assert (expected_cost(np.array([-1.0]), np.array([0.0]), np.array([1.0])) == 0.0).all()  # never below zero


def test_sla_feasibility() -> None:
    assert sla_feasible(np.array([100.0, 900.0]), [None, None]) is None
    assert sla_feasible(np.array([np.nan, np.nan]), [50.0]) is None
    fits = sla_feasible(np.array([100.0, 900.0, np.nan]), [500.0, None, 10.0])
    assert fits.tolist() == [[True, False, True], [True, True, True], [False, False, True]]
    # an SLA nobody meets goes to the fastest candidate
    assert sla_feasible(np.array([100.0, 900.0]), [10.0]).tolist() == [[True, False]]
    assert core().feasible_row(500.0) == [True, False] and core().feasible_row(None) is None
    # the one-request form is the matrix form's row, for every SLA (none met, unknown latencies...)
    for p95 in ([100.0, 900.0], [np.nan, 300.0], [np.nan, np.nan], [50.0, 50.0]):
        c = DecisionCore.build(("a", "b"), NAMES, [Calibration("none")] * 2, [0.0, 0.0], [0.0, 0.0], p95, Policy())
        for sla in (None, 10.0, 50.0, 100.0, 500.0, 1000.0):
            matrix = sla_feasible(np.array(p95), [sla])
            assert c.feasible_row(sla) == (None if matrix is None else matrix[0].tolist())


def test_calibration_set_equals_each_map_alone() -> None:
    maps = [
        Calibration("isotonic", np.array([0.2, 0.5, 0.9]), np.array([0.0, 0.4, 1.0])),
        Calibration("isotonic", np.array([0.0, 1.0]), np.array([0.3, 0.6])),
    ]
    scores = np.random.default_rng(0).uniform(-0.2, 1.2, (50, 2))
    together = CalibrationSet(maps).apply(scores)
    np.testing.assert_allclose(together, np.column_stack([m.apply(scores[:, j]) for j, m in enumerate(maps)]), atol=1e-15)
    sig = Calibration("sigmoid", a=2.0, b=-0.5)
    assert Calibration.from_dict(sig.to_dict(), "x") == sig
    with pytest.raises(BundleError, match=r"^here: expected a calibration with method isotonic"):
        Calibration.from_dict({"method": "magic"}, "here")


def test_the_policy_follows_the_objective() -> None:
    curve = KnobCurve((CurvePoint(100.0, 0.6, 0.001), CurvePoint(0.0, 0.9, 0.01)), 0.9, 0.6)
    c = core(curve)
    assert c.policy_for(None) == Policy("lambda", 10.0)
    assert c.policy_for("max-accuracy") == Policy("lambda", 0.0)
    assert c.policy_for("budget=0.005") == Policy("lambda", 100.0)
    proba, cost = np.array([[0.5, 0.9]]), c.expected_cost(np.array([10.0]))
    assert c.choose(proba, cost, None, c.policy_for("max-accuracy")).tolist() == [1]
    assert c.choose_row(proba[0].tolist(), cost[0].tolist(), None, c.policy_for("budget=0.005")) == 0
    with pytest.raises(BundleError, match=r"^This router was trained without an out-of-fold knob curve"):
        core().policy_for("max-accuracy")


def test_one_rows_calibration_on_plain_floats_is_the_batchs_bit_for_bit() -> None:
    rng = np.random.default_rng(5)
    for _ in range(200):
        cals = []
        for _ in range(int(rng.integers(1, 5))):
            k = int(rng.integers(1, 12))
            x = np.sort(np.round(rng.uniform(0, 1, k), int(rng.integers(1, 17))))  # coarse grids repeat knots
            cals.append(Calibration("isotonic", x, np.sort(rng.uniform(0, 1, k))))
        cset = CalibrationSet(cals)
        knots = np.concatenate([c.x for c in cals])  # exact knots, just beside them, outside, the ends, NaN
        pool = np.concatenate([knots, np.nextafter(knots, 2.0), np.nextafter(knots, -1.0), rng.uniform(-0.2, 1.2, 30), [0.0, 1.0, np.nan]])
        scores = rng.choice(pool, size=(50, len(cals)))
        batch = cset.apply(scores)
        rows = np.array([cset.apply_row(row) for row in scores.tolist()])
        np.testing.assert_array_equal(rows.view(np.int64), batch.view(np.int64))  # the same bits (NaN included)
    sigmoid = CalibrationSet([Calibration("sigmoid", a=2.0, b=-0.5), Calibration("none")])
    assert sigmoid.apply_row([0.3, 0.7]) == sigmoid.apply(np.array([[0.3, 0.7]]))[0].tolist()

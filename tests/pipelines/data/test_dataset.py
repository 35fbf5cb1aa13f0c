"""RoutingData: the long outcome table pivoted into (requests x candidates) matrices."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import DataValidationError
from tierroute.pipelines.data.dataset import RoutingData
from tierroute.request import Request

NAN = np.nan

#: r1 has every candidate, r2 lacks b, r3 only has b. Rows deliberately not sorted by model.
ROWS = [
    # request_id, prompt, output_schema, latency_sla_ms, task, model, quality, correct, cost_usd
    ("r1", "Classify this.", '{"type": "object"}', 500.0, "qa", "c", 0.9, 1.0, 0.030),
    ("r1", "Classify this.", '{"type": "object"}', 500.0, "qa", "a", 0.2, 0.0, 0.001),
    ("r1", "Classify this.", '{"type": "object"}', 500.0, "qa", "b", 0.7, 1.0, 0.010),
    ("r2", "Write a poem.", None, NAN, None, "a", 0.6, 1.0, 0.002),
    ("r2", "Write a poem.", None, NAN, None, "c", 0.4, 0.0, 0.040),
    ("r3", "Pick one.", '["x", "y"]', 1000.0, "code", "b", 0.5, 1.0, 0.020),
]
COLUMNS = ["request_id", "prompt", "output_schema", "latency_sla_ms", "task", "model", "quality", "correct", "cost_usd"]


def _frame(rows: list[tuple[object, ...]] = ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=COLUMNS)
    frame["latency_ms"] = 100.0
    return frame


def test_pivot_default_candidates_are_sorted() -> None:
    data = RoutingData.from_frame(_frame())
    assert data.candidates == ("a", "b", "c")
    assert data.request_ids == ("r1", "r2", "r3")
    assert data.n_requests == 3
    for matrix in (data.correct, data.quality, data.cost):
        assert matrix.shape == (3, 3)
    np.testing.assert_array_equal(data.correct, [[0, 1, 1], [1, NAN, 0], [NAN, 1, NAN]])
    np.testing.assert_allclose(data.quality, [[0.2, 0.7, 0.9], [0.6, NAN, 0.4], [NAN, 0.5, NAN]])
    np.testing.assert_allclose(data.cost, [[0.001, 0.010, 0.030], [0.002, NAN, 0.040], [NAN, 0.020, NAN]])


def test_mask_marks_known_outcomes() -> None:
    data = RoutingData.from_frame(_frame())
    np.testing.assert_array_equal(data.mask, [[True, True, True], [True, False, True], [False, True, False]])
    assert data.mask.dtype == bool


def test_missing_correct_is_unknown() -> None:
    rows = list(ROWS)
    rows[0] = rows[0][:7] + (None,) + rows[0][8:]  # r1 / c: correct not recorded
    data = RoutingData.from_frame(_frame(rows))
    assert np.isnan(data.correct[0, 2])
    assert not data.mask[0, 2]
    assert data.quality[0, 2] == pytest.approx(0.9)


def test_bool_correct_column() -> None:
    frame = _frame()
    frame["correct"] = frame["correct"].astype(bool)
    data = RoutingData.from_frame(frame)
    assert data.correct.dtype == np.float64
    np.testing.assert_array_equal(data.correct[0], [0.0, 1.0, 1.0])


def test_candidate_order_argument() -> None:
    data = RoutingData.from_frame(_frame(), candidates=["c", "a"])
    assert data.candidates == ("c", "a")
    # r3 only has outcomes for b, which is not a candidate here: it is dropped
    assert data.request_ids == ("r1", "r2")
    np.testing.assert_array_equal(data.correct, [[1, 0], [0, 1]])
    np.testing.assert_allclose(data.cost, [[0.030, 0.001], [0.040, 0.002]])
    assert data.tasks.tolist() == ["qa", "(none)"]
    assert len(data.requests) == 2


def test_unknown_candidate() -> None:
    message = "No outcomes for candidate(s) ['x', 'zzz'] in this data (it has ['a', 'b', 'c']). Check the catalogue or the data."
    with pytest.raises(DataValidationError, match=re.escape(message)):
        RoutingData.from_frame(_frame(), candidates=["a", "zzz", "x"])


def test_requests_parse_schema_and_sla() -> None:
    data = RoutingData.from_frame(_frame())
    assert data.requests == (
        Request("Classify this.", {"type": "object"}, 500.0),
        Request("Write a poem.", None, None),
        Request("Pick one.", ["x", "y"], 1000.0),
    )
    assert isinstance(data.requests[0].latency_sla_ms, float)


def test_object_sla_column_with_none() -> None:
    frame = _frame()
    frame["latency_sla_ms"] = frame["latency_sla_ms"].astype(object)
    frame.loc[frame["request_id"] == "r2", "latency_sla_ms"] = None
    data = RoutingData.from_frame(frame)
    assert data.requests[1].latency_sla_ms is None
    assert data.requests[2].latency_sla_ms == 1000.0


def test_tasks_fill_none() -> None:
    data = RoutingData.from_frame(_frame())
    assert data.tasks.tolist() == ["qa", "(none)", "code"]


def test_subset() -> None:
    data = RoutingData.from_frame(_frame())
    part = data.subset(np.array([2, 0]))
    assert part.request_ids == ("r3", "r1")
    assert part.requests == (data.requests[2], data.requests[0])
    assert part.tasks.tolist() == ["code", "qa"]
    assert part.candidates == data.candidates
    np.testing.assert_array_equal(part.correct, data.correct[[2, 0]])
    np.testing.assert_array_equal(part.quality, data.quality[[2, 0]])
    np.testing.assert_array_equal(part.cost, data.cost[[2, 0]])
    np.testing.assert_array_equal(part.mask, data.mask[[2, 0]])
    assert data.subset(np.array([], dtype=int)).n_requests == 0


def test_complete_keeps_fully_observed_requests() -> None:
    data = RoutingData.from_frame(_frame())
    full = data.complete()
    assert full.request_ids == ("r1",)
    assert full.mask.all()
    np.testing.assert_array_equal(full.correct, [[0, 1, 1]])
    # over a subset of candidates that r2 has, r2 is complete too
    assert RoutingData.from_frame(_frame(), candidates=["a", "c"]).complete().request_ids == ("r1", "r2")


# -- logged requests: the chosen model's outcome with its propensity ----------------------------

#: r1 benchmarked (its a row also marked chosen, with a propensity: still benchmarked); r2 logged
#: (b, p 0.25); r3 logged (a, p 0.02: 1/p clipped); r4 chosen but no propensity (not logged);
#: r5 a benchmark-style row with a propensity but chosen None (not logged).
LOG_COLUMNS = [*COLUMNS, "chosen", "propensity"]
LOG_ROWS = [
    ("r1", "One.", None, NAN, "qa", "a", 0.2, 0.0, 0.001, True, 0.5),
    ("r1", "One.", None, NAN, "qa", "b", 0.7, 1.0, 0.010, None, None),
    ("r1", "One.", None, NAN, "qa", "c", 0.9, 1.0, 0.030, None, None),
    ("r2", "Two.", None, NAN, "qa", "b", 0.3, 0.0, 0.012, True, 0.25),
    ("r3", "Three.", None, NAN, "code", "a", 1.0, 1.0, 0.002, True, 0.02),
    ("r4", "Four.", None, NAN, "code", "c", 1.0, 1.0, 0.040, True, None),
    ("r5", "Five.", None, NAN, "code", "c", 0.0, 0.0, 0.050, None, 0.4),
]


def _log_frame(rows: list[tuple[object, ...]] = LOG_ROWS) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=LOG_COLUMNS)
    frame["latency_ms"] = 100.0
    return frame


def test_from_frame_reads_the_logged_choice_and_its_propensity() -> None:
    data = RoutingData.from_frame(_log_frame())
    assert data.request_ids == ("r1", "r2", "r3", "r4", "r5")
    # only rows with chosen True AND a propensity count; r4 (no propensity) and r5 (chosen None) do not
    np.testing.assert_array_equal(data.logged, [0, 1, 0, -1, -1])
    np.testing.assert_allclose(data.propensity, [0.5, 0.25, 0.02, NAN, NAN])
    assert data.weight is None
    # r1 is benchmarked (every outcome known) even though one row was a logged choice
    np.testing.assert_array_equal(data.logged_only, [False, True, True, False, False])
    assert data.trainable().request_ids == ("r1", "r2", "r3")
    assert data.complete().request_ids == ("r1",)


def test_from_frame_without_log_columns_has_no_logged_requests() -> None:
    data = RoutingData.from_frame(_frame())  # no 'chosen' / 'propensity' columns at all
    np.testing.assert_array_equal(data.logged, [-1, -1, -1])
    assert np.isnan(data.propensity).all()
    assert not data.logged_only.any() and data.trainable().request_ids == ("r1",)
    frame = _log_frame()
    frame["chosen"] = frame["chosen"].map({True: False, None: None})  # chosen False: not a logged choice
    assert not RoutingData.from_frame(frame).logged_only.any()


def test_a_logged_choice_of_a_dropped_candidate_does_not_count() -> None:
    data = RoutingData.from_frame(_log_frame(), candidates=["b", "c"])  # r3's logged model a is not a candidate
    assert data.request_ids == ("r1", "r2", "r4", "r5")
    np.testing.assert_array_equal(data.logged, [-1, 0, -1, -1])
    np.testing.assert_array_equal(data.logged_only, [False, True, False, False])


def test_row_weights_become_request_weights_the_largest_of_a_request_s_rows() -> None:
    weights = [0.5, 2.0, 1.0, 3.0, 0.25, 1.0, 4.0]  # r1's rows: 0.5, 2.0, 1.0 -> 2.0
    data = RoutingData.from_frame(_log_frame(), row_weights=weights)
    np.testing.assert_array_equal(data.weight, [2.0, 3.0, 0.25, 1.0, 4.0])
    # rows of candidates left out do not count: r1 without b is 1.0
    np.testing.assert_array_equal(RoutingData.from_frame(_log_frame(), ["a", "c"], row_weights=weights).weight, [1.0, 0.25, 1.0, 4.0])


def test_subset_carries_logged_propensity_and_weight() -> None:
    data = RoutingData.from_frame(_log_frame(), row_weights=[1.0, 1.0, 1.0, 3.0, 0.25, 1.0, 4.0])
    part = data.subset(np.array([2, 1]))
    assert part.request_ids == ("r3", "r2")
    np.testing.assert_array_equal(part.logged, [0, 1])
    np.testing.assert_allclose(part.propensity, [0.02, 0.25])
    np.testing.assert_array_equal(part.weight, [0.25, 3.0])
    bools = data.subset(np.array([False, True, False, False, True]))
    assert bools.request_ids == ("r2", "r5") and bools.logged.tolist() == [1, -1]
    trainable = data.trainable()
    np.testing.assert_array_equal(trainable.weight, [1.0, 3.0, 0.25])
    np.testing.assert_array_equal(trainable.logged_only, [False, True, True])


def test_training_weights_inverse_propensity_clipped_times_request_weight() -> None:
    data = RoutingData.from_frame(_log_frame()).trainable()  # r1 benchmarked, r2 logged b p=.25, r3 logged a p=.02
    w = data.training_weights(20.0)
    np.testing.assert_allclose(
        w,
        [
            [1.0, 1.0, 1.0],
            [0.0, 4.0, 0.0],  # 1 / 0.25 on the known cell, 0 where unknown
            [20.0, 0.0, 0.0],
        ],
    )  # 1 / 0.02 = 50, clipped at 20
    np.testing.assert_allclose(data.training_weights(3.0)[1:], [[0.0, 3.0, 0.0], [3.0, 0.0, 0.0]])
    weighted = RoutingData.from_frame(_log_frame(), row_weights=[0.5, 0.5, 0.5, 2.0, 0.1, 1, 1]).trainable()
    np.testing.assert_allclose(weighted.training_weights(20.0), [[0.5, 0.5, 0.5], [0.0, 8.0, 0.0], [2.0, 0.0, 0.0]])
    # max_weight 1: inverse propensities switched off, the request weights remain
    np.testing.assert_allclose(weighted.training_weights(1.0), [[0.5, 0.5, 0.5], [0.0, 2.0, 0.0], [0.1, 0.0, 0.0]])


def test_training_weights_are_none_when_every_known_weight_is_one() -> None:
    assert RoutingData.from_frame(_frame()).training_weights() is None  # benchmarked, unweighted
    assert RoutingData.from_frame(_log_frame()).complete().training_weights() is None
    assert RoutingData.from_frame(_log_frame(), row_weights=[1.0] * 7).complete().training_weights() is None
    # a logged choice made with certainty (propensity 1) weighs 1 too
    certain = [r if r[0] != "r2" else r[:10] + (1.0,) for r in LOG_ROWS]
    assert RoutingData.from_frame(_log_frame(certain)).subset(np.array([0, 1])).training_weights() is None
    # a request weight other than 1 on a benchmarked request is enough to weigh
    w = RoutingData.from_frame(_frame(), row_weights=[1, 1, 1, 0.5, 0.5, 1]).training_weights()
    np.testing.assert_allclose(w, [[1, 1, 1], [0.5, 0, 0.5], [0, 1, 0]])


def test_with_estimates_doubly_robust_arithmetic() -> None:
    data = RoutingData.from_frame(_log_frame()).trainable()  # r1 benchmarked, r2 logged b, r3 logged a
    q_correct = np.array([[0.9, 0.9, 0.9], [0.2, 0.6, 0.8], [0.5, 0.4, 0.3]])
    q_cost = np.array([[9.0, 9.0, 9.0], [0.001, 0.02, 0.05], [0.004, 0.01, 0.03]])
    judged = data.with_estimates(q_correct, q_cost)
    # r1 benchmarked: as observed
    np.testing.assert_array_equal(judged.correct[0], data.correct[0])
    np.testing.assert_array_equal(judged.quality[0], data.quality[0])
    np.testing.assert_array_equal(judged.cost[0], data.cost[0])
    # r2 logged b (correct 0, quality 0.3, cost 0.012) with p 0.25: q + (observed - q) / p at b, q elsewhere
    np.testing.assert_allclose(judged.correct[1], [0.2, 0.6 + (0.0 - 0.6) / 0.25, 0.8])
    np.testing.assert_allclose(judged.quality[1], [0.2, 0.6 + (0.3 - 0.6) / 0.25, 0.8])
    np.testing.assert_allclose(judged.cost[1], [0.001, 0.02 + (0.012 - 0.02) / 0.25, 0.05])
    # r3 logged a (correct 1, quality 1, cost 0.002) with p 0.02: unclipped (judging is unbiased)
    np.testing.assert_allclose(judged.correct[2], [0.5 + 0.5 / 0.02, 0.4, 0.3])
    np.testing.assert_allclose(judged.cost[2], [0.004 + (0.002 - 0.004) / 0.02, 0.01, 0.03])
    # the input is left alone, and everything else rides along
    assert np.isnan(data.correct[1, 0]) and data.correct[1, 1] == 0.0
    assert judged.request_ids == data.request_ids and judged.requests == data.requests
    np.testing.assert_array_equal(judged.logged, data.logged)
    np.testing.assert_array_equal(judged.propensity, data.propensity)
    np.testing.assert_array_equal(judged.logged_only, [False, False, False])  # every cell now has an estimate


def test_with_estimates_returns_the_data_itself_when_nothing_is_logged() -> None:
    data = RoutingData.from_frame(_log_frame()).complete()
    assert data.with_estimates(np.zeros((1, 3)), np.zeros((1, 3))) is data
    plain = RoutingData.from_frame(_frame())
    assert plain.with_estimates(np.zeros((3, 3)), np.zeros((3, 3))) is plain


def test_pseudo_outcomes_average_to_a_target_policy_s_true_value() -> None:
    """Simulated logs of a known epsilon-greedy logger; the outcome model is deliberately biased.
    The mean pseudo-outcome at a fixed target policy's picks is the DR estimate of its value."""
    rng = np.random.default_rng(7)
    n, m, eps = 20_000, 3, 0.3
    x = rng.random(n)
    truth = np.column_stack([0.3 + 0.4 * x, 0.6 - 0.2 * x, 0.2 + 0.7 * x])  # P(correct | x, model)
    price = np.column_stack([0.001 + 0.0 * x, 0.01 * (1 + x), 0.05 + 0.02 * x])  # expected cost
    logged = np.where(rng.random(n) < eps, rng.integers(0, m, n), 0)  # greedy: model 0
    propensity = np.where(logged == 0, 1 - eps + eps / m, eps / m)
    rows = np.arange(n)
    correct = np.full((n, m), np.nan)
    cost = np.full((n, m), np.nan)
    correct[rows, logged] = (rng.random(n) < truth[rows, logged]).astype(float)
    cost[rows, logged] = price[rows, logged] * rng.uniform(0.5, 1.5, n)
    ids = tuple(f"q{i}" for i in range(n))
    data = RoutingData(
        ids, tuple(Request(i) for i in ids), np.full(n, "t"), ("a", "b", "c"), correct, correct.copy(), cost, None, logged, propensity
    )
    assert data.logged_only.all()
    target = np.where(x > 0.5, 2, 1)  # never the logger's greedy choice
    q_correct = np.clip(truth + 0.25, 0, 1)  # biased outcome model
    q_cost = price * 2.0  # biased cost model
    judged = data.with_estimates(q_correct, q_cost)
    value, spent = truth[rows, target].mean(), price[rows, target].mean()
    naive = q_correct[rows, target].mean()
    assert abs(naive - value) > 0.15  # the outcome model alone is far off
    assert judged.correct[rows, target].mean() == pytest.approx(value, abs=0.03)
    assert judged.quality[rows, target].mean() == pytest.approx(value, abs=0.03)
    assert judged.cost[rows, target].mean() == pytest.approx(spent, rel=0.05)
    assert abs(q_cost[rows, target].mean() - spent) > 0.5 * spent


def test_a_hand_built_zero_propensity_is_refused() -> None:
    data = RoutingData(
        ("r1", "r2"),
        (Request("a"), Request("b")),
        np.array(["t", "t"]),
        ("m1", "m2"),
        np.array([[1.0, NAN], [NAN, 0.0]]),
        np.array([[1.0, NAN], [NAN, 0.0]]),
        np.array([[0.1, NAN], [NAN, 0.2]]),
        None,
        np.array([0, 1]),
        np.array([0.5, 0.0]),
    )
    message = r"^Request 'r2' has a logged propensity of 0\.0; propensities must be in \(0, 1\]\. Log the serving"
    with pytest.raises(DataValidationError, match=message):
        data.training_weights()
    with pytest.raises(DataValidationError, match=message):
        data.with_estimates(np.full((2, 2), 0.5), np.full((2, 2), 0.1))

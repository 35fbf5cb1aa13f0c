"""The out-of-fold sweep's paired errors: per request, and clustered by task."""

from __future__ import annotations

import numpy as np
import pytest

from tierroute.models.oof import OOFSweep


def _gains_on(task_of_gains: np.ndarray) -> tuple[OOFSweep, np.ndarray]:
    """600 requests of 3 tasks (200 each); candidate 1 is right wherever 0 is, and also on 20% of
    the requests of ``task_of_gains``'s tasks. Knob 1: everything to 0; knob 0: everything to 1."""
    i = np.arange(600)
    tasks = np.array(["a", "b", "c"])[i // 200]
    zero = (i % 3 != 0).astype(float)
    one = np.where(np.isin(tasks, task_of_gains) & (i % 5 == 0), 1.0, zero)
    picks = np.array([np.zeros(600), np.ones(600)], dtype=np.int32)
    sweep = OOFSweep(np.array([1.0, 0.0]), picks, np.column_stack([zero, one]), np.ones((600, 2)), None, tasks)
    return sweep, np.zeros(600, dtype=np.int64)


def test_gains_on_one_task_are_less_sure_than_the_same_gains_spread_over_all() -> None:
    one_task, reference = _gains_on(np.array(["a"]))
    spread, _ = _gains_on(np.array(["a", "b", "c"]))
    plain = OOFSweep(one_task.values, one_task.picks, one_task.correct, one_task.cost)
    assert one_task.paired_se(reference)[0] == 0.0  # the reference's own point
    # by task, the error of gains on one task alone is larger than the per-request error
    assert one_task.paired_se(reference)[1] > 1.5 * plain.paired_se(reference)[1]
    # the formula: sqrt(G / (G - 1) sum_g (sum_{i in g} w_i (d_i - mean))^2)
    d = one_task.correct[:, 1] - one_task.correct[:, 0]
    per_task = [((d - d.mean()) / 600)[one_task.groups == g].sum() for g in "abc"]
    assert one_task.paired_se(reference)[1] == pytest.approx(np.sqrt(1.5 * np.sum(np.square(per_task))))
    # gains spread evenly over the tasks: nothing between them, the per-request error stands
    flat = OOFSweep(spread.values, spread.picks, spread.correct, spread.cost)
    assert spread.paired_se(reference)[1] == pytest.approx(flat.paired_se(reference)[1])


def test_one_task_or_none_gives_the_per_request_error() -> None:
    sweep, reference = _gains_on(np.array(["a"]))
    plain = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost)
    single = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, None, np.full(600, "only"))
    np.testing.assert_allclose(single.paired_se(reference), plain.paired_se(reference))
    # a task per request: the clustered error is the per-request one, corrected by n / (n - 1)
    own = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, None, np.arange(600))
    np.testing.assert_allclose(own.paired_se(reference), plain.paired_se(reference) * np.sqrt(600 / 599))


def test_other_choices_are_measured_the_same_way() -> None:
    sweep, reference = _gains_on(np.array(["a"]))
    np.testing.assert_allclose(sweep.paired_se(reference, sweep.picks[::-1]), sweep.paired_se(reference)[::-1])
    assert sweep.paired_se(reference, np.ones((1, 600), dtype=np.int32)).shape == (1,)


def test_a_task_of_weight_zero_counts_for_nothing_and_labels_must_fit() -> None:
    sweep, reference = _gains_on(np.array(["a"]))
    w = np.where(sweep.groups == "c", 0.0, 1.0)
    weighted = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, w, sweep.groups)
    rows = np.flatnonzero(w > 0)
    alone = OOFSweep(sweep.values, sweep.picks[:, rows], sweep.correct[rows], sweep.cost[rows], None, sweep.groups[rows])
    np.testing.assert_allclose(weighted.paired_se(reference), alone.paired_se(reference[rows]))  # G = 2, not 3
    short = OOFSweep(sweep.values, sweep.picks, sweep.correct, sweep.cost, None, sweep.groups[:10])
    with pytest.raises(ValueError, match=r"^OOFSweep.groups must hold one task label per request \(600\); got shape \(10,\)\.$"):
        short.paired_se(reference)

"""RoutingData: the long outcome table pivoted into (requests x candidates) matrices."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from tierroute.errors import DataValidationError
from tierroute.pipelines.dataset import RoutingData
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
    message = (
        "No outcomes for candidate(s) ['x', 'zzz'] in this data (it has ['a', 'b', 'c']). "
        "Check the catalogue or the data."
    )
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

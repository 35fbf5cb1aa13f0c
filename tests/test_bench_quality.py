"""bench/quality.py's loaders for outcome data it was not written for (--outcomes, and any other
entry under --data): the data a user brings, with model names no built-in catalogue lists; its
target lines; and bench/task_router.py's task-level references."""

from __future__ import annotations

import importlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType, SimpleNamespace

import numpy as np
import pytest

from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl

BENCH = Path(__file__).resolve().parent.parent / "bench"


def _bench_module(name: str) -> Iterator[ModuleType]:
    """A module of bench/ (the scripts import each other by name), imported with bench/ on the path."""
    sys.path.insert(0, str(BENCH))
    try:
        yield importlib.import_module(name)
    finally:
        sys.path.remove(str(BENCH))


@pytest.fixture(scope="module")
def quality() -> Iterator[ModuleType]:
    yield from _bench_module("quality")


@pytest.fixture(scope="module")
def task_router() -> Iterator[ModuleType]:
    yield from _bench_module("task_router")


def _renamed(tmp_path: Path) -> Path:
    rows = [json.loads(line) for line in write_jsonl(SyntheticConfig(200, seed=5), tmp_path / "s.jsonl").read_text().splitlines()]
    names = {m: f"open-{i}" for i, m in enumerate(sorted({r["model"] for r in rows}))}
    path = tmp_path / "mine.jsonl"
    path.write_text("".join(json.dumps({**r, "model": names[r["model"]]}) + "\n" for r in rows), encoding="utf-8")
    return path


def test_outcome_data_with_unknown_models_loads_with_a_catalogue_read_off_its_costs(quality, tmp_path: Path) -> None:  # noqa: ANN001
    ds = quality.load_outcomes("d", [_renamed(tmp_path)], None, quick=False)
    assert ds.catalogue.name == "from-data" and set(ds.catalogue.tiers) == {"tier1", "tier2", "tier3"}
    assert ds.note.startswith("3 models, cost = the data's cost_usd; catalogue from-data (tiers and prices read off the data's costs)")
    train, test = ds.split
    assert not set(train) & set(test) and len(train) + len(test) == ds.data.n_requests
    for task in np.unique(ds.data.tasks):  # half of every task trains
        n = int((ds.data.tasks == task).sum())
        assert int((ds.data.tasks[train] == task).sum()) == n // 2


def test_every_other_entry_under_the_data_folder_is_a_dataset(quality, tmp_path: Path) -> None:  # noqa: ANN001
    for name in ("routerbench", "routellm", "mine"):
        (tmp_path / name).mkdir()
    (tmp_path / "README.md").write_text("notes", encoding="utf-8")
    (tmp_path / "more.jsonl").write_text("", encoding="utf-8")
    assert quality.other_datasets(tmp_path) == [[tmp_path / "mine"], [tmp_path / "more.jsonl"]]
    assert quality.other_datasets(tmp_path / "absent") == []


def _fold(fold: str, point: float, tree: float) -> dict:
    return {
        "dataset": "(d) mine",
        "fold": fold,
        "selected": "pooled/none",
        "selected_aiq": 0.80,
        "best": "pooled/none",
        "best_aiq": 0.80,
        "zero_aiq": 0.79,
        "point_accuracy": point,
        "tree_accuracy": tree,
    }


def test_the_targets_name_every_fold_whose_operating_point_falls_below_the_tree(quality) -> None:  # noqa: ANN001
    lines = quality.targets([_fold("LOTO a", 0.71, 0.70), _fold("LOTO b", 0.69, 0.70)])
    assert (
        "the selected family's operating point at or above the tree's test accuracy on every dataset and fold (2): "
        "NOT REACHED (below on: (d) mine LOTO b)"
    ) in lines
    lines = quality.targets([_fold("LOTO a", 0.70, 0.70)])
    assert "the selected family's operating point at or above the tree's test accuracy on every dataset and fold (1): REACHED" in lines


def _two_tasks(seed: int, n: int = 400) -> SimpleNamespace:
    """Two candidates (cheap 0.1, dear 1.0): on task "easy" both are right 90% of the time; on
    "hard" the cheap one 20%, the dear one 90%."""
    rng = np.random.default_rng(seed)
    tasks = np.array(["easy", "hard"] * (n // 2))
    cheap = np.where(tasks == "easy", 0.9, 0.2)
    correct = np.column_stack([rng.random(n) < cheap, rng.random(n) < 0.9]).astype(float)
    return SimpleNamespace(correct=correct, cost=np.tile([0.1, 1.0], (n, 1)), tasks=tasks)


def test_the_task_level_picks_send_each_task_to_its_own_best_value_candidate(task_router) -> None:  # noqa: ANN001
    train = _two_tasks(0)
    test_tasks = np.array(["hard", "easy", "unseen"])
    picks = task_router.task_level_picks(train.correct, train.cost, train.tasks, test_tasks)
    assert picks[0].tolist() == [0, 0, 0]  # lambda = inf: the cheapest everywhere
    assert picks[-1][[0, 2]].tolist() == [1, 1]  # lambda = 0: the most accurate (an unseen task: the overall figures)
    assert [0, 1] in [[p[1], p[0]] for p in picks]  # some knob value: easy -> cheap, hard -> dear


def test_the_task_references_bound_what_routing_by_task_reaches(task_router) -> None:  # noqa: ANN001
    train, test = _two_tasks(0), _two_tasks(1)
    refs = task_router.task_references(train, test)
    assert set(refs) == {"task router", "task oracle"}
    for ref in refs.values():
        # easy -> cheap and hard -> dear reaches the dear model's accuracy at ~55% of its cost
        assert 0.5 < ref["cost_ratio_at_best"] < 0.65
        assert ref["apgr"] > 0.7 and ref["cpt50"] < 0.5
    assert refs["task oracle"]["aiq"] >= refs["task router"]["aiq"] - 1e-9


def test_on_a_task_unseen_in_training_the_reference_is_the_prior_router(task_router) -> None:  # noqa: ANN001
    train, test = _two_tasks(0), _two_tasks(1)
    test.tasks = np.where(test.tasks == "easy", "new-a", "new-b")
    refs = task_router.task_references(train, test)
    assert set(refs) == {"prior router"}
    # one candidate for all per knob value: its curve is two of the singles, so no cheaper way to the dear one's accuracy
    assert refs["prior router"]["cost_ratio_at_best"] == pytest.approx(1.0)

"""bench/quality.py's loaders for outcome data it was not written for (--outcomes, and any other
entry under --data): the data a user brings, with model names no built-in catalogue lists."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl

BENCH = Path(__file__).resolve().parent.parent / "bench"


@pytest.fixture(scope="module")
def quality():  # noqa: ANN201
    sys.path.insert(0, str(BENCH))
    try:
        import quality

        yield quality
    finally:
        sys.path.remove(str(BENCH))


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

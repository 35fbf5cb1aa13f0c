"""production_log: the synthetic workload as a production log of the article's tree with an
epsilon-uniform exploration slice (one row per request, chosen, with its propensity)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from tierroute.errors import ConfigError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.heuristic import HeuristicTree
from tierroute.pipelines.synthetic import SyntheticConfig, generate, production_log
from tierroute.request import Request

MODELS = {"claude-3-haiku", "gpt-4o-mini", "gpt-4o"}


def _tree_pick(row: dict[str, object]) -> str:
    request = Request(row["prompt"], row["output_schema"], row["latency_sla_ms"])  # type: ignore[arg-type]
    return builtin_catalogue("article").serving_model(HeuristicTree().route(request).tier)


@pytest.mark.parametrize("epsilon", [0.3, 0.05])
def test_one_chosen_row_per_request_with_its_propensity(epsilon: float) -> None:
    config = SyntheticConfig(300, seed=4)
    rows = list(production_log(config, epsilon=epsilon, seed=1))
    full = list(generate(config))
    assert len(rows) == 300 and len({r["request_id"] for r in rows}) == 300
    assert [r["request_id"] for r in rows] == [r["request_id"] for r in full[::3]]
    greedy_p, explore_p = (1 - epsilon) + epsilon / 3, epsilon / 3
    by_key = {(r["request_id"], r["model"]): r for r in full}
    for row in rows:
        assert row["chosen"] is True and row["model"] in MODELS
        assert row["propensity"] in (pytest.approx(greedy_p, abs=1e-12), pytest.approx(explore_p, abs=1e-12))
        if row["propensity"] > explore_p + 1e-9:  # the tree's pick
            assert row["model"] == _tree_pick(row)
        else:  # explored away from the tree's pick
            assert row["model"] != _tree_pick(row)
        # the outcome is the benchmarked workload's, for that model
        twin = by_key[(row["request_id"], row["model"])]
        assert {k: v for k, v in row.items() if k not in ("chosen", "propensity")} == \
               {k: v for k, v in twin.items() if k not in ("chosen", "propensity")}
    json.dumps(rows)  # JSON-able as written to a log
    explored = sum(r["propensity"] < explore_p + 1e-9 for r in rows)
    # about epsilon * 2/3 of the requests leave the tree's pick (3 standard errors)
    assert abs(explored / len(rows) - epsilon * 2 / 3) < 3 * (epsilon * 2 / 3 * (1 - epsilon * 2 / 3) / len(rows)) ** 0.5 + 0.01


def test_no_exploration_and_full_exploration() -> None:
    config = SyntheticConfig(60, seed=3)
    greedy = list(production_log(config, epsilon=0.0))
    assert all(r["propensity"] == 1.0 and r["model"] == _tree_pick(r) for r in greedy)
    uniform = list(production_log(config, epsilon=1.0, seed=2))
    assert all(r["propensity"] == pytest.approx(1 / 3, abs=1e-12) for r in uniform)
    assert len(Counter(r["model"] for r in uniform)) == 3


def test_reproducible_by_seed() -> None:
    config = SyntheticConfig(200, seed=1)
    a = list(production_log(config, epsilon=0.3, seed=7))
    assert a == list(production_log(config, epsilon=0.3, seed=7))
    b = list(production_log(config, epsilon=0.3, seed=8))
    assert [r["model"] for r in a] != [r["model"] for r in b]
    assert [r["request_id"] for r in a] == [r["request_id"] for r in b]  # the workload is the config's


@pytest.mark.parametrize("epsilon", [-0.1, 1.5, float("nan")])
def test_epsilon_out_of_range(epsilon: float) -> None:
    with pytest.raises(ConfigError, match=r"^The 'epsilon' parameter of production_log must be a finite number in the range \[0(\.0)?, 1(\.0)?\]"):
        list(production_log(SyntheticConfig(10), epsilon=epsilon))

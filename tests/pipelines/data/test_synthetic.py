"""The built-in synthetic workload: its per-class, per-tier odds, shares and costs against the
routing article (docs/synthetic-workload.md), per-request difficulty, and production_log (the
workload as a production log of the article's tree with an epsilon-uniform exploration slice: one
row per request, chosen, with its propensity)."""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.heuristic import HeuristicTree
from tierroute.pipelines.data.synthetic import (
    TASKS,
    SyntheticConfig,
    generate,
    mean_outcome_probability,
    outcome_probability,
    production_log,
)
from tierroute.request import Request

MODELS = {"claude-3-haiku", "gpt-4o-mini", "gpt-4o"}
TIER_MODELS = ("claude-3-haiku", "gpt-4o-mini", "gpt-4o")  # the article catalogue's tier defaults
REPO_ROOT = Path(__file__).resolve().parents[3]
ARTICLE = REPO_ROOT.parent / "shared" / "seed" / "routing-article.txt"


# -- the world against the article -----------------------------------------------------------------


def test_the_odds_table_encodes_what_the_article_states() -> None:
    extract = TASKS["extract"].accuracy
    assert (extract[0], extract[2]) == (0.91, 0.94)  # "F1 = 0.91" (quantized Llama) vs "F1 = 0.94" (GPT-4o)
    assert TASKS["classify"].share + TASKS["extract"].share == pytest.approx(0.60)  # "~60% of inference calls"
    assert sum(t.share for t in TASKS.values()) == pytest.approx(1.0)
    by_tier = defaultdict(set)
    for task in TASKS.values():
        by_tier[task.article_tier].add(task.name)
    # the article's "5 Task Classes" section, three per tier
    assert by_tier == {
        "tier1": {"classify", "extract", "tool_call"},
        "tier2": {"summarize", "convert", "translate"},
        "tier3": {"reason", "code", "synthesize"},
    }
    for task in TASKS.values():
        t1, t2, t3 = (100 * p for p in task.accuracy)  # points
        assert t1 <= t2 <= t3, task.name
        # "Measure F1 delta — if < 5 points, route to Tier 1": each class sits in the cheapest tier
        # within 5 points of the frontier
        if task.article_tier == "tier1":
            assert t3 - t1 < 5, task.name
        elif task.article_tier == "tier2":
            assert t3 - t1 >= 5 and t3 - t2 < 5, task.name
        else:  # "Frontier only"
            assert t3 - t2 >= 5, task.name
    for name in ("classify", "tool_call"):  # "Accuracy delta was under 3%" (Haiku for tool execution)
        assert 100 * (TASKS[name].accuracy[2] - TASKS[name].accuracy[0]) < 3


def test_class_means_are_exact_and_tiers_never_cross() -> None:
    grid = np.linspace(0.0, 1.0, 21)
    for name, task in TASKS.items():
        for tier in range(3):
            assert mean_outcome_probability(name, tier) == pytest.approx(task.accuracy[tier], abs=1e-9)
            odds = [outcome_probability(name, tier, d) for d in grid]
            assert all(a > b for a, b in zip(odds, odds[1:])), (name, tier)  # harder is never easier
        for d in grid:
            p1, p2, p3 = (outcome_probability(name, tier, d) for tier in range(3))
            assert p1 <= p2 <= p3, (name, d)


@pytest.fixture(scope="module")
def world() -> list[dict[str, object]]:
    """The demo's own workload: `tierroute train` without --data generates exactly this."""
    return list(generate(SyntheticConfig(3000, seed=0)))


def _by_task(rows: list[dict[str, object]]) -> dict[str, list[list[dict[str, object]]]]:
    out: dict[str, list[list[dict[str, object]]]] = defaultdict(list)
    for start in range(0, len(rows), 3):
        group = rows[start : start + 3]
        assert [r["model"] for r in group] == list(TIER_MODELS)
        out[str(group[0]["task"])].append(group)
    return out


def test_the_generated_outcomes_follow_the_table(world: list[dict[str, object]]) -> None:
    groups = _by_task(world)
    assert set(groups) == set(TASKS)
    for name, requests in groups.items():
        n = len(requests)
        assert abs(n / 3000 - TASKS[name].share) < 4 * (TASKS[name].share / 3000) ** 0.5 + 0.005, name
        for tier in range(3):
            p = TASKS[name].accuracy[tier]
            rate = np.mean([g[tier]["correct"] for g in requests])
            assert abs(rate - p) < 4 * (p * (1 - p) / n) ** 0.5, (name, tier, rate)


def test_each_class_costs_what_the_article_says_on_its_tier(world: list[dict[str, object]]) -> None:
    """The article's per-request costs: tier1 "~$0.003/request", tier2 "~$0.01–0.03/request",
    tier3 "~$0.10–0.15/request"; extraction "~$0.003/request" vs GPT-4o "~$0.12/request" (40x)."""
    cost = {name: np.mean([[r["cost_usd"] for r in g] for g in requests], axis=0) for name, requests in _by_task(world).items()}
    for name, task in TASKS.items():
        if task.article_tier == "tier1":
            assert cost[name][0] <= 0.004, name
        elif task.article_tier == "tier2":
            assert 0.01 <= cost[name][1] <= 0.03, name
        else:
            assert 0.10 <= cost[name][2] <= 0.15, name
    assert 0.002 <= cost["extract"][0] <= 0.004 and 0.08 <= cost["extract"][2] <= 0.16
    assert 35 <= cost["extract"][2] / cost["extract"][0] <= 45


def test_harder_requests_look_harder_and_fail_more(world: list[dict[str, object]]) -> None:
    """Within each class, the longer half of the prompts (more turns, fields, documents, languages)
    is answered correctly less often by every tier."""
    from tierroute.features.tokens import BpeTokenCounter

    counter = BpeTokenCounter()
    for name, requests in _by_task(world).items():
        ordered = sorted(requests, key=lambda g: counter.count(str(g[0]["prompt"])))
        half = len(ordered) // 2
        short, long = (np.mean([[r["correct"] for r in g] for g in part], axis=0) for part in (ordered[:half], ordered[half:]))
        assert (long < short).all(), (name, short, long)
    # the article's "pull the order ID" is among the requests, one-line and with a one-field schema
    assert any(str(r["prompt"]).startswith("Pull the order ID: #") and r["output_schema"] == {"order_id": "string"} for r in world)


def test_every_article_quote_in_the_docs_is_verbatim() -> None:
    """docs/synthetic-workload.md quotes the article between curly quotes; each must be in it."""
    if not ARTICLE.is_file():
        pytest.skip(f"the routing article is not at {ARTICLE}")
    article = " ".join(ARTICLE.read_text(encoding="utf-8").split())
    doc = (REPO_ROOT / "docs" / "synthetic-workload.md").read_text(encoding="utf-8")
    quotes = re.findall(r"“([^”]+)”", doc)
    assert len(quotes) >= 15
    for quote in quotes:
        parts = [" ".join(p.split()) for p in quote.split("[...]")]
        assert all(p in article for p in parts), quote


# -- production_log -----------------------------------------------------------------------------------


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
        assert {k: v for k, v in row.items() if k not in ("chosen", "propensity")} == {
            k: v for k, v in twin.items() if k not in ("chosen", "propensity")
        }
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
    with pytest.raises(
        ConfigError,
        match=r"^The 'epsilon' parameter of production_log must be a finite number "
        r"in the range \[0(\.0)?, 1(\.0)?\]",
    ):
        list(production_log(SyntheticConfig(10), epsilon=epsilon))

"""The article's 5-node tree (seed/routing-article.txt, SEED_HEURISTIC.md), pinned exactly.

    1. token_count < 500 and is_structured and reasoning_depth <= 2  -> tier1
    2. otherwise reasoning_depth <= 3 and not is_latency_sensitive   -> tier2
    3. otherwise                                                      -> tier3

Expected tiers here come from an independent re-statement of the article (``article_tier``), not
from the implementation.
"""

from __future__ import annotations

import itertools
import re
from functools import lru_cache

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.features.keywords import REASONING_KEYWORDS, reasoning_depth
from tierroute.features.signals import SignalConfig
from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.heuristic import NODES, TIERS, HeuristicBatch, HeuristicDecision, HeuristicParams, HeuristicTree
from tierroute.request import Request

TOKEN_GRID = (0, 499, 500, 1000, 1001, 3000, 3001)
DEPTH_GRID = (1, 2, 3, 4, 5)
BOOLS = (False, True)
SCHEMA = {"order_id": "string"}


def article_tier(tokens: int, structured: bool, depth: int, sensitive: bool) -> tuple[str, str]:
    """The article's route_task, restated."""
    if tokens < 500 and structured and depth <= 2:
        return "tier1", "rule1"
    if depth <= 3 and not sensitive:
        return "tier2", "rule2"
    return "tier3", "rule3"


def article_depth(prompt: str, tokens: int) -> int:
    """The article's score_reasoning_depth, restated."""
    lower = prompt.lower()
    hits = sum(1 for kw in REASONING_KEYWORDS if kw in lower)
    score = 1 + min(hits, 2) + (1 if tokens > 1000 else 0) + (1 if tokens > 3000 else 0)
    return min(score, 5)


@lru_cache(maxsize=None)
def counter() -> BpeTokenCounter:
    return BpeTokenCounter()


def prompt_with_tokens(n: int, head: str = "") -> str:
    """Text whose o200k count is exactly ``n``: ``head`` padded with " a" words (asserted)."""
    base = counter().count(head)
    assert base <= n, f"head {head!r} already has {base} tokens"
    text = head + " a" * (n - base)
    assert counter().count(text) == n, (n, head)
    return text


@pytest.fixture(scope="module")
def tree() -> HeuristicTree:
    return HeuristicTree()


def grid() -> list[tuple[int, bool, int, bool]]:
    return list(itertools.product(TOKEN_GRID, BOOLS, DEPTH_GRID, BOOLS))


# --------------------------------------------------------------------------------------------
# decide / decide_batch on signals
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("tokens", "structured", "depth", "sensitive"), grid())
def test_decide_matches_article_on_full_grid(tree, tokens, structured, depth, sensitive):
    decision = tree.decide(tokens, structured, depth, sensitive)
    assert (decision.tier, decision.node) == article_tier(tokens, structured, depth, sensitive)
    assert decision.token_count == tokens
    assert decision.depth == depth
    assert decision.is_structured is structured
    assert decision.latency_sensitive is sensitive


def test_decide_batch_agrees_with_decide_on_full_grid(tree):
    rows = grid()
    tokens, structured, depth, sensitive = (np.array(col) for col in zip(*rows))
    batch = tree.decide_batch(tokens, structured, depth, sensitive)
    assert isinstance(batch, HeuristicBatch)
    assert batch.tier_index.shape == (len(rows),)
    scalar = [tree.decide(*row) for row in rows]
    assert batch.tiers == [d.tier for d in scalar]
    assert batch.nodes == [d.node for d in scalar]
    assert batch.tiers == [article_tier(*row)[0] for row in rows]
    # index arrays point into TIERS / NODES
    assert [TIERS[i] for i in batch.tier_index] == batch.tiers
    assert [NODES[i] for i in batch.node_index] == batch.nodes
    # every branch is exercised by the grid
    assert set(batch.nodes) == {"rule1", "rule2", "rule3"}


def test_decide_batch_accepts_plain_lists_and_empty(tree):
    batch = tree.decide_batch([10, 600], [True, True], [1, 1], [False, True])
    assert batch.tiers == ["tier1", "tier3"]
    empty = tree.decide_batch([], [], [], [])
    assert empty.tiers == [] and empty.nodes == []


def test_tiers_and_nodes_constants():
    assert TIERS == ("tier1", "tier2", "tier3")
    assert NODES == ("rule1", "rule2", "rule3")


# --------------------------------------------------------------------------------------------
# each branch, scalar and batch
# --------------------------------------------------------------------------------------------

BRANCHES = [
    # (tokens, structured, depth, sensitive) -> (tier, node)
    pytest.param((10, True, 1, False), ("tier1", "rule1"), id="rule1"),
    pytest.param((10, True, 2, True), ("tier1", "rule1"), id="rule1-even-latency-sensitive"),
    pytest.param((10, False, 1, False), ("tier2", "rule2"), id="rule2-no-schema"),
    pytest.param((500, True, 1, False), ("tier2", "rule2"), id="rule2-too-long"),
    pytest.param((10, True, 3, False), ("tier2", "rule2"), id="rule2-too-deep-for-rule1"),
    pytest.param((10, False, 4, False), ("tier3", "rule3"), id="rule3-depth"),
    pytest.param((10, False, 1, True), ("tier3", "rule3"), id="rule3-latency"),
    pytest.param((3001, True, 5, True), ("tier3", "rule3"), id="rule3-both"),
]


@pytest.mark.parametrize(("signals", "expected"), BRANCHES)
def test_each_branch_scalar_and_batch(tree, signals, expected):
    d = tree.decide(*signals)
    assert (d.tier, d.node) == expected
    b = tree.decide_batch(*(np.array([v]) for v in signals))
    assert (b.tiers[0], b.nodes[0]) == expected


# --------------------------------------------------------------------------------------------
# boundaries
# --------------------------------------------------------------------------------------------


def test_rule1_token_boundary_499_500(tree):
    assert tree.decide(499, True, 1, False).tier == "tier1"
    assert tree.decide(500, True, 1, False).tier == "tier2"


def test_rule1_depth_boundary_2_3(tree):
    assert tree.decide(10, True, 2, False).tier == "tier1"
    assert tree.decide(10, True, 3, False).tier == "tier2"


def test_rule2_depth_boundary_3_4(tree):
    assert tree.decide(10, False, 3, False).tier == "tier2"
    assert tree.decide(10, False, 4, False).tier == "tier3"


@pytest.mark.parametrize(
    ("sla", "sensitive"), [(0, True), (150, True), (199, True), (199.999, True), (200, False), (200.0, False), (5000, False), (None, False)]
)
def test_sla_boundary(tree, sla, sensitive):
    d = tree.route(Request("Classify this.", latency_sla_ms=sla))
    assert d.latency_sensitive is sensitive
    assert d.tier == ("tier3" if sensitive else "tier2")
    assert tree.extractor.is_latency_sensitive(sla) is sensitive


@pytest.mark.parametrize(
    ("tokens", "hits", "depth"),
    [
        (0, 0, 1),
        (1000, 0, 1),
        (1001, 0, 2),
        (3000, 0, 2),
        (3001, 0, 3),
        (1000, 1, 2),
        (1001, 1, 3),
        (3000, 1, 3),
        (3001, 1, 4),
        (1000, 2, 3),
        (1001, 2, 4),
        (3000, 2, 4),
        (3001, 2, 5),
        (3001, 3, 5),
        (3001, 9, 5),
        (10, 9, 3),
    ],
)
def test_reasoning_depth_token_boundaries(tokens, hits, depth):
    assert reasoning_depth(hits, tokens) == depth


@pytest.mark.parametrize("n", [499, 500, 1000, 1001, 3000, 3001])
def test_prompt_builder_hits_exact_counts(n):
    text = prompt_with_tokens(n)
    assert BpeTokenCounter().count(text) == n
    assert BpeTokenCounter().count_until(text, 1000) == min(n, 1001)


@pytest.mark.parametrize(
    ("n", "structured", "tier", "depth"),
    [
        (499, True, "tier1", 1),
        (500, True, "tier2", 1),
        (1000, False, "tier2", 1),
        (1001, False, "tier2", 2),
        (3000, False, "tier2", 2),
        (3001, False, "tier2", 3),
    ],
)
def test_real_prompts_at_exact_token_counts(tree, n, structured, tier, depth):
    prompt = prompt_with_tokens(n)
    d = tree.route(Request(prompt, output_schema=SCHEMA if structured else None))
    assert d.token_count == n
    assert d.depth == depth
    assert d.tier == tier


@pytest.mark.parametrize(("n", "depth", "tier"), [(1000, 3, "tier2"), (1001, 4, "tier3"), (3000, 4, "tier3"), (3001, 5, "tier3")])
def test_real_prompts_with_two_keywords_cross_depth_thresholds(tree, n, depth, tier):
    prompt = prompt_with_tokens(n, "Analyze and compare:")
    d = tree.route(Request(prompt))
    assert (d.token_count, d.depth, d.tier) == (n, depth, tier)


def test_rule1_depth_boundary_with_real_prompts(tree):
    # one keyword: depth 2 -> tier1; two keywords: depth 3 -> rule1 fails, rule2 takes it
    one = tree.route(Request("Evaluate the order id.", output_schema=SCHEMA))
    two = tree.route(Request("Evaluate and compare the order id.", output_schema=SCHEMA))
    assert (one.depth, one.tier) == (2, "tier1")
    assert (two.depth, two.tier) == (3, "tier2")


def test_rule2_depth_boundary_with_real_prompts(tree):
    # two keywords + 1001 tokens = depth 4 -> tier3; 1000 tokens = depth 3 -> tier2
    at = tree.route(Request(prompt_with_tokens(1000, "Debug and critique:")))
    over = tree.route(Request(prompt_with_tokens(1001, "Debug and critique:")))
    assert (at.depth, at.tier) == (3, "tier2")
    assert (over.depth, over.tier) == (4, "tier3")


# --------------------------------------------------------------------------------------------
# route / route_batch on real requests vs the article
# --------------------------------------------------------------------------------------------

KEYWORD_HEADS = ("Note:", "Please analyze:", "Analyze and compare:", "Analyze, compare and debug:")


def real_requests() -> list[Request]:
    out = []
    for n, head, schema, sla in itertools.product((499, 500, 1000, 1001, 3000, 3001), KEYWORD_HEADS, (None, SCHEMA), (None, 150, 199, 200)):
        out.append(Request(prompt_with_tokens(n, head), output_schema=schema, latency_sla_ms=sla))
    return out


def test_route_and_route_batch_match_article_on_real_prompts(tree):
    requests = real_requests()
    singles = [tree.route(r) for r in requests]
    batch = tree.route_batch(requests)
    assert batch.tiers == [d.tier for d in singles]
    assert batch.nodes == [d.node for d in singles]
    seen = set()
    for r, d in zip(requests, singles):
        tokens = BpeTokenCounter().count(r.prompt)
        depth = article_depth(r.prompt, tokens)
        sensitive = r.latency_sla_ms is not None and r.latency_sla_ms < 200
        assert (d.token_count, d.depth, d.latency_sensitive) == (tokens, depth, sensitive)
        assert d.is_structured is (r.output_schema is not None)
        assert (d.tier, d.node) == article_tier(tokens, r.output_schema is not None, depth, sensitive)
        seen.add((d.node, d.reason.split("(")[-1] if d.node == "rule3" else ""))
    assert {node for node, _ in seen} == {"rule1", "rule2", "rule3"}
    # rule3 reached for both reasons
    assert ("rule3", "latency-sensitive)") in seen
    assert any(node == "rule3" and why.startswith("depth") for node, why in seen)


def test_route_batch_accepts_generator_and_empty(tree):
    gen = (Request(p) for p in ("hi", "Analyze and compare."))
    assert tree.route_batch(gen).tiers == ["tier2", "tier2"]
    assert tree.route_batch([]).tiers == []


def test_route_never_looks_inside_schema(tree):
    # the article: is_structured = output_schema is not None, even for a schema the feature code rejects
    d = tree.route(Request("Pull the order id.", output_schema={}))
    assert d.is_structured is True and d.tier == "tier1"


# --------------------------------------------------------------------------------------------
# keyword substring behaviour (the article's rule)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "depth"),
    [
        ("The results were evaluated.", 2),  # substring: "evaluated" counts for "evaluate"
        ("Please re-analyze this.", 2),  # "re-analyze" for "analyze"
        ("ANALYZE this", 2),  # case-insensitive
        ("Explain Why it failed", 2),  # multi-word keyword, any case
        ("analyze analyze analyze analyze", 2),  # presence, not occurrences
        ("Analyze and compare.", 3),
        ("Analyze, compare, debug, critique, evaluate it step by step.", 3),  # +2 cap
        ("explainwhy stepbystep", 1),  # multi-word keywords need their spaces
        ("Summarize this.", 1),
    ],
)
def test_keyword_substring_presence_and_cap(tree, prompt, depth):
    d = tree.route(Request(prompt))
    assert d.depth == depth
    assert d.depth == article_depth(prompt, d.token_count)


def test_word_boundary_total_differs_on_evaluated(tree):
    hits = tree.extractor.matcher.hits("The results were evaluated.")
    assert hits.total == 1
    assert hits.word_total == 0


def test_max_depth_is_five(tree):
    d = tree.route(Request(prompt_with_tokens(3500, "Analyze, compare, synthesize and debug:")))
    assert d.depth == 5


# --------------------------------------------------------------------------------------------
# the latency quirk
# --------------------------------------------------------------------------------------------


def test_latency_sensitive_simple_prompt_goes_to_slowest_tier(tree):
    prompt = "Is this billing or technical?"
    quick = tree.route(Request(prompt, latency_sla_ms=150))
    relaxed = tree.route(Request(prompt, latency_sla_ms=None))
    assert quick.depth == 1 and quick.token_count < 500 and not quick.is_structured
    assert (quick.tier, quick.node) == ("tier3", "rule3")
    assert quick.reason.endswith("not rule2 (latency-sensitive)")
    assert (relaxed.tier, relaxed.node) == ("tier2", "rule2")


def test_latency_sensitive_structured_prompt_still_gets_tier1(tree):
    d = tree.route(Request("Is this billing or technical?", output_schema=["billing", "technical"], latency_sla_ms=150))
    assert d.tier == "tier1"


# --------------------------------------------------------------------------------------------
# every threshold is a parameter
# --------------------------------------------------------------------------------------------


def test_defaults_are_the_articles():
    assert HeuristicParams().to_dict() == {"token_limit": 500, "tier1_max_depth": 2, "tier2_max_depth": 3}
    cfg = SignalConfig()
    assert cfg.keywords == REASONING_KEYWORDS
    assert (cfg.keyword_cap, cfg.long_prompt_tokens, cfg.very_long_prompt_tokens, cfg.max_depth) == (2, 1000, 3000, 5)
    assert cfg.latency_sensitive_ms == 200.0
    assert cfg.tokenizer == "bpe:o200k_base"


def test_custom_tree_params_change_decisions():
    tree = HeuristicTree(HeuristicParams(token_limit=100, tier1_max_depth=1, tier2_max_depth=2))
    assert tree.decide(99, True, 1, False).tier == "tier1"
    assert tree.decide(100, True, 1, False).tier == "tier2"
    assert tree.decide(10, True, 2, False).tier == "tier2"  # depth 2 > tier1_max_depth 1
    assert tree.decide(10, False, 3, False).tier == "tier3"  # depth 3 > tier2_max_depth 2
    b = tree.decide_batch([99, 100, 10, 10], [True, True, True, False], [1, 1, 2, 3], [False] * 4)
    assert b.tiers == ["tier1", "tier2", "tier2", "tier3"]
    # real prompts around the 100-token limit
    assert tree.route(Request(prompt_with_tokens(99), output_schema=SCHEMA)).tier == "tier1"
    assert tree.route(Request(prompt_with_tokens(100), output_schema=SCHEMA)).tier == "tier2"


def test_custom_signal_config_changes_decisions():
    cfg = SignalConfig(
        keywords=("foo",), latency_sensitive_ms=50, long_prompt_tokens=10, very_long_prompt_tokens=20, keyword_cap=1, max_depth=3
    )
    tree = HeuristicTree(signals=cfg)
    # the article's keywords no longer count; "foo" does
    assert tree.route(Request("analyze and compare")).depth == 1
    assert tree.route(Request("foo foo")).depth == 2
    # long-prompt thresholds 10 / 20
    assert tree.route(Request(prompt_with_tokens(10))).depth == 1
    assert tree.route(Request(prompt_with_tokens(11))).depth == 2
    assert tree.route(Request(prompt_with_tokens(21))).depth == 3
    assert tree.route(Request(prompt_with_tokens(21, "foo"))).depth == 3  # max_depth 3
    # SLA threshold 50: 49 sensitive, 50 and 150 not
    assert tree.route(Request("hi", latency_sla_ms=49)).tier == "tier3"
    assert tree.route(Request("hi", latency_sla_ms=50)).tier == "tier2"
    assert tree.route(Request("hi", latency_sla_ms=150)).tier == "tier2"
    assert HeuristicTree().route(Request("hi", latency_sla_ms=150)).tier == "tier3"


def test_custom_signal_config_in_route_batch_matches_route():
    tree = HeuristicTree(HeuristicParams(token_limit=100), SignalConfig(keywords=("foo",), latency_sensitive_ms=50))
    requests = [Request("foo bar", SCHEMA, 10), Request(prompt_with_tokens(120, "foo"), SCHEMA, 60), Request("x", None, 49)]
    assert tree.route_batch(requests).tiers == [tree.route(r).tier for r in requests] == ["tier1", "tier2", "tier3"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"token_limit": 0}, r"The 'token_limit' parameter of HeuristicParams must be an int in the range \[1, inf\)\. Got 0 instead\."),
        (
            {"token_limit": True},
            r"The 'token_limit' parameter of HeuristicParams must be an int in the range \[1, inf\)\. "
            r"Got True instead\.",
        ),
        (
            {"token_limit": 500.0},
            r"The 'token_limit' parameter of HeuristicParams must be an int in the range \[1, inf\)\. "
            r"Got 500\.0 instead\.",
        ),
        (
            {"tier1_max_depth": 0},
            r"The 'tier1_max_depth' parameter of HeuristicParams must be an int in the range \[1, inf\)\. "
            r"Got 0 instead\.",
        ),
        (
            {"tier2_max_depth": "3"},
            r"The 'tier2_max_depth' parameter of HeuristicParams must be an int in the range \[1, inf\)\. "
            r"Got '3' instead\.",
        ),
    ],
)
def test_invalid_heuristic_params(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        HeuristicParams(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"keyword_cap": -1}, r"The 'keyword_cap' parameter of SignalConfig must be an int in the range \[0, inf\)\. Got -1 instead\."),
        (
            {"long_prompt_tokens": -1},
            r"The 'long_prompt_tokens' parameter of SignalConfig "
            r"must be an int in the range \[0, inf\)\. Got -1 instead\.",
        ),
        (
            {"very_long_prompt_tokens": 999},
            r"The 'very_long_prompt_tokens' parameter of SignalConfig "
            r"must be an int in the range \[1000, inf\)\. Got 999 instead\.",
        ),
        ({"max_depth": 0}, r"The 'max_depth' parameter of SignalConfig must be an int in the range \[1, inf\)\. Got 0 instead\."),
        (
            {"latency_sensitive_ms": -1},
            r"The 'latency_sensitive_ms' parameter of SignalConfig "
            r"must be a finite number in the range \[0, inf\)\. Got -1 instead\.",
        ),
        (
            {"latency_sensitive_ms": float("nan")},
            r"The 'latency_sensitive_ms' parameter of SignalConfig "
            r"must be a finite number in the range \[0, inf\)\. Got nan instead\.",
        ),
    ],
)
def test_invalid_signal_config(kwargs, message):
    with pytest.raises(ConfigError, match=f"^{message}$"):
        SignalConfig(**kwargs)


def test_invalid_keywords_surface_as_config_error_when_used():
    # validated when the matcher is built (today lazily, at the first route); either way a ConfigError
    with pytest.raises(ConfigError, match=r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list"):
        HeuristicTree(signals=SignalConfig(keywords=())).route(Request("hi"))


# --------------------------------------------------------------------------------------------
# reason text and to_dict
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("signals", "reason"),
    [
        ((10, True, 1, False), "rule1: 10 tokens < 500, output schema given, depth 1 <= 2"),
        ((10, False, 1, False), "rule2: not rule1 (no output schema); depth 1 <= 3, not latency-sensitive"),
        ((600, True, 1, False), "rule2: not rule1 (600 tokens >= 500); depth 1 <= 3, not latency-sensitive"),
        ((10, True, 3, False), "rule2: not rule1 (depth 3 > 2); depth 3 <= 3, not latency-sensitive"),
        ((10, False, 4, False), "rule3: not rule1 (no output schema); not rule2 (depth 4 > 3)"),
        ((10, True, 4, False), "rule3: not rule1 (depth 4 > 2); not rule2 (depth 4 > 3)"),
        ((10, False, 1, True), "rule3: not rule1 (no output schema); not rule2 (latency-sensitive)"),
        ((700, True, 2, True), "rule3: not rule1 (700 tokens >= 500); not rule2 (latency-sensitive)"),
    ],
)
def test_reason_names_rule_and_failing_condition(tree, signals, reason):
    assert tree.decide(*signals).reason == reason


def test_reason_uses_custom_thresholds():
    tree = HeuristicTree(HeuristicParams(token_limit=100, tier1_max_depth=1, tier2_max_depth=2))
    assert tree.decide(100, True, 1, False).reason == ("rule2: not rule1 (100 tokens >= 100); depth 1 <= 2, not latency-sensitive")
    assert tree.decide(5, True, 3, False).reason == "rule3: not rule1 (depth 3 > 1); not rule2 (depth 3 > 2)"


def test_decision_to_dict(tree):
    d = tree.route(Request("Extract the order id.", output_schema=SCHEMA))
    assert isinstance(d, HeuristicDecision)
    assert d.to_dict() == {
        "tier": "tier1",
        "node": "rule1",
        "reason": "rule1: 5 tokens < 500, output schema given, depth 1 <= 2",
        "token_count": 5,
        "depth": 1,
        "is_structured": True,
        "latency_sensitive": False,
    }
    assert list(d.to_dict()) == ["tier", "node", "reason", "token_count", "depth", "is_structured", "latency_sensitive"]


def test_reason_pattern_for_every_grid_point(tree):
    for tokens, structured, depth, sensitive in grid():
        d = tree.decide(tokens, structured, depth, sensitive)
        assert re.match(rf"^{d.node}: ", d.reason)
        if d.node != "rule1":
            assert "not rule1 (" in d.reason
        if d.node == "rule3":
            assert d.reason.endswith("(latency-sensitive)") or d.reason.endswith(f"(depth {depth} > 3)")

"""KeywordMatcher and the article's reasoning-depth score (scalar and vectorised)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from tierroute.errors import ConfigError
from tierroute.features.keywords import REASONING_KEYWORDS, KeywordMatcher, keyword_slug, reasoning_depth, reasoning_depth_array


def test_article_keyword_list_in_order():
    assert REASONING_KEYWORDS == (
        "analyze",
        "compare",
        "synthesize",
        "debug",
        "explain why",
        "step by step",
        "chain of thought",
        "evaluate",
        "critique",
    )


@pytest.mark.parametrize(
    ("keyword", "slug"),
    [("explain why", "explain_why"), ("Step By Step", "step_by_step"), ("re-analyze!", "re_analyze"), ("  x  y ", "x_y")],
)
def test_keyword_slug(keyword, slug):
    assert keyword_slug(keyword) == slug


def test_feature_names():
    assert KeywordMatcher().feature_names == (
        "kw_analyze",
        "kw_compare",
        "kw_synthesize",
        "kw_debug",
        "kw_explain_why",
        "kw_step_by_step",
        "kw_chain_of_thought",
        "kw_evaluate",
        "kw_critique",
        "kwb_analyze",
        "kwb_compare",
        "kwb_synthesize",
        "kwb_debug",
        "kwb_explain_why",
        "kwb_step_by_step",
        "kwb_chain_of_thought",
        "kwb_evaluate",
        "kwb_critique",
    )
    assert KeywordMatcher(("Foo Bar", "baz")).feature_names == ("kw_foo_bar", "kw_baz", "kwb_foo_bar", "kwb_baz")


def test_keywords_are_lowercased_and_tupled():
    m = KeywordMatcher(["FOO", "Bar baz"])  # a list is accepted
    assert m.keywords == ("foo", "bar baz")
    assert m.hits("foo BAR BAZ").total == 2


@pytest.mark.parametrize(
    ("prompt", "present", "total", "word_total", "occurrences"),
    [
        ("", (0,) * 9, 0, 0, 0),
        ("Summarize this.", (0,) * 9, 0, 0, 0),
        ("Please evaluate and compare.", (0, 1, 0, 0, 0, 0, 0, 1, 0), 2, 2, 2),
        ("The results were evaluated.", (0, 0, 0, 0, 0, 0, 0, 1, 0), 1, 0, 1),
        ("Please re-analyze it.", (1, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1, 1),
        ("reanalyze it", (1, 0, 0, 0, 0, 0, 0, 0, 0), 1, 0, 1),
        ("ANALYZE, Analyze, analyze", (1, 0, 0, 0, 0, 0, 0, 0, 0), 1, 1, 3),
        ("Explain why, step by step, using chain of thought.", (0, 0, 0, 0, 1, 1, 1, 0, 0), 3, 3, 3),
        ("Evaluate evaluated, re-analyze and compare; compare.", (1, 1, 0, 0, 0, 0, 0, 1, 0), 3, 3, 5),
        ("debugging, critiques", (0, 0, 0, 1, 0, 0, 0, 0, 1), 2, 0, 2),
    ],
)
def test_hits(prompt, present, total, word_total, occurrences):
    hits = KeywordMatcher().hits(prompt)
    assert (hits.present, hits.total, hits.word_total, hits.occurrences) == (present, total, word_total, occurrences)
    assert len(hits.word_present) == len(present) and sum(hits.word_present) == word_total
    assert all(w <= p for w, p in zip(hits.word_present, present))  # word-boundary hits are substring hits


def test_word_total_differs_from_substring_total_on_evaluated():
    hits = KeywordMatcher().hits("evaluated")
    assert (hits.total, hits.word_total) == (1, 0)
    i = REASONING_KEYWORDS.index("evaluate")
    assert (hits.present[i], hits.word_present[i]) == (1, 0)
    assert KeywordMatcher().hits("Please evaluate.").word_present[i] == 1


def test_custom_keywords():
    m = KeywordMatcher(("foo",))
    assert m.hits("FOOD foo").present == (1,)
    assert m.hits("food").word_total == 0
    assert m.hits("analyze").total == 0


@pytest.mark.parametrize(
    ("keywords", "message"),
    [
        ((), r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of strings\. Got \(\) instead\.$"),
        ([], r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of strings\. Got \[\] instead\.$"),
        ("analyze", r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of strings\. Got 'analyze' instead\.$"),
        (None, r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of strings\. Got None instead\.$"),
        ({"a": 1}, r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of strings\. Got \{'a': 1\} instead\.$"),
        (("a", ""), r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of non-blank strings\. Got '' among them\.$"),
        (
            ("a", "  "),
            r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of non-blank strings\. "
            r"Got '  ' among them\.$",
        ),
        (("a", 1), r"^The 'keywords' parameter of KeywordMatcher must be a non-empty list of non-blank strings\. Got 1 among them\.$"),
        (("a", "A"), r"^The 'keywords' parameter of KeywordMatcher has duplicates: \('a', 'A'\)\.$"),
    ],
)
def test_invalid_keyword_lists(keywords, message):
    with pytest.raises(ConfigError, match=message):
        KeywordMatcher(keywords)


@pytest.mark.parametrize(
    ("hits", "tokens", "depth"),
    [
        (0, 0, 1),
        (1, 0, 2),
        (2, 0, 3),
        (3, 0, 3),
        (9, 0, 3),
        (0, 1000, 1),
        (0, 1001, 2),
        (0, 3000, 2),
        (0, 3001, 3),
        (2, 1001, 4),
        (2, 3001, 5),
        (9, 10**6, 5),
    ],
)
def test_reasoning_depth_article_values(hits, tokens, depth):
    assert reasoning_depth(hits, tokens) == depth


def test_reasoning_depth_parameters():
    assert reasoning_depth(5, 0, keyword_cap=4) == 5
    assert reasoning_depth(5, 0, keyword_cap=0) == 1
    assert reasoning_depth(0, 11, long_prompt_tokens=10, very_long_prompt_tokens=20) == 2
    assert reasoning_depth(0, 21, long_prompt_tokens=10, very_long_prompt_tokens=20) == 3
    assert reasoning_depth(2, 5000, max_depth=4) == 4
    assert reasoning_depth(2, 5000, max_depth=1) == 1


def test_reasoning_depth_array_agrees_with_scalar():
    hits_grid = (0, 1, 2, 3, 9)
    token_grid = (0, 499, 500, 1000, 1001, 3000, 3001, 10**6)
    pairs = list(itertools.product(hits_grid, token_grid))
    hits = np.array([h for h, _ in pairs])
    tokens = np.array([t for _, t in pairs])
    for kwargs in ({}, {"keyword_cap": 1, "long_prompt_tokens": 499, "very_long_prompt_tokens": 1000, "max_depth": 3}):
        out = reasoning_depth_array(hits, tokens, **kwargs)
        assert out.dtype == np.int64
        assert out.shape == (len(pairs),)
        assert out.tolist() == [reasoning_depth(h, t, **kwargs) for h, t in pairs]


def test_reasoning_depth_array_accepts_lists_and_empty():
    assert reasoning_depth_array([0, 2], [0, 3001]).tolist() == [1, 5]
    assert reasoning_depth_array([], []).shape == (0,)

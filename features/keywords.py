"""Reasoning keywords and the article's 1–5 reasoning-depth score.

The article matches keywords as substrings of the lower-cased prompt, so "evaluated" counts for
"evaluate" and "re-analyze" for "analyze". The baseline keeps that; the word-boundary variant is an
extra feature the learned router may prefer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

import numpy as np

from tierroute._params import check_int
from tierroute.errors import ConfigError

__all__ = ["REASONING_KEYWORDS", "KeywordMatcher", "KeywordHits", "reasoning_depth", "reasoning_depth_array", "keyword_slug"]

#: The article's list, in its order.
REASONING_KEYWORDS: tuple[str, ...] = (
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


#: Slugs taken by the aggregate keyword features.
_RESERVED_SLUGS = frozenset({"total", "word_total", "occurrences"})


def keyword_slug(keyword: str) -> str:
    """Feature-name-safe form of a keyword: ``"explain why"`` → ``"explain_why"``."""
    return re.sub(r"[^0-9a-z]+", "_", keyword.lower()).strip("_")


@dataclass(frozen=True, slots=True)
class KeywordHits:
    """Which keywords a prompt contains.

    ``present`` is per keyword (0/1, substring of the lower-cased prompt: the article's rule);
    ``total`` their sum (the article's ``keyword_hits``); ``word_present`` / ``word_total`` the same
    with word-boundary matching ("evaluated" no longer counts for "evaluate"); ``occurrences`` all
    substring occurrences, repeats included.
    """

    present: tuple[int, ...]
    total: int
    word_total: int
    occurrences: int
    word_present: tuple[int, ...] = ()


@dataclass(frozen=True)
class KeywordMatcher:
    """Matches a keyword list against prompts.

    >>> KeywordMatcher().hits("Please evaluate and compare.").total
    2
    """

    keywords: tuple[str, ...] = REASONING_KEYWORDS
    _word_patterns: tuple[re.Pattern[str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        keywords = self.keywords
        if isinstance(keywords, str) or not isinstance(keywords, Sequence) or not keywords:
            raise ConfigError(f"The 'keywords' parameter of KeywordMatcher must be a non-empty list of strings. Got {keywords!r} instead.")
        cleaned = []
        for kw in keywords:
            if not isinstance(kw, str) or not kw.strip():
                raise ConfigError(
                    f"The 'keywords' parameter of KeywordMatcher must be a non-empty list of non-blank strings. Got {kw!r} among them."
                )
            cleaned.append(kw.lower())
        if len(set(cleaned)) != len(cleaned):
            raise ConfigError(f"The 'keywords' parameter of KeywordMatcher has duplicates: {keywords!r}.")
        slugs = [keyword_slug(kw) for kw in cleaned]
        clashes = sorted({s for s in slugs if not s or slugs.count(s) > 1 or s in _RESERVED_SLUGS})
        if clashes:
            raise ConfigError(
                f"The 'keywords' parameter of KeywordMatcher gives feature names that are empty or clash "
                f"({clashes!r} from {keywords!r}); keywords need letters or digits, must differ after "
                f"lower-casing and joining words with '_', and cannot be {sorted(_RESERVED_SLUGS)}."
            )
        object.__setattr__(self, "keywords", tuple(cleaned))
        patterns = tuple(re.compile(r"(?<!\w)" + re.escape(kw) + r"(?!\w)") for kw in cleaned)
        object.__setattr__(self, "_word_patterns", patterns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Substring presence per keyword (``kw_*``), then word-boundary presence (``kwb_*``)."""
        slugs = [keyword_slug(kw) for kw in self.keywords]
        return (*(f"kw_{s}" for s in slugs), *(f"kwb_{s}" for s in slugs))

    def hits(self, prompt: str) -> KeywordHits:
        lower = prompt.lower()
        present = tuple([1 if kw in lower else 0 for kw in self.keywords])
        total = sum(present)
        if not total:  # the common case: no keyword, nothing else to scan
            return KeywordHits(present=present, total=0, word_total=0, occurrences=0, word_present=present)
        occurrences = sum([lower.count(kw) for kw, p in zip(self.keywords, present) if p])
        word_present = tuple([1 if p and pattern.search(lower) else 0 for pattern, p in zip(self._word_patterns, present)])
        return KeywordHits(present=present, total=total, word_total=sum(word_present), occurrences=occurrences, word_present=word_present)


def reasoning_depth(
    keyword_hits: int,
    token_count: int,
    *,
    keyword_cap: int = 2,
    long_prompt_tokens: int = 1000,
    very_long_prompt_tokens: int = 3000,
    max_depth: int = 5,
) -> int:
    """The article's score: 1 + min(hits, cap) + [tokens > long] + [tokens > very long], capped."""
    score = 1 + min(keyword_hits, keyword_cap)
    score += 1 if token_count > long_prompt_tokens else 0
    score += 1 if token_count > very_long_prompt_tokens else 0
    return min(score, max_depth)


def reasoning_depth_array(
    keyword_hits: np.ndarray,
    token_count: np.ndarray,
    *,
    keyword_cap: int = 2,
    long_prompt_tokens: int = 1000,
    very_long_prompt_tokens: int = 3000,
    max_depth: int = 5,
) -> np.ndarray:
    """Vectorised :func:`reasoning_depth` over arrays of equal length."""
    hits = np.asarray(keyword_hits)
    tokens = np.asarray(token_count)
    score = 1 + np.minimum(hits, keyword_cap)
    score = score + (tokens > long_prompt_tokens) + (tokens > very_long_prompt_tokens)
    return cast(np.ndarray, np.minimum(score, max_depth).astype(np.int64))


def check_depth_params(keyword_cap: int, long_prompt_tokens: int, very_long_prompt_tokens: int, max_depth: int, owner: str) -> None:
    """Validate the depth-score parameters (shared by SignalConfig and its users)."""
    check_int(keyword_cap, "keyword_cap", owner, 0)
    check_int(long_prompt_tokens, "long_prompt_tokens", owner, 0)
    check_int(very_long_prompt_tokens, "very_long_prompt_tokens", owner, long_prompt_tokens)
    check_int(max_depth, "max_depth", owner, 1)

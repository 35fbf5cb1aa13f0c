"""What every scorer returns, what a scorer module declares (:class:`ScorerSpec`) and the answer
normalisation they share (no scorer imported here, so each scorer module can use it without
importing the others)."""

from __future__ import annotations

import re
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

__all__ = ["Score", "ScorerSpec", "SCORER_RUNS", "normalize_answer"]

#: where a scorer runs: in-process on the answer text, in a subprocess (code) or by a model call (judge)
SCORER_RUNS = ("offline", "subprocess", "model")

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True, slots=True)
class Score:
    """One scored answer: ``quality`` in [0, 1] and a short ``detail`` (what was found, or why 0)."""

    quality: float
    detail: str = ""


@dataclass(frozen=True)
class ScorerSpec:
    """One scorer, as its module declares it in ``SCORER_SPECS`` (the registry,
    :mod:`tierroute.pipelines.benchmark.scorers.registry`, collects every module's, so a new scorer
    is one new file).

    ``check(reference, output_schema)`` returns the reference normalised for scoring, or raises
    ValueError saying what is expected (run when the prompts file is read, before any call is
    paid). ``score(response, reference, output_schema)`` scores one answer in-process; None for the
    scorers the benchmark runner drives itself (``runs``: "subprocess" for code, "model" for the
    judge). ``threshold``: correct = quality >= it, unless a run overrides it. ``rank`` orders the
    scorers in messages and tables."""

    name: str
    threshold: float
    check: Callable[[Any, Any], Any]
    score: Callable[[str, Any, Any], Score] | None = None
    runs: str = "offline"
    rank: int = 100


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.

    >>> normalize_answer("  The Answer: Paris! ")
    'answer paris'
    """
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())

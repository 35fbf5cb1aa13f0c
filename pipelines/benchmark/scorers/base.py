"""What every scorer returns, and the answer normalisation they share (no scorer imported here,
so each scorer module can use it without importing the others)."""

from __future__ import annotations

import re
import string
from dataclasses import dataclass

__all__ = ["Score", "normalize_answer"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = str.maketrans("", "", string.punctuation)


@dataclass(frozen=True, slots=True)
class Score:
    """One scored answer: ``quality`` in [0, 1] and a short ``detail`` (what was found, or why 0)."""

    quality: float
    detail: str = ""


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces.

    >>> normalize_answer("  The Answer: Paris! ")
    'answer paris'
    """
    text = _ARTICLES.sub(" ", text.lower().translate(_PUNCT))
    return " ".join(text.split())

"""Prompt shape: size and structure markers that do not depend on the prompt's language."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["PromptShape", "SHAPE_FEATURE_NAMES", "prompt_shape"]

_LIST_ITEM = re.compile(r"^[ \t]*(?:[-*•+·▪‣]|\d{1,3}[.)]|[a-zA-Z][.)]|\(\w\))[ \t]+\S", re.MULTILINE)
_FENCE = re.compile(r"^[ \t]*(```|~~~)", re.MULTILINE)
_URL = re.compile(r"https?://\S+")
_DIGIT = re.compile(r"\d")
_CODE_LINE = re.compile(r"^(?: {4}|\t)\S.*$|[;{]\s*$", re.MULTILINE)
# question marks of several scripts: Latin, fullwidth (CJK), Arabic, Greek (U+037E), Armenian
_QUESTION_MARKS = ("?", "\uff1f", "\u061f", "\u037e", "\u055e")
_ASCII_DIGITS = b"0123456789"

SHAPE_FEATURE_NAMES: tuple[str, ...] = (
    "shape_chars",
    "shape_lines",
    "shape_code_blocks",
    "shape_has_code",
    "shape_questions",
    "shape_list_items",
    "shape_urls",
    "shape_digit_frac",
    "shape_non_ascii_frac",
)


@dataclass(frozen=True, slots=True)
class PromptShape:
    """Counts and fractions describing a prompt's form, in ``SHAPE_FEATURE_NAMES`` order."""

    chars: int
    lines: int
    code_blocks: int
    has_code: int
    questions: int
    list_items: int
    urls: int
    digit_frac: float
    non_ascii_frac: float

    def as_vector(self) -> tuple[float, ...]:
        # field by field: dataclasses.astuple deep-copies, a cost on the serving path
        return (
            float(self.chars),
            float(self.lines),
            float(self.code_blocks),
            float(self.has_code),
            float(self.questions),
            float(self.list_items),
            float(self.urls),
            float(self.digit_frac),
            float(self.non_ascii_frac),
        )


def prompt_shape(prompt: str) -> PromptShape:
    """Measure ``prompt``.

    A code block is a fenced block (``` or ~~~); an unclosed fence still counts as one. ``has_code``
    is 1 for a fence, or for lines that look like code (indented four spaces, or ending in ``;``/``{``).

    >>> prompt_shape("Why?\\n- a\\n- b").list_items
    2
    """
    # substring pre-checks skip the regex scans that cannot match (the serving path's hot spot)
    n = len(prompt)
    ascii_only = prompt.isascii()
    fences = len(_FENCE.findall(prompt)) if "```" in prompt or "~~~" in prompt else 0
    code_blocks = (fences + 1) // 2
    has_code = 1 if fences or ((";" in prompt or "{" in prompt or "    " in prompt or "\t" in prompt) and _CODE_LINE.search(prompt)) else 0
    questions = prompt.count("?") if ascii_only else sum(prompt.count(mark) for mark in _QUESTION_MARKS)
    if n:
        # ASCII: the bytes less their digits (one C pass; ten str.count calls cost ten times that)
        digits = n - len(prompt.encode("ascii").translate(None, _ASCII_DIGITS)) if ascii_only else len(_DIGIT.findall(prompt))
        digit_frac = digits / n
        non_ascii_frac = 0.0 if ascii_only else (n - len(prompt.encode("ascii", "ignore"))) / n
    else:
        digit_frac = non_ascii_frac = 0.0
    return PromptShape(
        chars=n,
        lines=prompt.count("\n") + 1 if n else 0,
        code_blocks=code_blocks,
        has_code=has_code,
        questions=questions,
        # one line: ^ matches only at the start, so a match there is the only possible item
        list_items=len(_LIST_ITEM.findall(prompt)) if "\n" in prompt else (1 if _LIST_ITEM.match(prompt) else 0),
        urls=len(_URL.findall(prompt)) if "http" in prompt else 0,
        digit_frac=digit_frac,
        non_ascii_frac=non_ascii_frac,
    )

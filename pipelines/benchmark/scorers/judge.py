"""The ``judge`` scorer: a catalogue model grades an answer, with a fixed prompt.

The benchmark runner sends :func:`judge_messages` to the run's judge model (``--judge MODEL``,
which must be in the catalogue with a ``base_url``) through the same client as every other call:
same retries, same cache, same budget. Its reply is read by :func:`parse_judge_reply`:

- ``Score: 7`` / ``**Score**: 7`` / ``score = 7.5`` / ``the score is 7`` / ``7/10`` / ``**8**`` / a bare
  ``9`` -> n / 10 (0-10, clamped);
- ``yes`` / ``correct`` / ``pass`` -> 1.0 and ``no`` / ``incorrect`` / ``wrong`` / ``fail`` -> 0.0
  (when no number is found);
- anything else -> None: the outcome records the error ``judge_unparseable``.

The judge's cost is **recorded separately** (``judge_cost_usd`` on the outcome, and in the run's
spend and budget), not added to ``cost_usd``: ``cost_usd`` is what the candidate costs to use,
which is what a router trades against quality.
"""

from __future__ import annotations

import json
import re
from typing import Any

from tierroute.pipelines.benchmark.scorers.base import ScorerSpec

__all__ = ["JUDGE_SYSTEM", "JUDGE_MAX_TOKENS", "judge_messages", "parse_judge_reply", "SCORER_SPECS"]

JUDGE_MAX_TOKENS = 64
JUDGE_SYSTEM = (
    "You are a strict grader. You are shown a task, optionally a reference answer, and a candidate "
    "answer. Grade how well the candidate answer solves the task (agreeing with the reference when "
    "one is given) on a scale from 0 (wrong or useless) to 10 (fully correct). Reply with one line "
    "exactly of the form 'Score: N' and nothing else."
)
# "Score: 8", "**Score**: 8", "The score is 8" (not "underscore 8")
_SCORE = re.compile(r"(?<![A-Za-z])score(?![A-Za-z])[*_\s]*(?:is\b)?[*_\s]*[:=]?[*_\s]*(\d+(?:\.\d+)?)", re.I)
_OUT_OF = re.compile(r"(\d+(?:\.\d+)?)\s*(?:/|out of)\s*10\b", re.I)
_BARE = re.compile(r"[\s*_\"'`]*(\d+(?:\.\d+)?)[\s*_\"'`.]*(?:\n|$)")
_YES = re.compile(r"\b(yes|correct|pass(?:ed)?|right)\b", re.I)
_NO = re.compile(r"\b(no|incorrect|wrong|fail(?:ed)?|not correct)\b", re.I)


def judge_messages(task: str, reference: Any, answer: str) -> list[dict[str, str]]:
    """The chat messages sent to the judge for one answer (a fixed template)."""
    ref = reference if isinstance(reference, str) or reference is None else json.dumps(reference, ensure_ascii=False)
    parts = [f"## Task\n{task}"]
    if ref is not None:
        parts.append(f"## Reference answer\n{ref}")
    parts.append(f"## Candidate answer\n{answer}")
    parts.append("Reply with 'Score: N' (0-10).")
    return [{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": "\n\n".join(parts)}]


def parse_judge_reply(text: str) -> float | None:
    """The judge's grade as a quality in [0, 1], or None when the reply holds none.

    >>> parse_judge_reply("Score: 7"), parse_judge_reply("8/10"), parse_judge_reply("Yes."), parse_judge_reply("hmm")
    (0.7, 0.8, 1.0, None)
    """
    for pattern in (_SCORE, _OUT_OF):
        found = pattern.findall(text)
        if found:
            return min(10.0, float(found[-1])) / 10.0
    bare = _BARE.match(text)
    if bare:
        return min(10.0, float(bare.group(1))) / 10.0
    no, yes = _NO.search(text), _YES.search(text)
    if no and (not yes or no.start() <= yes.start()):
        return 0.0
    if yes:
        return 1.0
    return None


def _any_reference(reference: Any, output_schema: Any = None) -> Any:
    return reference  # optional: the judge grades with or without one


#: scored by the benchmark runner (a call to the run's judge model)
SCORER_SPECS = (ScorerSpec("judge", 0.7, _any_reference, runs="model", rank=6),)

"""The prompts file of ``tierroute benchmark``: what to ask every candidate, and how to score it.

JSONL, one object per line (blank lines are skipped):

    {"id": "q1", "prompt": "What is 17 * 3? End with 'Answer: N'.", "reference": 51, "scorer": "numeric",
     "task": "math", "latency_sla_ms": 2000}
    {"id": "q2", "messages": [{"role": "system", "content": "..."}, {"role": "user", "content": "..."}],
     "reference": {"order_id": "A-1"}, "scorer": "json", "output_schema": {"order_id": "string"}}

Fields: ``id`` (string or integer, unique), ``prompt`` (text) or ``messages`` (OpenAI chat
messages; exactly one of the two), ``scorer`` (one of exact, choice, numeric, f1, json, code,
judge), ``reference`` (required except for judge, and for json when an output_schema is given),
and optionally ``output_schema`` (any form tierroute accepts), ``latency_sla_ms``, ``task`` and
``metadata`` (kept with the prompt, never sent). Any other key is a mistake (a misspelt
``reference`` must not silently turn into "no reference") and makes the line bad.

Bad lines are never dropped silently: :func:`load_prompts` lists every one (line number, what
arrived, what was expected) and refuses the file unless ``max_bad`` allows that many; the lines
let through are reported in the run's summary.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tierroute.errors import DataFormatError, DataValidationError, FeatureError, RequestError, describe
from tierroute.pipelines.benchmark.scorers.registry import check_reference, scorer_names
from tierroute.request import messages_to_prompt
from tierroute.schema import summarize_schema

__all__ = ["PromptItem", "PromptIssue", "PromptSet", "PROMPT_FIELDS", "load_prompts", "parse_prompt"]

PROMPT_FIELDS: tuple[str, ...] = ("id", "prompt", "messages", "reference", "scorer", "output_schema", "latency_sla_ms", "task", "metadata")
_SHOWN = 5  # bad lines quoted in an error message


@dataclass(frozen=True)
class PromptItem:
    """One benchmark prompt. ``messages`` is what is sent; ``prompt`` the text an outcome records
    (the prompt itself, or the messages flattened as ``role: content`` lines, as serving does)."""

    id: str
    messages: tuple[Mapping[str, Any], ...]
    prompt: str
    scorer: str
    reference: Any = None
    output_schema: Any = None
    latency_sla_ms: float | None = None
    task: str | None = None
    metadata: Any = None
    line: int = 0


@dataclass(frozen=True, slots=True)
class PromptIssue:
    """Why one line of the prompts file was not used."""

    line: int
    problem: str
    got: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}; got {self.got}"


@dataclass(frozen=True)
class PromptSet:
    """The prompts read from one file, and the bad lines let through under ``max_bad``."""

    path: str
    items: tuple[PromptItem, ...]
    issues: tuple[PromptIssue, ...] = field(default=())

    @property
    def scorers(self) -> frozenset[str]:
        return frozenset(item.scorer for item in self.items)


class _Bad(Exception):
    def __init__(self, problem: str, got: str) -> None:
        super().__init__(problem)
        self.problem, self.got = problem, got


def _messages(raw: Mapping[str, Any]) -> tuple[tuple[Mapping[str, Any], ...], str]:
    has_prompt, has_messages = raw.get("prompt") is not None, raw.get("messages") is not None
    if has_prompt == has_messages:
        got = "both" if has_prompt else "neither"
        raise _Bad("a line needs exactly one of 'prompt' (text) or 'messages' (chat messages)", got)
    if has_prompt:
        prompt = raw["prompt"]
        if not isinstance(prompt, str) or not prompt.strip():
            raise _Bad("'prompt' must be non-empty text", describe(prompt))
        return ({"role": "user", "content": prompt},), prompt
    try:
        flat = messages_to_prompt(raw["messages"])
    except RequestError as exc:
        raise _Bad(str(exc).split("; got ")[0], describe(raw["messages"])) from None
    if not all(isinstance(m.get("role"), str) for m in raw["messages"]):
        raise _Bad("every message needs a 'role' string (system, user or assistant)", describe(raw["messages"]))
    return tuple(dict(m) for m in raw["messages"]), flat


def parse_prompt(raw: object, line: int) -> PromptItem:
    """One prompts-file object (a parsed line) as a :class:`PromptItem`, for callers building
    prompts in code; DataValidationError, worded as :func:`load_prompts` words a bad line, if bad."""
    try:
        return _parse(raw, line)
    except _Bad as bad:
        raise DataValidationError(f"{PromptIssue(line, bad.problem, bad.got)}. Fix that prompt.") from None


def _parse(raw: object, line: int) -> PromptItem:
    if not isinstance(raw, Mapping):
        raise _Bad("each line must be a JSON object", describe(raw))
    unknown = sorted(set(raw) - set(PROMPT_FIELDS))
    if unknown:
        raise _Bad(f"unknown field {unknown[0]!r} (the fields are {', '.join(PROMPT_FIELDS)})", repr(unknown[0]))
    pid = raw.get("id")
    if isinstance(pid, bool) or not isinstance(pid, (str, int)) or not str(pid).strip():
        raise _Bad("'id' must be a non-empty string or an integer", describe(pid) if "id" in raw else "no 'id'")
    messages, prompt = _messages(raw)
    scorer = raw.get("scorer")
    if scorer not in scorer_names():
        got = describe(scorer) if "scorer" in raw else "no 'scorer'"
        raise _Bad(f"'scorer' must be one of {', '.join(scorer_names())}", got)
    schema = raw.get("output_schema")
    try:
        summarize_schema(schema)
    except FeatureError as exc:
        raise _Bad(str(exc).split("; got ")[0], describe(schema)) from None
    try:
        reference = check_reference(scorer, raw.get("reference"), schema)
    except ValueError as exc:
        got = describe(raw["reference"]) if "reference" in raw else "no 'reference'"
        raise _Bad(str(exc), got) from None
    sla = raw.get("latency_sla_ms")
    if sla is not None and (isinstance(sla, bool) or not isinstance(sla, (int, float)) or not math.isfinite(sla) or sla < 0):
        raise _Bad("'latency_sla_ms' must be a number of milliseconds >= 0 (or absent)", describe(sla))
    task = raw.get("task")
    if task is not None and not isinstance(task, str):
        raise _Bad("'task' must be a string (or absent)", describe(task))
    return PromptItem(
        str(pid).strip(),
        messages,
        prompt,
        scorer,
        reference,
        schema,
        None if sla is None else float(sla),
        task or None,
        raw.get("metadata"),
        line,
    )


def load_prompts(path: str | Path, max_bad: int = 0) -> PromptSet:
    """Read and check a prompts file. More than ``max_bad`` bad lines (or no good line at all)
    raise DataValidationError listing the first few, so nothing is paid for a half-broken file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataFormatError(f"Prompts file {str(path)!r} not found. Pass the JSONL file of prompts to benchmark.") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataFormatError(f"Prompts file {str(path)!r} could not be read as UTF-8 text ({exc}). Pass a JSONL file.") from None
    items: list[PromptItem] = []
    issues: list[PromptIssue] = []
    first_line: dict[str, int] = {}
    # "\n" only: str.splitlines() also splits at U+2028, U+0085, ..., which JSON strings may hold raw
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            try:
                raw = json.loads(line)
            except json.JSONDecodeError as exc:
                raise _Bad(f"not JSON ({exc.msg} at char {exc.pos})", describe(line, 60)) from None
            item = _parse(raw, number)
            if item.id in first_line:
                raise _Bad(f"'id' must be unique; {item.id!r} was first used on line {first_line[item.id]}", repr(item.id))
        except _Bad as bad:
            issues.append(PromptIssue(number, bad.problem, bad.got))
            continue
        first_line[item.id] = number
        items.append(item)
    if len(issues) > max_bad or not items:
        shown = "; ".join(map(str, issues[:_SHOWN])) + ("; ..." if len(issues) > _SHOWN else "")
        if not items and not issues:
            raise DataValidationError(f"Prompts file {str(path)!r} holds no prompts. Write one JSON object per line.")
        what = f"{len(issues)} bad line(s) in prompts file {str(path)!r} (at most {max_bad} allowed)"
        if not items:
            what = f"no usable prompt in {str(path)!r}: {len(issues)} bad line(s)"
        raise DataValidationError(f"{what}: {shown}. Fix those lines, or pass --max-bad-prompts N to skip them.")
    return PromptSet(str(path), tuple(items), tuple(issues))

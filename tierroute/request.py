"""The routing request: what a caller knows about an LLM call before making it."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tierroute.errors import FeatureError, RequestError, describe
from tierroute.safejson import UnsafeJSONError, check_depth, find_surrogate
from tierroute.safejson import loads as safe_loads
from tierroute.schema import summarize_schema

__all__ = ["Request", "DEFAULT_MAX_PROMPT_CHARS", "MAX_SCHEMA_DEPTH", "MAX_LATENCY_SLA_MS", "parse_request", "messages_to_prompt"]

#: Hard cap on prompt size accepted anywhere (characters). ~1M tokens; beyond that it's a mistake.
DEFAULT_MAX_PROMPT_CHARS = 4_000_000
#: An output schema nesting arrays/objects deeper than this is refused before anything walks it
#: (the summary allows 64 schema levels; JSON Schema spends about two JSON levels on each).
MAX_SCHEMA_DEPTH = 128
#: The largest latency SLA accepted (ms, about 31 years): far above any real budget, far below
#: float32's range (the features are float32; 3.4e38 would overflow them).
MAX_LATENCY_SLA_MS = 1e12
#: Fields a request object may carry; id/task/metadata are the caller's and do not affect routing;
#: ``objective`` picks the learned router's operating point (read by the serving Router, not here).
_REQUEST_FIELDS = frozenset({"prompt", "messages", "output_schema", "latency_sla_ms", "id", "task", "metadata", "objective"})


@dataclass(frozen=True, slots=True)
class Request:
    """One LLM call to route.

    ``output_schema`` is whatever structure the caller expects back (JSON Schema, OpenAI
    ``response_format`` or tools, an enum list, or the compact ``{"field": "a | b"}`` form), or
    None for free text. ``latency_sla_ms`` is the caller's p95 budget, or None when there is none.

    >>> Request(prompt="Is this billing or technical?", output_schema=["billing", "technical"])
    Request(prompt='Is this billing or technical?', output_schema=['billing', 'technical'], latency_sla_ms=None)
    """

    prompt: str
    output_schema: Any = None
    latency_sla_ms: float | None = None
    #: the schema's summary, filled in by :func:`parse_request` (which had to compute it to check the
    #: schema) so the features do not walk the schema a second time; None = not computed yet
    schema_summary: Any = field(default=None, init=False, compare=False, repr=False)


def messages_to_prompt(messages: object) -> str:
    """Flatten OpenAI-style chat ``messages`` into one prompt text (``role: content`` lines)."""
    if not isinstance(messages, Sequence) or isinstance(messages, (str, bytes)) or not messages:
        raise RequestError(
            f"'messages' must be a non-empty list of {{'role', 'content'}} objects; got {describe(messages)}. "
            'Send a list like [{"role": "user", "content": "..."}].'
        )
    parts: list[str] = []
    for i, message in enumerate(messages):
        if not isinstance(message, Mapping) or "content" not in message:
            raise RequestError(
                f"messages[{i}] must be an object with 'role' and 'content'; got {describe(message)}. "
                "Fix that message or send 'prompt' instead."
            )
        content = message["content"]
        if isinstance(content, list):  # content parts: keep the text ones
            content = "\n".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RequestError(f"messages[{i}].content must be a string or a list of text parts; got {describe(content)}.")
        role = message.get("role", "user")
        parts.append(f"{role}: {content}")
    return "\n".join(parts)


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float (JSON allows it)
        return False


def _check_sla(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise RequestError(
            f"'latency_sla_ms' must be a finite number of milliseconds or null; got {describe(value)}. "
            "Send e.g. 150, or leave it out when there is no latency budget."
        )
    if value < 0:
        raise RequestError(f"'latency_sla_ms' must be >= 0; got {value!r}. Send the p95 latency budget in milliseconds.")
    if value > MAX_LATENCY_SLA_MS:
        raise RequestError(
            f"'latency_sla_ms' must be at most {MAX_LATENCY_SLA_MS:.0e} ms (about 31 years); got {describe(value)}. "
            "Send the p95 latency budget in milliseconds, or leave it out when there is none."
        )
    return float(value)


def _check_id(value: object) -> None:
    """The caller's ``id`` is echoed in responses as UTF-8: a lone surrogate in it cannot be."""
    where = find_surrogate(value)
    if where is not None:
        raise RequestError(
            f"'id' holds a lone surrogate (half of a UTF-16 pair) at {where.replace('$', 'id', 1)}, which cannot be "
            "sent back as UTF-8 text; expected a string of whole characters, a number or null. Send the id as "
            "valid Unicode (ASCII is safest)."
        )


def _check_schema(schema: object) -> tuple[object, Any]:
    """(the schema as an object, its summary), or (None, None) when there is none (null, "",
    "null", {"type": "text"}). Checked here once so that every consumer (the tree, the features,
    the logs) agrees on it."""
    if isinstance(schema, str):
        text = schema.strip()
        if not text:
            return None, None
        try:
            schema = safe_loads(text, max_depth=MAX_SCHEMA_DEPTH, where="'output_schema'")
        except UnsafeJSONError as exc:
            if exc.reason == "syntax":
                raise RequestError(
                    f"'output_schema' is a string that is not JSON ({exc.detail}): "
                    f"{describe(schema)}. Send the schema as a JSON object or list."
                ) from None
            raise RequestError(str(exc)) from None
    else:
        try:  # before anything walks it (the summary, describe() in its errors): a deep value must not recurse
            check_depth(schema, max_depth=MAX_SCHEMA_DEPTH, where="'output_schema'")
        except UnsafeJSONError as exc:
            raise RequestError(str(exc)) from None
    try:
        summary = summarize_schema(schema)
    except FeatureError as exc:
        raise RequestError(f"{exc} (in 'output_schema')") from None
    return (schema, summary) if summary.present else (None, None)


def parse_request(data: object, *, max_prompt_chars: int = DEFAULT_MAX_PROMPT_CHARS) -> Request:
    """Build a :class:`Request` from a plain dict (``prompt`` or ``messages``, ``output_schema``,
    ``latency_sla_ms``), or pass a Request through after checking it. Raises RequestError."""
    if isinstance(data, Request):
        fields: Mapping[str, Any] = {"prompt": data.prompt, "output_schema": data.output_schema, "latency_sla_ms": data.latency_sla_ms}
    elif type(data) is dict or isinstance(data, Mapping):  # the exact type first: the ABC check costs a call
        fields = data
    else:
        raise RequestError(
            f"A request must be an object with 'prompt' (or 'messages'); got {describe(data)}. "
            'Send {"prompt": "...", "output_schema": null, "latency_sla_ms": null}.'
        )
    unknown = sorted(map(str, set(fields) - _REQUEST_FIELDS))
    if unknown:
        raise RequestError(
            f"Unknown request field(s) {unknown}; expected prompt or messages, output_schema, "
            "latency_sla_ms (and optional id, task, metadata, objective). Check the spelling."
        )
    if "id" in fields:
        _check_id(fields["id"])
    if "prompt" in fields and fields["prompt"] is not None:
        prompt = fields["prompt"]
        if not isinstance(prompt, str):
            raise RequestError(f"'prompt' must be a string; got {describe(prompt)}. Send the prompt text.")
    elif fields.get("messages") is not None:
        prompt = messages_to_prompt(fields["messages"])
    else:
        raise RequestError("The request has no 'prompt' (and no 'messages'). Send the text you would send to the model.")
    if len(prompt) > max_prompt_chars:
        raise RequestError(
            f"The prompt has {len(prompt):,} characters; at most {max_prompt_chars:,} are accepted. "
            "Send a shorter prompt or raise max_prompt_chars."
        )
    schema, summary = _check_schema(fields.get("output_schema"))
    request = Request(prompt=prompt, output_schema=schema, latency_sla_ms=_check_sla(fields.get("latency_sla_ms")))
    object.__setattr__(request, "schema_summary", summary)
    return request

"""One chat-completions call of ``tierroute benchmark``, with retries, and reading its answer.

:func:`post_chat` sends one OpenAI-compatible ``POST {base_url}/chat/completions`` with httpx and
retries, with exponential backoff and jitter, what may pass on a second try: connection errors,
timeouts (a total deadline of ``timeout_s`` per attempt), HTTP 429 and 5xx. The delay before
retry n (n = 0, 1, ...) is drawn uniformly in [b/2, b] with b = min(cap, base * 2^n); a
``Retry-After`` header (seconds or an HTTP date) replaces it, up to the cap. Other 4xx are the
request's fault and are not retried. A call that still fails is returned as a failure with a
kind (``timeout``, ``connect``, ``transport``, ``http_<status>``, ``malformed_json``), never raised.
An attempt that timed out, broke off mid-exchange or got a 2xx body that cannot be read may still be
billed by the provider (:data:`MAY_BE_BILLED`); ``before_retry`` lets the caller book it and decide
whether another attempt fits its budget.

:func:`parse_completion` reads the answer text and token usage from a response body;
``no_choices`` when there is no answer in it.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from tierroute._params import check_int, check_number

__all__ = [
    "RetryPolicy",
    "CallStats",
    "HttpResult",
    "CompletionError",
    "post_chat",
    "retry_delay",
    "parse_retry_after",
    "parse_completion",
    "MAY_BE_BILLED",
]

#: failure kinds of an attempt the provider may have answered (and billed) although no answer came back
MAY_BE_BILLED = frozenset({"timeout", "transport", "malformed_json"})


@dataclass(frozen=True)
class RetryPolicy:
    """Per-attempt deadline and how often / how long to wait before trying again."""

    timeout_s: float = 60.0
    max_retries: int = 3
    backoff_base_s: float = 0.5
    backoff_cap_s: float = 30.0

    def __post_init__(self) -> None:
        check_number(self.timeout_s, "timeout_s", "RetryPolicy", 0.001)
        check_int(self.max_retries, "max_retries", "RetryPolicy", 0, 100)
        check_number(self.backoff_base_s, "backoff_base_s", "RetryPolicy", 0.0)
        check_number(self.backoff_cap_s, "backoff_cap_s", "RetryPolicy", 0.0)


@dataclass
class CallStats:
    """Counters of one run: HTTP requests sent (every attempt) and retries among them."""

    requests: int = 0
    retries: int = 0


@dataclass(frozen=True, slots=True)
class HttpResult:
    """What one call came to: the JSON ``body`` of a 2xx answer, or an error ``kind`` + ``detail``.
    ``latency_ms`` is the last attempt's (None when it never got that far)."""

    body: dict[str, Any] | None
    latency_ms: float | None
    attempts: int
    kind: str | None = None
    detail: str | None = None


class CompletionError(Exception):
    """A 2xx body that holds no answer."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind, self.detail = kind, detail


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date), or None."""
    if value is None or not value.strip():
        return None
    try:
        return max(0.0, float(value.strip()))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def retry_after_header(headers: Mapping[str, str]) -> str | None:
    """The wait a response asks for, as ``Retry-After`` text: that header, else OpenAI's
    ``retry-after-ms`` converted to seconds; None when neither is usable."""
    if headers.get("retry-after") is not None:
        return headers["retry-after"]
    ms = parse_retry_after(headers.get("retry-after-ms"))
    return None if ms is None else f"{ms / 1000.0:g}"


def retry_delay(attempt: int, retry_after: str | None, policy: RetryPolicy, rng: random.Random) -> float:
    """Seconds to wait after failed attempt ``attempt`` (0-based); see the module doc."""
    asked = parse_retry_after(retry_after)
    if asked is not None:
        return min(asked, policy.backoff_cap_s)
    ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2.0**attempt)
    return rng.uniform(ceiling / 2.0, ceiling)


def _error_text(response: Any) -> str:
    try:
        payload = response.json()
        message = payload.get("error", {}).get("message") if isinstance(payload, dict) else None
        if isinstance(message, str):
            return message[:200]
    except (ValueError, AttributeError):
        pass
    return response.text[:200] or "(empty body)"


async def post_chat(
    client: Any,
    url: str,
    headers: Mapping[str, str],
    payload: Mapping[str, Any],
    policy: RetryPolicy,
    rng: random.Random,
    stats: CallStats,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    before_retry: Callable[[str], bool] | None = None,
) -> HttpResult:
    """POST ``payload`` to ``url`` with retries (see the module doc); never raises for the call's
    own failures. ``before_retry(kind)`` is asked after each failed attempt that would be retried
    (``kind`` is why it failed); False ends the call there, as a failure."""
    import httpx

    content = json.dumps(payload, ensure_ascii=False).encode("utf-8")
    kind = detail = None
    latency: float | None = None
    for attempt in range(policy.max_retries + 1):
        stats.requests += 1
        retry_after = None
        start = time.perf_counter()
        try:
            async with asyncio.timeout(policy.timeout_s):
                response = await client.post(url, content=content, headers=dict(headers))
        except (TimeoutError, httpx.TimeoutException):
            latency = (time.perf_counter() - start) * 1000.0
            kind, detail = "timeout", f"no answer within {policy.timeout_s:g} s"
        except httpx.ConnectError as exc:
            kind, detail, latency = "connect", f"could not connect to {url} ({str(exc)[:120] or type(exc).__name__})", None
        except httpx.TransportError as exc:
            kind, detail, latency = "transport", f"{type(exc).__name__}: {str(exc)[:160]}", None
        else:
            latency = (time.perf_counter() - start) * 1000.0
            status = response.status_code
            if 200 <= status < 300:
                try:
                    body = response.json()
                except ValueError:
                    body = None
                if not isinstance(body, dict):
                    got = response.text[:120]
                    return HttpResult(
                        None, latency, attempt + 1, "malformed_json", f"HTTP {status} with a body that is not a JSON object: {got!r}"
                    )
                return HttpResult(body, latency, attempt + 1)
            kind, detail = f"http_{status}", f"HTTP {status}: {_error_text(response)}"
            if status != 429 and status < 500:
                return HttpResult(None, latency, attempt + 1, kind, detail)
            retry_after = retry_after_header(response.headers)
        if attempt < policy.max_retries:
            if before_retry is not None and not before_retry(kind or ""):
                return HttpResult(
                    None,
                    latency,
                    attempt + 1,
                    kind,
                    f"{detail} (stopped after {attempt + 1} attempt(s): the budget has no room for another)",
                )
            stats.retries += 1
            await sleep(retry_delay(attempt, retry_after, policy, rng))
    attempts = policy.max_retries + 1
    return HttpResult(None, latency, attempts, kind, f"{detail} (gave up after {attempts} attempt(s))")


def _count(usage: Mapping[str, Any], name: str) -> int | None:
    value = usage.get(name)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def parse_completion(body: Mapping[str, Any]) -> tuple[str, int | None, int | None]:
    """(answer text, prompt tokens, completion tokens) of a chat-completions body; the counts are
    None when ``usage`` is missing or malformed. The text is ``choices[0].message.content`` (text
    parts joined), else the first tool call's arguments, else a legacy ``choices[0].text``.
    Raises :class:`CompletionError` (``no_choices``) when there is none."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        error = body.get("error")
        why = f"an error object: {json.dumps(error)[:160]}" if error else f"keys {sorted(body)[:8]}"
        raise CompletionError("no_choices", f"the response has no choices[0] ({why})")
    choice = choices[0]
    message: Mapping[str, Any] = choice["message"] if isinstance(choice.get("message"), Mapping) else {}
    content = message.get("content")
    if isinstance(content, list):
        content = "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping))
    if content is None:
        calls = message.get("tool_calls")
        function = calls[0].get("function") if isinstance(calls, list) and calls and isinstance(calls[0], Mapping) else None
        if isinstance(function, Mapping):
            content = function.get("arguments")
            if isinstance(content, (Mapping, list)):  # some servers send the arguments as an object
                content = json.dumps(content, ensure_ascii=False)
        elif isinstance(choice.get("text"), str):
            content = choice["text"]
    if not isinstance(content, str):
        raise CompletionError("no_choices", f"choices[0] holds no answer text ({json.dumps(choice)[:160]})")
    usage: Mapping[str, Any] = body["usage"] if isinstance(body.get("usage"), Mapping) else {}
    return content, _count(usage, "prompt_tokens"), _count(usage, "completion_tokens")

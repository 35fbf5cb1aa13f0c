"""The proxy's decision-log line: the decision plus what the upstream call became.

A routed proxy call is logged once the upstream answered (or every attempt failed; for a stream,
when the stream ended), with the decision's fields (:class:`tierroute.serving.decision_log.DecisionLog`)
and ``served_model`` (None when none answered), ``upstream_status``, ``attempts``, ``usage``
(the upstream's ``prompt_tokens`` / ``completion_tokens``, None when it sent none), ``cost_usd``
(usage x the catalogue's price of the served model; None without usage), ``latency_ms`` (from the
routing decision to the last byte) and, when an output-schema check is configured and the request
carried a schema, ``auto_feedback`` (``[{"source": "schema", "quality", "correct"}]``, read by
``tierroute outcomes`` like posted feedback).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from tierroute.models.catalogue import Catalogue
from tierroute.request import parse_request
from tierroute.safejson import UnsafeJSONError
from tierroute.safejson import loads as safe_loads

__all__ = ["ServedCall", "SchemaCheck", "answer_text", "body_answer"]

#: (the answer's text, the request's output schema) -> quality in [0, 1] (1: valid)
SchemaCheck = Callable[[str, Any], float]


def answer_text(body: Mapping[str, Any]) -> str | None:
    """The first choice's text (or its first tool call's arguments) of a chat completion."""
    choices = body.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], Mapping):
        return None
    message = choices[0].get("message")
    if not isinstance(message, Mapping):
        return None
    content = message.get("content")
    if isinstance(content, str):
        return content
    calls = message.get("tool_calls")
    if isinstance(calls, list) and calls and isinstance(calls[0], Mapping):
        function = calls[0].get("function")
        arguments = function.get("arguments") if isinstance(function, Mapping) else None
        if isinstance(arguments, str):
            return arguments
    return None


def _usage(body: Mapping[str, Any]) -> dict[str, int] | None:
    usage = body.get("usage")
    if not isinstance(usage, Mapping):
        return None
    counts = {k: usage.get(k) for k in ("prompt_tokens", "completion_tokens")}
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in counts.values()):
        return None
    return counts  # type: ignore[return-value]


class ServedCall:
    """One routed proxy call on its way: collects the upstream's answer, then writes the line."""

    def __init__(
        self,
        fields: Mapping[str, Any],
        decision: Any,
        log: Any,
        catalogue: Catalogue,
        schema_check: SchemaCheck | None = None,
        bundle: Any = None,
    ) -> None:
        self.fields, self.decision, self.log, self.catalogue, self.bundle = fields, decision, log, catalogue, bundle
        self.schema_check = schema_check if fields.get("output_schema") is not None else None
        self.started = time.perf_counter()
        self._text: list[str] = []
        self._usage: dict[str, int] | None = None
        self._pending = b""
        self.stream_complete = False  # the tapped stream reached its end: a finish_reason or [DONE]
        self._done = False
        self.judged: dict[str, Any] | None = None  # the sampled judge's auto_feedback entry, if graded

    def streamed_text(self) -> str | None:
        """The text deltas tapped from a streamed answer so far, joined (None: none)."""
        return "".join(self._text) if self._text else None

    def tap(self, chunk: bytes) -> None:
        """Read one chunk of a streamed (SSE) answer: its text deltas and any usage."""
        self._pending += chunk
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            data = line.strip()
            if data == b"data: [DONE]":
                self.stream_complete = True
            if not data.startswith(b"data:") or data == b"data: [DONE]":
                continue
            try:
                event = safe_loads(data[5:].strip(), max_depth=64)
            except UnsafeJSONError:
                continue
            if not isinstance(event, Mapping):
                continue
            self._usage = _usage(event) or self._usage
            for choice in event.get("choices") or []:
                if isinstance(choice, Mapping) and choice.get("finish_reason"):
                    self.stream_complete = True
                delta = choice.get("delta") if isinstance(choice, Mapping) else None
                if isinstance(delta, Mapping) and isinstance(delta.get("content"), str):
                    self._text.append(delta["content"])

    def finish(self, model: str | None, status: int | None, attempts: int, body: bytes | None = None) -> None:
        """Write the log line (once): the served model, the upstream's status, the attempts made
        and, from ``body`` (or the tapped stream), usage, cost and the schema check."""
        if self._done or self.log is None:
            return
        self._done = True
        try:
            self._write(model, status, attempts, body)
        except Exception as exc:  # noqa: BLE001 - logging never fails a call: the line is counted as dropped
            self.log.dropped += 1
            logging.getLogger("tierroute.serving").warning(
                "decision log %s: the proxy's line for %s could not be made (%s: %s)",
                self.log.path,
                self.decision.request_id,
                type(exc).__name__,
                exc,
            )

    def _write(self, model: str | None, status: int | None, attempts: int, body: bytes | None) -> None:
        text = "".join(self._text) if self._text else None
        if body is not None:
            try:
                parsed = safe_loads(body, max_depth=256, max_number_chars=1000)
            except UnsafeJSONError:
                parsed = None
            if isinstance(parsed, Mapping):
                self._usage, text = _usage(parsed), answer_text(parsed)
        cost = None
        if model is not None and self._usage is not None and not self.catalogue.missing([model]):
            cost = self.catalogue.candidate(model).cost(self._usage["prompt_tokens"], self._usage["completion_tokens"])
        extra: dict[str, Any] = {
            "served_model": model,
            "upstream_status": status,
            "attempts": attempts,
            "usage": self._usage,
            "cost_usd": cost,
            "latency_ms": round((time.perf_counter() - self.started) * 1000.0, 3),
        }
        auto = []
        if self.schema_check is not None and model is not None and status == 200:
            try:
                quality = float(self.schema_check(text or "", self.fields["output_schema"]))
            except Exception:  # noqa: BLE001 - a checker's failure must not fail the call: no signal then
                quality = None
            if quality is not None:
                auto.append({"source": "schema", "quality": quality, "correct": quality >= 0.5})
        if self.judged is not None:
            auto.append(self.judged)
        if auto:
            extra["auto_feedback"] = auto
        try:
            request = parse_request(self.fields)
        except Exception:  # noqa: BLE001 - it was routed, so it parses; never fail the call over the log
            return
        extra |= self.log.features_for(self.bundle, [request])[0]
        self.log.write(request, self.decision, self.decision.request_id, extra)


def body_answer(body: bytes) -> str | None:
    """The answer text of a chat-completion body (None when it is not one)."""
    try:
        parsed = safe_loads(body, max_depth=256, max_number_chars=1000)
    except UnsafeJSONError:
        return None
    return answer_text(parsed) if isinstance(parsed, Mapping) else None

"""Feedback in: what became of a routed request, joined later with the decision log into
chosen-only outcome rows (``tierroute outcomes``, :mod:`tierroute.pipelines.lifecycle.outcomes`).

    log = FeedbackLog("feedback.jsonl")                       # appends; never truncates
    log.record({"request_id": decision.request_id, "correct": True})
    log.record_many([{"request_id": "a", "quality": 0.8, "cost_usd": 0.0012, "source": "human"}, ...])

One item: ``request_id`` (the decision's, a non-empty string or an integer), ``quality`` in [0, 1]
and/or ``correct`` (a boolean), optional ``cost_usd`` and ``latency_ms`` (the real ones, >= 0),
``source`` (who judged: ``human`` by default, ``schema`` for the proxy's output-schema check,
``judge``, or any short name) and ``metadata`` (a JSON object kept as is). The log appends one
JSON line per item (``schema_version`` 1, plus the receipt ``time``) with the decision log's
durability rules (:class:`tierroute.serving.decision_log.DecisionLog`: one unbuffered write per
line, a torn last line fenced off on open, unwritable lines counted, never raised).

A malformed item raises :class:`tierroute.errors.RequestError` saying what arrived, what is
expected and what to do; a batch is checked whole before any of it is written, so a batch is
either kept whole or refused whole. This log does not know which ids were decided: the join
classifies unknown, late, duplicate and conflicting feedback and keeps them apart (the service
also refuses ids it did not decide and changed grades, :mod:`tierroute.serving.feedback_ids`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from tierroute.errors import RequestError, describe
from tierroute.safejson import find_surrogate
from tierroute.serving.decision_log import MAX_REQUEST_ID_CHARS, DecisionLog

__all__ = ["FeedbackLog", "parse_feedback", "feedback_items", "FEEDBACK_SCHEMA_VERSION", "FEEDBACK_FIELDS"]

FEEDBACK_SCHEMA_VERSION = 1
FEEDBACK_FIELDS = ("request_id", "quality", "correct", "cost_usd", "latency_ms", "source", "metadata")
_MAX_ID_CHARS = MAX_REQUEST_ID_CHARS
_MAX_SOURCE_CHARS = 64


def _number(item: Mapping[str, Any], name: str, where: str, high: float | None, fix: str) -> float | None:
    value = item.get(name)
    if value is None:
        return None
    bounds = f"in [0, {high:g}]" if high is not None else ">= 0"
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
        or (high is not None and value > high)
    ):
        raise RequestError(f"{where}'{name}' must be a finite number {bounds}; got {describe(value)}. {fix}")
    return float(value)


def parse_feedback(item: Any, where: str = "") -> dict[str, Any]:
    """One feedback item checked and normalised (the log line without ``time``); RequestError
    when it is malformed. ``where`` prefixes the message (e.g. ``"feedback [3]: "``)."""
    if not isinstance(item, Mapping):
        raise RequestError(
            f'{where}expected a feedback object {{"request_id", "quality" | "correct", ...}}; got '
            f"{describe(item)}. Send one JSON object per item."
        )
    unknown = sorted(str(k) for k in item if k not in FEEDBACK_FIELDS)
    if unknown:
        raise RequestError(
            f"{where}unknown field(s) {unknown}; feedback takes {list(FEEDBACK_FIELDS)}. Put anything else under 'metadata'."
        )
    if find_surrogate(dict(item)) is not None:
        raise RequestError(
            f"{where}a value holds a lone surrogate (half of a UTF-16 pair) at "
            f"{find_surrogate(dict(item))}; expected whole characters. Send valid Unicode."
        )
    rid = item.get("request_id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if not isinstance(rid, str) or not rid.strip() or len(rid) > _MAX_ID_CHARS:
        raise RequestError(
            f"{where}'request_id' must be the decision's request id (a non-empty string of at most "
            f"{_MAX_ID_CHARS} characters, or an integer); got {describe(rid)}. Send the request_id the "
            "route response (or the proxy's x-tierroute-request-id header) gave."
        )
    quality = _number(item, "quality", where, 1.0, "Send the score as a fraction of full marks, or 'correct': true/false.")
    correct = item.get("correct")
    if correct is not None and not isinstance(correct, bool):
        raise RequestError(
            f"{where}'correct' must be true or false; got {describe(correct)}. Send a JSON boolean, or 'quality' as a number in [0, 1]."
        )
    if quality is None and correct is None:
        raise RequestError(
            f"{where}feedback for {rid!r} has neither 'quality' nor 'correct'; expected at least one. Send "
            "'quality' (a number in [0, 1]) or 'correct' (true/false)."
        )
    cost = _number(item, "cost_usd", where, None, "Send the real cost of the call in USD, or leave it out.")
    latency = _number(item, "latency_ms", where, None, "Send the real latency in milliseconds, or leave it out.")
    source = item.get("source", "human")
    if not isinstance(source, str) or not source.strip() or len(source) > _MAX_SOURCE_CHARS:
        raise RequestError(
            f"{where}'source' must be a short name (human, schema, judge, ...; at most "
            f"{_MAX_SOURCE_CHARS} characters); got {describe(source)}. Name who judged the answer."
        )
    metadata = item.get("metadata")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise RequestError(f"{where}'metadata' must be a JSON object; got {describe(metadata)}. Wrap it in an object.")
    line: dict[str, Any] = {"schema_version": FEEDBACK_SCHEMA_VERSION, "request_id": rid, "quality": quality, "correct": correct}
    line |= {"cost_usd": cost, "latency_ms": latency, "source": source}
    if metadata is not None:
        line["metadata"] = dict(metadata)
    return line


def feedback_items(payload: Any) -> list[Any]:
    """The items of a feedback body: one object, a list, or ``{"items": [...]}``; RequestError
    otherwise."""
    if isinstance(payload, Mapping) and "items" in payload:
        items = payload["items"]
        if not isinstance(items, list) or len(payload) != 1:
            raise RequestError(
                f'Expected {{"items": [feedback, ...]}} with nothing beside "items"; got keys {sorted(payload)} '
                f"with items of type {type(items).__name__}. Send the list under 'items' alone."
            )
        return items
    if isinstance(payload, list):
        return payload
    if isinstance(payload, Mapping):
        return [payload]
    raise RequestError(
        f'Expected one feedback object, a list of them, or {{"items": [...]}}; got JSON '
        f'{type(payload).__name__}. Send {{"request_id": ..., "correct": true}}.'
    )


class _FeedbackFile(DecisionLog):
    _what = "feedback log"


class FeedbackLog:
    """Appends one JSON line per feedback item to ``path`` (the decision log's durability rules).
    ``accepted`` counts the items written; ``dropped`` those that could not be (disk full, closed);
    ``torn`` the torn lines fenced off."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._file = _FeedbackFile(path)
        self.path = self._file.path
        self.accepted = 0

    @property
    def dropped(self) -> int:
        return self._file.dropped

    @property
    def torn(self) -> int:
        return self._file.torn

    def record(self, item: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """Check and append one item (a mapping and/or keyword fields); the line written.
        RequestError when it is malformed; nothing is written then."""
        return self.record_many([{**(item or {}), **fields}])[0]

    def record_many(self, items: Sequence[Any]) -> list[dict[str, Any]]:
        """Check every item, then append them all (RequestError naming the first bad item, and
        nothing written, when any is malformed); the lines written."""
        lines = [parse_feedback(item, f"feedback [{i}]: " if len(items) > 1 else "") for i, item in enumerate(items)]
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for line in lines:
            line["time"] = now
            if self._file.append(line):
                self.accepted += 1
        return lines

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> FeedbackLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

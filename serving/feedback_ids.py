"""What the feedback endpoint checks beyond an item's shape: that the service decided the request
it names, and that one source grades a request once; and where refused items go.

    ids = FeedbackIds(capacity=200_000)        # ServiceConfig.feedback_id_capacity
    ids.remember(decision.request_id)          # every decision the service or the proxy makes
    screened = ids.screen(lines)               # parsed feedback lines (serving/feedback.py)
    ...write screened.fresh..., then ids.commit([lines[i] for i in screened.fresh])

:class:`FeedbackIds` keeps the request ids of the last ``capacity`` decisions this process made
(the oldest forgotten first) and, per id, a fingerprint of the feedback accepted from each source.
An item whose id it does not hold is refused as ``unknown_id``; an item a source already sent
unchanged is an idempotent ``duplicate`` (acknowledged, not written again); a different item from
the same source is refused as a ``conflict``. A process only knows its own decisions: behind a
load balancer without affinity, serve with ``feedback_check_ids=False`` (``--no-feedback-id-check``)
and let ``tierroute outcomes`` classify them at the join.

:class:`RefusedLog` appends every refused item, with its reason, to ``<feedback log>.refused.jsonl``
(the decision log's append and torn-line rules): nothing a client sent is lost. A well-formed item
keeps the feedback log's fields, so that file can be given to ``tierroute outcomes --feedback`` too.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from tierroute._params import check_int
from tierroute.serving.decision_log import DecisionLog
from tierroute.serving.feedback import FEEDBACK_SCHEMA_VERSION

__all__ = ["FeedbackIds", "Refusal", "Screened", "RefusedLog", "refused_path", "REFUSAL_STATUS"]

#: the HTTP status of each reason an item is refused for
REFUSAL_STATUS = {"malformed": 422, "too_many_items": 413, "unknown_id": 422, "conflict": 409}
_MAX_SOURCES = 16  # the sources remembered per id


def refused_path(feedback_log: str) -> str:
    """Where the refused items of ``feedback_log`` go."""
    return f"{feedback_log}.refused.jsonl"


@dataclass(frozen=True)
class Refusal:
    """One item refused: its index in the body, its id, the reason and the message saying what to do."""

    index: int
    request_id: str
    reason: str
    message: str


@dataclass(frozen=True)
class Screened:
    """A body's items sorted: ``fresh`` to write, ``duplicates`` (identical resends), ``refusals``."""

    fresh: list[int] = field(default_factory=list)
    duplicates: list[int] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)


def _fingerprint(line: Mapping[str, Any]) -> bytes:
    kept = {k: v for k, v in line.items() if k != "time"}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode("ascii")).digest()[:16]


class FeedbackIds:
    """The request ids of the last ``capacity`` decisions (oldest forgotten first) with, per id, the
    fingerprint of the feedback accepted from each source. Thread-safe."""

    def __init__(self, capacity: int = 200_000) -> None:
        check_int(capacity, "capacity", "FeedbackIds", 1)
        self.capacity = capacity
        self.forgotten = 0  # ids evicted to stay within capacity
        self._ids: OrderedDict[str, dict[str, bytes] | None] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._ids)

    def __contains__(self, request_id: object) -> bool:
        return str(request_id) in self._ids

    def remember(self, request_id: str | int | None) -> None:
        """Note a decision's id (feedback names it as a string; an integer id is kept as its digits)."""
        if request_id is None:
            return
        key = str(request_id)
        with self._lock:
            if key in self._ids:
                self._ids.move_to_end(key)
                return
            self._ids[key] = None
            while len(self._ids) > self.capacity:
                self._ids.popitem(last=False)
                self.forgotten += 1

    def screen(self, lines: Sequence[Mapping[str, Any]], prefix: bool = True) -> Screened:
        """Sort parsed feedback lines (``request_id``, ``source``, ...) into fresh, duplicate and
        refused ones; items earlier in the same body count as accepted. Records nothing."""
        screened, staged = Screened(), dict[tuple[str, str], bytes]()
        with self._lock:
            for i, line in enumerate(lines):
                rid, source, where = str(line["request_id"]), str(line["source"]), f"feedback [{i}]: " if prefix else ""
                if rid not in self._ids:
                    screened.refusals.append(Refusal(i, rid, "unknown_id", where + self._unknown(rid)))
                    continue
                mark = _fingerprint(line)
                earlier = staged.get((rid, source)) or (self._ids[rid] or {}).get(source)
                if earlier is None:
                    staged[(rid, source)] = mark
                    screened.fresh.append(i)
                elif earlier == mark:
                    screened.duplicates.append(i)
                else:
                    screened.refusals.append(Refusal(i, rid, "conflict", where + _conflict(rid, source)))
        return screened

    def commit(self, lines: Sequence[Mapping[str, Any]]) -> None:
        """Record lines that were written (the first accepted per id and source stands)."""
        with self._lock:
            for line in lines:
                rid = str(line["request_id"])
                if rid in self._ids:
                    sources = self._ids[rid] or {}
                    if len(sources) < _MAX_SOURCES:  # bounded memory: further sources go unchecked (the join sorts them)
                        sources.setdefault(str(line["source"]), _fingerprint(line))
                    self._ids[rid] = sources

    def _unknown(self, rid: str) -> str:
        return (
            f"this service has not decided request_id {rid!r} since it started, or has forgotten it (it remembers "
            f"the {self.capacity:,} most recent decisions; {self.forgotten:,} older ones forgotten so far). Send "
            "feedback to the replica that served the request, or record it with FeedbackLog or in the feedback log "
            "file directly (`tierroute outcomes` joins it); behind a load balancer without affinity, serve with "
            "--no-feedback-id-check."
        )


def _conflict(rid: str, source: str) -> str:
    return (
        f"request_id {rid!r} already has different feedback from source {source!r}, accepted earlier; one source "
        "grades a request once (the join would use neither of two different grades). Send a second opinion under "
        "another 'source'; an unchanged resend is accepted as a duplicate."
    )


class _RefusedFile(DecisionLog):
    _what = "refused feedback log"


class RefusedLog:
    """Appends refused feedback items, one JSON line each, with ``refused`` (the reason), ``index``,
    ``status`` and, for the item that refused its body, ``message``. A well-formed item keeps the
    feedback log's fields; another is kept as sent under ``item``."""

    def __init__(self, path: str) -> None:
        self._file = _RefusedFile(path)
        self.path = self._file.path

    @property
    def dropped(self) -> int:
        return self._file.dropped

    def write(
        self, items: Sequence[Any], parsed: Sequence[Mapping[str, Any] | None], reasons: Mapping[int, tuple[str, str | None]], status: int
    ) -> None:
        """Append every item of a refused body: ``reasons`` maps an index to (reason, message);
        the others are ``batch_refused`` (refused with the item(s) named)."""
        now = datetime.now(timezone.utc).isoformat(timespec="milliseconds")
        for i, item in enumerate(items):
            reason, message = reasons.get(i, ("batch_refused", None))
            line = parsed[i] if i < len(parsed) else None
            kept: dict[str, Any] = dict(line) if line is not None else {"schema_version": FEEDBACK_SCHEMA_VERSION, "item": item}
            kept.update(time=now, refused=reason, index=i, status=status)
            if message is not None:
                kept["message"] = message
            self._file.append(kept)

    def close(self) -> None:
        self._file.close()

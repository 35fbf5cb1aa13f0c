"""``POST /v1/feedback`` (served when the service keeps a feedback log, ``--feedback-log``).

The body is one feedback object, a list of them, or ``{"items": [...]}``
(:mod:`tierroute.serving.feedback`); the answer is ``{"accepted": N, "request_ids": [...]}``, plus
``duplicates`` (``[{"index", "request_id", "source"}]``) when some items resend, unchanged, feedback
accepted before (idempotent: not written again). A body is kept whole or refused whole: a
malformed item gets 422 naming the item, what arrived and what is expected; a body over
``max_batch`` items 413; with the id check (:mod:`tierroute.serving.feedback_ids`, on unless
``feedback_check_ids=False``) an id this process did not decide (or has forgotten) 422 and a
different grade from a source that already graded the id 409, the error listing every refused item
under ``refused`` (``index``, ``request_id``, ``reason``). Nothing of a refused body is written to
the feedback log; every item of it goes to ``<feedback log>.refused.jsonl`` with its reason. Every
item is counted in ``tierroute_feedback_total{outcome}``: ``accepted``, ``duplicate``, ``rejected``
(malformed), ``unknown_id``, ``conflict``, ``batch_refused`` (refused with another item of its
body), ``dropped`` (valid but not written, the disk full). The same bearer token as the other
endpoints.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tierroute.errors import RequestError
from tierroute.serving.feedback import FeedbackLog, feedback_items, parse_feedback
from tierroute.serving.feedback_ids import REFUSAL_STATUS, FeedbackIds, RefusedLog, Screened
from tierroute.serving.http_common import error_response, json_response, read_json

__all__ = ["feedback_route", "FEEDBACK_OUTCOMES"]

#: the labels of tierroute_feedback_total{outcome}
FEEDBACK_OUTCOMES = ("accepted", "duplicate", "rejected", "unknown_id", "conflict", "batch_refused", "dropped")
_COUNTED_AS = {"malformed": "rejected", "too_many_items": "rejected"}


def feedback_route(log: FeedbackLog, config: Any, metrics: Any, ids: FeedbackIds | None = None, refused: RefusedLog | None = None) -> Any:
    """The Starlette route for ``POST /v1/feedback`` appending to ``log``; ``ids``: the request ids
    this process decided (None: every well-formed item is accepted); ``refused``: where refused
    items are kept."""
    from prometheus_client import Counter
    from starlette.routing import Route

    counted = Counter(
        "tierroute_feedback_total",
        "Feedback items received, by outcome (accepted, duplicate: an "
        "unchanged resend, rejected: malformed, unknown_id, conflict, batch_refused: refused with another "
        "item of its body, dropped: could not be written)",
        ["outcome"],
        registry=metrics.registry,
    )
    for outcome in FEEDBACK_OUTCOMES:
        counted.labels(outcome=outcome)
    return Route("/v1/feedback", _Intake(log, config, metrics, counted, ids, refused).feedback, methods=["POST"])


class _Intake:
    """The feedback endpoint: checks a body's items, writes them or refuses the body whole."""

    def __init__(
        self, log: FeedbackLog, config: Any, metrics: Any, counted: Any, ids: FeedbackIds | None, refused: RefusedLog | None
    ) -> None:
        self.log, self.config, self.metrics, self.counted, self.ids, self.refused = log, config, metrics, counted, ids, refused

    async def feedback(self, request: Any) -> Any:
        payload, error = await read_json(request, self.config, self.metrics)
        if error is not None:
            return error
        try:
            items = feedback_items(payload)
        except RequestError as exc:
            return self.refuse([payload], [None], {0: ("malformed", str(exc))}, str(exc))
        if len(items) > self.config.max_batch:
            message = f"The feedback batch has {len(items):,} items; at most {self.config.max_batch:,} per call. Split it."
            return self.refuse(items, [], {i: ("too_many_items", message) for i in range(len(items))}, message)
        if not items:
            return json_response({"accepted": 0, "request_ids": []})
        where = len(items) > 1
        parsed: list[Mapping[str, Any] | None] = []
        bad: dict[int, tuple[str, str | None]] = {}
        for i, item in enumerate(items):
            try:
                parsed.append(parse_feedback(item, f"feedback [{i}]: " if where else ""))
            except RequestError as exc:
                parsed.append(None)
                bad[i] = ("malformed", None if bad else str(exc))
        if bad:
            message = str(bad[min(bad)][1])
            return self.refuse(items, parsed, bad, f"{message} Nothing of this body was kept; fix the item and send the body again.")
        lines = [p for p in parsed if p is not None]
        screened = self.ids.screen(lines, where) if self.ids is not None else Screened(fresh=list(range(len(lines))))
        if screened.refusals:
            return self.refuse_ids(items, lines, screened)
        return self.keep(items, lines, screened)

    def keep(self, items: list[Any], lines: list[Mapping[str, Any]], screened: Screened) -> Any:
        """Write the fresh items; 503 when some could not be written (none then counts as accepted by id)."""
        dropped = self.log.dropped
        written = self.log.record_many([items[i] for i in screened.fresh]) if screened.fresh else []
        lost = self.log.dropped - dropped
        self.counted.labels(outcome="accepted").inc(len(written) - lost)
        self.counted.labels(outcome="duplicate").inc(len(screened.duplicates))
        if lost:
            self.counted.labels(outcome="dropped").inc(lost)
            return error_response(
                503,
                f"{lost} of {len(written)} feedback item(s) could not be written to the feedback "
                "log (disk full or log closed); send them again later.",
                self.metrics,
                headers={"retry-after": "5"},
            )
        if self.ids is not None:
            self.ids.commit(written)
        answer: dict[str, Any] = {"accepted": len(written), "request_ids": [line["request_id"] for line in written]}
        if screened.duplicates:
            answer["duplicates"] = [
                {"index": i, "request_id": lines[i]["request_id"], "source": lines[i]["source"]} for i in screened.duplicates
            ]
        return json_response(answer)

    def refuse_ids(self, items: list[Any], lines: list[Mapping[str, Any]], screened: Screened) -> Any:
        """Refuse a body holding items for unknown ids or conflicting grades, naming them all."""
        first, refusals = screened.refusals[0], screened.refusals
        indexes = ", ".join(str(r.index) for r in refusals)
        kept = f"every item is in {self.refused.path}, with its reason" if self.refused is not None else "none was written"
        message = (
            f"{first.message} {len(refusals)} of {len(items)} item(s) refused; nothing of this body was kept in "
            f"the feedback log ({kept}). Send the body again without item(s) [{indexes}]."
        )
        listed = [{"index": r.index, "request_id": r.request_id, "reason": r.reason} for r in refusals]
        return self.refuse(items, lines, {r.index: (r.reason, r.message) for r in refusals}, message, refused=listed)

    def refuse(
        self,
        items: Sequence[Any],
        parsed: Sequence[Mapping[str, Any] | None],
        reasons: Mapping[int, tuple[str, str | None]],
        message: str,
        **extra: Any,
    ) -> Any:
        """Count every item of a refused body, keep them in the refused log, answer the first reason's status."""
        status = REFUSAL_STATUS[reasons[min(reasons)][0]]
        for i in range(len(items)):
            reason = reasons[i][0] if i in reasons else "batch_refused"
            self.counted.labels(outcome=_COUNTED_AS.get(reason, reason)).inc()
        if self.refused is not None:
            self.refused.write(items, parsed, reasons, status)
        return error_response(status, message, self.metrics, **extra)

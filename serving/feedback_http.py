"""``POST /v1/feedback`` (served when the service keeps a feedback log, ``--feedback-log``).

The body is one feedback object, a list of them, or ``{"items": [...]}``
(:mod:`tierroute.serving.feedback`); the answer is ``{"accepted": N, "request_ids": [...]}``. A
malformed item refuses the whole body with 422 (nothing of it is written) naming the item, what
arrived and what is expected; a body over ``max_batch`` items gets 413. Every item is counted in
``tierroute_feedback_total{outcome}`` (``accepted``, ``rejected``, ``dropped``: valid but not
written, the disk full); the same bearer token as the other endpoints.
"""

from __future__ import annotations

from typing import Any

from tierroute.errors import RequestError
from tierroute.serving.feedback import FeedbackLog, feedback_items
from tierroute.serving.http_common import error_response, json_response, read_json

__all__ = ["feedback_route"]


def feedback_route(log: FeedbackLog, config: Any, metrics: Any) -> Any:
    """The Starlette route for ``POST /v1/feedback`` appending to ``log``."""
    from prometheus_client import Counter
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response
    from starlette.routing import Route

    counted = Counter("tierroute_feedback_total", "Feedback items received, by outcome (accepted, rejected: malformed, "
                      "dropped: could not be written)", ["outcome"], registry=metrics.registry)
    for outcome in ("accepted", "rejected", "dropped"):
        counted.labels(outcome=outcome)

    async def feedback(request: HttpRequest) -> Response:
        payload, error = await read_json(request, config, metrics)
        if error is not None:
            return error
        try:
            items = feedback_items(payload)
        except RequestError as exc:
            counted.labels(outcome="rejected").inc()
            return error_response(422, str(exc), metrics)
        if len(items) > config.max_batch:
            counted.labels(outcome="rejected").inc(len(items))
            return error_response(413, f"The feedback batch has {len(items):,} items; at most {config.max_batch:,} per "
                                  "call. Split it.", metrics)
        if not items:
            return json_response({"accepted": 0, "request_ids": []})
        dropped = log.dropped
        try:
            lines = log.record_many(items)
        except RequestError as exc:
            counted.labels(outcome="rejected").inc(len(items))
            return error_response(422, f"{exc} Nothing of this body was kept; fix the item and send the body again.",
                                  metrics)
        lost = log.dropped - dropped
        counted.labels(outcome="accepted").inc(len(lines) - lost)
        if lost:
            counted.labels(outcome="dropped").inc(lost)
            return error_response(503, f"{lost} of {len(lines)} feedback item(s) could not be written to the feedback "
                                  "log (disk full or log closed); send them again later.", metrics,
                                  headers={"retry-after": "5"})
        return json_response({"accepted": len(lines), "request_ids": [line["request_id"] for line in lines]})

    return Route("/v1/feedback", feedback, methods=["POST"])

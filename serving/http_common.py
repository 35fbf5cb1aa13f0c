"""What the service's endpoints share (:mod:`tierroute.serving.http`, :mod:`tierroute.serving.proxy`):
the Prometheus metrics, the JSON error shape, and reading a JSON body within the service's limits.

Every answer that is not a success is ``{"error": {"status", "message", "type", ...}}`` (the
``type`` as OpenAI's clients expect it) and is counted: 4xx in ``tierroute_client_errors_total``,
5xx in ``tierroute_server_errors_total``. Responses are rendered as ASCII JSON, so no value that
reaches one (an echoed id, a message quoting the caller) can fail to encode.
"""

from __future__ import annotations

import hmac
import json
from typing import TYPE_CHECKING, Any

from tierroute.safejson import UnsafeJSONError, find_surrogate
from tierroute.safejson import loads as safe_loads
from tierroute.serving.router import FALLBACK_REASONS

if TYPE_CHECKING:  # starlette is the serve extra's; imported when a response is made
    from starlette.responses import Response

__all__ = ["ServiceMetrics", "error_response", "json_response", "authorised", "read_json", "echo_id"]

LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_ERROR_TYPES = {
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


class _DecisionLogCollector:
    """``tierroute_decision_log_{dropped,torn}_total`` read from the served router's log at scrape time."""

    def __init__(self, holder: Any) -> None:
        self.holder = holder

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        log = self.holder.current.decision_log if self.holder is not None else None
        yield CounterMetricFamily(
            "tierroute_decision_log_dropped",
            "Decision-log lines that could not be written (disk full, log closed)",
            value=log.dropped if log is not None else 0,
        )
        yield CounterMetricFamily(
            "tierroute_decision_log_torn",
            "Torn decision-log lines fenced off (a crash mid-write found on open, or a partial write)",
            value=log.torn if log is not None else 0,
        )


class ServiceMetrics:
    """Prometheus metrics in a registry of the service's own (no process-global state)."""

    def __init__(self, holder: Any = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter("tierroute_decisions_total", "Routing decisions", ["tier", "model", "source"], registry=self.registry)
        self.fallbacks = Counter(
            "tierroute_fallbacks_total",
            "Decisions the heuristic tree made because the learned path could not answer",
            ["reason"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "tierroute_decision_seconds", "Time to decide one request (inside the router)", buckets=LATENCY_BUCKETS, registry=self.registry
        )
        self.errors = Counter("tierroute_client_errors_total", "Requests refused with a 4xx", ["status"], registry=self.registry)
        self.server_errors = Counter(
            "tierroute_server_errors_total",
            "Answers with a 5xx (502: every upstream failed, 503: over the connection cap, 500: a bug)",
            ["status"],
            registry=self.registry,
        )
        self.upstream_failures = Counter(
            "tierroute_upstream_failures_total",
            "Proxy calls to an upstream that failed (the proxy then moved up or answered 502)",
            ["model", "reason"],
            registry=self.registry,
        )
        self.connections_refused = Counter(
            "tierroute_connections_refused_total", "Connections closed by the server's limits", ["reason"], registry=self.registry
        )
        self.reloads = Counter("tierroute_reloads_total", "Bundle reloads", ["outcome"], registry=self.registry)
        self.learned = Gauge("tierroute_learned", "1 when a verified bundle is served, 0 when only the tree", registry=self.registry)
        for reason in FALLBACK_REASONS:
            self.fallbacks.labels(reason=reason)
        self.registry.register(_DecisionLogCollector(holder))

    def observe(self, decision: Any) -> None:
        self.decisions.labels(tier=decision.tier, model=decision.model, source=decision.source).inc()
        if decision.fallback:
            self.fallbacks.labels(reason=decision.fallback).inc()
        self.latency.observe(decision.elapsed_ms / 1000.0)

    def count(self, status: int) -> None:
        """Count one error answer by its status."""
        (self.errors if status < 500 else self.server_errors).labels(status=str(status)).inc()

    def refused(self, status: int, reason: str) -> None:
        """A connection the server's limits closed (request timeout, over capacity, malformed HTTP)."""
        self.count(status)
        self.connections_refused.labels(reason=reason).inc()


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON response rendered as ASCII (a lone surrogate becomes its escape, never an encode error)."""
    from starlette.responses import Response

    body = json.dumps(content, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    return Response(body, status_code=status, media_type="application/json", headers=headers)


def error_body(status: int, message: str, **extra: Any) -> dict[str, Any]:
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    return {"error": {"status": status, "message": message, "type": kind, **extra}}


def error_response(status: int, message: str, metrics: ServiceMetrics, headers: dict[str, str] | None = None, **extra: Any) -> Response:
    """The JSON error answer, counted."""
    metrics.count(status)
    return json_response(error_body(status, message, **extra), status, headers)


def echo_id(payload: Any) -> Any:
    """The caller's ``id`` to echo in an error (None when it could not be sent back as UTF-8)."""
    request_id = payload.get("id") if isinstance(payload, dict) else None
    return request_id if find_surrogate(request_id) is None else None


def authorised(request: Any, token: str | None) -> bool:
    if token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def read_json(request: Any, config: Any, metrics: ServiceMetrics) -> tuple[Any, Response | None]:
    """(payload, None) or (None, an error response): the bearer token, the body cap, then JSON
    within the depth and number limits (:mod:`tierroute.safejson`)."""
    from starlette.requests import ClientDisconnect
    from starlette.responses import Response

    if not authorised(request, config.token):
        return None, error_response(401, "Missing or wrong bearer token. Send 'Authorization: Bearer <token>'.", metrics)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > config.max_body_bytes):
        size = f"{int(declared):,} bytes" if len(declared) <= 18 else f"a {len(declared)}-digit number of bytes"
        return None, error_response(
            413,
            f"The body is {size}; this service accepts at most {config.max_body_bytes:,}. Send a shorter prompt or raise --max-body.",
            metrics,
        )
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > config.max_body_bytes:
                return None, error_response(
                    413, f"The body exceeds {config.max_body_bytes:,} bytes. Send a shorter prompt or raise --max-body.", metrics
                )
    except ClientDisconnect:  # the client left (or the request timeout closed it): nobody to answer
        return None, Response(status_code=400)
    try:
        return safe_loads(bytes(body) or b"null", max_depth=config.max_json_depth, where="The body"), None
    except UnsafeJSONError as exc:
        if exc.reason in ("syntax", "encoding"):
            message = f"The body is not JSON ({exc.detail}). Send one JSON object."
        elif exc.reason == "depth":
            message = (
                f"The body nests arrays/objects more than {config.max_json_depth} levels deep; this service "
                f"accepts at most {config.max_json_depth} (--max-json-depth). Flatten the request."
            )
        else:
            message = str(exc)
        return None, error_response(400, message, metrics)

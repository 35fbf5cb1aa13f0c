"""The HTTP routing service (Starlette; ``tierroute serve --bundle DIR`` runs it under uvicorn
with :func:`tierroute.serving.server.serve`, which adds the connection limits).

    POST /v1/route          one request object -> one decision
    POST /v1/route/batch    {"requests": [...]} -> {"decisions": [...]}
    GET  /healthz           liveness: the process answers
    GET  /readyz            readiness: what is served (learned or heuristic-only, bundle id)
    GET  /metrics           Prometheus: decisions by tier and source, fallbacks by reason,
                            decision latency histogram, client and server errors, decision-log drops
    POST /admin/reload      {"bundle": PATH|URI} (default: the configured one) -> atomic swap; a
                            bundle that cannot be served is refused and the old one keeps serving;
                            without a token only the configured bundle may be reloaded (403)

Client mistakes are JSON errors with a 4xx status: 400 (not JSON, or JSON over the depth/number
limits), 401 (bearer token), 404/405 (no such endpoint/method), 409 (a reload already running;
a changed feedback grade), 413 (body over the cap), 422 (a malformed request, with the
RequestError's wording; feedback for an id this process did not decide); each is counted.
Prompts are never logged unless ``log_prompts``; the decision log line carries the prompt's
sha256 prefix instead.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError, RequestError
from tierroute.serving.bundle import BundleError
from tierroute.serving.explain import explain_flag
from tierroute.serving.http_common import ServiceMetrics, authorised, echo_id, error_response, json_response, read_json
from tierroute.serving.router import Router, RouterConfig

if TYPE_CHECKING:  # starlette is the serve extra's; imported when the app is made
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response

__all__ = ["ServiceConfig", "RouterHolder", "ReloadBusy", "create_app", "read_json"]

log = logging.getLogger("tierroute.serving")
_error = error_response  # the name the proxy and older callers use


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs. ``token``: when set, every endpoint but /healthz needs
    ``Authorization: Bearer <token>``. ``max_body_bytes``: larger bodies get 413;
    ``max_json_depth``: bodies nesting deeper get 400. Connection limits (applied by
    :func:`tierroute.serving.server.serve`): a request must arrive whole within
    ``request_timeout_s``; idle keep-alive connections close after ``keep_alive_s``; beyond
    ``max_connections`` open connections new ones get 503; a request head still incomplete past
    ``max_header_bytes`` gets 400; ``backlog`` is the listen queue. ``feedback_check_ids``: POST
    /v1/feedback refuses an id none of the last ``feedback_id_capacity`` decisions of this process
    had, and a changed grade from a source (:mod:`tierroute.serving.feedback_ids`); False (replicas
    behind a load balancer without affinity) accepts every well-formed item, as the join sorts them."""

    bundle: str | None = None
    router: RouterConfig = field(default_factory=RouterConfig)
    token: str | None = None
    max_body_bytes: int = 1 << 20
    max_batch: int = 1000
    log_prompts: bool = False
    tracking_uri: str | None = None
    catalogue: str | None = None  # the heuristic's catalogue when no bundle is served (default: article)
    decision_log: str | None = None  # append every decision to this JSONL (prompt text only with log_prompts)
    feedback_log: str | None = None  # POST /v1/feedback appends to this JSONL (serving/feedback.py)
    log_features: bool = False  # the decision log records each request's feature vector (privacy mode; with a bundle)
    max_json_depth: int = 128
    request_timeout_s: float = 10.0
    keep_alive_s: float = 5.0
    max_connections: int = 1024
    max_header_bytes: int = 16 * 1024
    backlog: int = 2048
    feedback_check_ids: bool = True  # refuse feedback for ids this process did not decide, and changed grades
    feedback_id_capacity: int = 200_000  # the most recent decisions whose ids feedback may name

    def __post_init__(self) -> None:
        check_int(self.max_body_bytes, "max_body_bytes", "ServiceConfig", 1)
        check_int(self.max_batch, "max_batch", "ServiceConfig", 1)
        check_int(self.max_json_depth, "max_json_depth", "ServiceConfig", 2)
        check_number(self.request_timeout_s, "request_timeout_s", "ServiceConfig", 0.001)
        check_number(self.keep_alive_s, "keep_alive_s", "ServiceConfig", 0.001)
        check_int(self.max_connections, "max_connections", "ServiceConfig", 1)
        check_int(self.max_header_bytes, "max_header_bytes", "ServiceConfig", 1024)
        check_int(self.backlog, "backlog", "ServiceConfig", 1)
        check_int(self.feedback_id_capacity, "feedback_id_capacity", "ServiceConfig", 1)
        if not isinstance(self.feedback_check_ids, bool):
            raise ConfigError(
                f"The 'feedback_check_ids' parameter of ServiceConfig must be true or false; got {self.feedback_check_ids!r}."
            )
        if self.token is not None and not self.token.strip():
            raise ConfigError("The 'token' parameter of ServiceConfig must be a non-empty string or None. Got an empty string.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["token"] = None if self.token is None else "***"
        return d


class ReloadBusy(RuntimeError):
    """Another reload holds the lock (the caller gets 409 rather than queueing behind it)."""


class RouterHolder:
    """The router being served. ``current`` is read without a lock (a reference read is atomic);
    ``reload`` builds the new router first and swaps the reference only when it loaded, so
    in-flight requests finish on the router they started with. ``configured`` is the bundle the
    service was started with (what an empty reload loads); ``source`` the one served now."""

    def __init__(self, router: Router, source: str | None) -> None:
        self.current = router
        self.source = self.configured = source
        self._lock = threading.Lock()

    def reload(self, source: str | None, config: RouterConfig, tracking_uri: str | None) -> Router:
        """Load ``source`` (None: the configured bundle) and serve it; BundleError leaves the old
        one serving, ReloadBusy when another reload is running."""
        if not self._lock.acquire(blocking=False):
            raise ReloadBusy("Another reload is running; retry when it has finished.")
        try:
            target = source if source is not None else self.configured
            router = Router.load(target, config, strict=True, tracking_uri=tracking_uri, decision_log=self.current.decision_log)
            self.current, self.source = router, target
            return router
        finally:
            self._lock.release()


def _endpoints(proxy: bool, feedback: bool = False) -> str:
    names = ["POST /v1/feedback"] * feedback + [
        "POST /v1/route",
        "POST /v1/route/batch",
        "GET /healthz",
        "GET /readyz",
        "GET /metrics",
        "POST /admin/reload",
    ]
    return ", ".join((["POST /v1/chat/completions"] if proxy else []) + names)


def _load_router(config: ServiceConfig) -> Router:
    """The router ``config`` names: its bundle (or the tree over its catalogue), with its decision log."""
    from tierroute.models.catalogue import load_catalogue
    from tierroute.serving.decision_log import DecisionLog

    catalogue = load_catalogue(config.catalogue) if config.catalogue else None
    decisions = (
        DecisionLog(config.decision_log, log_prompts=config.log_prompts, log_features=config.log_features) if config.decision_log else None
    )
    return Router.load(config.bundle, config.router, catalogue=catalogue, tracking_uri=config.tracking_uri, decision_log=decisions)


class _Endpoints:
    """What the service's endpoints share (its config, the router holder, the metrics, the proxy's
    and the feedback log's parts when served), with one method per endpoint."""

    def __init__(self, config: ServiceConfig, holder: RouterHolder, metrics: ServiceMetrics) -> None:
        self.config, self.holder, self.metrics = config, holder, metrics
        self.proxied = False
        self.proxy_describe: Callable[[], dict[str, Any]] | None = None
        self.proxy_lifespan: Any = None
        self.feedback: Any = None
        self.feedback_ids: Any = None  # FeedbackIds: the ids feedback may name (serving/feedback_ids.py)
        self.feedback_refused: Any = None

    def decided(self, payload: Any, decision: Any) -> None:
        """Count one decision and write the server's log line for it (every endpoint that decides)."""
        self.metrics.observe(decision)
        if self.feedback_ids is not None:
            self.feedback_ids.remember(decision.request_id)
        if not log.isEnabledFor(logging.INFO):
            return
        prompt = payload.get("prompt") if isinstance(payload, dict) else None
        if self.config.log_prompts:  # a chat request's text is in its messages
            shown = prompt if prompt is not None or not isinstance(payload, dict) else payload.get("messages")
            what = f"prompt={json.dumps(shown)[:2000]}"
        else:
            text = prompt if isinstance(prompt, str) else json.dumps(payload, sort_keys=True, default=str)
            what = "prompt_sha256=" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
        log.info(
            "decision %s tier=%s model=%s source=%s fallback=%s ms=%.3f",
            what,
            decision.tier,
            decision.model,
            decision.source,
            decision.fallback,
            decision.elapsed_ms,
        )

    async def route_one(self, request: HttpRequest) -> Response:
        payload, error = await read_json(request, self.config, self.metrics)
        if error is not None:
            return error
        if not isinstance(payload, dict):
            return _error(422, f"Expected one request object (prompt or messages); got JSON {type(payload).__name__}.", self.metrics)
        try:
            decision = self.holder.current.route(payload, explain=explain_flag(request.query_params.get("explain")))
        except RequestError as exc:
            return _error(422, str(exc), self.metrics, id=echo_id(payload))
        self.decided(payload, decision)
        return json_response({"id": payload.get("id"), **decision.to_dict()})

    async def route_batch(self, request: HttpRequest) -> Response:
        config, metrics = self.config, self.metrics
        payload, error = await read_json(request, config, metrics)
        if error is not None:
            return error
        items = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            return _error(
                422, 'Expected {"requests": [request, ...]}; got ' + f"{type(payload).__name__} without a 'requests' list.", metrics
            )
        if len(items) > config.max_batch:
            return _error(413, f"The batch has {len(items):,} requests; at most {config.max_batch:,} per call. Split it.", metrics)
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        router = self.holder.current
        try:
            decide = functools.partial(
                router.route_batch, items, payload.get("objective"), explain=explain_flag(request.query_params.get("explain"))
            )
            if len(items) > 32:  # a big batch would hold the event loop: decide it on a worker thread
                from starlette.concurrency import run_in_threadpool

                decisions = await run_in_threadpool(decide)
            else:
                decisions = decide()
        except RequestError as exc:
            return _error(422, str(exc), metrics)
        for item, decision in zip(items, decisions):
            self.decided(item, decision)
        return json_response({"decisions": [{"id": i, **d.to_dict()} for i, d in zip(ids, decisions)]})

    async def healthz(self, request: HttpRequest) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: HttpRequest) -> Response:
        if not authorised(request, self.config.token):
            return self._unauthorised()
        proxy = {"proxy": self.proxy_describe()} if self.proxy_describe is not None else {}
        described = self.holder.current.describe() | proxy
        want_learned = request.query_params.get("learned") in ("1", "true")
        status = 503 if want_learned and not described["learned"] else 200
        return json_response({"status": "ready" if status == 200 else "not ready", **described}, status)

    async def metrics_endpoint(self, request: HttpRequest) -> Response:
        if not authorised(request, self.config.token):
            return self._unauthorised()
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
        from starlette.responses import Response

        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def reload(self, request: HttpRequest) -> Response:
        config, metrics, holder = self.config, self.metrics, self.holder
        payload, error = await read_json(request, config, metrics)
        if error is not None:
            return error
        source = payload.get("bundle") if isinstance(payload, dict) else None
        if payload is not None and not isinstance(payload, dict) or source is not None and not isinstance(source, str):
            return _error(422, 'Expected {"bundle": "PATH or models:/URI"} (or an empty body for the configured bundle).', metrics)
        if config.token is None and source is not None and source != holder.configured:
            return _error(
                403,
                "Without a bearer token (--token-env) /admin/reload only reloads the configured bundle; "
                f"got another one ({source!r}). Start the service with --token-env to reload other bundles.",
                metrics,
            )
        from starlette.concurrency import run_in_threadpool

        started = time.perf_counter()
        try:
            router = await run_in_threadpool(holder.reload, source, config.router, config.tracking_uri)
        except ReloadBusy as exc:
            return _error(409, f"{exc} Still serving bundle {holder.current.bundle_id}.", metrics, serving=holder.current.bundle_id)
        except BundleError as exc:
            metrics.reloads.labels(outcome="refused").inc()
            return _error(
                422,
                f"Reload refused, still serving bundle {holder.current.bundle_id}: {exc}",
                metrics,
                fallback=exc.code,
                serving=holder.current.bundle_id,
            )
        metrics.reloads.labels(outcome="ok").inc()
        metrics.learned.set(1 if router.learned else 0)
        return json_response({"status": "reloaded", "seconds": round(time.perf_counter() - started, 3), **router.describe()})

    def _unauthorised(self) -> Response:
        return _error(401, "Missing or wrong bearer token. Send 'Authorization: Bearer <token>'.", self.metrics)

    async def http_error(self, request: HttpRequest, exc: Exception) -> Response:
        method, path = request.method, request.url.path
        status, headers = getattr(exc, "status_code", 400), dict(getattr(exc, "headers", None) or {})
        if status == 404:
            message = f"No endpoint at {path}; this service has {_endpoints(self.proxied, self.feedback is not None)}."
        elif status == 405:
            message = f"{method} is not allowed on {path}; use {headers.get('Allow') or 'another method'}."
        else:
            message = f"{getattr(exc, 'detail', exc)} ({method} {path})."
        return _error(status, message, self.metrics, headers=headers)

    async def server_error(self, request: HttpRequest, exc: Exception) -> Response:
        # uvicorn logs the traceback (Starlette re-raises after this answer): a bug to report
        return _error(
            500,
            f"Internal error ({type(exc).__name__}) in {request.method} {request.url.path}; it is "
            "logged. Retry; if it persists, report it with the server log.",
            self.metrics,
        )

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        try:
            if self.proxy_lifespan is None:
                yield
            else:
                async with self.proxy_lifespan(app):
                    yield
        finally:  # each decision-log line is written whole; closing it at shutdown releases the file
            if self.holder.current.decision_log is not None:
                self.holder.current.decision_log.close()
            if self.feedback is not None:
                self.feedback.close()
                self.feedback_refused.close()

    def extra_routes(self, proxy: Any) -> list[Any]:
        """The proxy's route (``proxy``: a ProxyConfig or None) and the feedback route when configured;
        notes what they add to /readyz, the 404 wording and the lifespan."""
        routes: list[Any] = []
        if proxy is not None:
            from tierroute.serving.proxy import proxy_routes

            routes, self.proxy_lifespan, self.proxy_describe = proxy_routes(proxy, self.holder, self.config, self.metrics, self.decided)
            self.proxied = True
        if self.config.feedback_log:
            from tierroute.serving.feedback import FeedbackLog
            from tierroute.serving.feedback_http import feedback_route
            from tierroute.serving.feedback_ids import FeedbackIds, RefusedLog, refused_path

            self.feedback = FeedbackLog(self.config.feedback_log)
            self.feedback_refused = RefusedLog(refused_path(self.config.feedback_log))
            if self.config.feedback_check_ids:
                self.feedback_ids = FeedbackIds(self.config.feedback_id_capacity)
            routes = [*routes, feedback_route(self.feedback, self.config, self.metrics, self.feedback_ids, self.feedback_refused)]
        return routes

    def routes(self) -> list[Any]:
        """The service's own routes."""
        from starlette.routing import Route

        return [
            Route("/v1/route", self.route_one, methods=["POST"]),
            Route("/v1/route/batch", self.route_batch, methods=["POST"]),
            Route("/healthz", self.healthz, methods=["GET"]),
            Route("/readyz", self.readyz, methods=["GET"]),
            Route("/metrics", self.metrics_endpoint, methods=["GET"]),
            Route("/admin/reload", self.reload, methods=["POST"]),
        ]


def create_app(config: ServiceConfig | None = None, router: Router | None = None, proxy: Any = None) -> Any:
    """The Starlette app. ``router`` (optional) is served as is; otherwise ``config.bundle`` is
    loaded (a bundle that cannot be served leaves the tree answering; /readyz says why).
    ``proxy``: a :class:`tierroute.serving.proxy.ProxyConfig` adds ``POST /v1/chat/completions``."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException

    config = config if config is not None else ServiceConfig()
    if router is None:
        router = _load_router(config)
    holder = RouterHolder(router, config.bundle)
    metrics = ServiceMetrics(holder)
    metrics.learned.set(1 if router.learned else 0)
    endpoints = _Endpoints(config, holder, metrics)
    extra = endpoints.extra_routes(proxy)
    app = Starlette(
        lifespan=endpoints.lifespan,
        routes=[*extra, *endpoints.routes()],
        exception_handlers={HTTPException: endpoints.http_error, Exception: endpoints.server_error},
    )
    app.state.holder, app.state.metrics, app.state.config = holder, metrics, config
    app.state.feedback, app.state.feedback_ids = endpoints.feedback, endpoints.feedback_ids
    return app

"""The HTTP routing service (Starlette; ``tierroute serve --bundle DIR`` runs it under uvicorn).

    POST /v1/route          one request object -> one decision
    POST /v1/route/batch    {"requests": [...]} -> {"decisions": [...]}
    GET  /healthz           liveness: the process answers
    GET  /readyz            readiness: what is served (learned or heuristic-only, bundle id)
    GET  /metrics           Prometheus: decisions by tier and source, fallbacks by reason,
                            decision latency histogram, client errors
    POST /admin/reload      {"bundle": PATH|URI} (default: the configured one) -> atomic swap; a
                            bundle that cannot be served is refused and the old one keeps serving;
                            without a token only the configured bundle may be reloaded (403)

Client mistakes are JSON errors with a 4xx status: 400 (not JSON), 401 (bearer token), 413
(body over the cap), 422 (a malformed request, with the RequestError's wording). Prompts are never
logged unless ``log_prompts``; the decision log line carries the prompt's sha256 prefix instead.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from tierroute._params import check_int
from tierroute.errors import ConfigError, RequestError
from tierroute.serving.bundle import BundleError
from tierroute.serving.router import FALLBACK_REASONS, Router, RouterConfig

__all__ = ["ServiceConfig", "RouterHolder", "create_app", "read_json"]

log = logging.getLogger("tierroute.serving")
LATENCY_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


@dataclass(frozen=True)
class ServiceConfig:
    """How the service runs. ``token``: when set, every endpoint but /healthz needs
    ``Authorization: Bearer <token>``. ``max_body_bytes``: larger bodies get 413."""

    bundle: str | None = None
    router: RouterConfig = field(default_factory=RouterConfig)
    token: str | None = None
    max_body_bytes: int = 1 << 20
    max_batch: int = 1000
    log_prompts: bool = False
    tracking_uri: str | None = None
    catalogue: str | None = None  # the heuristic's catalogue when no bundle is served (default: article)
    decision_log: str | None = None  # append every decision to this JSONL (prompt text only with log_prompts)

    def __post_init__(self) -> None:
        check_int(self.max_body_bytes, "max_body_bytes", "ServiceConfig", 1)
        check_int(self.max_batch, "max_batch", "ServiceConfig", 1)
        if self.token is not None and not self.token.strip():
            raise ConfigError("The 'token' parameter of ServiceConfig must be a non-empty string or None. Got an empty string.")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["token"] = None if self.token is None else "***"
        return d


class RouterHolder:
    """The router being served. ``current`` is read without a lock (a reference read is atomic);
    ``reload`` builds the new router first and swaps the reference only when it loaded, so
    in-flight requests finish on the router they started with."""

    def __init__(self, router: Router, source: str | None) -> None:
        self.current = router
        self.source = source
        self._lock = threading.Lock()

    def reload(self, source: str | None, config: RouterConfig, tracking_uri: str | None) -> Router:
        with self._lock:  # one reload at a time
            target = source if source is not None else self.source
            router = Router.load(target, config, strict=True, tracking_uri=tracking_uri,
                                 decision_log=self.current.decision_log)
            self.current, self.source = router, target
            return router


class _Metrics:
    """Prometheus metrics in a registry of the app's own (no process-global state)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.decisions = Counter("tierroute_decisions_total", "Routing decisions", ["tier", "model", "source"], registry=self.registry)
        self.fallbacks = Counter("tierroute_fallbacks_total", "Decisions the heuristic tree made because the learned path "
                                 "could not answer", ["reason"], registry=self.registry)
        self.latency = Histogram("tierroute_decision_seconds", "Time to decide one request (inside the router)",
                                 buckets=LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("tierroute_client_errors_total", "Requests refused with a 4xx", ["status"], registry=self.registry)
        self.reloads = Counter("tierroute_reloads_total", "Bundle reloads", ["outcome"], registry=self.registry)
        self.learned = Gauge("tierroute_learned", "1 when a verified bundle is served, 0 when only the tree",
                             registry=self.registry)
        for reason in FALLBACK_REASONS:
            self.fallbacks.labels(reason=reason)

    def observe(self, decision: Any) -> None:
        self.decisions.labels(tier=decision.tier, model=decision.model, source=decision.source).inc()
        if decision.fallback:
            self.fallbacks.labels(reason=decision.fallback).inc()
        self.latency.observe(decision.elapsed_ms / 1000.0)


def _error(status: int, message: str, metrics: _Metrics, **extra: Any) -> Any:
    from starlette.responses import JSONResponse

    metrics.errors.labels(status=str(status)).inc()
    return JSONResponse({"error": {"status": status, "message": message, **extra}}, status_code=status)


def _authorised(request: Any, config: ServiceConfig) -> bool:
    if config.token is None:
        return True
    header = request.headers.get("authorization", "")
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), config.token.encode())


def _unauthorised(metrics: _Metrics) -> Any:
    return _error(401, "Missing or wrong bearer token. Send 'Authorization: Bearer <token>'.", metrics)


async def read_json(request: Any, config: ServiceConfig, metrics: _Metrics) -> tuple[Any, Any]:
    """(payload, None) or (None, an error response): the bearer token, the body cap, then JSON."""
    if not _authorised(request, config):
        return None, _unauthorised(metrics)
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > config.max_body_bytes:
        return None, _error(413, f"The body is {int(declared):,} bytes; this service accepts at most "
                            f"{config.max_body_bytes:,}. Send a shorter prompt or raise --max-body.", metrics)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > config.max_body_bytes:
            return None, _error(413, f"The body exceeds {config.max_body_bytes:,} bytes. Send a shorter prompt "
                                "or raise --max-body.", metrics)
    try:
        return json.loads(bytes(body) or b"null"), None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, _error(400, f"The body is not JSON ({exc}). Send one JSON object.", metrics)


def create_app(config: ServiceConfig | None = None, router: Router | None = None, proxy: Any = None) -> Any:
    """The Starlette app. ``router`` (optional) is served as is; otherwise ``config.bundle`` is
    loaded (a bundle that cannot be served leaves the tree answering; /readyz says why).
    ``proxy``: a :class:`tierroute.serving.proxy.ProxyConfig` adds ``POST /v1/chat/completions``."""
    from starlette.applications import Starlette
    from starlette.requests import Request as HttpRequest
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    config = config if config is not None else ServiceConfig()
    if router is None:
        from tierroute.models.catalogue import load_catalogue

        from tierroute.serving.decision_log import DecisionLog

        catalogue = load_catalogue(config.catalogue) if config.catalogue else None
        decisions = DecisionLog(config.decision_log, log_prompts=config.log_prompts) if config.decision_log else None
        router = Router.load(config.bundle, config.router, catalogue=catalogue, tracking_uri=config.tracking_uri,
                             decision_log=decisions)
    holder = RouterHolder(router, config.bundle)
    metrics = _Metrics()
    metrics.learned.set(1 if router.learned else 0)

    def log_decision(payload: Any, decision: Any) -> None:
        if not log.isEnabledFor(logging.INFO):
            return
        prompt = payload.get("prompt") if isinstance(payload, dict) else None
        if config.log_prompts:  # a chat request's text is in its messages
            shown = prompt if prompt is not None or not isinstance(payload, dict) else payload.get("messages")
            what = f"prompt={json.dumps(shown)[:2000]}"
        else:
            text = prompt if isinstance(prompt, str) else json.dumps(payload, sort_keys=True, default=str)
            what = "prompt_sha256=" + hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
        log.info("decision %s tier=%s model=%s source=%s fallback=%s ms=%.3f", what, decision.tier, decision.model,
                 decision.source, decision.fallback, decision.elapsed_ms)

    async def route_one(request: HttpRequest) -> Response:
        payload, error = await read_json(request, config, metrics)
        if error is not None:
            return error
        if not isinstance(payload, dict):
            return _error(422, f"Expected one request object (prompt or messages); got JSON {type(payload).__name__}.", metrics)
        request_id = payload.get("id")
        try:
            decision = holder.current.route(payload)
        except RequestError as exc:
            return _error(422, str(exc), metrics, id=request_id)
        metrics.observe(decision)
        log_decision(payload, decision)
        return JSONResponse({"id": request_id, **decision.to_dict()})

    async def route_batch(request: HttpRequest) -> Response:
        payload, error = await read_json(request, config, metrics)
        if error is not None:
            return error
        items = payload.get("requests") if isinstance(payload, dict) else None
        if not isinstance(items, list):
            return _error(422, 'Expected {"requests": [request, ...]}; got ' + f"{type(payload).__name__} without a "
                          "'requests' list.", metrics)
        if len(items) > config.max_batch:
            return _error(413, f"The batch has {len(items):,} requests; at most {config.max_batch:,} per call. Split it.", metrics)
        ids = [item.get("id") if isinstance(item, dict) else None for item in items]
        router = holder.current
        try:
            if len(items) > 32:  # a big batch would hold the event loop: decide it on a worker thread
                from starlette.concurrency import run_in_threadpool

                decisions = await run_in_threadpool(router.route_batch, items)
            else:
                decisions = router.route_batch(items)
        except RequestError as exc:
            return _error(422, str(exc), metrics)
        for item, decision in zip(items, decisions):
            metrics.observe(decision)
            log_decision(item, decision)
        return JSONResponse({"decisions": [{"id": i, **d.to_dict()} for i, d in zip(ids, decisions)]})

    async def healthz(request: HttpRequest) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: HttpRequest) -> Response:
        if not _authorised(request, config):
            return _unauthorised(metrics)
        described = holder.current.describe()
        want_learned = request.query_params.get("learned") in ("1", "true")
        status = 503 if want_learned and not described["learned"] else 200
        return JSONResponse({"status": "ready" if status == 200 else "not ready", **described}, status_code=status)

    async def metrics_endpoint(request: HttpRequest) -> Response:
        if not _authorised(request, config):
            return _unauthorised(metrics)
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    async def reload(request: HttpRequest) -> Response:
        payload, error = await read_json(request, config, metrics)
        if error is not None:
            return error
        source = payload.get("bundle") if isinstance(payload, dict) else None
        if payload is not None and not isinstance(payload, dict) or source is not None and not isinstance(source, str):
            return _error(422, 'Expected {"bundle": "PATH or models:/URI"} (or an empty body for the configured bundle).', metrics)
        if config.token is None and source is not None and source != holder.source:
            return _error(403, "Without a bearer token (--token-env) /admin/reload only reloads the configured bundle; "
                          f"got another one ({source!r}). Start the service with --token-env to reload other bundles.", metrics)
        from starlette.concurrency import run_in_threadpool

        started = time.perf_counter()
        try:
            router = await run_in_threadpool(holder.reload, source, config.router, config.tracking_uri)
        except BundleError as exc:
            metrics.reloads.labels(outcome="refused").inc()
            return _error(422, f"Reload refused, still serving bundle {holder.current.bundle_id}: {exc}", metrics,
                          fallback=exc.code, serving=holder.current.bundle_id)
        metrics.reloads.labels(outcome="ok").inc()
        metrics.learned.set(1 if router.learned else 0)
        return JSONResponse({"status": "reloaded", "seconds": round(time.perf_counter() - started, 3), **router.describe()})

    routes, proxy_lifespan = [], None
    if proxy is not None:
        from tierroute.serving.proxy import proxy_routes

        routes, proxy_lifespan = proxy_routes(proxy, holder, config, metrics)

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        try:
            if proxy_lifespan is None:
                yield
            else:
                async with proxy_lifespan(app):
                    yield
        finally:  # the decision log is flushed per line; closing it at shutdown releases the file
            if holder.current.decision_log is not None:
                holder.current.decision_log.close()

    app = Starlette(lifespan=lifespan, routes=[
        *routes,
        Route("/v1/route", route_one, methods=["POST"]),
        Route("/v1/route/batch", route_batch, methods=["POST"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/admin/reload", reload, methods=["POST"]),
    ])
    app.state.holder, app.state.metrics, app.state.config = holder, metrics, config
    return app

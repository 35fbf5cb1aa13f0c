"""The OpenAI-compatible proxy (``tierroute serve --proxy catalogue.toml``).

``POST /v1/chat/completions`` with ``model="tierroute"`` is routed (the served bundle, or the tree
over the catalogue), then forwarded to the chosen candidate's ``base_url`` + ``/chat/completions``
with ``model`` set to the candidate's id and the key from its ``api_key_env`` (read once, at start:
a candidate whose variable is unset is refused then, not sent keyless). The upstream's response
comes back as is (streamed when ``stream`` is true), with the decision in the
``x-tierroute-decision`` header (compact JSON). An upstream failure (connection error, timeout,
429, 5xx, or a 200 whose body is not a JSON object) moves to the next candidate up (same tier
dearer first, then the tiers above), at most ``max_attempts`` candidates; then 502 in OpenAI's
error shape, with the decision header. A 4xx other than 429 is the caller's mistake and is
returned as is. Naming a catalogue model directly forwards to it without routing; its 429 comes
back as is (with ``retry-after``), so the caller's client can back off.

Routed calls are decisions like any other: counted in /metrics, written to the decision log and
the server's log line. Upstream failures are counted in ``tierroute_upstream_failures_total``
(never as client errors). The request's latency SLA may be sent as the
``x-tierroute-latency-sla-ms`` header; its output schema is read from ``response_format``
(OpenAI's json_schema / json_object) or ``tools``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError, RequestError
from tierroute.models.catalogue import Catalogue, load_catalogue
from tierroute.safejson import UnsafeJSONError
from tierroute.safejson import loads as safe_loads

__all__ = ["ProxyConfig", "proxy_routes", "upgrade_chain", "upstream_keys"]

DECISION_HEADER = "x-tierroute-decision"
SLA_HEADER = "x-tierroute-latency-sla-ms"
#: names the operating point for one routed call (match-best, match-heuristic, max-accuracy, budget=USD)
OBJECTIVE_HEADER = "x-tierroute-objective"
_RELAYED_HEADERS = ("retry-after", "retry-after-ms", "x-request-id")


@dataclass(frozen=True)
class ProxyConfig:
    """``catalogue``: TOML path or builtin name whose candidates carry ``base_url`` (and
    ``api_key_env``); ``alias``: the model name that asks for routing; ``max_attempts``: candidates
    tried per call before answering 502 (``--max-attempts``)."""

    catalogue: str
    timeout_s: float = 60.0
    alias: str = "tierroute"
    max_attempts: int = 3

    def __post_init__(self) -> None:
        check_number(self.timeout_s, "timeout_s", "ProxyConfig", 0.001)
        check_int(self.max_attempts, "max_attempts", "ProxyConfig", 1)


def upstream_keys(catalogue: Catalogue, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """{model: API key} for the candidates the proxy can call, read once from ``env`` (default: the
    process environment). ConfigError naming every ``api_key_env`` that is unset or empty."""
    env = os.environ if env is None else env
    keys: dict[str, str] = {}
    unset: dict[str, list[str]] = {}
    for cand in catalogue.candidates:
        if cand.base_url and cand.api_key_env:
            if env.get(cand.api_key_env):
                keys[cand.model] = env[cand.api_key_env]
            else:
                unset.setdefault(cand.api_key_env, []).append(cand.model)
    if unset:
        listing = "; ".join(f"{name} (for {', '.join(models)})" for name, models in unset.items())
        raise ConfigError(f"The API key variable(s) named by api_key_env in catalogue {catalogue.name!r} are not set: "
                          f"{listing}. Export them (export NAME=...) before starting the proxy, or remove api_key_env "
                          "from endpoints that need no key.")
    return keys


def upgrade_chain(catalogue: Catalogue, first: str) -> list[str]:
    """``first``, then every candidate above it: same tier and dearer, then higher tiers, each
    cheapest first; only candidates with a ``base_url`` (where the proxy can send a call)."""
    def rank(model: str) -> tuple[int, float, str]:
        c = catalogue.candidate(model)
        return catalogue.tier_rank(c.tier), c.input_per_1k + c.output_per_1k, c.model

    start = rank(first)
    above = sorted((c.model for c in catalogue.candidates if rank(c.model) > start), key=rank)
    return [m for m in (first, *above) if catalogue.candidate(m).base_url]


def _request_fields(payload: dict[str, Any], sla_header: str | None) -> dict[str, Any]:
    """The routing request hidden in a chat-completions body."""
    fields: dict[str, Any] = {"messages": payload.get("messages")}
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_schema", "json_object"):
        fields["output_schema"] = response_format
    elif payload.get("tools"):
        fields["output_schema"] = {"tools": payload["tools"]}
    if sla_header is not None:
        try:
            value = float(sla_header)
        except ValueError:
            raise RequestError(f"The {SLA_HEADER} header must be a number of milliseconds; got {sla_header!r}.") from None
        if not math.isfinite(value):
            raise RequestError(f"The {SLA_HEADER} header must be a finite number of milliseconds; got {sla_header!r}. "
                               "Leave the header out when there is no latency budget.")
        fields["latency_sla_ms"] = value
    return fields


def proxy_routes(config: ProxyConfig, holder: Any, service: Any, metrics: Any,
                 decided: Callable[[Any, Any], None]) -> tuple[list[Any], Any, dict[str, Any]]:
    """The proxy's routes, the lifespan that owns its HTTP client, and what /readyz says about it
    (for :func:`create_app`; ``decided(payload, decision)`` counts and logs each routed decision)."""
    import httpx
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    from tierroute.serving.http_common import error_response, read_json

    catalogue = load_catalogue(config.catalogue)
    if not any(c.base_url for c in catalogue.candidates):
        raise ConfigError(f"Catalogue {catalogue.name!r} gives no candidate a base_url, so the proxy has nowhere to send "
                          'calls. Add base_url = "https://.../v1" (and api_key_env) to its [[candidates]].')
    keys = upstream_keys(catalogue)
    clients: dict[str, httpx.AsyncClient] = {}
    described = {"catalogue": catalogue.name, "alias": config.alias, "max_attempts": config.max_attempts,
                 "timeout_s": config.timeout_s, "upstreams": [c.model for c in catalogue.candidates if c.base_url]}

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        clients["http"] = httpx.AsyncClient(timeout=config.timeout_s)
        try:
            yield
        finally:
            await clients.pop("http").aclose()

    def client() -> httpx.AsyncClient:
        if "http" not in clients:  # served without lifespan (e.g. some test clients): make one lazily
            clients["http"] = httpx.AsyncClient(timeout=config.timeout_s)
        return clients["http"]

    def failed(failures: list[dict[str, Any]], model: str, reason: str, error: str, status: int | None = None) -> None:
        metrics.upstream_failures.labels(model=model, reason=reason).inc()
        failures.append({"model": model, **({"status": status} if status is not None else {}), "error": error})

    async def chat_completions(request: HttpRequest) -> Response:
        payload, error = await read_json(request, service, metrics)
        if error is not None:
            return error
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return error_response(422, "Expected a chat-completions object with a 'messages' list.", metrics)
        asked = payload.get("model")
        routed = asked == config.alias
        if routed:
            try:
                fields = _request_fields(payload, request.headers.get(SLA_HEADER))
                decision = holder.current.route(fields, objective=request.headers.get(OBJECTIVE_HEADER))
            except RequestError as exc:
                return error_response(422, str(exc), metrics)
            decided(fields, decision)
            chosen = None if catalogue.missing([decision.model]) else decision.model
            if chosen is None:  # the bundle chose a model this catalogue lacks: serve its tier here
                chosen = catalogue.serving_model(decision.tier) if decision.tier in catalogue.tiers else catalogue.candidates[-1].model
            chain = upgrade_chain(catalogue, chosen)[: config.max_attempts]
            info: dict[str, Any] = {"model": chosen, "tier": decision.tier, "source": decision.source,
                                    "fallback": decision.fallback, "bundle_id": decision.bundle_id,
                                    "objective": decision.objective}
        elif isinstance(asked, str) and not catalogue.missing([asked]):
            chain, info = [asked][: 1 if catalogue.candidate(asked).base_url else 0], {"model": asked, "source": "caller"}
        else:
            known = ", ".join(c.model for c in catalogue.candidates)
            return error_response(404, f"Unknown model {asked!r}; send model={config.alias!r} to route, or one of {known}.",
                                  metrics)
        failures: list[dict[str, Any]] = []

        def decision_header(model: str | None) -> dict[str, str]:
            return {DECISION_HEADER: json.dumps({**info, "served_by": model, "attempts": len(failures) + (model is not None),
                                                 "upstream_failures": [f["model"] for f in failures]},
                                                separators=(",", ":"))}

        for model in chain:
            candidate = catalogue.candidate(model)
            headers = {"content-type": "application/json"}
            if model in keys:
                headers["authorization"] = f"Bearer {keys[model]}"
            body = json.dumps({**payload, "model": model}).encode()
            url = f"{candidate.base_url.rstrip('/')}/chat/completions"  # type: ignore[union-attr]
            try:
                upstream = await client().send(client().build_request("POST", url, content=body, headers=headers),
                                               stream=True)
            except httpx.HTTPError as exc:
                failed(failures, model, type(exc).__name__, f"{type(exc).__name__}: {str(exc)[:200]}")
                continue
            status, media = upstream.status_code, upstream.headers.get("content-type", "application/json")
            relayed = {k: upstream.headers[k] for k in _RELAYED_HEADERS if k in upstream.headers}
            if (status == 429 and routed) or status >= 500:
                detail = (await upstream.aread())[:300].decode("utf-8", "replace")
                await upstream.aclose()
                failed(failures, model, str(status), detail, status)
                continue
            if payload.get("stream") and status == 200:
                async def relay(resp: httpx.Response = upstream) -> AsyncIterator[bytes]:
                    try:
                        async for chunk in resp.aiter_bytes():  # decoded: content-encoding is not relayed
                            yield chunk
                    finally:
                        await resp.aclose()

                return StreamingResponse(relay(), status_code=status, media_type=media,
                                         headers={**relayed, **decision_header(model)})
            try:
                content = await upstream.aread()
            except httpx.HTTPError as exc:
                failed(failures, model, type(exc).__name__, f"{type(exc).__name__} while reading: {str(exc)[:200]}")
                continue
            finally:
                await upstream.aclose()
            if status == 200 and not _is_json_object(content):
                failed(failures, model, "malformed_body", "a 200 whose body is not a JSON object: "
                       + content[:120].decode("utf-8", "replace"), status)
                continue
            return Response(content, status_code=status, media_type=media, headers={**relayed, **decision_header(model)})
        if not chain:
            return error_response(502, f"No candidate from {info['model']!r} up has a base_url in catalogue "
                                  f"{catalogue.name!r}; add base_url entries.", metrics, headers=decision_header(None),
                                  type="upstream_error", decision=info)
        return error_response(502, f"Every upstream tried failed ({', '.join(f['model'] for f in failures)}).", metrics,
                              headers=decision_header(None), type="upstream_error", attempts=failures, decision=info)

    return [Route("/v1/chat/completions", chat_completions, methods=["POST"])], lifespan, described


def _is_json_object(content: bytes) -> bool:
    try:
        return isinstance(safe_loads(content, max_depth=256, max_number_chars=1000), dict)
    except UnsafeJSONError:
        return False

"""The OpenAI-compatible proxy (``tierroute serve --proxy catalogue.toml``).

``POST /v1/chat/completions`` with ``model="tierroute"`` is routed (the served bundle, or the tree
over the catalogue), then forwarded to the chosen candidate's ``base_url`` + ``/chat/completions``
with ``model`` set to the candidate's id and the key from its ``api_key_env``. The upstream's
response comes back as is (streamed when ``stream`` is true), with the decision in the
``x-tierroute-decision`` header (compact JSON). An upstream failure (connection error, timeout,
429 or 5xx) moves to the next candidate up (same tier dearer first, then the tiers above); a 4xx
other than 429 is the caller's mistake and is returned as is. Naming a catalogue model directly
forwards to it without routing.

The request's latency SLA may be sent as the ``x-tierroute-latency-sla-ms`` header; its output
schema is read from ``response_format`` (OpenAI's json_schema / json_object) or ``tools``.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError, RequestError
from tierroute.models.catalogue import Catalogue, load_catalogue

__all__ = ["ProxyConfig", "proxy_routes", "upgrade_chain"]

DECISION_HEADER = "x-tierroute-decision"
SLA_HEADER = "x-tierroute-latency-sla-ms"


@dataclass(frozen=True)
class ProxyConfig:
    """``catalogue``: TOML path or builtin name whose candidates carry ``base_url`` (and
    ``api_key_env``); ``alias``: the model name that asks for routing; ``max_attempts``: candidates
    tried per call before answering 502."""

    catalogue: str
    timeout_s: float = 60.0
    alias: str = "tierroute"
    max_attempts: int = 3

    def __post_init__(self) -> None:
        check_number(self.timeout_s, "timeout_s", "ProxyConfig", 0.001)
        check_int(self.max_attempts, "max_attempts", "ProxyConfig", 1)


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
            fields["latency_sla_ms"] = float(sla_header)
        except ValueError:
            raise RequestError(f"The {SLA_HEADER} header must be a number of milliseconds; got {sla_header!r}.") from None
    return fields


def proxy_routes(config: ProxyConfig, holder: Any, service: Any, metrics: Any) -> tuple[list[Any], Any]:
    """The proxy's routes and the lifespan that owns its HTTP client (for :func:`create_app`)."""
    import httpx
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response, StreamingResponse
    from starlette.routing import Route

    from tierroute.serving.http import _error, read_json

    catalogue = load_catalogue(config.catalogue)
    if not any(c.base_url for c in catalogue.candidates):
        raise ConfigError(f"Catalogue {catalogue.name!r} gives no candidate a base_url, so the proxy has nowhere to send "
                          'calls. Add base_url = "https://.../v1" (and api_key_env) to its [[candidates]].')
    clients: dict[str, httpx.AsyncClient] = {}

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

    async def chat_completions(request: HttpRequest) -> Response:
        payload, error = await read_json(request, service, metrics)
        if error is not None:
            return error
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return _error(422, "Expected a chat-completions object with a 'messages' list.", metrics)
        asked = payload.get("model")
        if asked == config.alias:
            try:
                decision = holder.current.route(_request_fields(payload, request.headers.get(SLA_HEADER)))
            except RequestError as exc:
                return _error(422, str(exc), metrics)
            metrics.observe(decision)
            chosen = None if catalogue.missing([decision.model]) else decision.model
            if chosen is None:  # the bundle chose a model this catalogue lacks: serve its tier here
                chosen = catalogue.serving_model(decision.tier) if decision.tier in catalogue.tiers else catalogue.candidates[-1].model
            chain = upgrade_chain(catalogue, chosen)[: config.max_attempts]
            info: dict[str, Any] = {"model": chosen, "tier": decision.tier, "source": decision.source,
                                    "fallback": decision.fallback, "bundle_id": decision.bundle_id}
        elif isinstance(asked, str) and not catalogue.missing([asked]):
            chain, info = [asked][: 1 if catalogue.candidate(asked).base_url else 0], {"model": asked, "source": "caller"}
        else:
            known = ", ".join(c.model for c in catalogue.candidates)
            return _error(404, f"Unknown model {asked!r}; send model={config.alias!r} to route, or one of {known}.", metrics)
        failures: list[dict[str, Any]] = []
        for model in chain:
            candidate = catalogue.candidate(model)
            headers = {"content-type": "application/json"}
            if candidate.api_key_env and os.environ.get(candidate.api_key_env):
                headers["authorization"] = f"Bearer {os.environ[candidate.api_key_env]}"
            body = json.dumps({**payload, "model": model}).encode()
            url = f"{candidate.base_url.rstrip('/')}/chat/completions"  # type: ignore[union-attr]
            try:
                upstream = await client().send(client().build_request("POST", url, content=body, headers=headers),
                                               stream=True)
            except httpx.HTTPError as exc:
                failures.append({"model": model, "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
                continue
            if upstream.status_code == 429 or upstream.status_code >= 500:
                detail = (await upstream.aread())[:300].decode("utf-8", "replace")
                await upstream.aclose()
                failures.append({"model": model, "status": upstream.status_code, "error": detail})
                continue
            header = json.dumps({**info, "served_by": model, "attempts": len(failures) + 1,
                                 "upstream_failures": [f["model"] for f in failures]}, separators=(",", ":"))
            out_headers = {DECISION_HEADER: header}
            media = upstream.headers.get("content-type", "application/json")
            if payload.get("stream"):
                async def relay(resp: httpx.Response = upstream) -> AsyncIterator[bytes]:
                    try:
                        async for chunk in resp.aiter_bytes():  # decoded: content-encoding is not relayed
                            yield chunk
                    finally:
                        await resp.aclose()

                return StreamingResponse(relay(), status_code=upstream.status_code, media_type=media, headers=out_headers)
            content = await upstream.aread()
            await upstream.aclose()
            return Response(content, status_code=upstream.status_code, media_type=media, headers=out_headers)
        if not chain:
            return _error(502, f"No candidate from {info['model']!r} up has a base_url in catalogue {catalogue.name!r}; "
                          "add base_url entries.", metrics)
        return _error(502, f"Every upstream tried failed ({', '.join(f['model'] for f in failures)}).", metrics,
                      attempts=failures, decision=info)

    return [Route("/v1/chat/completions", chat_completions, methods=["POST"])], lifespan

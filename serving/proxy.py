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
(OpenAI's json_schema / json_object) or ``tools``. ``x-tierroute-objective`` names the operating
point for the call; ``x-tierroute-explain: 1`` adds the decision's explanation to its header.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError, RequestError
from tierroute.models.catalogue import load_catalogue
from tierroute.safejson import UnsafeJSONError
from tierroute.safejson import loads as safe_loads
from tierroute.serving.explain import explain_flag
from tierroute.serving.judge import Judge, JudgeConfig
from tierroute.serving.proxy_log import ServedCall, body_answer
from tierroute.serving.upstreams import upgrade_chain, upstream_keys

if TYPE_CHECKING:  # httpx and starlette are the serve extra's; imported when the proxy is made
    import httpx
    from starlette.requests import Request as HttpRequest
    from starlette.responses import Response

__all__ = ["ProxyConfig", "proxy_routes", "upgrade_chain", "upstream_keys", "REQUEST_ID_HEADER"]

DECISION_HEADER = "x-tierroute-decision"
SLA_HEADER = "x-tierroute-latency-sla-ms"
#: names the operating point for one routed call (match-best, match-heuristic, max-accuracy, budget=USD)
OBJECTIVE_HEADER = "x-tierroute-objective"
#: the decision's id for feedback: sent by the caller (optional) or generated, always answered
REQUEST_ID_HEADER = "x-tierroute-request-id"
#: ``1`` (or true): the decision header carries the decision's explanation (as ``?explain=1`` on /v1/route)
EXPLAIN_HEADER = "x-tierroute-explain"
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
    #: opt-in automatic outcome signal: (answer text, output schema) -> quality; requests with a
    #: schema get ``auto_feedback`` with source ``schema`` in the decision log (the CLI passes the
    #: benchmark's json scorer, ``--schema-feedback``)
    schema_check: Callable[[str, Any], float] | None = None
    #: opt-in sampled LLM judge (:mod:`tierroute.serving.judge`): graded calls get ``auto_feedback``
    #: with source ``judge``, within a spend cap
    judge: JudgeConfig | None = None

    def __post_init__(self) -> None:
        check_number(self.timeout_s, "timeout_s", "ProxyConfig", 0.001)
        check_int(self.max_attempts, "max_attempts", "ProxyConfig", 1)


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
            raise RequestError(
                f"The {SLA_HEADER} header must be a finite number of milliseconds; got {sla_header!r}. "
                "Leave the header out when there is no latency budget."
            )
        fields["latency_sla_ms"] = value
    return fields


def proxy_routes(
    config: ProxyConfig, holder: Any, service: Any, metrics: Any, decided: Callable[[Any, Any], None]
) -> tuple[list[Any], Any, Callable[[], dict[str, Any]]]:
    """The proxy's routes, the lifespan that owns its HTTP client, and what /readyz says about it
    (a callable: the judge's spend changes; for :func:`create_app`; ``decided(payload, decision)``
    counts and logs each routed decision)."""
    import httpx  # noqa: F401  (the serve extra's: missing, the service fails at start, not on a call)
    from starlette.routing import Route

    proxy = _Proxy(config, holder, service, metrics, decided)
    return [Route("/v1/chat/completions", proxy.chat_completions, methods=["POST"])], proxy.lifespan, proxy.describe


class _Call:
    """One chat-completions call on its way up the chain: the body, the candidates to try, what
    the decision header says, the failures so far, and the decision-log entry (routed calls)."""

    def __init__(self, payload: dict[str, Any], routed: bool, chain: list[str], info: dict[str, Any], served: ServedCall | None) -> None:
        self.payload, self.routed, self.chain, self.info, self.served = payload, routed, chain, info, served
        self.failures: list[dict[str, Any]] = []

    def decision_header(self, model: str | None) -> dict[str, str]:
        info, failures = self.info, self.failures
        ids = {REQUEST_ID_HEADER: info["request_id"]} if info.get("request_id") else {}
        return {
            **ids,
            DECISION_HEADER: json.dumps(
                {
                    **info,
                    "served_by": model,
                    "attempts": len(failures) + (model is not None),
                    "upstream_failures": [f["model"] for f in failures],
                },
                separators=(",", ":"),
            ),
        }

    def finish(self, model: str | None, status: int | None, body: bytes | None = None) -> None:
        if self.served is not None:
            self.served.finish(model, status, len(self.failures) + (model is not None), body)


class _Proxy:
    """The proxy's state (its catalogue, upstream keys, judge and HTTP client) and its endpoint,
    ``POST /v1/chat/completions``: parse, decide, call the chain of upstreams, answer."""

    def __init__(self, config: ProxyConfig, holder: Any, service: Any, metrics: Any, decided: Callable[[Any, Any], None]) -> None:
        catalogue = load_catalogue(config.catalogue)
        if not any(c.base_url for c in catalogue.candidates):
            raise ConfigError(
                f"Catalogue {catalogue.name!r} gives no candidate a base_url, so the proxy has nowhere to "
                'send calls. Add base_url = "https://.../v1" (and api_key_env) to its [[candidates]].'
            )
        self.config, self.holder, self.service, self.metrics, self.decided = config, holder, service, metrics, decided
        self.catalogue = catalogue
        self.keys = upstream_keys(catalogue)
        self.judge = Judge(config.judge, catalogue, self.keys) if config.judge is not None else None
        self.clients: dict[str, httpx.AsyncClient] = {}
        self.described = {
            "catalogue": catalogue.name,
            "alias": config.alias,
            "max_attempts": config.max_attempts,
            "timeout_s": config.timeout_s,
            "upstreams": [c.model for c in catalogue.candidates if c.base_url],
        }

    def describe(self) -> dict[str, Any]:
        """What /readyz says about the proxy: its settings and, with a judge, its running spend."""
        return self.described | ({"judge": self.judge.describe()} if self.judge is not None else {})

    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        import httpx

        self.clients["http"] = httpx.AsyncClient(timeout=self.config.timeout_s)
        try:
            yield
        finally:
            await self.clients.pop("http").aclose()

    def client(self) -> httpx.AsyncClient:
        if "http" not in self.clients:  # served without lifespan (e.g. some test clients): make one lazily
            import httpx

            self.clients["http"] = httpx.AsyncClient(timeout=self.config.timeout_s)
        return self.clients["http"]

    def failed(self, call: _Call, model: str, reason: str, error: str, status: int | None = None) -> None:
        self.metrics.upstream_failures.labels(model=model, reason=reason).inc()
        call.failures.append({"model": model, **({"status": status} if status is not None else {}), "error": error})

    async def chat_completions(self, request: HttpRequest) -> Response:
        from tierroute.serving.http_common import error_response, read_json

        payload, error = await read_json(request, self.service, self.metrics)
        if error is not None:
            return error
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return error_response(422, "Expected a chat-completions object with a 'messages' list.", self.metrics)
        call = self.plan(request, payload)
        if not isinstance(call, _Call):
            return call
        for model in call.chain:
            answer = await self.attempt(call, model)
            if answer is not None:
                return answer
        return self.exhausted(call)

    def plan(self, request: HttpRequest, payload: dict[str, Any]) -> _Call | Response:
        """The call to make: routed (``model`` is the alias), direct (a catalogue model), or an error."""
        from tierroute.serving.http_common import error_response

        asked, catalogue = payload.get("model"), self.catalogue
        if asked == self.config.alias:
            return self.route(request, payload)
        if isinstance(asked, str) and not catalogue.missing([asked]):
            chain = [asked][: 1 if catalogue.candidate(asked).base_url else 0]
            return _Call(payload, False, chain, {"model": asked, "source": "caller"}, None)
        known = ", ".join(c.model for c in catalogue.candidates)
        return error_response(404, f"Unknown model {asked!r}; send model={self.config.alias!r} to route, or one of {known}.", self.metrics)

    def route(self, request: HttpRequest, payload: dict[str, Any]) -> _Call | Response:
        """Decide a routed call (422 for a malformed request) and the chain of candidates from its choice up."""
        from tierroute.serving.http_common import error_response

        catalogue, config = self.catalogue, self.config
        try:
            fields = _request_fields(payload, request.headers.get(SLA_HEADER))
            if request.headers.get(REQUEST_ID_HEADER):
                fields["id"] = request.headers[REQUEST_ID_HEADER]
            router = self.holder.current
            explain = explain_flag(request.headers.get(EXPLAIN_HEADER), EXPLAIN_HEADER)
            decision = router.route(fields, objective=request.headers.get(OBJECTIVE_HEADER), log=False, explain=explain)
        except RequestError as exc:
            return error_response(422, str(exc), self.metrics)
        self.decided(fields, decision)
        served = ServedCall(fields, decision, router.decision_log, catalogue, config.schema_check, router.bundle)
        chosen = None if catalogue.missing([decision.model]) else decision.model
        if chosen is None:  # the bundle chose a model this catalogue lacks: serve its tier here
            chosen = catalogue.serving_model(decision.tier) if decision.tier in catalogue.tiers else catalogue.candidates[-1].model
        chain = upgrade_chain(catalogue, chosen)[: config.max_attempts]
        info: dict[str, Any] = {
            "model": chosen,
            "tier": decision.tier,
            "source": decision.source,
            "fallback": decision.fallback,
            "bundle_id": decision.bundle_id,
            "objective": decision.objective,
            "request_id": decision.request_id,
        }
        if explain:
            info["explanation"] = decision.explanation
        return _Call(payload, True, chain, info, served)

    async def attempt(self, call: _Call, model: str) -> Response | None:
        """Send the call to ``model``: its answer, or None when it failed (counted) and the next one is tried."""
        import httpx

        candidate = self.catalogue.candidate(model)
        headers = {"content-type": "application/json"}
        if model in self.keys:
            headers["authorization"] = f"Bearer {self.keys[model]}"
        body = json.dumps({**call.payload, "model": model}).encode()
        url = f"{candidate.base_url.rstrip('/')}/chat/completions"  # type: ignore[union-attr]
        client = self.client()
        try:
            upstream = await client.send(client.build_request("POST", url, content=body, headers=headers), stream=True)
        except httpx.HTTPError as exc:
            self.failed(call, model, type(exc).__name__, f"{type(exc).__name__}: {str(exc)[:200]}")
            return None
        status, media = upstream.status_code, upstream.headers.get("content-type", "application/json")
        relayed = {k: upstream.headers[k] for k in _RELAYED_HEADERS if k in upstream.headers}
        if (status == 429 and call.routed) or status >= 500:
            detail = (await upstream.aread())[:300].decode("utf-8", "replace")
            await upstream.aclose()
            self.failed(call, model, str(status), detail, status)
            return None
        if call.payload.get("stream") and status == 200:
            from starlette.background import BackgroundTask
            from starlette.responses import StreamingResponse

            judged = call.served is not None and self.judge is not None and self.judge.sampled()
            return StreamingResponse(
                self.relay(call, upstream, model, judged),
                status_code=status,
                media_type=media,
                headers={**relayed, **call.decision_header(model)},
                background=BackgroundTask(self.graded_stream, call, model) if judged else None,
            )
        try:
            content = await upstream.aread()
        except httpx.HTTPError as exc:
            self.failed(call, model, type(exc).__name__, f"{type(exc).__name__} while reading: {str(exc)[:200]}")
            return None
        finally:
            await upstream.aclose()
        if status == 200 and not _is_json_object(content):
            self.failed(
                call, model, "malformed_body", "a 200 whose body is not a JSON object: " + content[:120].decode("utf-8", "replace"), status
            )
            return None
        return self.answer(call, model, status, media, {**relayed, **call.decision_header(model)}, content)

    async def relay(self, call: _Call, resp: httpx.Response, model: str, judged: bool = False) -> AsyncIterator[bytes]:
        """A streamed answer, chunk by chunk (tapped for the decision log), then the call finished;
        when ``judged``, a complete stream (it reached a finish_reason or ``[DONE]``) is finished by
        :meth:`graded_stream` after the judge read it, and a stream cut short here, ungraded."""
        try:
            async for chunk in resp.aiter_bytes():  # decoded: content-encoding is not relayed
                if call.served is not None:
                    call.served.tap(chunk)
                yield chunk
        finally:
            await resp.aclose()
            if not (judged and call.served is not None and call.served.stream_complete):
                call.finish(model, 200)

    async def graded_stream(self, call: _Call, model: str) -> None:
        """After a sampled stream went out: a complete one's text to the judge, then the call
        finished (a no-op when :meth:`relay` finished it first). Runs after the response, however
        it ended: the caller may close the connection as soon as it read the last event."""
        assert call.served is not None and self.judge is not None
        if call.served.stream_complete:
            call.served.judged = await self.judge.grade(self.client(), dict(call.served.fields), call.served.streamed_text())
        call.finish(model, 200)

    def answer(self, call: _Call, model: str, status: int, media: str, headers: dict[str, str], content: bytes) -> Response:
        """The upstream's whole answer, as is; graded by the judge after it is sent when sampled."""
        from starlette.responses import Response

        if call.served is not None and self.judge is not None and status == 200 and self.judge.sampled():
            from starlette.background import BackgroundTask

            return Response(
                content,
                status_code=status,
                media_type=media,
                headers=headers,
                background=BackgroundTask(self.graded, call, model, status, content),
            )
        call.finish(model, status, content)
        return Response(content, status_code=status, media_type=media, headers=headers)

    async def graded(self, call: _Call, model: str, status: int, content: bytes) -> None:
        assert call.served is not None and self.judge is not None
        call.served.judged = await self.judge.grade(self.client(), dict(call.served.fields), body_answer(content))
        call.finish(model, status, content)

    def exhausted(self, call: _Call) -> Response:
        """502: no candidate could be called, or every one tried failed."""
        from tierroute.serving.http_common import error_response

        failures, info = call.failures, call.info
        call.finish(None, failures[-1].get("status") if failures else None)
        if not call.chain:
            return error_response(
                502,
                f"No candidate from {info['model']!r} up has a base_url in catalogue {self.catalogue.name!r}; add base_url entries.",
                self.metrics,
                headers=call.decision_header(None),
                type="upstream_error",
                decision=info,
            )
        return error_response(
            502,
            f"Every upstream tried failed ({', '.join(f['model'] for f in failures)}).",
            self.metrics,
            headers=call.decision_header(None),
            type="upstream_error",
            attempts=failures,
            decision=info,
        )


def _is_json_object(content: bytes) -> bool:
    try:
        return isinstance(safe_loads(content, max_depth=256, max_number_chars=1000), dict)
    except UnsafeJSONError:
        return False

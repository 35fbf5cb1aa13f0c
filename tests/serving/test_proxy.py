"""The OpenAI-compatible proxy (tierroute.serving.proxy), served for real on loopback and called
with the official ``openai`` client; the upstreams are stub servers on loopback."""

from __future__ import annotations

import json
import re
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("starlette")

from tierroute.errors import ConfigError  # noqa: E402
from tierroute.models.catalogue import Candidate, Catalogue, load_catalogue  # noqa: E402
from tierroute.serving.http import ServiceConfig, create_app  # noqa: E402
from tierroute.serving.loopback import LoopbackServer  # noqa: E402
from tierroute.serving.proxy import DECISION_HEADER, REQUEST_ID_HEADER, ProxyConfig, upgrade_chain  # noqa: E402

KEY_ENV = "TIERROUTE_STUB_API_KEY"
KEY = "sk-stub-key"
# the proxy's upstream timeout; the slow stub takes longer. Not shorter: on a loaded 2-core CI
# machine a healthy stub once took over 0.5 s to answer, and the proxy moved up instead of passing a 401 on
TIMEOUT_S = 2.0
SLOW_S = 5.0
JSON_SCHEMA = {
    "type": "json_schema",
    "json_schema": {
        "name": "order",
        "schema": {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]},
    },
}


# -- stub upstreams ------------------------------------------------------------------------------


class _Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kind: str) -> None:
        super().__init__(("127.0.0.1", 0), _StubHandler)
        self.kind = kind
        self.calls: list[dict[str, Any]] = []
        self.release = threading.Event()
        self.gzip_streams = False

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


def _completion(model: str) -> dict[str, Any]:
    return {
        "id": "chatcmpl-stub",
        "object": "chat.completion",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": f"hello from {model}"}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
    }


def _chunk(model: str, delta: dict[str, Any], finish: str | None = None) -> bytes:
    data = {
        "id": "chatcmpl-stub",
        "object": "chat.completion.chunk",
        "created": 1700000000,
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return f"data: {json.dumps(data)}\n\n".encode()


class _StubHandler(BaseHTTPRequestHandler):
    """An OpenAI-compatible upstream whose behaviour is its server's ``kind``: ok (checks the key,
    answers, streams SSE; 400 for max_tokens=-1), 500, 429 (retry-after 7), slow, garbage (a 200
    that is not JSON)."""

    server: _Stub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", headers)

    def _send_raw(self, status: int, body: bytes, media: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", media)
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):  # the proxy gave up on us (timeout)
            pass

    def _post(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))) or b"null")
        self.server.calls.append(
            {"path": self.path, "model": body.get("model"), "body": body, "authorization": self.headers.get("authorization")}
        )
        if self.path != "/v1/chat/completions":
            return self._send_json(404, {"error": {"message": f"no route {self.path}"}})
        kind = self.server.kind
        if kind == "500":
            return self._send_json(500, {"error": {"message": "upstream exploded", "type": "server_error"}})
        if kind == "429":
            return self._send_json(429, {"error": {"message": "slow down", "type": "rate_limit_error"}}, {"retry-after": "7"})
        if kind == "garbage":  # a 200 whose body is not JSON (a broken gateway, a truncated reply)
            return self._send_raw(200, b'{"id": "chatcmpl-stub", "choices": [', "application/json")
        if kind == "slow":
            self.server.release.wait(SLOW_S)
            return self._send_json(200, _completion(body["model"]))
        if self.headers.get("authorization") != f"Bearer {KEY}":
            return self._send_json(401, {"error": {"message": "bad key", "type": "invalid_request_error"}})
        if body.get("max_tokens") == -1:
            return self._send_json(
                400, {"error": {"message": "max_tokens must be positive", "type": "invalid_request_error", "param": "max_tokens"}}
            )
        if not body.get("stream"):
            asked = str((body.get("messages") or [{}])[-1].get("content", ""))
            if asked.startswith("You grade an AI assistant's answer"):  # the proxy's judge: a score
                return self._send_json(200, {**_completion(body["model"]), "choices": [{"message": {"content": "0.75"}}]})
            return self._send_json(200, _completion(body["model"]))
        model = body["model"]
        events = [_chunk(model, {"role": "assistant", "content": ""})]
        events += [_chunk(model, {"content": piece}) for piece in ("streamed ", "from ", model)]
        events += [_chunk(model, {}, "stop"), b"data: [DONE]\n\n"]
        gzip = self.server.gzip_streams and "gzip" in self.headers.get("accept-encoding", "")
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        if gzip:
            self.send_header("content-encoding", "gzip")
        self.end_headers()  # HTTP/1.0: the body ends when the connection closes
        packer = zlib.compressobj(wbits=31)
        for event in events:
            self.wfile.write(packer.compress(event) + packer.flush(zlib.Z_SYNC_FLUSH) if gzip else event)
            self.wfile.flush()
            time.sleep(0.005)
        if gzip:
            self.wfile.write(packer.flush())


@pytest.fixture(scope="module")
def stubs(serving: Any) -> Iterator[dict[str, _Stub]]:
    with serving({kind: _Stub(kind) for kind in ("ok", "500", "429", "slow", "garbage")}) as servers:
        yield servers


@pytest.fixture(autouse=True)
def _fresh_stubs(stubs: dict[str, _Stub], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    for server in stubs.values():
        server.calls.clear()
        server.gzip_streams = False


def _dead_base_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # bound then closed: nobody listens
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _catalogue_toml(stubs: dict[str, _Stub]) -> str:
    """Chains (max 3): t1-ok -> t2-500 -> t2-dead; t2-500 -> t2-dead -> t2-ok; t3-429 -> t3-slow -> t3-ok."""
    rows = [
        ("t1-ok", "tier1", 0.001, 0.002, True, stubs["ok"].base_url, KEY_ENV),
        ("t2-500", "tier2", 0.01, 0.04, True, stubs["500"].base_url, None),
        ("t2-dead", "tier2", 0.015, 0.05, False, _dead_base_url(), None),
        ("t2-ok", "tier2", 0.02, 0.08, False, stubs["ok"].base_url, KEY_ENV),
        ("t3-429", "tier3", 0.1, 0.4, True, stubs["429"].base_url, None),
        ("t3-slow", "tier3", 0.12, 0.48, False, stubs["slow"].base_url, None),
        ("t3-ok", "tier3", 0.15, 0.6, False, stubs["ok"].base_url, KEY_ENV),
        ("t3-nourl", "tier3", 0.2, 0.8, False, None, None),
    ]
    lines = ["schema_version = 1", 'name = "stubs"', 'tiers = ["tier1", "tier2", "tier3"]']
    for model, tier, inp, out, default, url, key in rows:
        lines += [
            "",
            "[[candidates]]",
            f'model = "{model}"',
            f'tier = "{tier}"',
            f"input_per_1k = {inp}",
            f"output_per_1k = {out}",
            f"default = {'true' if default else 'false'}",
        ]
        lines += [f'base_url = "{url}"'] if url else []
        lines += [f'api_key_env = "{key}"'] if key else []
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def catalogue_path(stubs: dict[str, _Stub], tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("proxy") / "stubs.toml"
    path.write_text(_catalogue_toml(stubs), encoding="utf-8")
    return path


# -- the proxy under uvicorn ---------------------------------------------------------------------


class _Served(LoopbackServer):
    """An app under uvicorn on a loopback port, in a thread, with an openai client at hand."""

    def __init__(self, app: Any) -> None:
        self.app = app
        super().__init__(app, start_timeout_s=15, ws="none", timeout_graceful_shutdown=2)

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def client(self, api_key: str = "x") -> Any:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=15)

    def stop(self) -> None:
        super().stop()
        assert not self.thread.is_alive()


@pytest.fixture
def serve() -> Iterator[Any]:
    """serve(service=ServiceConfig, **ProxyConfig fields) -> a started proxy; all stopped at teardown."""
    started: list[_Served] = []

    def start(service: ServiceConfig, **proxy: Any) -> _Served:
        served = _Served(create_app(service, proxy=ProxyConfig(**proxy)))
        started.append(served)
        return served

    yield start
    for served in started:
        served.stop()


def _logged(serve: Any, catalogue_path: Path, log: Path, **proxy: Any) -> _Served:
    """A proxy over the stubs' catalogue that writes its decision log to ``log``."""
    return serve(
        ServiceConfig(catalogue=str(catalogue_path), decision_log=str(log)), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S, **proxy
    )


@pytest.fixture(scope="module")
def proxy(catalogue_path: Path) -> Iterator[_Served]:
    """The proxy routing with the heuristic tree over the stubs' catalogue."""
    with pytest.MonkeyPatch.context() as env:  # the keys are read once, when the app is built
        env.setenv(KEY_ENV, KEY)
        served = _Served(
            create_app(ServiceConfig(catalogue=str(catalogue_path)), proxy=ProxyConfig(catalogue=str(catalogue_path), timeout_s=TIMEOUT_S))
        )
    yield served
    served.stop()


@pytest.fixture
def client(proxy: _Served) -> Iterator[Any]:
    with proxy.client() as c:
        yield c


def _decision(raw: Any) -> dict[str, Any]:
    return json.loads(raw.headers[DECISION_HEADER])


def _models_called(stubs: dict[str, _Stub]) -> list[str]:
    return sorted(call["model"] for server in stubs.values() for call in server.calls)


PLAIN = [{"role": "user", "content": "Summarize this ticket."}]  # the tree says tier2
EXTRACT = [{"role": "user", "content": "Pull the order id."}]  # tier1 with a response_format


# -- routed calls --------------------------------------------------------------------------------


def test_a_routed_call_returns_the_upstreams_completion(client: Any, stubs: dict[str, _Stub]) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA)
    assert raw.status_code == 200
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello from t1-ok"
    assert completion.model == "t1-ok"
    decision = _decision(raw)
    request_id = raw.headers[REQUEST_ID_HEADER]  # generated: the caller sent none
    assert re.fullmatch(r"[0-9a-f]{32}", request_id)
    assert decision == {
        "model": "t1-ok",
        "tier": "tier1",
        "source": "heuristic",
        "fallback": "no_bundle",
        "bundle_id": None,
        "objective": None,
        "request_id": request_id,
        "served_by": "t1-ok",
        "attempts": 1,
        "upstream_failures": [],
    }
    assert raw.headers[DECISION_HEADER] == json.dumps(decision, separators=(",", ":"))  # compact JSON
    [call] = stubs["ok"].calls
    assert call["path"] == "/v1/chat/completions"
    assert call["authorization"] == f"Bearer {KEY}"  # the candidate's key, not the caller's "x"
    assert call["body"]["model"] == "t1-ok"
    assert call["body"]["messages"] == EXTRACT
    assert call["body"]["response_format"] == JSON_SCHEMA
    assert _models_called(stubs) == ["t1-ok"]


def test_a_500_moves_to_the_next_candidate_up(client: Any, stubs: dict[str, _Stub]) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tierroute", messages=PLAIN)
    assert raw.parse().choices[0].message.content == "hello from t2-ok"
    decision = _decision(raw)
    assert decision["model"] == "t2-500" and decision["tier"] == "tier2"
    assert decision["served_by"] == "t2-ok"
    assert decision["attempts"] == 3
    assert decision["upstream_failures"] == ["t2-500", "t2-dead"]  # a 500, then a refused connection
    assert [c["model"] for c in stubs["500"].calls] == ["t2-500"]
    assert stubs["500"].calls[0]["authorization"] is None  # no api_key_env: no key sent
    assert _models_called(stubs) == ["t2-500", "t2-ok"]


def test_a_429_and_a_timeout_move_up_too(client: Any, stubs: dict[str, _Stub]) -> None:
    started = time.monotonic()
    raw = client.chat.completions.with_raw_response.create(
        model="tierroute",
        messages=[{"role": "user", "content": "Step by step, analyze and compare."}],
        extra_headers={"x-tierroute-latency-sla-ms": "150"},
    )
    elapsed = time.monotonic() - started
    assert raw.parse().choices[0].message.content == "hello from t3-ok"
    decision = _decision(raw)
    assert (decision["model"], decision["tier"], decision["served_by"]) == ("t3-429", "tier3", "t3-ok")
    assert decision["attempts"] == 3 and decision["upstream_failures"] == ["t3-429", "t3-slow"]
    assert elapsed >= TIMEOUT_S  # the slow upstream was waited for up to the timeout, then abandoned (above)
    assert _models_called(stubs) == ["t3-429", "t3-ok", "t3-slow"]


def test_when_every_upstream_fails_the_answer_is_502(serve: Any, catalogue_path: Path, stubs: dict[str, _Stub]) -> None:
    served = serve(ServiceConfig(catalogue=str(catalogue_path)), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S, max_attempts=2)
    with served.client() as c, pytest.raises(openai.APIStatusError) as caught:
        c.chat.completions.create(model="tierroute", messages=PLAIN)
    assert caught.value.status_code == 502
    error = caught.value.response.json()["error"]
    assert error["message"] == "Every upstream tried failed (t2-500, t2-dead)."
    assert [a["model"] for a in error["attempts"]] == ["t2-500", "t2-dead"]
    assert error["attempts"][0]["status"] == 500 and "upstream exploded" in error["attempts"][0]["error"]
    assert error["attempts"][1]["error"].startswith("ConnectError: ")
    assert error["decision"]["model"] == "t2-500" and error["decision"]["source"] == "heuristic"
    assert _models_called(stubs) == ["t2-500"]  # max_attempts=2: t2-ok was not tried


def test_an_upstream_400_is_returned_as_is_without_moving_up(client: Any, stubs: dict[str, _Stub]) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA, max_tokens=-1)
    assert caught.value.status_code == 400
    assert caught.value.response.json() == {
        "error": {"message": "max_tokens must be positive", "type": "invalid_request_error", "param": "max_tokens"}
    }
    assert json.loads(caught.value.response.headers[DECISION_HEADER])["served_by"] == "t1-ok"
    assert _models_called(stubs) == ["t1-ok"]


def test_an_upstream_401_is_returned_as_is(
    serve: Any, catalogue_path: Path, stubs: dict[str, _Stub], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong")  # set, but not the key the upstream wants
    served = serve(ServiceConfig(catalogue=str(catalogue_path)), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S)
    monkeypatch.setenv(KEY_ENV, KEY)  # read at start: changing it later changes nothing
    with served.client() as c, pytest.raises(openai.AuthenticationError) as caught:
        c.chat.completions.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA)
    assert caught.value.response.json()["error"]["message"] == "bad key"
    assert stubs["ok"].calls[0]["authorization"] == "Bearer sk-wrong"
    assert _models_called(stubs) == ["t1-ok"]


def test_streaming_through_the_proxy(client: Any, stubs: dict[str, _Stub]) -> None:
    stream = client.chat.completions.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA, stream=True)
    with stream:
        decision = json.loads(stream.response.headers[DECISION_HEADER])
        assert stream.response.headers["content-type"].startswith("text/event-stream")
        chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed from t1-ok"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert decision["served_by"] == "t1-ok" and decision["attempts"] == 1
    assert stubs["ok"].calls[0]["body"]["stream"] is True


def test_streaming_after_a_failure_moves_up(client: Any, stubs: dict[str, _Stub]) -> None:
    stream = client.chat.completions.create(model="tierroute", messages=PLAIN, stream=True)
    with stream:
        decision = json.loads(stream.response.headers[DECISION_HEADER])
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed from t2-ok"
    assert decision["upstream_failures"] == ["t2-500", "t2-dead"]


def test_a_compressed_upstream_stream_reaches_the_caller_readable(client: Any, stubs: dict[str, _Stub]) -> None:
    stubs["ok"].gzip_streams = True  # e.g. an upstream behind a compressing gateway
    stream = client.chat.completions.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA, stream=True)
    with stream:
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == "streamed from t1-ok"


# -- naming a model ------------------------------------------------------------------------------


def test_naming_a_catalogue_model_forwards_to_it(client: Any, stubs: dict[str, _Stub]) -> None:
    raw = client.chat.completions.with_raw_response.create(model="t3-ok", messages=PLAIN)
    assert raw.parse().choices[0].message.content == "hello from t3-ok"
    assert _decision(raw) == {"model": "t3-ok", "source": "caller", "served_by": "t3-ok", "attempts": 1, "upstream_failures": []}
    assert _models_called(stubs) == ["t3-ok"]


def test_a_named_model_that_fails_is_not_replaced(client: Any, stubs: dict[str, _Stub]) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="t2-500", messages=PLAIN)
    assert caught.value.status_code == 502
    assert caught.value.response.json()["error"]["message"] == "Every upstream tried failed (t2-500)."
    assert _models_called(stubs) == ["t2-500"]


def test_a_named_model_without_a_base_url_is_502(client: Any, stubs: dict[str, _Stub]) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="t3-nourl", messages=PLAIN)
    assert caught.value.status_code == 502
    assert caught.value.response.json()["error"]["message"].startswith(
        "No candidate from 't3-nourl' up has a base_url in catalogue 'stubs'"
    )
    assert _models_called(stubs) == []


def test_an_unknown_model_is_404(client: Any, stubs: dict[str, _Stub]) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-99", messages=PLAIN)
    message = caught.value.response.json()["error"]["message"]
    assert message.startswith("Unknown model 'gpt-99'; send model='tierroute' to route, or one of t1-ok, t2-500, ")
    assert _models_called(stubs) == []


# -- malformed calls -----------------------------------------------------------------------------


def test_a_bad_sla_header_is_422(client: Any, stubs: dict[str, _Stub]) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="tierroute", messages=PLAIN, extra_headers={"x-tierroute-latency-sla-ms": "soon"})
    assert caught.value.response.json()["error"]["message"] == (
        "The x-tierroute-latency-sla-ms header must be a number of milliseconds; got 'soon'."
    )
    assert _models_called(stubs) == []


def test_a_body_without_messages_is_422(proxy: _Served, stubs: dict[str, _Stub]) -> None:
    for payload in ({"model": "tierroute"}, {"model": "tierroute", "messages": "hi"}, ["x"]):
        response = httpx.post(f"{proxy.base_url}/chat/completions", json=payload, timeout=10)
        assert response.status_code == 422
        assert response.json()["error"]["message"] == "Expected a chat-completions object with a 'messages' list."
    response = httpx.post(f"{proxy.base_url}/chat/completions", json={"model": "tierroute", "messages": [{"x": 1}]}, timeout=10)
    assert response.status_code == 422
    assert response.json()["error"]["message"].startswith("messages[0] must be an object with 'role' and 'content'")
    assert _models_called(stubs) == []


def test_the_proxy_needs_the_service_token(serve: Any, catalogue_path: Path, stubs: dict[str, _Stub]) -> None:
    served = serve(ServiceConfig(catalogue=str(catalogue_path), token="proxy-token"), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S)
    with served.client(api_key="wrong") as c, pytest.raises(openai.AuthenticationError):
        c.chat.completions.create(model="t1-ok", messages=PLAIN)
    assert _models_called(stubs) == []
    with served.client(api_key="proxy-token") as c:
        completion = c.chat.completions.create(model="t1-ok", messages=PLAIN)
    assert completion.choices[0].message.content == "hello from t1-ok"
    assert stubs["ok"].calls[0]["authorization"] == f"Bearer {KEY}"  # the proxy's token is not passed on


def test_the_proxy_keeps_the_routing_endpoints(proxy: _Served) -> None:
    base = f"http://127.0.0.1:{proxy.port}"
    decision = httpx.post(f"{base}/v1/route", json={"prompt": "Summarize this ticket."}, timeout=10).json()
    assert (decision["tier"], decision["model"]) == ("tier2", "t2-500")
    assert httpx.get(f"{base}/readyz", timeout=10).json()["catalogue"] == "stubs"


# -- configuration and the chain -----------------------------------------------------------------


def _cat(*rows: tuple[str, str, float, str | None]) -> Catalogue:
    return Catalogue("chain", ("small", "mid", "big"), tuple(Candidate(m, t, p, p, base_url=url) for m, t, p, url in rows))


def test_upgrade_chain_goes_dearer_in_the_tier_then_up_the_tiers() -> None:
    u = "http://upstream/v1"
    cat = _cat(
        ("s-cheap", "small", 0.001, u),
        ("s-dear", "small", 0.003, u),
        ("m-dear", "mid", 0.05, u),
        ("m-cheap", "mid", 0.01, u),
        ("b-one", "big", 0.1, u),
        ("b-nourl", "big", 0.2, None),
        ("b-two", "big", 0.3, u),
    )
    assert upgrade_chain(cat, "s-cheap") == ["s-cheap", "s-dear", "m-cheap", "m-dear", "b-one", "b-two"]
    assert upgrade_chain(cat, "s-dear") == ["s-dear", "m-cheap", "m-dear", "b-one", "b-two"]
    assert upgrade_chain(cat, "m-dear") == ["m-dear", "b-one", "b-two"]  # never down to m-cheap
    assert upgrade_chain(cat, "b-one") == ["b-one", "b-two"]
    assert upgrade_chain(cat, "b-two") == ["b-two"]
    assert upgrade_chain(cat, "b-nourl") == ["b-two"]  # no base_url: not callable, even when first


def test_upgrade_chain_breaks_price_ties_by_name() -> None:
    u = "http://upstream/v1"
    cat = _cat(("s", "small", 0.001, u), ("m-b", "mid", 0.01, u), ("m-a", "mid", 0.01, u))
    assert upgrade_chain(cat, "s") == ["s", "m-a", "m-b"]
    assert upgrade_chain(cat, "m-a") == ["m-a", "m-b"]


def test_the_stub_catalogue_chains(catalogue_path: Path) -> None:
    cat = load_catalogue(str(catalogue_path))
    assert upgrade_chain(cat, "t1-ok")[:3] == ["t1-ok", "t2-500", "t2-dead"]
    assert upgrade_chain(cat, "t2-500") == ["t2-500", "t2-dead", "t2-ok", "t3-429", "t3-slow", "t3-ok"]
    assert upgrade_chain(cat, "t3-429") == ["t3-429", "t3-slow", "t3-ok"]


def test_a_catalogue_without_base_urls_is_refused_when_building_the_app() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^Catalogue 'article' gives no candidate a base_url, so the proxy has "
        r"nowhere to send calls\.",
    ):
        create_app(ServiceConfig(), proxy=ProxyConfig(catalogue="article"))


@pytest.mark.parametrize(("kwargs", "match"), [({"timeout_s": 0}, "timeout_s"), ({"max_attempts": 0}, "max_attempts")])
def test_proxy_config_checks_its_numbers(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        ProxyConfig(catalogue="article", **kwargs)


# -- issue 13: an honest proxy ---------------------------------------------------------------------


def _metric_values(base: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{base}/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples}


def _total(values: dict[tuple[str, tuple], float], name: str) -> float:
    return sum(v for (n, _), v in values.items() if n == name)


def _garbage_catalogue(stubs: dict[str, _Stub], path: Path) -> Path:
    """g-bad (tier1, answers 200 with a body that is not JSON) -> g-ok (tier2)."""
    path.write_text(
        "\n".join(
            [
                "schema_version = 1",
                'name = "garbage"',
                'tiers = ["tier1", "tier2"]',
                "[[candidates]]",
                'model = "g-bad"',
                'tier = "tier1"',
                "input_per_1k = 0.001",
                "output_per_1k = 0.002",
                "default = true",
                f'base_url = "{stubs["garbage"].base_url}"',
                "[[candidates]]",
                'model = "g-ok"',
                'tier = "tier2"',
                "input_per_1k = 0.01",
                "output_per_1k = 0.02",
                "default = true",
                f'base_url = "{stubs["ok"].base_url}"',
                f'api_key_env = "{KEY_ENV}"',
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    return path


def test_a_malformed_200_is_an_upstream_failure_that_moves_up(serve: Any, stubs: dict[str, _Stub], tmp_path: Path) -> None:
    catalogue = _garbage_catalogue(stubs, tmp_path / "garbage.toml")
    served = serve(ServiceConfig(catalogue=str(catalogue)), catalogue=str(catalogue), timeout_s=TIMEOUT_S)
    with served.client() as c:
        raw = c.chat.completions.with_raw_response.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA)
        assert raw.parse().choices[0].message.content == "hello from g-ok"
        decision = _decision(raw)
        assert (decision["model"], decision["served_by"], decision["upstream_failures"]) == ("g-bad", "g-ok", ["g-bad"])
        with pytest.raises(openai.APIStatusError) as caught:  # named directly: nowhere to move, so a 502, not garbage
            c.chat.completions.create(model="g-bad", messages=PLAIN)
    assert caught.value.status_code == 502
    error = caught.value.response.json()["error"]
    assert error["message"] == "Every upstream tried failed (g-bad)." and error["type"] == "upstream_error"
    assert error["attempts"][0]["status"] == 200
    assert error["attempts"][0]["error"].startswith('a 200 whose body is not a JSON object: {"id": "chatcmpl-stub"')
    assert json.loads(caught.value.response.headers[DECISION_HEADER]) == {
        "model": "g-bad",
        "source": "caller",
        "served_by": None,
        "attempts": 1,
        "upstream_failures": ["g-bad"],
    }
    values = _metric_values(f"http://127.0.0.1:{served.port}")
    assert values[("tierroute_upstream_failures_total", (("model", "g-bad"), ("reason", "malformed_body")))] == 2
    assert values[("tierroute_server_errors_total", (("status", "502"),))] == 1
    assert _total(values, "tierroute_client_errors_total") == 0


def test_a_named_model_s_429_comes_back_as_is_with_the_decision(client: Any, stubs: dict[str, _Stub]) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="t3-429", messages=PLAIN)
    response = caught.value.response
    assert response.status_code == 429 and response.json()["error"]["message"] == "slow down"
    assert response.headers["retry-after"] == "7"  # the caller's client can back off
    assert json.loads(response.headers[DECISION_HEADER]) == {
        "model": "t3-429",
        "source": "caller",
        "served_by": "t3-429",
        "attempts": 1,
        "upstream_failures": [],
    }
    assert _models_called(stubs) == ["t3-429"]


def test_every_502_carries_the_decision_header(serve: Any, catalogue_path: Path, stubs: dict[str, _Stub]) -> None:
    served = serve(ServiceConfig(catalogue=str(catalogue_path)), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S, max_attempts=2)
    with served.client() as c, pytest.raises(openai.APIStatusError) as caught:
        c.chat.completions.create(model="tierroute", messages=PLAIN)
    header = json.loads(caught.value.response.headers[DECISION_HEADER])
    assert header["model"] == "t2-500" and header["served_by"] is None
    assert header["upstream_failures"] == ["t2-500", "t2-dead"] and header["attempts"] == 2


def test_upstream_failures_are_counted_as_such_not_as_client_errors(serve: Any, catalogue_path: Path, stubs: dict[str, _Stub]) -> None:
    served = serve(ServiceConfig(catalogue=str(catalogue_path)), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S)
    with served.client() as c:
        assert c.chat.completions.create(model="tierroute", messages=PLAIN).choices[0].message.content == "hello from t2-ok"
    values = _metric_values(f"http://127.0.0.1:{served.port}")
    assert values[("tierroute_upstream_failures_total", (("model", "t2-500"), ("reason", "500")))] == 1
    assert values[("tierroute_upstream_failures_total", (("model", "t2-dead"), ("reason", "ConnectError")))] == 1
    assert _total(values, "tierroute_client_errors_total") == 0 and _total(values, "tierroute_server_errors_total") == 0


def test_routed_calls_are_decisions_counted_logged_and_written(
    serve: Any, catalogue_path: Path, stubs: dict[str, _Stub], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="tierroute.serving")
    log = tmp_path / "decisions.jsonl"
    served = _logged(serve, catalogue_path, log)
    with served.client() as c:
        raw = c.chat.completions.with_raw_response.create(
            model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA, extra_headers={"x-tierroute-objective": "max-accuracy"}
        )
        c.chat.completions.create(model="t3-ok", messages=PLAIN)  # named: no decision made, none logged
    assert json.loads(raw.headers["x-tierroute-decision"])["objective"] == "max-accuracy"
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [(r["model"], r["tier"], r["has_schema"], r["objective"]) for r in rows] == [("t1-ok", "tier1", True, "max-accuracy")]
    lines = [r.getMessage() for r in caplog.records if r.name == "tierroute.serving"]
    assert len(lines) == 1 and lines[0].startswith("decision prompt_sha256=") and " model=t1-ok " in lines[0]
    values = _metric_values(f"http://127.0.0.1:{served.port}")
    assert _total(values, "tierroute_decisions_total") == 1


def test_readyz_names_the_proxy_s_catalogue(serve: Any, catalogue_path: Path, stubs: dict[str, _Stub]) -> None:
    served = serve(ServiceConfig(), catalogue=str(catalogue_path), timeout_s=TIMEOUT_S, max_attempts=4)
    ready = httpx.get(f"http://127.0.0.1:{served.port}/readyz", timeout=10).json()
    assert ready["catalogue"] == "article"  # what the router decides over
    assert ready["proxy"] == {
        "catalogue": "stubs",
        "alias": "tierroute",
        "max_attempts": 4,
        "timeout_s": TIMEOUT_S,
        "upstreams": ["t1-ok", "t2-500", "t2-dead", "t2-ok", "t3-429", "t3-slow", "t3-ok"],
    }


def test_an_unset_api_key_variable_is_refused_at_start(
    catalogue_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv(KEY_ENV)
    expected = (
        f"The API key variable(s) named by api_key_env in catalogue 'stubs' are not set: {KEY_ENV} (for t1-ok, "
        "t2-ok, t3-ok). Export them (export NAME=...) before starting the proxy, or remove api_key_env from "
        "endpoints that need no key."
    )
    with pytest.raises(ConfigError, match="^" + re.escape(expected) + "$"):
        create_app(ServiceConfig(), proxy=ProxyConfig(catalogue=str(catalogue_path)))
    from tierroute.cli import main

    assert main(["serve", "--proxy", str(catalogue_path), "--port", "1"]) == 1
    assert capsys.readouterr().err == f"error: {expected}\n"


def test_the_attempt_limit_is_a_serve_flag(catalogue_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tierroute.cli import main

    assert main(["serve", "--proxy", str(catalogue_path), "--max-attempts", "0", "--port", "1"]) == 1
    assert capsys.readouterr().err.startswith(
        "error: The 'max_attempts' parameter of ProxyConfig must be an int in the range [1, inf). Got 0 instead."
    )


@pytest.mark.parametrize("value", ["NaN", "inf", "-Infinity"])
def test_a_non_finite_sla_header_is_422(client: Any, stubs: dict[str, _Stub], value: str) -> None:
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="tierroute", messages=PLAIN, extra_headers={"x-tierroute-latency-sla-ms": value})
    assert caught.value.response.json()["error"]["message"] == (
        f"The x-tierroute-latency-sla-ms header must be a finite number of milliseconds; got {value!r}. Leave the "
        "header out when there is no latency budget."
    )
    assert _models_called(stubs) == []


def test_the_proxy_logs_what_the_upstream_call_became(serve: Any, catalogue_path: Path, stubs: dict[str, _Stub], tmp_path: Path) -> None:
    log = tmp_path / "decisions.jsonl"
    served = _logged(serve, catalogue_path, log, schema_check=lambda text, schema: 1.0 if text.startswith("{") else 0.0)
    with served.client() as c:
        moved = c.chat.completions.with_raw_response.create(
            model="tierroute", messages=PLAIN, extra_headers={REQUEST_ID_HEADER: "caller-42"}
        )
        checked = c.chat.completions.with_raw_response.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA)
        stream = c.chat.completions.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "streamed from t1-ok"
    assert moved.headers[REQUEST_ID_HEADER] == "caller-42" and _decision(moved)["request_id"] == "caller-42"
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    first, second, third = rows
    assert (first["request_id"], first["model"], first["served_model"], first["attempts"]) == ("caller-42", "t2-500", "t2-ok", 3)
    assert first["upstream_status"] == 200 and first["usage"] == {"prompt_tokens": 5, "completion_tokens": 3}
    assert first["cost_usd"] == pytest.approx((5 * 0.02 + 3 * 0.08) / 1000) and first["latency_ms"] > 0
    assert "auto_feedback" not in first  # no schema asked: nothing to check
    assert second["request_id"] == checked.headers[REQUEST_ID_HEADER] and second["served_model"] == "t1-ok"
    assert second["auto_feedback"] == [{"source": "schema", "quality": 0.0, "correct": False}]  # "hello from t1-ok"
    assert (third["served_model"], third["upstream_status"], third["usage"], third["cost_usd"]) == ("t1-ok", 200, None, None)
    assert third["auto_feedback"][0]["quality"] == 0.0  # the streamed text was read: not JSON


def test_a_routed_call_that_every_upstream_failed_is_logged_too(
    serve: Any, catalogue_path: Path, stubs: dict[str, _Stub], tmp_path: Path
) -> None:
    log = tmp_path / "decisions.jsonl"
    served = _logged(serve, catalogue_path, log, max_attempts=2)
    with served.client() as c, pytest.raises(openai.APIStatusError):
        c.chat.completions.create(model="tierroute", messages=PLAIN)
    [row] = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert (row["model"], row["served_model"], row["attempts"], row["cost_usd"]) == ("t2-500", None, 2, None)


def test_a_sampled_streamed_call_is_judged_on_its_text_and_readyz_shows_the_spend(
    serve: Any, catalogue_path: Path, stubs: dict[str, _Stub], tmp_path: Path
) -> None:
    from tierroute.serving.judge import JudgeConfig

    log = tmp_path / "decisions.jsonl"
    served = _logged(serve, catalogue_path, log, judge=JudgeConfig("t3-ok", sample=1.0, budget_usd=1.0, seed=1))
    with served.client() as c:
        stream = c.chat.completions.create(model="tierroute", messages=EXTRACT, response_format=JSON_SCHEMA, stream=True)
        assert "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices) == "streamed from t1-ok"
        c.chat.completions.create(model="tierroute", messages=PLAIN)  # not streamed: judged as before
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(log.read_text(encoding="utf-8").splitlines()) < 2:
        time.sleep(0.05)  # each line is written once its judge answered, after the caller had the answer
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    [streamed], [whole] = [r for r in rows if r["has_schema"]], [r for r in rows if not r["has_schema"]]  # either may finish first
    judged = {"source": "judge", "quality": 0.75, "correct": True, "judge": "t3-ok"}
    assert {k: streamed["auto_feedback"][-1][k] for k in judged} == judged and streamed["served_model"] == "t1-ok"
    assert {k: whole["auto_feedback"][-1][k] for k in judged} == judged
    asked = [call["body"]["messages"][0]["content"] for call in stubs["ok"].calls if call["model"] == "t3-ok"]
    assert len(asked) == 2 and any(a.endswith("Answer:\nstreamed from t1-ok") for a in asked)  # the stream's own text was graded
    ready = httpx.get(f"http://127.0.0.1:{served.port}/readyz", timeout=10).json()
    spent = ready["proxy"]["judge"]
    assert (spent["model"], spent["graded"], spent["failed"], spent["over_budget"]) == ("t3-ok", 2, 0, 0)
    assert spent["spent_usd"] == pytest.approx(2 * (5 * 0.15 + 3 * 0.6) / 1000)  # the stub's usage at t3-ok's prices


def test_the_explain_header_puts_the_decision_s_explanation_in_its_header(client: Any, stubs: dict[str, _Stub]) -> None:
    raw = client.chat.completions.with_raw_response.create(model="tierroute", messages=PLAIN, extra_headers={"x-tierroute-explain": "1"})
    explained = json.loads(raw.headers[DECISION_HEADER])
    assert explained["model"] == "t2-500" and explained["served_by"] == "t2-ok"
    tree = explained["explanation"]["tree"]  # the tree decided: its path to the tier it chose
    assert tree["path"][0]["node"] == "rule1" and explained["tier"] == "tier2"
    plain = client.chat.completions.with_raw_response.create(model="tierroute", messages=PLAIN)
    assert "explanation" not in json.loads(plain.headers[DECISION_HEADER])
    with pytest.raises(openai.UnprocessableEntityError) as caught:
        client.chat.completions.create(model="tierroute", messages=PLAIN, extra_headers={"x-tierroute-explain": "maybe"})
    assert caught.value.response.json()["error"]["message"] == (
        "The x-tierroute-explain header must be a flag: 1 (or true) for an explanation, 0 (or false) or no header without; got 'maybe'."
    )

"""The HTTP routing service (tierroute.serving.http) in-process with Starlette's TestClient, and
once for real: `tierroute serve` in a subprocess on loopback."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytest.importorskip("starlette")
pytest.importorskip("prometheus_client")
httpx = pytest.importorskip("httpx")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402
from starlette.testclient import TestClient  # noqa: E402

from tierroute.cli import main  # noqa: E402
from tierroute.models.catalogue import builtin_catalogue  # noqa: E402
from tierroute.serving.http import ServiceConfig, create_app  # noqa: E402
from tierroute.serving.router import FALLBACK_REASONS, Router, RouterConfig  # noqa: E402

# no deadline: on a loaded machine a slow first decision must not turn "learned" into a fallback
NO_DEADLINE = RouterConfig(deadline_ms=None)
TOKEN = "s3cret-token"
# one request per tier of the article's tree (see tests/serving/test_decision.py)
TIER_REQUESTS = [
    {"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}},
    {"prompt": "Summarize this ticket."},
    {"prompt": "Step by step, analyze and compare.", "latency_sla_ms": 150},
]


def _fit_and_export(seed: int, out: Path) -> Path:
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    tiny = LearnedConfig(encoder="none", router=RouterParams(n_estimators=30, n_folds=2, early_stopping_rounds=10, n_threads=1))
    frame = pd.DataFrame(list(generate(SyntheticConfig(300, seed=seed))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    return export_bundle(LearnedRouter(tiny).fit(data, builtin_catalogue("article")), out)


def _bundle_id(path: Path) -> str:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))["bundle_id"]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    a = _fit_and_export(5, tmp_path_factory.mktemp("bundle_a") / "bundle")
    b = _fit_and_export(6, tmp_path_factory.mktemp("bundle_b") / "bundle")
    assert _bundle_id(a) != _bundle_id(b)
    return {"a": a, "b": b}


@pytest.fixture(scope="module")
def router_a(bundles: dict[str, Path]) -> Router:
    router = Router.load(bundles["a"], NO_DEADLINE, strict=True)
    assert router.learned
    return router


@pytest.fixture(scope="module")
def tree_router() -> Router:
    return Router.load(None)


def _client(router: Router | None = None, authed: bool = False, **service: object) -> TestClient:
    """A client of the app; ``authed``: the service has the token and every call sends it."""
    service.setdefault("router", NO_DEADLINE)
    if authed:
        service["token"] = TOKEN
    headers = {"authorization": f"Bearer {TOKEN}"} if authed else None
    return TestClient(create_app(ServiceConfig(**service), router=router), headers=headers)  # type: ignore[arg-type]


def _metrics(client: TestClient, headers: dict[str, str] | None = None) -> dict[tuple[str, tuple], float]:
    """{(sample name, sorted label items): value} from /metrics."""
    response = client.get("/metrics", headers=headers or {})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def _error(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert body["status"] == status
    return body


# -- POST /v1/route ------------------------------------------------------------------------------


def test_route_returns_a_learned_decision_and_echoes_the_id(router_a: Router) -> None:
    client = _client(router_a)
    response = client.post("/v1/route", json={"id": "req-7", "prompt": "Summarize this ticket.", "latency_sla_ms": 5000})
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == "req-7"
    assert body["source"] == "learned" and body["fallback"] is None
    assert body["bundle_id"] == router_a.bundle_id
    assert body["model"] in router_a.bundle.candidates
    assert body["tier"] == router_a.catalogue.tier_of(body["model"])
    assert set(body["probabilities"]) == set(router_a.bundle.candidates)
    expected = router_a.route({"prompt": "Summarize this ticket.", "latency_sla_ms": 5000})
    assert body["model"] == expected.model
    assert body["probabilities"] == pytest.approx(expected.probabilities)


def test_the_objective_field_picks_the_operating_point_per_call(router_a: Router, tmp_path: Path) -> None:
    from tierroute.serving.decision_log import DecisionLog

    log = tmp_path / "decisions.jsonl"
    router = Router(router_a.bundle, router_a.config, decision_log=DecisionLog(str(log)))
    client = _client(router)
    prompts = ["Summarize this ticket.", "Pull the order id: #88231", "Prove that the sum of two odd numbers is even."]
    for objective in ("max-accuracy", "budget=0.0001"):
        for prompt in prompts:
            body = client.post("/v1/route", json={"prompt": prompt, "objective": objective}).json()
            assert body["objective"] == objective
            assert body["model"] == router_a.route({"prompt": prompt}, objective=objective).model
        batch = client.post("/v1/route/batch", json={"objective": objective, "requests": [{"prompt": p} for p in prompts]})
        assert [d["objective"] for d in batch.json()["decisions"]] == [objective] * 3
    default = client.post("/v1/route", json={"prompt": prompts[0]}).json()
    assert default["objective"] == "match-best"  # the bundle's own
    bad = _error(client.post("/v1/route", json={"prompt": "x", "objective": "cheapest"}), 422)
    assert bad["message"].startswith(
        "The request's objective must be one of ('match-best', 'match-heuristic', 'max-accuracy') or 'budget=USD_PER_QUERY'"
    )
    mixed = client.post(
        "/v1/route/batch", json={"requests": [{"prompt": "a", "objective": "max-accuracy"}, {"prompt": "b", "objective": "match-best"}]}
    )
    assert _error(mixed, 422)["message"].startswith("The requests name different objectives ['match-best', 'max-accuracy']")
    rows = [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]
    assert [r["objective"] for r in rows] == ["max-accuracy"] * 6 + ["budget=0.0001"] * 6 + ["match-best"]


@pytest.mark.parametrize("objective", [["max-accuracy"], {"budget": 0.1}, 5])
def test_an_objective_that_is_not_a_string_is_a_422_naming_what_arrived(router_a: Router, objective: object) -> None:
    client = _client(router_a)
    single = _error(client.post("/v1/route", json={"prompt": "x", "objective": objective}), 422)
    assert single["message"].startswith("'objective' must be a string: one of ('match-best', 'match-heuristic', 'max-accuracy')")
    assert f"got {objective!r}" in single["message"]
    item = _error(client.post("/v1/route/batch", json={"requests": [{"prompt": "a"}, {"prompt": "b", "objective": objective}]}), 422)
    assert item["message"].startswith("'objective' must be a string (request [1])")
    whole = _error(client.post("/v1/route/batch", json={"objective": objective, "requests": [{"prompt": "a"}]}), 422)
    assert whole["message"].startswith("'objective' must be a string (the call's)")


def test_route_without_an_id_gives_null_and_messages_work(router_a: Router) -> None:
    client = _client(router_a)
    response = client.post(
        "/v1/route", json={"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Summarize this ticket."}]}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["id"] is None
    assert body["source"] == "learned"
    expected = router_a.route({"prompt": "system: Be brief.\nuser: Summarize this ticket."})
    assert body["model"] == expected.model
    assert body["probabilities"] == pytest.approx(expected.probabilities)


@pytest.mark.parametrize(
    ("payload", "start"),
    [
        ({"id": "x1"}, "The request has no 'prompt' (and no 'messages'). Send the text you would send to the model."),
        ({"id": "x1", "prompt": 42}, "'prompt' must be a string; got "),
        ({"id": "x1", "prompt": "hi", "latency_sla_ms": -5}, "'latency_sla_ms' must be >= 0; got -5."),
        ({"id": "x1", "prompt": "hi", "latency_sla_ms": "fast"}, "'latency_sla_ms' must be a finite number of milliseconds or null"),
        ({"id": "x1", "messages": []}, "'messages' must be a non-empty list of {'role', 'content'} objects"),
        ({"id": "x1", "prompt": "hi", "temperature": 0}, "Unknown request field(s) ['temperature']"),
    ],
)
def test_malformed_requests_are_422_with_the_request_error_wording(router_a: Router, payload: dict, start: str) -> None:
    response = _client(router_a).post("/v1/route", json=payload)
    error = _error(response, 422)
    assert error["message"].startswith(start), error["message"]
    assert error["id"] == "x1"


def test_a_json_value_that_is_not_an_object_is_422(router_a: Router) -> None:
    error = _error(_client(router_a).post("/v1/route", json=["prompt", "hi"]), 422)
    assert error["message"] == "Expected one request object (prompt or messages); got JSON list."
    error = _error(_client(router_a).post("/v1/route", content=b""), 422)
    assert error["message"] == "Expected one request object (prompt or messages); got JSON NoneType."


@pytest.mark.parametrize("body", [b"{not json", b"prompt=hi", b"\xff\xfe\x00"])
def test_a_body_that_is_not_json_is_400(router_a: Router, body: bytes) -> None:
    response = _client(router_a).post("/v1/route", content=body, headers={"content-type": "application/json"})
    error = _error(response, 400)
    assert error["message"].startswith("The body is not JSON (")
    assert error["message"].endswith("). Send one JSON object.")


def test_a_body_over_the_cap_is_413_by_its_content_length(router_a: Router) -> None:
    client = _client(router_a, max_body_bytes=1000)
    body = json.dumps({"prompt": "x" * 2000}).encode()
    error = _error(client.post("/v1/route", content=body, headers={"content-type": "application/json"}), 413)
    assert error["message"] == (
        f"The body is {len(body):,} bytes; this service accepts at most 1,000. Send a shorter prompt or raise --max-body."
    )
    # at the cap exactly it is accepted
    fits = json.dumps({"prompt": "x" * (1000 - len('{"prompt": ""}'))}).encode()
    assert len(fits) == 1000
    assert client.post("/v1/route", content=fits).status_code == 200


def test_a_streamed_body_over_the_cap_is_413_without_a_content_length(router_a: Router) -> None:
    client = _client(router_a, max_body_bytes=1000)

    def chunks():
        yield b'{"prompt": "'
        for _ in range(30):
            yield b"y" * 100
        yield b'"}'

    request = client.build_request("POST", "/v1/route", content=chunks())
    assert "content-length" not in request.headers
    error = _error(client.send(request), 413)
    assert error["message"] == "The body exceeds 1,000 bytes. Send a shorter prompt or raise --max-body."


def test_bearer_token_is_required_everywhere_but_healthz(router_a: Router) -> None:
    client = _client(router_a, token=TOKEN)
    request = {"prompt": "Summarize this ticket."}
    wording = "Missing or wrong bearer token. Send 'Authorization: Bearer <token>'."
    for headers in (
        {},
        {"authorization": "Bearer wrong"},
        {"authorization": f"Basic {TOKEN}"},
        {"authorization": TOKEN},
        {"authorization": f"Bearer {TOKEN}x"},
    ):
        assert _error(client.post("/v1/route", json=request, headers=headers), 401)["message"] == wording
        assert _error(client.post("/v1/route/batch", json={"requests": [request]}, headers=headers), 401)
        assert _error(client.get("/readyz", headers=headers), 401)
        assert _error(client.get("/metrics", headers=headers), 401)
        assert _error(client.post("/admin/reload", json={}, headers=headers), 401)
    assert client.get("/healthz").json() == {"status": "ok"}
    good = {"authorization": f"Bearer {TOKEN}"}
    assert client.post("/v1/route", json=request, headers=good).json()["source"] == "learned"
    assert client.post("/v1/route", json=request, headers={"authorization": f"bearer {TOKEN}"}).status_code == 200
    assert client.get("/readyz", headers=good).status_code == 200
    # the 401s were counted, not the successes
    assert _metrics(client, good)[("tierroute_client_errors_total", (("status", "401"),))] == 25


def test_the_token_is_checked_before_the_body_cap(router_a: Router) -> None:
    # an unauthorised caller gets 401 even with an oversized body (auth comes first)
    client = _client(router_a, token=TOKEN, max_body_bytes=100)
    assert _error(client.post("/v1/route", content=b"x" * 500), 401)


def test_service_config_rejects_an_empty_token() -> None:
    from tierroute.errors import ConfigError

    with pytest.raises(ConfigError, match=r"^The 'token' parameter of ServiceConfig must be a non-empty string or None\."):
        ServiceConfig(token="  ")
    assert ServiceConfig(token=TOKEN).to_dict()["token"] == "***"


# -- POST /v1/route/batch ------------------------------------------------------------------------


def test_batch_returns_decisions_in_order_with_ids(router_a: Router, tree_router: Router) -> None:
    items = [{"id": f"r{i}", **r} for i, r in enumerate(TIER_REQUESTS)] + [{"prompt": "no id here"}]
    response = _client(router_a).post("/v1/route/batch", json={"requests": items})
    assert response.status_code == 200
    decisions = response.json()["decisions"]
    assert [d["id"] for d in decisions] == ["r0", "r1", "r2", None]
    for item, got in zip(items, decisions):
        single = router_a.route({k: v for k, v in item.items() if k != "id"})
        assert got["source"] == "learned"
        assert got["model"] == single.model
        assert got["probabilities"] == pytest.approx(single.probabilities)
    # the tree tells the three apart: the order is the request order
    decisions = _client(tree_router).post("/v1/route/batch", json={"requests": items[:3]}).json()["decisions"]
    assert [d["tier"] for d in decisions] == ["tier1", "tier2", "tier3"]
    assert [d["id"] for d in decisions] == ["r0", "r1", "r2"]


def test_batch_over_max_batch_is_413(router_a: Router) -> None:
    client = _client(router_a, max_batch=2)
    error = _error(client.post("/v1/route/batch", json={"requests": [{"prompt": "a"}] * 3}), 413)
    assert error["message"] == "The batch has 3 requests; at most 2 per call. Split it."
    assert len(client.post("/v1/route/batch", json={"requests": [{"prompt": "a"}] * 2}).json()["decisions"]) == 2


def test_batch_with_a_malformed_item_names_it(router_a: Router) -> None:
    items = [{"prompt": "fine"}, {"prompt": 3}, {"prompt": "fine too"}]
    error = _error(_client(router_a).post("/v1/route/batch", json={"requests": items}), 422)
    assert error["message"].startswith("request [1]: 'prompt' must be a string; got ")
    error = _error(_client(router_a).post("/v1/route/batch", json={"requests": [{"prompt": "ok"}, "text"]}), 422)
    assert error["message"].startswith("request [1]: A request must be an object with 'prompt' (or 'messages')")


@pytest.mark.parametrize("payload", [[{"prompt": "a"}], {"requests": {"prompt": "a"}}, {"prompt": "a"}])
def test_batch_needs_a_requests_list(router_a: Router, payload: object) -> None:
    error = _error(_client(router_a).post("/v1/route/batch", json=payload), 422)
    assert error["message"].startswith('Expected {"requests": [request, ...]}; got ')


def test_an_empty_batch_gives_no_decisions(router_a: Router) -> None:
    assert _client(router_a).post("/v1/route/batch", json={"requests": []}).json() == {"decisions": []}


def test_a_big_batch_is_decided_on_the_threadpool(router_a: Router) -> None:
    items = [{"id": i, "prompt": f"Summarize ticket number {i}."} for i in range(40)]
    response = _client(router_a).post("/v1/route/batch", json={"requests": items})
    assert response.status_code == 200
    decisions = response.json()["decisions"]
    assert [d["id"] for d in decisions] == list(range(40))
    assert {d["source"] for d in decisions} == {"learned"}
    expected = router_a.route_batch([{"prompt": f"Summarize ticket number {i}."} for i in range(40)])
    assert [d["model"] for d in decisions] == [e.model for e in expected]


# -- GET /readyz ---------------------------------------------------------------------------------


def test_readyz_with_a_bundle(bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(bundles["a"]))
    for query in ("", "?learned=1", "?learned=true"):
        response = client.get("/readyz" + query)
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ready" and body["learned"] is True
        assert body["bundle_id"] == _bundle_id(bundles["a"])
        assert body["bundle"] == str(bundles["a"])
        assert body["catalogue"] == "article"


def test_a_missing_bundle_serves_the_tree_and_says_so(tmp_path: Path) -> None:
    client = _client(bundle=str(tmp_path / "no-such-bundle"))
    response = client.get("/readyz")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready" and body["learned"] is False and body["bundle_id"] is None
    assert body["fallback"] == "no_bundle"
    assert body["detail"].startswith(f"No router bundle at {str(tmp_path / 'no-such-bundle')!r} (nothing there).")
    response = client.get("/readyz?learned=1")
    assert response.status_code == 503
    assert response.json()["status"] == "not ready" and response.json()["fallback"] == "no_bundle"
    decision = client.post("/v1/route", json=TIER_REQUESTS[0]).json()
    assert decision["source"] == "heuristic" and decision["fallback"] == "no_bundle"
    assert decision["tier"] == "tier1" and decision["model"] == builtin_catalogue("article").default_model("tier1")
    assert decision["reason"].startswith("no_bundle; rule1: ")
    values = _metrics(client)
    assert values[("tierroute_learned", ())] == 0
    assert values[("tierroute_fallbacks_total", (("reason", "no_bundle"),))] == 1


def test_without_a_bundle_the_configured_catalogue_serves_the_tree(tmp_path: Path) -> None:
    client = _client(catalogue="routellm")
    decision = client.post("/v1/route", json=TIER_REQUESTS[2]).json()
    assert decision["fallback"] == "no_bundle"
    assert decision["model"] in {c.model for c in builtin_catalogue("routellm").candidates}
    assert client.get("/readyz").json()["catalogue"] == "routellm"


# -- GET /metrics --------------------------------------------------------------------------------


def test_metrics_count_decisions_fallbacks_latency_and_errors(router_a: Router, tree_router: Router) -> None:
    client = _client(router_a)
    before = _metrics(client)
    assert before[("tierroute_learned", ())] == 1
    assert before[("tierroute_decision_seconds_count", ())] == 0
    for reason in FALLBACK_REASONS:  # every reason is exported from the start
        assert before[("tierroute_fallbacks_total", (("reason", reason),))] == 0
    decisions = [client.post("/v1/route", json={"prompt": "Summarize this ticket."}).json() for _ in range(3)]
    decisions += client.post("/v1/route/batch", json={"requests": TIER_REQUESTS}).json()["decisions"]
    client.post("/v1/route", json={"prompt": 1})
    client.post("/v1/route", json={"prompt": 2})
    client.post("/v1/route", content=b"{")
    values = _metrics(client)
    assert values[("tierroute_decision_seconds_count", ())] == 6
    assert values[("tierroute_decision_seconds_sum", ())] > 0
    counted = {}
    for d in decisions:
        key = (("model", d["model"]), ("source", "learned"), ("tier", d["tier"]))
        counted[key] = counted.get(key, 0) + 1
    for labels, n in counted.items():
        assert values[("tierroute_decisions_total", labels)] == n
    assert sum(v for (name, _), v in values.items() if name == "tierroute_decisions_total") == 6
    assert values[("tierroute_client_errors_total", (("status", "422"),))] == 2
    assert values[("tierroute_client_errors_total", (("status", "400"),))] == 1
    assert sum(v for (name, _), v in values.items() if name == "tierroute_fallbacks_total") == 0
    buckets = [v for (name, labels), v in values.items() if name == "tierroute_decision_seconds_bucket" and dict(labels)["le"] == "+Inf"]
    assert buckets == [6]

    # a fallback decision counts its reason
    fallback_app_router = Router(router_a.bundle, RouterConfig(deadline_ms=None, max_prompt_chars=10))
    fallback = TestClient(create_app(ServiceConfig(router=NO_DEADLINE), router=fallback_app_router))
    decision = fallback.post("/v1/route", json={"prompt": "a prompt longer than ten characters"}).json()
    assert decision["source"] == "heuristic" and decision["fallback"] == "prompt_too_large"
    values = _metrics(fallback)
    assert values[("tierroute_fallbacks_total", (("reason", "prompt_too_large"),))] == 1
    assert values[("tierroute_decisions_total", (("model", decision["model"]), ("source", "heuristic"), ("tier", decision["tier"])))] == 1


def test_each_app_has_its_own_metrics(router_a: Router) -> None:
    one, two = _client(router_a), _client(router_a)
    one.post("/v1/route", json={"prompt": "hi"})
    assert _metrics(one)[("tierroute_decision_seconds_count", ())] == 1
    assert _metrics(two)[("tierroute_decision_seconds_count", ())] == 0


# -- POST /admin/reload --------------------------------------------------------------------------


def test_reload_switches_the_bundle(bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(bundles["a"]), authed=True)
    id_a, id_b = _bundle_id(bundles["a"]), _bundle_id(bundles["b"])
    assert client.post("/v1/route", json={"prompt": "hi"}).json()["bundle_id"] == id_a
    response = client.post("/admin/reload", json={"bundle": str(bundles["b"])})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "reloaded" and body["bundle_id"] == id_b and body["learned"] is True
    assert body["seconds"] >= 0
    assert client.post("/v1/route", json={"prompt": "hi"}).json()["bundle_id"] == id_b
    assert client.get("/readyz").json()["bundle_id"] == id_b
    assert client.app.state.holder.source == str(bundles["b"])
    # an empty body reloads the configured bundle (as the README says), not the one reloaded last
    again = client.post("/admin/reload")
    assert again.status_code == 200 and again.json()["bundle_id"] == id_a
    assert client.app.state.holder.source == str(bundles["a"])
    assert client.post("/v1/route", json={"prompt": "hi"}).json()["bundle_id"] == id_a
    assert _metrics(client)[("tierroute_reloads_total", (("outcome", "ok"),))] == 2


def test_reload_turns_a_tree_only_service_learned(tmp_path: Path, bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(tmp_path / "not-yet"), authed=True)
    assert client.get("/readyz?learned=1").status_code == 503
    assert _metrics(client)[("tierroute_learned", ())] == 0
    assert client.post("/admin/reload", json={"bundle": str(bundles["a"])}).status_code == 200
    assert client.get("/readyz?learned=1").status_code == 200
    assert _metrics(client)[("tierroute_learned", ())] == 1
    assert client.post("/v1/route", json={"prompt": "hi"}).json()["source"] == "learned"


def _corrupted_copy(bundle: Path, target: Path) -> Path:
    shutil.copytree(bundle, target)
    model = target / "model.onnx"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0xFF
    model.write_bytes(bytes(data))
    return target


@pytest.mark.parametrize("damage", ["missing", "corrupted", "not_a_bundle"])
def test_a_bad_bundle_is_refused_and_the_old_one_keeps_serving(tmp_path: Path, bundles: dict[str, Path], damage: str) -> None:
    client = _client(bundle=str(bundles["a"]), authed=True)
    id_a = _bundle_id(bundles["a"])
    if damage == "missing":
        target, code, detail = tmp_path / "gone", "no_bundle", f"No router bundle at {str(tmp_path / 'gone')!r}"
    elif damage == "corrupted":
        target, code, detail = _corrupted_copy(bundles["b"], tmp_path / "bad"), "checksum_mismatch", "'model.onnx' in bundle"
    else:
        (tmp_path / "empty").mkdir()
        target, code, detail = tmp_path / "empty", "bundle_unreadable", f"{str(tmp_path / 'empty')!r} has no manifest.json"
    response = client.post("/admin/reload", json={"bundle": str(target)})
    error = _error(response, 422)
    assert error["fallback"] == code
    assert error["serving"] == id_a
    assert error["message"].startswith(f"Reload refused, still serving bundle {id_a}: {detail}")
    decision = client.post("/v1/route", json={"prompt": "hi"}).json()
    assert decision["bundle_id"] == id_a and decision["source"] == "learned"
    assert client.app.state.holder.source == str(bundles["a"])
    values = _metrics(client)
    assert values[("tierroute_reloads_total", (("outcome", "refused"),))] == 1
    assert values[("tierroute_learned", ())] == 1


@pytest.mark.parametrize("payload", [{"bundle": 3}, ["x"], "path"])
def test_reload_with_a_malformed_body_is_422(bundles: dict[str, Path], payload: object) -> None:
    client = _client(bundle=str(bundles["a"]), authed=True)
    error = _error(client.post("/admin/reload", json=payload), 422)
    assert error["message"] == 'Expected {"bundle": "PATH or models:/URI"} (or an empty body for the configured bundle).'


def test_reload_without_any_bundle_configured_is_refused(router_a: Router) -> None:
    client = _client(router_a, authed=True)  # served as given: no configured source
    error = _error(client.post("/admin/reload"), 422)
    assert error["fallback"] == "no_bundle"
    assert error["message"].startswith(f"Reload refused, still serving bundle {router_a.bundle_id}: No bundle was given.")


def test_in_flight_requests_finish_on_the_router_they_started_with(bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(bundles["a"]), authed=True)
    holder = client.app.state.holder
    old = holder.current
    assert client.post("/admin/reload", json={"bundle": str(bundles["b"])}).status_code == 200
    assert holder.current is not old and holder.current.bundle_id == _bundle_id(bundles["b"])
    decision = old.route({"prompt": "Summarize this ticket."})
    assert decision.source == "learned" and decision.bundle_id == _bundle_id(bundles["a"])
    assert len(old.route_batch(TIER_REQUESTS)) == 3


def test_without_a_token_only_the_configured_bundle_may_be_reloaded(bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(bundles["a"]))
    error = _error(client.post("/admin/reload", json={"bundle": str(bundles["b"])}), 403)
    assert error["message"].startswith(
        f"Without a bearer token (--token-env) /admin/reload only reloads the configured bundle; got another one ({str(bundles['b'])!r})."
    )
    assert client.app.state.holder.current.bundle_id == _bundle_id(bundles["a"])
    assert client.post("/admin/reload").status_code == 200
    assert client.post("/admin/reload", json={"bundle": str(bundles["a"])}).status_code == 200


def test_reload_needs_the_token(bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(bundles["a"]), token=TOKEN)
    assert _error(client.post("/admin/reload", json={"bundle": str(bundles["b"])}), 401)
    assert client.app.state.holder.current.bundle_id == _bundle_id(bundles["a"])
    response = client.post("/admin/reload", json={"bundle": str(bundles["b"])}, headers={"authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert client.app.state.holder.current.bundle_id == _bundle_id(bundles["b"])


# -- logging -------------------------------------------------------------------------------------

SECRET = "My account number is 99-1234-5678, summarize my statement."


def test_prompts_are_logged_only_as_a_hash_by_default(router_a: Router, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierroute.serving")
    client = _client(router_a)
    client.post("/v1/route", json={"prompt": SECRET})
    client.post("/v1/route/batch", json={"requests": [{"prompt": SECRET + " (batch)"}]})
    client.post("/v1/route", json={"messages": [{"role": "user", "content": SECRET + " (chat)"}]})
    records = [r for r in caplog.records if r.name == "tierroute.serving"]
    assert len(records) == 3 and all(r.levelno == logging.INFO for r in records)
    assert "99-1234-5678" not in caplog.text
    digest = hashlib.sha256(SECRET.encode()).hexdigest()[:16]
    assert records[0].getMessage().startswith(f"decision prompt_sha256={digest} tier=")
    batch_digest = hashlib.sha256((SECRET + " (batch)").encode()).hexdigest()[:16]
    assert f"prompt_sha256={batch_digest} " in records[1].getMessage()
    assert "prompt_sha256=" in records[2].getMessage()


def test_log_prompts_logs_the_text(router_a: Router, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tierroute.serving")
    client = _client(router_a, log_prompts=True)
    client.post("/v1/route", json={"prompt": SECRET})
    client.post("/v1/route", json={"messages": [{"role": "user", "content": SECRET + " (chat)"}]})
    records = [r.getMessage() for r in caplog.records if r.name == "tierroute.serving"]
    assert records[0].startswith(f"decision prompt={json.dumps(SECRET)} tier=")
    assert "prompt_sha256" not in caplog.text
    assert SECRET + " (chat)" in records[1]


def test_nothing_is_logged_above_info(router_a: Router, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="tierroute.serving")
    _client(router_a, log_prompts=True).post("/v1/route", json={"prompt": SECRET})
    assert not [r for r in caplog.records if r.name == "tierroute.serving"]


# -- the real server: `tierroute serve` on loopback ----------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_tierroute_serve_answers_on_loopback(bundles: dict[str, Path], tmp_path: Path) -> None:
    port = _free_port()
    exe = Path(sys.executable).with_name("tierroute")
    command = [str(exe)] if exe.exists() else [sys.executable, "-m", "tierroute.cli"]
    env = {**os.environ, "TIERROUTE_TEST_TOKEN": TOKEN}
    log = tmp_path / "serve.log"
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            [
                *command,
                "serve",
                "--bundle",
                str(bundles["a"]),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--token-env",
                "TIERROUTE_TEST_TOKEN",
                "--max-body",
                "1000",
                "--deadline-ms",
                "10000",
                "--request-timeout",
                "1",
                "--max-connections",
                "64",
            ],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_path,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert process.poll() is None, f"tierroute serve exited {process.returncode}: {log.read_text()}"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"tierroute serve did not come up: {log.read_text()}"
            time.sleep(0.1)
        auth = {"authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=base, timeout=10) as client:
            assert client.post("/v1/route", json={"prompt": "hi"}).status_code == 401
            response = client.post("/v1/route", json={"id": 1, "prompt": "Summarize this ticket."}, headers=auth)
            assert response.status_code == 200
            body = response.json()
            assert body["id"] == 1 and body["source"] == "learned" and body["bundle_id"] == _bundle_id(bundles["a"])
            ready = client.get("/readyz?learned=1", headers=auth)
            assert ready.status_code == 200 and ready.json()["config"]["deadline_ms"] == 10000

            def chunks():  # chunked transfer encoding: no content-length to check up front
                yield b'{"prompt": "'
                for _ in range(20):
                    yield b"z" * 100
                yield b'"}'

            response = client.post("/v1/route", content=chunks(), headers=auth)
            assert response.status_code == 413
            assert response.json()["error"]["message"].startswith("The body exceeds 1,000 bytes.")
            partial = socket.create_connection(("127.0.0.1", port), timeout=30)
            partial.sendall(b"POST /v1/route HTTP/1.1\r\nhost: x\r\n")  # and nothing more: --request-timeout 1
            assert _read_until_closed(partial).startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert client.get("/v1/nothing", headers=auth).json()["error"]["status"] == 404
            metrics = client.get("/metrics", headers=auth).text
            assert 'tierroute_client_errors_total{status="413"} 1.0' in metrics
            assert 'tierroute_client_errors_total{status="401"} 1.0' in metrics
            assert 'tierroute_client_errors_total{status="408"} 1.0' in metrics
            assert 'tierroute_client_errors_total{status="404"} 1.0' in metrics
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    assert f"serving bundle {_bundle_id(bundles['a'])} on http://127.0.0.1:{port}" in log.read_text()


def test_serve_with_an_unset_token_variable_is_one_error_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.delenv("TIERROUTE_UNSET_TOKEN_VAR", raising=False)
    assert main(["serve", "--token-env", "TIERROUTE_UNSET_TOKEN_VAR", "--port", "1"]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (
        "error: --token-env TIERROUTE_UNSET_TOKEN_VAR: that environment variable is not set or empty. Export it first.\n"
    )
    monkeypatch.setenv("TIERROUTE_UNSET_TOKEN_VAR", "")
    assert main(["serve", "--token-env", "TIERROUTE_UNSET_TOKEN_VAR"]) == 1
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("option", [["--schema-feedback"], ["--judge", "gpt-4o"]])
def test_serve_refuses_proxy_only_options_without_the_proxy(option: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", *option, "--port", "1"]) == 1
    assert capsys.readouterr().err == (
        "error: --schema-feedback and --judge need --proxy (only the proxy sees the answers). Pass --proxy CATALOGUE.toml.\n"
    )


# -- issue 13: no 500s for hostile bodies, every error JSON and counted ---------------------------


def _deep(depth: int, inner: str = "1") -> str:
    return '{"a": ' * depth + inner + "}" * depth


@pytest.mark.parametrize(
    "body",
    [
        '{"prompt": "hi", "x": ' + "[" * 10_000 + "]" * 10_000 + "}",
        '{"prompt": "hi", "metadata": ' + _deep(10_000) + "}",
        '{"prompt": "hi", "output_schema": ' + _deep(3_000, '"string"') + "}",
    ],
)
def test_json_nested_too_deep_is_400_not_500(tree_router: Router, body: str) -> None:
    client = _client(tree_router)
    error = _error(client.post("/v1/route", content=body.encode()), 400)
    assert error["message"] == (
        "The body nests arrays/objects more than 128 levels deep; this service accepts at most 128 (--max-json-depth). Flatten the request."
    )
    assert _error(client.post("/v1/route/batch", content=b'{"requests": [' + body.encode() + b"]}"), 400)
    values = _metrics(client)
    assert values[("tierroute_client_errors_total", (("status", "400"),))] == 2
    assert values[("tierroute_decision_seconds_count", ())] == 0


@pytest.mark.parametrize("field", ["latency_sla_ms", "id"])
def test_an_integer_over_4300_digits_is_400(tree_router: Router, field: str) -> None:
    client = _client(tree_router)
    body = '{"prompt": "hi", "' + field + '": ' + "7" * 5000 + "}"
    error = _error(client.post("/v1/route", content=body.encode()), 400)
    assert error["message"] == (
        "The body holds a number written with 5,000 characters (77777777777777777777...); at "
        "most 100 are accepted. Send it as a string if it is an identifier, or round it."
    )
    assert _metrics(client)[("tierroute_client_errors_total", (("status", "400"),))] == 1


@pytest.mark.parametrize(
    ("body", "status", "start"),
    [
        (b'{"prompt": "hi", "latency_sla_ms": NaN}', 400, "The body holds the token NaN, which is not JSON"),
        (b'{"prompt": "hi", "latency_sla_ms": "NaN"}', 422, "'latency_sla_ms' must be a finite number of milliseconds"),
        (b'{"prompt": "hi", "latency_sla_ms": 3.5e38}', 422, "'latency_sla_ms' must be at most 1e+12 ms (about 31 years)"),
        (b'{"prompt": "hi", "latency_sla_ms": 1e999}', 400, "The body holds the number 1e999, beyond the range"),
    ],
)
def test_slas_that_are_not_budgets_are_refused(tree_router: Router, body: bytes, status: int, start: str) -> None:
    error = _error(_client(tree_router).post("/v1/route", content=body), status)
    assert error["message"].startswith(start), error["message"]


def test_a_lone_surrogate_in_the_id_is_422_before_anything_is_decided(
    tree_router: Router, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from tierroute.serving.decision_log import DecisionLog

    caplog.set_level(logging.INFO, logger="tierroute.serving")
    log = DecisionLog(tmp_path / "d.jsonl")
    client = _client(Router.load(None, decision_log=log))
    body = b'{"id": "abc\\ud800", "prompt": "Summarize this ticket."}'
    error = _error(client.post("/v1/route", content=body), 422)
    assert error["message"].startswith(
        "'id' holds a lone surrogate (half of a UTF-16 pair) at id, which cannot be sent back as UTF-8 text;"
    )
    assert error["id"] is None  # not echoed: it cannot be
    batch = b'{"requests": [{"prompt": "fine"}, ' + body + b"]}"
    assert _error(client.post("/v1/route/batch", content=batch), 422)["message"].startswith("request [1]: 'id' holds")
    log.close()
    assert (tmp_path / "d.jsonl").read_text(encoding="utf-8") == ""  # nothing decided, nothing logged
    values = _metrics(client)
    assert values[("tierroute_client_errors_total", (("status", "422"),))] == 2
    assert sum(v for (name, _), v in values.items() if name == "tierroute_decisions_total") == 0
    assert not [r for r in caplog.records if r.getMessage().startswith("decision ")]
    # a surrogate in the prompt is fine (it is hashed, never echoed)
    assert client.post("/v1/route", content=b'{"id": 1, "prompt": "x\\ud800"}').status_code == 200


def test_unknown_paths_and_methods_are_json_errors_and_counted(tree_router: Router) -> None:
    client = _client(tree_router)
    error = _error(client.get("/v2/route"), 404)
    assert error["message"] == (
        "No endpoint at /v2/route; this service has POST /v1/route, POST /v1/route/batch, "
        "GET /healthz, GET /readyz, GET /metrics, POST /admin/reload."
    )
    assert error["type"] == "not_found_error"
    response = client.get("/v1/route")
    error = _error(response, 405)
    assert error["message"] == "GET is not allowed on /v1/route; use POST." and response.headers["allow"] == "POST"
    values = _metrics(client)
    assert values[("tierroute_client_errors_total", (("status", "404"),))] == 1
    assert values[("tierroute_client_errors_total", (("status", "405"),))] == 1


def test_decision_log_drops_are_on_metrics(tmp_path: Path) -> None:
    from tierroute.serving.decision_log import DecisionLog

    log = DecisionLog(tmp_path / "d.jsonl")
    client = _client(Router.load(None, decision_log=log))
    assert client.post("/v1/route", json={"prompt": "one"}).status_code == 200
    log.close()  # e.g. the disk went away: decisions go on, lines are dropped and counted
    for _ in range(3):
        assert client.post("/v1/route", json={"prompt": "more"}).status_code == 200
    values = _metrics(client)
    assert values[("tierroute_decision_log_dropped_total", ())] == 3
    assert values[("tierroute_decision_log_torn_total", ())] == 0
    assert len((tmp_path / "d.jsonl").read_text(encoding="utf-8").splitlines()) == 1


def test_a_reload_while_another_runs_is_409(bundles: dict[str, Path]) -> None:
    client = _client(bundle=str(bundles["a"]), authed=True)
    holder = client.app.state.holder
    holder._lock.acquire()  # a reload in progress
    try:
        error = _error(client.post("/admin/reload"), 409)
    finally:
        holder._lock.release()
    assert error["message"] == (f"Another reload is running; retry when it has finished. Still serving bundle {_bundle_id(bundles['a'])}.")
    assert client.post("/admin/reload").status_code == 200


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_manifest_that_is_a_fifo_is_refused_without_hanging_the_reload(bundles: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "fifo-bundle"
    shutil.copytree(bundles["b"], target)
    (target / "manifest.json").unlink()
    os.mkfifo(target / "manifest.json")  # nobody writes: reading it would block for ever
    client = _client(bundle=str(bundles["a"]), authed=True)
    error = _error(client.post("/admin/reload", json={"bundle": str(target)}), 422)
    assert error["fallback"] == "bundle_unreadable"
    assert "manifest.json' is a FIFO (named pipe), not a regular file" in error["message"]
    assert client.post("/admin/reload").status_code == 200  # the lock was released


def test_a_manifest_nested_100k_deep_is_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    target = tmp_path / "deep-bundle"
    shutil.copytree(bundles["b"], target)
    (target / "manifest.json").write_text('{"kind": ' + "[" * 100_000 + "]" * 100_000 + "}", encoding="utf-8")
    with pytest.raises(Exception, match=r"manifest\.json' nests arrays/objects more than 64 levels deep") as caught:
        Router.load(target, strict=True)
    assert getattr(caught.value, "code", None) == "bundle_unreadable"
    client = _client(bundle=str(bundles["a"]), authed=True)
    assert _error(client.post("/admin/reload", json={"bundle": str(target)}), 422)["fallback"] == "bundle_unreadable"


@pytest.mark.parametrize(
    ("flag", "value", "name"),
    [
        ("--request-timeout", "0", "request_timeout_s"),
        ("--keep-alive", "-1", "keep_alive_s"),
        ("--max-connections", "0", "max_connections"),
        ("--max-json-depth", "1", "max_json_depth"),
    ],
)
def test_serve_checks_its_limits(capsys: pytest.CaptureFixture[str], flag: str, value: str, name: str) -> None:
    assert main(["serve", flag, value, "--port", "1"]) == 1
    assert capsys.readouterr().err.startswith(f"error: The '{name}' parameter of ServiceConfig must be ")


# -- issue 13: connection limits, on a real loopback server ----------------------------------------


class _Loopback:
    """create_app(...) under uvicorn with the service's limits (tierroute.serving.server), in a thread."""

    def __init__(self, **service: object) -> None:
        import threading

        import uvicorn

        from tierroute.serving.server import uvicorn_config

        self.app = create_app(ServiceConfig(**service), router=Router.load(None))  # type: ignore[arg-type]
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn_config(self.app, "127.0.0.1", self.port))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)
        self.thread.start()
        for _ in range(600):
            if self.server.started:
                break
            assert self.thread.is_alive(), "uvicorn exited before starting"
            time.sleep(0.025)
        assert self.server.started

    def __enter__(self) -> _Loopback:
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(15)
        self.sock.close()

    def connect(self, data: bytes = b"") -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        if data:
            sock.sendall(data)
        return sock

    def values(self) -> dict[tuple[str, tuple], float]:
        from prometheus_client.parser import text_string_to_metric_families

        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=30).text
        return {
            (s.name, tuple(sorted(s.labels.items()))): s.value for family in text_string_to_metric_families(text) for s in family.samples
        }


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (the socket's timeout bounds it)."""
    data = b""
    with sock:
        while chunk := sock.recv(65536):
            data += chunk
    return data


def _json_body(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), raw
    return json.loads(body)


def test_partial_requests_are_timed_out_and_the_server_keeps_answering() -> None:
    with _Loopback(request_timeout_s=0.5) as served:
        silent = [served.connect() for _ in range(10)]
        heads = [served.connect(b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: app") for _ in range(10)]
        bodies = [served.connect(b'POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{"prompt": ') for _ in range(10)]
        assert httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=30).json() == {"status": "ok"}
        assert all(_read_until_closed(s) == b"" for s in silent)  # closed without a word: nothing was asked
        for sock in heads + bodies:
            raw = _read_until_closed(sock)
            assert raw.startswith(b"HTTP/1.1 408 Request Timeout\r\n"), raw
            assert _json_body(raw)["error"]["message"] == (
                "The request did not arrive whole within 0.5 s (--request-timeout); send the headers and body without pausing."
            )
        values = served.values()
        assert values[("tierroute_connections_refused_total", (("reason", "request_timeout"),))] == 30
        assert values[("tierroute_client_errors_total", (("status", "408"),))] == 30
        decision = httpx.post(f"http://127.0.0.1:{served.port}/v1/route", json={"prompt": "still here"}, timeout=30)
        assert decision.status_code == 200


def test_idle_keep_alive_connections_are_closed() -> None:
    with _Loopback(keep_alive_s=0.2) as served:
        sock = served.connect(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        raw = _read_until_closed(sock)  # the answer, then the close once idle
        assert raw.startswith(b"HTTP/1.1 200 OK\r\n") and raw.endswith(b'{"status":"ok"}')


def test_connections_over_the_cap_get_a_json_503() -> None:
    with _Loopback(max_connections=4, request_timeout_s=30) as served:
        idle = [served.connect() for _ in range(4)]
        over = served.connect(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        raw = _read_until_closed(over)
        assert raw.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and b"retry-after: 1" in raw.lower()
        error = _json_body(raw)["error"]
        assert error["message"] == (
            "The service has 4 connections open, its limit (--max-connections); retry in a moment, or raise the limit."
        )
        # far over the cap (4 + 16): answered at once, without waiting for a request
        more = [served.connect() for _ in range(20)]
        raw = _read_until_closed(more[-1])
        assert raw.startswith(b"HTTP/1.1 503 Service Unavailable\r\n") and _json_body(raw)["error"]["status"] == 503
        for sock in idle + more:
            sock.close()
        for _ in range(200):  # the server notices the closes as it reads them
            try:
                if httpx.get(f"http://127.0.0.1:{served.port}/healthz", timeout=30).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        values = served.values()
        assert values[("tierroute_server_errors_total", (("status", "503"),))] >= 2
        assert values[("tierroute_connections_refused_total", (("reason", "over_capacity"),))] >= 2


@pytest.mark.parametrize("request_bytes", [b"NOT HTTP AT ALL\r\n\r\n", b"GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: " + b"y" * 4096])
def test_malformed_http_gets_a_json_400(request_bytes: bytes) -> None:
    with _Loopback(max_header_bytes=2048) as served:  # a head still incomplete past 2,048 bytes is refused
        raw = _read_until_closed(served.connect(request_bytes))
        assert raw.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert _json_body(raw)["error"]["message"].startswith("The request is not valid HTTP/1.1 (")
        assert served.values()[("tierroute_connections_refused_total", (("reason", "malformed_http"),))] == 1


def test_the_connection_cap_is_fitted_to_the_open_file_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    resource = pytest.importorskip("resource")
    from tierroute.errors import ConfigError
    from tierroute.serving.server import fit_file_limit

    limits = {"soft": 1024, "hard": 1024}

    def setrlimit(kind: int, values: tuple[int, int]) -> None:
        if values[0] > limits["hard"]:
            raise ValueError("not allowed to raise the maximum limit")
        limits["soft"] = values[0]

    monkeypatch.setattr(resource, "getrlimit", lambda kind: (limits["soft"], limits["hard"]))
    monkeypatch.setattr(resource, "setrlimit", setrlimit)
    assert fit_file_limit(500, 1024) == (500, None)  # 500 + 62 + 128 fit in 1,024
    with pytest.raises(
        ConfigError,
        match=r"^--max-connections 2,000 needs about 2,378 open files; this process may open "
        r"1,024 \(ulimit -n, hard limit 1024\)\. Raise the limit, or pass "
        r"--max-connections 796 or less\.$",
    ):
        fit_file_limit(2000, 1024)
    assert fit_file_limit(None, 1024) == (
        796,
        "warning: the open-file limit (1,024, ulimit -n) fits 796 connections, "
        "fewer than the default 1,024; serving with --max-connections 796. "
        "Raise ulimit -n for more.",
    )
    limits["hard"] = 65536  # the soft limit is raised as far as needed when the hard one allows
    assert fit_file_limit(None, 1024) == (1024, None) and limits["soft"] == 1024 + 128 + 128

"""The serving Router: learned decisions from a bundle, every fallback reason (each fault injected),
malformed requests, the input forms, batch = one by one, the tree's answer = HeuristicPolicy's,
threads, what importing it pulls in, and loading the bundle from the MLflow registry.

(Named test_serving_router.py, not test_router.py: tests/models/test_router.py exists and the suite
has no __init__.py files, so two test_router modules would collide at collection.)"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tierroute.errors import ConfigError, RequestError
from tierroute.models.catalogue import builtin_catalogue
from tierroute.models.learned import LearnedConfig
from tierroute.request import Request
from tierroute.serving import HeuristicPolicy
from tierroute.serving.bundle import BundleError
from tierroute.serving.decision import Decision
from tierroute.serving.router import FALLBACK_REASONS, Router, RouterConfig

NO_DEADLINE = RouterConfig(deadline_ms=None)  # decisions must not depend on how busy the machine is

# one request per tier of the article's tree, plus a few more shapes
REQUESTS: list[dict[str, Any]] = [
    {"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}},
    {"prompt": "Summarize this ticket."},
    {"prompt": "Step by step, analyze and compare.", "latency_sla_ms": 150},
    {"prompt": "Classify: my card was charged twice.", "output_schema": ["billing", "technical"], "latency_sla_ms": 900},
    {"prompt": "Write a Python function that parses ISO dates and explain why it is correct. " * 20},
    {"prompt": ""},
]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A tiny pooled router (no encoder) and one with a static encoder (random table over the
    training prompts' BPE ids), both exported; plus the synthetic test requests."""
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    import pandas as pd

    from tierroute.features.static import StaticEncoder
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(300, seed=5))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    train, test = data.subset(np.arange(200)), data.subset(np.arange(200, 300))
    params = RouterParams(n_estimators=30, n_folds=2, early_stopping_rounds=10, n_threads=1)
    root = tmp_path_factory.mktemp("router")
    plain = LearnedRouter(LearnedConfig(encoder="none", router=params)).fit(train, builtin_catalogue("article"))
    ids = np.asarray(StaticEncoder.vocabulary([r.prompt for r in train.requests]), dtype=np.int64)
    encoder = StaticEncoder(ids, np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32), name="tiny")
    static = LearnedRouter(LearnedConfig(encoder="static", router=params), encoder=encoder).fit(train, builtin_catalogue("article"))
    return {
        "router": plain,
        "bundle": export_bundle(plain, root / "plain"),
        "static_router": static,
        "static": export_bundle(static, root / "static"),
        "test": list(test.requests),
    }


@pytest.fixture(scope="module")
def router(fitted: dict[str, Any]) -> Router:
    return Router.load(fitted["bundle"], NO_DEADLINE, strict=True)


@pytest.fixture(scope="module")
def policy() -> HeuristicPolicy:
    return HeuristicPolicy(catalogue=builtin_catalogue("article"))


def with_bundle(router: Router, config: RouterConfig = NO_DEADLINE, **changes: Any) -> Router:
    """A Router on a copy of ``router``'s bundle with some parts replaced (a fault injected)."""
    assert router.bundle is not None
    return Router(dataclasses.replace(router.bundle, **changes), config)


def assert_fallback(
    decision: Decision, code: str, request: Any, policy: HeuristicPolicy, bundle_id: str | None, detail: str | None = None
) -> None:
    """A heuristic decision for ``code``: the reason starts with the code (and its detail), and the
    tier and model are HeuristicPolicy's for the same request."""
    assert code in FALLBACK_REASONS
    assert decision.source == "heuristic" and decision.fallback == code
    assert decision.reason.startswith(f"{code} (" if detail is not None else f"{code}; "), decision.reason
    if detail is not None:
        assert decision.reason.startswith(f"{code} ({detail}"), decision.reason
    assert decision.probabilities == {} and decision.bundle_id == bundle_id
    expected = policy.route(request)
    assert (decision.tier, decision.model, decision.node) == (expected.tier, expected.model, expected.node)
    assert decision.reason.endswith("; " + expected.reason)
    assert decision.expected_cost_usd == pytest.approx(expected.expected_cost_usd)


# -- learned decisions -----------------------------------------------------------------------------


def test_learned_decisions(router: Router, fitted: dict[str, Any]) -> None:
    manifest = json.loads((fitted["bundle"] / "manifest.json").read_text(encoding="utf-8"))
    assert router.learned and router.bundle_id == manifest["bundle_id"] and router.unavailable is None
    about = router.describe()
    assert about["learned"] is True and about["bundle_id"] == manifest["bundle_id"] and about["catalogue"] == "article"
    assert about["candidates"] == manifest["candidates"] and about["feature_spec"] == manifest["feature_spec_fingerprint"]
    for request in REQUESTS:
        d = router.route(request)
        assert d.source == "learned" and d.fallback is None and d.bundle_id == manifest["bundle_id"]
        assert list(d.probabilities) == manifest["candidates"] and all(0 <= p <= 1 for p in d.probabilities.values())
        assert d.model in manifest["candidates"] and d.tier == builtin_catalogue("article").tier_of(d.model)
        assert d.reason.startswith(f"lambda policy (knob {manifest['policy']['value']:.6g}): P(correct)=")
        assert d.expected_cost_usd is not None and d.expected_cost_usd >= 0 and d.elapsed_ms > 0
        assert set(d.signals) == {"token_count", "depth", "is_structured", "latency_sensitive"}
    assert router.route_batch([]) == []


def test_the_default_deadline_serves_learned_decisions(fitted: dict[str, Any]) -> None:
    default = Router.load(fitted["static"])  # 50 ms a request: generous for a tiny model
    assert default.config.deadline_ms == 50.0
    default.route(REQUESTS[0])  # onnxruntime's first run allocates; the deadline is about steady state
    assert default.route(REQUESTS[1]).source == "learned"


# -- no bundle -------------------------------------------------------------------------------------


def test_no_bundle_decides_with_the_tree(policy: HeuristicPolicy, tmp_path: Path) -> None:
    for router in (Router.load(None), Router.load(tmp_path / "nowhere")):
        assert not router.learned and router.bundle_id is None and router.unavailable.code == "no_bundle"
        about = router.describe()
        assert about["learned"] is False and about["fallback"] == "no_bundle" and about["catalogue"] == "article"
        for request in REQUESTS:
            assert_fallback(router.route(request), "no_bundle", request, policy, None)
    assert str(Router.load(tmp_path / "nowhere").unavailable).startswith(f"No router bundle at {str(tmp_path / 'nowhere')!r}")
    assert str(Router.load(None).unavailable) == "No bundle was given; every decision comes from the heuristic tree."


def test_a_damaged_bundle_decides_with_the_tree(fitted: dict[str, Any], policy: HeuristicPolicy, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(fitted["bundle"], tmp_path / "b"))
    data = bytearray((broken / "model.onnx").read_bytes())
    data[-10] ^= 0xFF
    (broken / "model.onnx").write_bytes(bytes(data))
    router = Router.load(broken, NO_DEADLINE)
    assert not router.learned and router.unavailable.code == "checksum_mismatch"
    assert router.describe()["detail"].startswith("'model.onnx' in bundle ")
    assert_fallback(router.route(REQUESTS[0]), "checksum_mismatch", REQUESTS[0], policy, None)
    # without checksum verification the flipped byte is not looked for: onnxruntime loads it or refuses it
    unverified = Router.load(broken, RouterConfig(verify_checksums=False))
    assert unverified.unavailable is None or unverified.unavailable.code == "onnx_error"


def test_strict_loading_raises(fitted: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"^No bundle was given\. Pass a bundle folder or a models:/ URI\.$") as info:
        Router.load(None, strict=True)
    assert info.value.code == "no_bundle"
    with pytest.raises(BundleError, match=r"^No router bundle at '.*nowhere' \(nothing there\)\.") as info:
        Router.load(tmp_path / "nowhere", strict=True)
    assert info.value.code == "no_bundle"
    broken = Path(shutil.copytree(fitted["bundle"], tmp_path / "b"))
    (broken / "manifest.json").write_text("{", encoding="utf-8")
    with pytest.raises(BundleError, match=r"^The manifest\.json of '.*' cannot be read") as info:
        Router.load(broken, strict=True)
    assert info.value.code == "bundle_unreadable"


# -- each runtime fault --------------------------------------------------------------------------


class FailingEncoder:
    id, dims, tokenizer = "failing:8", 8, "not-a-tokenizer"

    def fail(self, *args: Any) -> Any:
        raise RuntimeError("embedding exploded")

    encode = encode_one = encode_ids = ids = fail


class FakeSession:
    """Stands in for an onnxruntime session: raises, or answers with a fixed value."""

    def __init__(self, value: float | None) -> None:
        self.value = value

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray], run_options: object = None) -> list[np.ndarray]:
        if self.value is None:
            raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : bad input")
        return [np.full((len(feeds["input"]), 2), self.value, dtype=np.float32)]


def test_tokenizer_error(router: Router, policy: HeuristicPolicy, monkeypatch: pytest.MonkeyPatch) -> None:
    from tierroute.features.signals import SignalExtractor

    def broken(self, request, token_count=None):  # noqa: ANN001, ANN202
        raise UnicodeEncodeError("utf-8", "x", 0, 1, "tokenizer exploded")

    monkeypatch.setattr(SignalExtractor, "signals", broken)  # the tree measures with tree_signals, not this
    for request in REQUESTS[:3]:
        assert_fallback(router.route(request), "tokenizer_error", request, policy, router.bundle_id, "UnicodeEncodeError: ")


def test_embedding_error(router: Router, policy: HeuristicPolicy) -> None:
    failing = with_bundle(router, encoder=FailingEncoder())
    for request in REQUESTS[:3]:
        assert_fallback(failing.route(request), "embedding_error", request, policy, router.bundle_id, "RuntimeError: embedding exploded")


def test_onnx_error(router: Router, policy: HeuristicPolicy) -> None:
    failing = with_bundle(router, sessions=(FakeSession(None),))
    for request in REQUESTS[:3]:
        assert_fallback(failing.route(request), "onnx_error", request, policy, router.bundle_id, "RuntimeError: [ONNXRuntimeError]")


def test_non_finite_output(router: Router, policy: HeuristicPolicy) -> None:
    nan = with_bundle(router, sessions=(FakeSession(float("nan")),))
    for request in REQUESTS[:3]:
        assert_fallback(
            nan.route(request), "non_finite_output", request, policy, router.bundle_id, "the model returned a non-finite probability"
        )
    # a finite constant is served: the fake is wired like the real session
    assert with_bundle(router, sessions=(FakeSession(0.5),)).route(REQUESTS[0]).source == "learned"


def test_prompt_too_large(router: Router, policy: HeuristicPolicy) -> None:
    capped = with_bundle(router, RouterConfig(max_prompt_chars=40, deadline_ms=None))
    assert capped.route({"prompt": "x" * 40}).source == "learned"
    request = {"prompt": "Summarize this ticket for me, briefly please."}
    assert_fallback(
        capped.route(request),
        "prompt_too_large",
        request,
        policy,
        router.bundle_id,
        "a prompt of 45 characters exceeds max_prompt_chars=40",
    )


def test_deadline_exceeded(router: Router, policy: HeuristicPolicy) -> None:
    late = with_bundle(router, RouterConfig(deadline_ms=0))
    for request in REQUESTS[:3]:
        d = late.route(request)
        assert_fallback(d, "deadline_exceeded", request, policy, router.bundle_id, "the learned path took ")
        assert " ms, over the 0 ms deadline)" in d.reason


def test_low_confidence(router: Router, policy: HeuristicPolicy) -> None:
    confident = with_bundle(router, RouterConfig(min_confidence=1.0, deadline_ms=None))
    hits = 0
    for request in REQUESTS:
        learned = router.route(request)
        p = learned.probabilities[learned.model]
        d = confident.route(request)
        if p < 1.0:
            hits += 1
            assert_fallback(
                d, "low_confidence", request, policy, router.bundle_id, f"P(correct)={p:.3f} for {learned.model} < min_confidence=1.0"
            )
        else:  # an isotonic map can reach exactly 1
            assert d == dataclasses.replace(learned, elapsed_ms=d.elapsed_ms)
    assert hits >= 3
    zero = with_bundle(router, RouterConfig(min_confidence=0.0, deadline_ms=None))
    assert zero.route(REQUESTS[0]).source == "learned"


def test_internal_error(router: Router, policy: HeuristicPolicy, monkeypatch: pytest.MonkeyPatch) -> None:

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise ValueError("policy exploded")

    import tierroute.models.decision as decision_core

    monkeypatch.setattr(decision_core, "choose", broken)
    monkeypatch.setattr(decision_core, "choose_row", broken)
    for request in REQUESTS[:3]:
        assert_fallback(router.route(request), "internal_error", request, policy, router.bundle_id, "ValueError: policy exploded")


@pytest.mark.parametrize("which", ["none", "bundle", "static"])
def test_a_lone_surrogate_never_raises(which: str, fitted: dict[str, Any]) -> None:
    router = Router.load(None if which == "none" else fitted[which], NO_DEADLINE)
    for request in (
        {"prompt": "\ud800 hi"},
        {"messages": [{"role": "user", "content": "why \udfff?"}]},
        {"prompt": "\ud800 " * 3000, "output_schema": {"a": "string"}, "latency_sla_ms": 10},
    ):
        d = router.route(request)
        assert isinstance(d, Decision) and d.tier in ("tier1", "tier2", "tier3") and d.model
        assert d.source in ("learned", "heuristic")
        json.dumps(d.to_dict())
    assert len(router.route_batch([{"prompt": "\ud800 hi"}, REQUESTS[0]])) == 2


# -- requests --------------------------------------------------------------------------------------


MALFORMED = [
    ({}, r"The request has no 'prompt' \(and no 'messages'\)\. Send the text you would send to the model\.$"),
    ({"prompt": None}, r"The request has no 'prompt' \(and no 'messages'\)\."),
    ({"prompt": 5}, r"'prompt' must be a string; got 5 \(int\)\. Send the prompt text\.$"),
    ({"prompt": b"hi"}, r"'prompt' must be a string; got b'hi' \(bytes\)\."),
    (Request(prompt=5), r"'prompt' must be a string; got 5 \(int\)\."),  # type: ignore[arg-type]
    ({"prompt": "hi", "latency_sla_ms": -1}, r"'latency_sla_ms' must be >= 0; got -1\. Send the p95 latency budget in milliseconds\.$"),
    (Request("hi", latency_sla_ms=-0.5), r"'latency_sla_ms' must be >= 0; got -0\.5\."),
    (
        {"prompt": "hi", "latency_sla_ms": "fast"},
        r"'latency_sla_ms' must be a finite number of milliseconds or null; got 'fast' \(str\)\. "
        r"Send e\.g\. 150, or leave it out when there is no latency budget\.$",
    ),
    ({"prompt": "hi", "latency_sla_ms": True}, r"'latency_sla_ms' must be a finite number of milliseconds or null; got True \(bool\)\."),
    (
        {"prompt": "hi", "latency_sla_ms": float("inf")},
        r"'latency_sla_ms' must be a finite number of milliseconds or null; "
        r"got inf \(float\)\.",
    ),
    ("hi", r"A request must be an object with 'prompt' \(or 'messages'\); got 'hi' \(str\)\. Send \{\"prompt\": "),
    (None, r"A request must be an object with 'prompt' \(or 'messages'\); got None \(NoneType\)\."),
    (
        {"prompt": "hi", "temperature": 0},
        r"Unknown request field\(s\) \['temperature'\]; expected prompt or messages, output_schema, "
        r"latency_sla_ms \(and optional id, task, metadata, objective\)\. Check the spelling\.$",
    ),
    ({"messages": []}, r"'messages' must be a non-empty list of \{'role', 'content'\} objects; got \[\] \(list\)\."),
    ({"messages": "hi"}, r"'messages' must be a non-empty list of \{'role', 'content'\} objects; got 'hi' \(str\)\."),
    (
        {"messages": [{"role": "user"}]},
        r"messages\[0\] must be an object with 'role' and 'content'; got \{'role': 'user'\} \(dict\)\. "
        r"Fix that message or send 'prompt' instead\.$",
    ),
    ({"messages": [{"role": "user", "content": 3}]}, r"messages\[0\]\.content must be a string or a list of text parts; got 3 \(int\)\.$"),
    (
        {"prompt": "hi", "output_schema": "{bad"},
        r"'output_schema' is a string that is not JSON \(Expecting property name enclosed in "
        r"double quotes at char 1\): '\{bad' \(str\)\. "
        r"Send the schema as a JSON object or list\.$",
    ),
]


@pytest.mark.parametrize("learned", [True, False], ids=["bundle", "no-bundle"])
@pytest.mark.parametrize("request_,message", MALFORMED)
def test_malformed_requests_raise(request_: Any, message: str, learned: bool, router: Router) -> None:
    served = router if learned else Router.load(None)
    with pytest.raises(RequestError, match="^" + message):
        served.route(request_)
    with pytest.raises(RequestError, match="^" + message):
        served.route_batch([request_])  # a batch of one: no prefix
    with pytest.raises(RequestError, match=r"^request \[2\]: " + message):
        served.route_batch([REQUESTS[0], REQUESTS[1], request_, REQUESTS[2]])


def test_dicts_requests_and_messages_decide_alike(router: Router) -> None:
    def key(d: Decision) -> tuple[Any, ...]:  # one ONNX row each: the very same numbers
        return d.source, d.model, d.tier, dict(d.probabilities), d.signals

    schema = {"order_id": "string", "status": "open | closed"}
    as_request = router.route(Request("Pull the order id and status.", schema, 300))
    assert key(router.route({"prompt": "Pull the order id and status.", "output_schema": schema, "latency_sla_ms": 300})) == key(as_request)
    assert key(
        router.route(
            {
                "prompt": "Pull the order id and status.",
                "output_schema": json.dumps(schema),
                "latency_sla_ms": 300,
                "id": "r1",
                "task": "extract",
                "metadata": {"team": "x"},
            }
        )
    ) == key(as_request)
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Summarize this ticket."}, {"type": "image_url", "image_url": {}}]},
        {"role": "assistant", "content": None},
    ]
    flat = router.route(Request("system: Be brief.\nuser: Summarize this ticket.\nassistant: "))
    assert key(router.route({"messages": messages})) == key(flat)
    assert flat.source == "learned"
    # an empty schema is no schema
    assert key(router.route({"prompt": "Summarize.", "output_schema": ""})) == key(router.route({"prompt": "Summarize."}))


def test_a_batch_decides_as_one_by_one(router: Router, fitted: dict[str, Any]) -> None:
    requests = fitted["test"] + REQUESTS
    batch = router.route_batch(requests)
    assert len(batch) == len(requests)
    for request, together in zip(requests, batch):
        alone = router.route(request)
        assert (together.source, together.model, together.tier, together.fallback) == (
            alone.source,
            alone.model,
            alone.tier,
            alone.fallback,
        )
        assert together.probabilities == pytest.approx(alone.probabilities, abs=1e-6)
        assert together.expected_cost_usd == pytest.approx(alone.expected_cost_usd)
    assert {d.source for d in batch} == {"learned"}


@pytest.mark.parametrize("which", ["bundle", "static"])
def test_one_odd_request_does_not_take_the_learned_decisions_of_its_batch(which: str, fitted: dict[str, Any]) -> None:
    router = Router.load(fitted[which], RouterConfig(deadline_ms=None, max_prompt_chars=1000))
    requests = [REQUESTS[0], {"prompt": "\ud800 hi"}, REQUESTS[1], {"prompt": "x" * 1001}, REQUESTS[2]]
    batch = router.route_batch(requests)
    alone = [router.route(r) for r in requests]
    assert [d.source for d in batch] == [d.source for d in alone]
    assert [d.fallback for d in batch] == [d.fallback for d in alone]
    assert [d.model for d in batch] == [d.model for d in alone]
    assert batch[0].source == batch[2].source == batch[4].source == "learned"
    assert batch[1].fallback == "tokenizer_error" and batch[3].fallback == "prompt_too_large"


@pytest.mark.parametrize("name", ["article", "routellm", "routerbench"])
def test_the_trees_answer_is_heuristic_policys(name: str) -> None:
    catalogue = builtin_catalogue(name)
    router, policy = Router.load(None, catalogue=catalogue), HeuristicPolicy(catalogue=catalogue)
    assert router.catalogue is catalogue
    seen = set()
    for request in REQUESTS:
        d, expected = router.route(request), policy.route(request)
        assert (d.tier, d.model, d.node, d.signals) == (expected.tier, expected.model, expected.node, expected.signals)
        assert d.expected_cost_usd == pytest.approx(expected.expected_cost_usd)
        seen.add(d.tier)
    assert seen == {"tier1", "tier2", "tier3"}


def test_router_config_is_checked() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^The 'intra_op_threads' parameter of RouterConfig "
        r"must be an int in the range \[1, inf\)\. Got 0 instead\.$",
    ):
        RouterConfig(intra_op_threads=0)
    with pytest.raises(
        ConfigError,
        match=r"^The 'min_confidence' parameter of RouterConfig "
        r"must be a finite number in the range \[0, 1\]\. Got 1\.5 instead\.$",
    ):
        RouterConfig(min_confidence=1.5)
    with pytest.raises(
        ConfigError,
        match=r"^The 'deadline_ms' parameter of RouterConfig "
        r"must be a finite number in the range \[0, inf\)\. Got -1 instead\.$",
    ):
        RouterConfig(deadline_ms=-1)
    assert RouterConfig().to_dict() == {
        "intra_op_threads": 1,
        "max_prompt_chars": 200_000,
        "deadline_ms": 50.0,
        "min_confidence": None,
        "expected_output_tokens": 256,
        "verify_checksums": True,
        "epsilon": 0.0,
        "seed": None,
        "objective": None,
    }
    with pytest.raises(
        ConfigError,
        match=r"^The 'objective' parameter of RouterConfig must be one of \('match-best', "
        r"'match-heuristic', 'max-accuracy'\) or 'budget=USD_PER_QUERY' \(a number >= 0, "
        r"e\.g\. budget=0\.002\)\. Got 'cheap' \(str\) instead\.$",
    ):
        RouterConfig(objective="cheap")


def test_threads_decide_as_one_thread(fitted: dict[str, Any]) -> None:
    router = Router.load(fitted["static"], NO_DEADLINE, strict=True)
    requests = (fitted["test"] + REQUESTS) * 2
    requests = requests[:200]
    expected = [(d.source, d.model, tuple(d.probabilities.values())) for d in map(router.route, requests)]
    assert {s for s, _, _ in expected} == {"learned"}

    def work(_: int) -> list[tuple[Any, ...]]:
        return [(d.source, d.model, tuple(d.probabilities.values())) for d in map(router.route, requests)]

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(work, range(4)))
    for result in results:
        assert result == expected


# -- what serving imports --------------------------------------------------------------------------


def test_serving_imports_nothing_heavy(fitted: dict[str, Any], tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import json, sys
        import tierroute.serving.router, tierroute.serving.bundle
        from tierroute.serving.router import Router
        out = []
        for path in sys.argv[1:]:
            router = Router.load(path, strict=True)
            out.append(router.route({"prompt": "Summarize this ticket.", "latency_sla_ms": 500}).to_dict())
        heavy = sorted(m for m in ("torch", "lightgbm", "sklearn", "mlflow", "pandas", "sentence_transformers",
                                   "scipy", "onnx", "onnxmltools", "transformers") if m in sys.modules)
        print(json.dumps({"heavy": heavy, "sources": [d["source"] for d in out]}))
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(fitted["bundle"]), str(fitted["static"])],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result == {"heavy": [], "sources": ["learned", "learned"]}


# -- the MLflow registry ---------------------------------------------------------------------------


def test_a_registered_bundle_loads_by_alias(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("mlflow")
    import pandas as pd

    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.train import TrainConfig, run_train

    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    config = TrainConfig(
        synthetic_requests=160,
        encoder="none",
        out_dir=str(tmp_path / "run"),
        tracking_uri=uri,
        cache_dir=str(tmp_path / "cache"),
        learned=LearnedConfig(router=RouterParams(n_estimators=30, n_folds=2, early_stopping_rounds=10, n_threads=1)),
    )
    result = run_train(config)
    import mlflow

    mlflow.set_tracking_uri(uri)
    client = mlflow.MlflowClient()
    (version,) = client.search_model_versions("name='tierroute'")
    assert version.run_id == result.run_id
    client.set_registered_model_alias("tierroute", "champion", version.version)

    import tempfile

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(downloads))
    by_alias = Router.load("models:/tierroute@champion", NO_DEADLINE, strict=True, tracking_uri=uri)
    assert not list(downloads.iterdir())  # loaded into memory; the download is gone
    by_folder = Router.load(result.out_dir / "bundle", NO_DEADLINE, strict=True)
    assert by_alias.learned and by_alias.bundle_id == by_folder.bundle_id
    expected = [(d.source, d.model, dict(d.probabilities)) for d in by_folder.route_batch(REQUESTS)]
    assert [(d.source, d.model, dict(d.probabilities)) for d in by_alias.route_batch(REQUESTS)] == expected
    assert {s for s, _, _ in expected} == {"learned"}
    # the download runs in a child process: mlflow never enters the serving process
    code = (
        "import sys; from tierroute.serving.router import Router, RouterConfig; "
        f"r = Router.load('models:/tierroute@champion', RouterConfig(deadline_ms=None), strict=True, tracking_uri={uri!r}); "
        "print(r.learned, 'mlflow' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path).stdout
    assert out.split() == ["True", "False"]
    # a store that does not exist is refused, and none is created in the working folder
    nowhere = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    refused = Router.load("models:/tierroute@champion", NO_DEADLINE, tracking_uri=nowhere)
    assert refused.unavailable.code == "no_bundle" and "does not exist" in str(refused.unavailable)
    assert not (tmp_path / "nowhere").exists()

    # without a tracking URI or $MLFLOW_TRACKING_URI: the project's default store (./mlruns/mlflow.db
    # here), whatever mlflow's process-wide URI happens to be, and never a stray ./mlflow.db
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    mlflow.set_registry_uri(f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # set_tracking_uri exports it
    monkeypatch.delenv("MLFLOW_REGISTRY_URI", raising=False)
    by_default = Router.load("models:/tierroute@champion", NO_DEADLINE, strict=True)
    assert by_default.bundle_id == by_folder.bundle_id and not (tmp_path / "mlflow.db").exists()

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    missing = Router.load("models:/tierroute@nobody", NO_DEADLINE, tracking_uri=uri)
    assert not missing.learned and missing.unavailable.code == "no_bundle"
    assert str(missing.unavailable).startswith("MLflow could not resolve 'models:/tierroute@nobody' (")

    model = mlflow.pyfunc.load_model("models:/tierroute@champion")
    frame = pd.DataFrame(
        [
            {
                "prompt": r["prompt"],
                "output_schema": None if r.get("output_schema") is None else json.dumps(r["output_schema"]),
                "latency_sla_ms": float(r.get("latency_sla_ms") or "nan"),
            }
            for r in REQUESTS
        ]
    )
    assert list(model.predict(frame)) == [m for _, m, _ in expected]


# -- objectives ------------------------------------------------------------------------------------
def test_the_bundle_carries_the_knob_curve_and_serves_any_objective(router: Router, fitted: dict[str, Any]) -> None:
    trained = fitted["router"]
    manifest = json.loads((fitted["bundle"] / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["objective"]["default"] == "match-best"
    assert manifest["objective"]["curve"] == json.loads(json.dumps(trained.knob_curve_.to_dict()))
    about = router.describe()
    assert about["objective"] == "match-best" and set(about["objectives"]) == {"match-best", "match-heuristic", "max-accuracy"}
    for objective in ("match-best", "match-heuristic", "max-accuracy", "budget=0.001"):
        # serving with an objective decides as the trained router does under the same objective
        expected = trained.decide(fitted["test"][:40], objective=objective)
        per_request = [router.route(r, objective=objective) for r in fitted["test"][:40]]
        configured = with_bundle(router, RouterConfig(deadline_ms=None, objective=objective)).route_batch(fitted["test"][:40])
        assert [d.model for d in per_request] == [trained.candidates_[j] for j in expected]
        assert [d.model for d in configured] == [d.model for d in per_request]
        assert all(d.objective == objective and d.reason.endswith(f"; objective {objective}") for d in per_request)


def test_a_bad_or_unservable_objective_is_a_request_error(router: Router, fitted: dict[str, Any], tmp_path: Path) -> None:
    with pytest.raises(RequestError, match=r"^The request's objective must be one of \('match-best'"):
        router.route(REQUESTS[0], objective="cheapest")
    # a bundle from before objectives (no knob curve): its fixed policy serves; naming an objective is refused
    old = tmp_path / "old"
    shutil.copytree(fitted["bundle"], old)
    manifest = json.loads((old / "manifest.json").read_text(encoding="utf-8"))
    del manifest["objective"]
    from tierroute.models.bundle_format import manifest_digest

    manifest["bundle_id"] = manifest_digest(manifest)
    (old / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    legacy = Router.load(old, NO_DEADLINE, strict=True)
    d = legacy.route(REQUESTS[0])
    assert d.source == "learned" and d.objective is None
    with pytest.raises(RequestError, match=r"^This router was trained without an out-of-fold knob curve"):
        legacy.route(REQUESTS[0], objective="max-accuracy")
    unavailable = Router.load(old, RouterConfig(deadline_ms=None, objective="max-accuracy"))
    assert not unavailable.learned and unavailable.unavailable.code == "bundle_invalid"
    with pytest.raises(BundleError, match=r"^This router was trained without an out-of-fold knob curve"):
        Router.load(old, RouterConfig(objective="max-accuracy"), strict=True)


def test_an_objective_that_is_not_a_string_is_a_request_error_in_a_call_or_a_batch(router: Router) -> None:
    # a list or dict once escaped as TypeError (unhashable) from the batch's objective check
    for value in (["max-accuracy"], {"a": 1}, 0.5, True):
        with pytest.raises(RequestError, match=r"^'objective' must be a string: one of \('match-best'"):
            router.route({**REQUESTS[0], "objective": value})
        with pytest.raises(RequestError, match=r"^'objective' must be a string \(request \[1\]\)"):
            router.route_batch([REQUESTS[0], {**REQUESTS[1], "objective": value}])
        with pytest.raises(RequestError, match=r"^'objective' must be a string \(the call's\)"):
            router.route(REQUESTS[0], objective=value)  # type: ignore[arg-type]


# -- numpy-served families -------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["knn", "lowrank"])
def test_numpy_families_export_and_serve_as_trained(kind: str, tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    import pandas as pd

    from tierroute.models.export import export_bundle
    from tierroute.models.families import family_params
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(260, seed=9))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    train, test = data.subset(np.arange(200)), data.subset(np.arange(200, 260))
    params = family_params(kind, RouterParams(n_folds=2, seed=0))
    trained = LearnedRouter(LearnedConfig(encoder="none", router=params)).fit(train, builtin_catalogue("article"))
    bundle = export_bundle(trained, tmp_path / kind)
    manifest = json.loads((bundle / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["model"]["kind"] == kind and all(f.endswith(".npy") for f in manifest["model"]["files"])
    assert not list(bundle.glob("*.onnx"))
    router = Router.load(bundle, NO_DEADLINE, strict=True)
    decisions = router.route_batch(list(test.requests))
    proba, _ = trained.predict_proba(test.requests)
    assert all(d.source == "learned" for d in decisions)
    assert [d.model for d in decisions] == [trained.candidates_[j] for j in trained.decide(test.requests)]
    np.testing.assert_allclose([list(d.probabilities.values()) for d in decisions], proba, atol=1e-9)
    single = router.route(test.requests[0])
    assert single.model == decisions[0].model and single.probabilities == pytest.approx(decisions[0].probabilities)
    # damaged arrays are refused at load, like a damaged ONNX file
    victim = bundle / manifest["model"]["files"][0]
    victim.write_bytes(b"not an array")
    assert Router.load(bundle, NO_DEADLINE).unavailable.code == "checksum_mismatch"
    with pytest.raises(BundleError, match=rf"^The {kind} model of bundle .* cannot be opened \("):
        Router.load(bundle, RouterConfig(verify_checksums=False), strict=True)

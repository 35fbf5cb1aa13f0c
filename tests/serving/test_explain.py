"""Decision explanations (tierroute.serving.explain): ``Router.route(..., explain=True)`` for every
model family, HTTP ``?explain=1``, ``tierroute route --explain``, a bundle from before the tree
table, fallback decisions (the tree's path only), and an explanation failure that must not cost
the decision."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("lightgbm")
pytest.importorskip("onnxmltools")

from tierroute.cli import main  # noqa: E402
from tierroute.models.catalogue import builtin_catalogue  # noqa: E402
from tierroute.models.contributions import CONTENT_GROUP  # noqa: E402
from tierroute.serving.decision import HeuristicPolicy  # noqa: E402
from tierroute.serving.router import Router, RouterConfig  # noqa: E402

NO_DEADLINE = RouterConfig(deadline_ms=None)  # explanations must not depend on how busy the machine is
PREVIOUS = Path(__file__).resolve().parents[1] / "fixtures" / "previous_release"
REQUESTS: list[dict[str, Any]] = [
    {"prompt": "Pull the order id.", "output_schema": {"order_id": "string"}},
    {"prompt": "Summarize this ticket."},
    {"prompt": "Step by step, analyze and compare.", "latency_sla_ms": 150},
    {"prompt": "Write a Python function that parses ISO dates and explain why it is correct. " * 20},
]


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny bundles of every family: pooled (no encoder), per-candidate with a static encoder, kNN
    and low-rank."""
    import pandas as pd

    from tierroute.features.static import StaticEncoder
    from tierroute.models.export import export_bundle
    from tierroute.models.knn import KNNParams
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.lowrank import LowRankParams
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(240, seed=5))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    train = RoutingData.from_frame(frame)
    root = tmp_path_factory.mktemp("explain")
    lgbm = {"n_estimators": 30, "n_folds": 2, "early_stopping_rounds": 10, "n_threads": 1}
    ids = np.asarray(StaticEncoder.vocabulary([r.prompt for r in train.requests]), dtype=np.int64)
    static = StaticEncoder(ids, np.random.default_rng(0).standard_normal((len(ids), 8)).astype(np.float32), name="tiny")
    configs = {
        "pooled": (LearnedConfig(encoder="none", router=RouterParams(**lgbm)), None),
        "per_candidate": (LearnedConfig(encoder="static", router=RouterParams(kind="per_candidate", **lgbm)), static),
        "knn": (LearnedConfig(encoder="none", router=KNNParams(k=10, n_folds=2)), None),
        "lowrank": (LearnedConfig(encoder="none", router=LowRankParams(rank=4, max_epochs=20, n_folds=2)), None),
    }
    return {
        name: export_bundle(LearnedRouter(config, encoder=encoder).fit(train, builtin_catalogue("article")), root / name)
        for name, (config, encoder) in configs.items()
    }


@pytest.fixture(scope="module")
def pooled(bundles: dict[str, Path]) -> Router:
    return Router.load(bundles["pooled"], NO_DEADLINE, strict=True)


def check_entry(router: Router, decision: Any, entry: dict[str, Any]) -> None:
    """A candidate's contributions add up: bias + listed + other_features = margin (1e-5), and the
    calibration of sigmoid(margin) is the served P(correct)."""
    listed = sum(c["contribution"] for c in entry["contributions"])
    assert abs(entry["bias"] + listed + entry["other_features"] - entry["margin"]) < 1e-5
    assert entry["raw_score"] == pytest.approx(1.0 / (1.0 + math.exp(-entry["margin"])))
    j = router.bundle.candidates.index(entry["model"])
    again = float(router.bundle.calibrations[j].apply(np.array([entry["raw_score"]]))[0])
    assert again == pytest.approx(decision.probabilities[entry["model"]], abs=1e-3) and "note" not in entry
    assert entry["p_correct"] == decision.probabilities[entry["model"]]
    assert len(entry["contributions"]) <= 5
    assert all(not c["feature"].startswith("emb_") for c in entry["contributions"])


@pytest.mark.parametrize("family", ["pooled", "per_candidate", "lowrank"])
def test_learned_decisions_explain_the_chosen_and_the_runner_up(family: str, bundles: dict[str, Path]) -> None:
    router = Router.load(bundles[family], NO_DEADLINE, strict=True)
    for request in REQUESTS:
        plain, decision = router.route(request), router.route(request, explain=True)
        assert plain.explanation is None and "explanation" not in plain.to_dict()
        assert (decision.model, decision.probabilities) == (plain.model, plain.probabilities)  # explaining changes nothing
        e = decision.explanation
        assert decision.source == "learned" and e["source"] == "learned" and e["family"] == family
        assert e["method"] == ("linear" if family == "lowrank" else "saabas")
        chosen, runner_up = e["candidates"]
        assert (chosen["role"], chosen["model"]) == ("chosen", decision.model)
        assert runner_up["role"] == "runner_up" and runner_up["model"] != decision.model
        for entry in (chosen, runner_up):
            check_entry(router, decision, entry)
            assert entry["expected_cost_usd"] >= 0 and isinstance(entry["fits_sla"], bool)
        assert e["policy"]["kind"] == router.policy.kind and e["policy"]["knob"] == router.policy.value
        assert e["policy"]["objective"] == decision.objective and e["policy"]["rule"]
        json.dumps(decision.to_dict(), allow_nan=False)  # strict JSON


def test_the_tree_path_is_the_heuristics_own(pooled: Router) -> None:
    tree = HeuristicPolicy(catalogue=builtin_catalogue("article"))
    for request in REQUESTS:
        path = pooled.route(request, explain=True).explanation["tree"]
        expected = tree.route(request)
        assert (path["node"], path["model"], path["reason"]) == (expected.node, expected.model, expected.reason)
        assert path["path"][-1]["holds"] == (path["node"] != "rule3")  # rule3: the test that sent it past rule2 failed
        assert [s["node"] for s in path["path"]][0] == "rule1"


def test_the_embedding_reads_as_one_prompt_content_group(bundles: dict[str, Path]) -> None:
    router = Router.load(bundles["per_candidate"], NO_DEADLINE, strict=True)
    (groups, _), why_not = router.explainer.get()
    assert why_not is None and CONTENT_GROUP in groups and not any(g.startswith("emb_") for g in groups)
    seen = {c["feature"] for r in REQUESTS for e in router.route(r, explain=True).explanation["candidates"] for c in e["contributions"]}
    assert CONTENT_GROUP in seen  # random 8-dim vectors: the trees split on them


def test_a_batch_explains_each_request_as_route_does(pooled: Router) -> None:
    batch = pooled.route_batch(REQUESTS, explain=True)
    for request, decision in zip(REQUESTS, batch):
        alone = pooled.route(request, explain=True).explanation
        assert decision.explanation["candidates"] == alone["candidates"] and decision.explanation["tree"] == alone["tree"]


def test_knn_says_contributions_are_not_available(bundles: dict[str, Path]) -> None:
    router = Router.load(bundles["knn"], NO_DEADLINE, strict=True)
    e = router.route(REQUESTS[0], explain=True).explanation
    assert e["method"] is None and "not available for the knn family" in e["note"]
    assert [c["role"] for c in e["candidates"]] == ["chosen", "runner_up"]
    assert all("contributions" not in c for c in e["candidates"]) and "tree" in e and "policy" in e


def test_a_bundle_from_before_the_tree_table_says_re_export(tmp_path: Path) -> None:
    shutil.copytree(PREVIOUS / "bundle_static", tmp_path / "old")
    router = Router.load(tmp_path / "old", NO_DEADLINE, strict=True)
    decision = router.route(REQUESTS[0], explain=True)
    e = decision.explanation
    assert decision.source == "learned" and e["method"] is None
    assert "exported by this release" in e["note"] and "re-export" in e["note"].lower()
    assert all("contributions" not in c for c in e["candidates"]) and e["tree"]["path"]


def test_fallback_decisions_carry_only_the_tree_path(bundles: dict[str, Path]) -> None:
    for router, code in (
        (Router.load(None), "no_bundle"),
        (Router.load(bundles["pooled"], RouterConfig(deadline_ms=None, max_prompt_chars=10)), "prompt_too_large"),
    ):
        decision = router.route(REQUESTS[1], explain=True)
        e = decision.explanation
        assert decision.source == "heuristic" and decision.fallback == code
        assert set(e) == {"source", "note", "tree"} and e["source"] == "heuristic" and code in e["note"]
        assert e["tree"]["node"] == decision.node and e["tree"]["model"] == decision.model


def test_an_explanation_failure_never_costs_the_decision(pooled: Router, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(pooled.explainer, "get", broken)
    decision = pooled.route(REQUESTS[0], explain=True)
    assert decision.source == "learned" and "RuntimeError: boom" in decision.explanation["error"]
    assert "tree" in decision.explanation


def test_http_route_explains_with_the_query_flag(pooled: Router) -> None:
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from tierroute.serving.http import ServiceConfig, create_app

    client = TestClient(create_app(ServiceConfig(router=NO_DEADLINE), router=pooled))
    plain = client.post("/v1/route", json={"id": 7, **REQUESTS[0]})
    assert plain.status_code == 200 and "explanation" not in plain.json()
    explained = client.post("/v1/route?explain=1", json={"id": 7, **REQUESTS[0]}).json()
    assert explained["id"] == 7 and explained["model"] == plain.json()["model"]
    assert explained["explanation"]["candidates"][0]["model"] == explained["model"] and explained["explanation"]["tree"]
    bad = client.post("/v1/route?explain=maybe", json=REQUESTS[0])
    assert bad.status_code == 422 and "explain=1" in bad.text
    batch = client.post("/v1/route/batch?explain=1", json={"requests": REQUESTS[:3]}).json()["decisions"]
    assert [d["explanation"] == pooled.route(r, explain=True).explanation for d, r in zip(batch, REQUESTS[:3])] == [True] * 3
    assert "explanation" not in client.post("/v1/route/batch", json={"requests": REQUESTS[:1]}).json()["decisions"][0]
    assert client.post("/v1/route/batch?explain=maybe", json={"requests": REQUESTS[:1]}).status_code == 422


def test_cli_route_explain(bundles: dict[str, Path]) -> None:
    out = io.StringIO()
    args = ["route", "--bundle", str(bundles["pooled"]), "--prompt", "Pull the order id.", "--schema", '{"id": "string"}']
    assert main([*args, "--json", "--explain"], out=out) == 0
    line = json.loads(out.getvalue())
    assert line["explanation"]["candidates"][0]["model"] == line["model"] and line["explanation"]["tree"]["path"]
    out = io.StringIO()
    assert main([*args, "--json"], out=out) == 0 and "explanation" not in json.loads(out.getvalue())
    out = io.StringIO()
    assert main([*args, "--explain"], out=out) == 0
    text = out.getvalue()
    assert "chosen:" in text and "runner_up:" in text and "margin" in text and "tree:" in text and "policy:" in text
    out = io.StringIO()  # the heuristic policy: the tree's path alone
    assert main(["route", "--prompt", "Summarize this ticket.", "--json", "--explain"], out=out) == 0
    e = json.loads(out.getvalue())["explanation"]
    assert e["source"] == "heuristic" and e["tree"]["node"] == "rule2"

"""What the previous release wrote keeps loading and deciding the same (issue 12: nothing breaks for
existing users): its pickled routers (``router.pkl`` through ``load_router``), its RouterBundles
(``Router.load(strict=True)``) and its MLflow pyfunc model (``RouterPyfunc`` by import path).

The fixtures, and the decisions that release made on a fixed set of requests, are in
tests/fixtures/previous_release/ (README.md there says which commit wrote them, and how). Each is
copied to tmp_path before it is loaded: tests never write into the repository.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path
from typing import Any

import pytest

from tierroute.request import parse_request

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "previous_release"
NAMES = ("none", "static")  # encoder="none" and a small distilled static encoder
TOLERANCE = 1e-6


def recorded(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"decisions_{name}.json").read_text(encoding="utf-8"))


def copied(folder: str, tmp_path: Path) -> Path:
    target = tmp_path / folder
    shutil.copytree(FIXTURES / folder, target)
    return target


def assert_close(actual: list[list[float]] | list[float], expected: list[list[float]] | list[float], what: str) -> None:
    import numpy as np

    a, e = np.asarray(actual, dtype=float), np.asarray(expected, dtype=float)
    assert a.shape == e.shape, f"{what}: shape {a.shape}, recorded {e.shape}"
    worst = float(np.max(np.abs(a - e))) if a.size else 0.0
    assert worst <= TOLERANCE, f"{what}: differs from the previous release's by up to {worst:.3g}"


@pytest.mark.parametrize("name", NAMES)
def test_previous_release_bundle_loads_and_decides_the_same(name: str, tmp_path: Path) -> None:
    from tierroute.serving.router import Router, RouterConfig

    record = recorded(name)
    # decisions must not depend on how busy the machine is: no deadline fallback
    router = Router.load(copied(f"bundle_{name}", tmp_path), RouterConfig(deadline_ms=None), strict=True)
    assert router.learned
    requests = record["requests"]
    for how, decisions in (("route", [router.route(r) for r in requests]), ("route_batch", router.route_batch(requests))):
        assert len(decisions) == len(record["route"])
        for i, (got, want) in enumerate(zip(decisions, record["route"])):
            where = f"{how} of request {i} ({requests[i]['prompt'][:40]!r})"
            assert got.source == want["source"] == "learned", f"{where}: source {got.source!r} (fallback {got.fallback!r}: {got.reason})"
            assert (got.model, got.tier, got.greedy_model) == (want["model"], want["tier"], want["greedy_model"]), where
            assert sorted(got.probabilities) == sorted(want["probabilities"]), where
            assert_close(
                [got.probabilities[c] for c in sorted(want["probabilities"])],
                [want["probabilities"][c] for c in sorted(want["probabilities"])],
                where,
            )
            assert math.isclose(got.expected_cost_usd, want["expected_cost_usd"], rel_tol=TOLERANCE, abs_tol=1e-12), where


@pytest.mark.parametrize("name", NAMES)
def test_previous_release_bundle_keeps_its_id(name: str, tmp_path: Path) -> None:
    """Decision logs and metrics name the bundle that decided; an old bundle keeps its id."""
    from tierroute.serving.router import Router, RouterConfig

    router = Router.load(copied(f"bundle_{name}", tmp_path), RouterConfig(deadline_ms=None), strict=True)
    assert router.bundle_id == recorded(name)["bundle_id"]


@pytest.mark.parametrize("name", NAMES)
def test_previous_release_pickled_router_loads_and_decides_the_same(name: str, tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    pytest.importorskip("sklearn")
    from tierroute.pipelines.training.tracking import load_router

    record = recorded(name)
    want = record["pickled"]
    router = load_router(copied(f"model_{name}", tmp_path))
    assert list(router.candidates_) == want["candidates"]
    requests = [parse_request(r) for r in record["requests"]]
    proba, cost = router.predict_proba(requests)
    assert_close(proba.tolist(), want["predict_proba"], "predict_proba's P(correct)")
    assert_close(cost.tolist(), want["expected_cost"], "predict_proba's expected cost")
    picks = [int(j) for j in router.decide(requests)]
    assert picks == want["decide"]
    assert [router.candidates_[j] for j in picks] == want["models"]


def test_previous_release_mlflow_model_loads_and_predicts_the_same(tmp_path: Path) -> None:
    pytest.importorskip("mlflow")
    pd = pytest.importorskip("pandas")
    import mlflow.pyfunc

    from tierroute.pipelines.training.tracking import RouterPyfunc

    record = recorded("static")
    model = mlflow.pyfunc.load_model(str(copied(record["mlflow"]["folder"], tmp_path)))
    assert isinstance(model.unwrap_python_model(), RouterPyfunc)
    # the pyfunc signature's columns: the schema as a JSON string, the SLA a float (NaN: none)
    frame = pd.DataFrame(
        [
            {
                "prompt": r["prompt"],
                "output_schema": r.get("output_schema")
                if r.get("output_schema") is None or isinstance(r["output_schema"], str)
                else json.dumps(r["output_schema"]),
                "latency_sla_ms": float("nan") if r.get("latency_sla_ms") is None else float(r["latency_sla_ms"]),
            }
            for r in record["requests"]
        ]
    )
    predicted = [str(m) for m in model.predict(frame)]
    assert predicted == record["mlflow"]["predict"]
    assert predicted == [d["model"] for d in record["route"]]  # the bundle's decisions, served through MLflow


@pytest.mark.parametrize("name", NAMES)
def test_previous_release_pickled_router_reexports_to_a_bundle_with_the_same_decisions(name: str, tmp_path: Path) -> None:
    """``tierroute export`` of an old trained router: today's bundle of it decides as the old bundle did."""
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    from tierroute.models.export import export_bundle
    from tierroute.pipelines.training.tracking import load_router
    from tierroute.serving.router import Router, RouterConfig

    record = recorded(name)
    bundle = export_bundle(load_router(copied(f"model_{name}", tmp_path)), tmp_path / "bundle")
    router = Router.load(bundle, RouterConfig(deadline_ms=None), strict=True)
    decisions = router.route_batch(record["requests"])
    assert [d.source for d in decisions] == [d["source"] for d in record["route"]]
    assert [d.model for d in decisions] == [d["model"] for d in record["route"]]
    for i, (got, want) in enumerate(zip(decisions, record["route"])):
        assert_close(
            [got.probabilities[c] for c in sorted(want["probabilities"])],
            [want["probabilities"][c] for c in sorted(want["probabilities"])],
            f"request {i}",
        )

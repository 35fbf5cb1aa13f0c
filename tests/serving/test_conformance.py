"""Conformance vectors: written for a bundle, checked against the Python runtime, a corrupted vector
reported (library and CLI), a file from another bundle refused, old bundles without one still load,
and the Node runtime's copy of the article catalogue in step with the built-in one."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tierroute.cli import main
from tierroute.errors import ConfigError
from tierroute.serving.conformance import CONFORMANCE_FILE, check_conformance, compare_record, read_conformance, write_conformance
from tierroute.serving.conformance_requests import MALFORMED_REQUESTS, conformance_requests

ROOT = Path(__file__).resolve().parents[2]


def make_bundles(root: Path) -> dict[str, Path]:
    """``pooled`` with a static encoder (random 8-wide table; lambda policy, isotonic calibration),
    ``per_candidate`` without one (threshold policy, sigmoid calibration), ``share`` (pooled, share
    policy), ``lowrank`` and ``knn`` (numpy-served; knn with the static encoder), each exported with
    its conformance file (as `tierroute train` and `tierroute export` write them)."""
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    import pandas as pd

    from tierroute.features.static import StaticEncoder
    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    frame = pd.DataFrame(list(generate(SyntheticConfig(200, seed=7))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    ids = np.asarray(StaticEncoder.vocabulary([r.prompt for r in data.requests]), dtype=np.int64)
    encoder = StaticEncoder(ids, np.random.default_rng(1).standard_normal((len(ids), 8)).astype(np.float32), name="tiny")
    out = {}
    for name, kind, enc, policy, calibration in (
        ("pooled", "pooled", encoder, "lambda", "isotonic"),
        ("per_candidate", "per_candidate", None, "threshold", "sigmoid"),
        ("share", "pooled", None, "share", "isotonic"),
    ):
        params = RouterParams(kind=kind, n_estimators=20, n_folds=2, early_stopping_rounds=10, n_threads=1, calibration=calibration)
        config = LearnedConfig(encoder="static" if enc is not None else "none", router=params, policy=policy)
        router = LearnedRouter(config, encoder=enc).fit(data, builtin_catalogue("article"))
        out[name] = export_bundle(router, root / name)
        write_conformance(out[name])
    from tierroute.models.families import family_params

    for kind, enc in (("lowrank", None), ("knn", encoder)):
        config = LearnedConfig(encoder="static" if enc is not None else "none", router=family_params(kind, RouterParams(n_folds=2, seed=0)))
        out[kind] = export_bundle(LearnedRouter(config, encoder=enc).fit(data, builtin_catalogue("article")), root / kind)
        write_conformance(out[kind])
    params = RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=10, n_threads=1)
    anchored = serve_the_anchor(LearnedRouter(LearnedConfig(encoder="none", router=params)).fit(data, builtin_catalogue("article")))
    out["anchored"] = export_bundle(anchored, root / "anchored")
    write_conformance(out["anchored"])
    return out


def serve_the_anchor(router: Any) -> Any:
    """``router`` with its curve's points put under the tree's accuracy, so its match objectives
    (the default among them) take the anchor: the fixed policy sends every request to one candidate."""
    curve = router.knob_curve_
    low = tuple(dataclasses.replace(p, accuracy=curve.heuristic_accuracy - 0.05) for p in curve.points)
    anchor = dataclasses.replace(curve.anchor, accuracy=max(curve.anchor.accuracy, curve.heuristic_accuracy), se_tree=0.0)
    router.knob_curve_ = dataclasses.replace(curve, points=low, anchor=anchor)
    router.objective_point_ = router.knob_curve_.pick(router.config.objective)
    router.policy_ = router.knob_curve_.policy(router.objective_point_)
    assert router.objective_point_.candidate == anchor.candidate and router.policy_.kind == "share"
    return router


@pytest.fixture(scope="module")
def bundles(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_bundles(tmp_path_factory.mktemp("conformance"))


def test_the_requests_cover_the_edges() -> None:
    requests = conformance_requests(0)
    assert requests == conformance_requests(0)  # seeded
    assert len(requests) >= 300
    prompts = [r.get("prompt") for r in requests]
    assert "" in prompts and any(p and "\u3002" in p for p in prompts) and any(p and "\U0001f389" in p for p in prompts)
    assert any("messages" in r for r in requests) and any("objective" in r for r in requests)
    assert requests[-len(MALFORMED_REQUESTS) :][0]["id"] == "bad0"


@pytest.mark.parametrize("kind", ["pooled", "per_candidate", "share", "lowrank", "knn", "anchored"])
def test_vectors_are_written_and_the_python_runtime_passes_them(bundles: dict[str, Path], kind: str) -> None:
    header, records = read_conformance(bundles[kind] / CONFORMANCE_FILE)
    manifest = json.loads((bundles[kind] / "manifest.json").read_text(encoding="utf-8"))
    assert header["bundle_id"] == manifest["bundle_id"] and header["records"] == len(records) >= 300
    assert CONFORMANCE_FILE not in manifest["files"]  # derived data: not in the digest
    learned = [r for r in records if "decision" in r]
    assert all(r["decision"]["source"] == "learned" for r in learned)
    assert max(r["tokens"] for r in learned) > 3000 and min(r["tokens"] for r in learned) == 0
    assert len([r for r in records if "error" in r]) == len(MALFORMED_REQUESTS)
    first = learned[0]
    assert set(first) == {"i", "request", "tokens", "signals", "features", "raw", "probabilities", "expected_cost", "feasible", "decision"}
    assert len(first["features"]) == len(manifest["feature_spec"]["names"])
    report = check_conformance(bundles[kind])
    assert report.ok, report.summary()
    assert report.summary().startswith(f"conformance: {len(records)} records of ")
    assert manifest["schema_version"] == (2 if kind == "anchored" else 1)  # a fixed policy that is the anchor: version 2


def test_a_bundle_serving_its_anchor_sends_every_request_to_one_candidate(bundles: dict[str, Path]) -> None:
    from tierroute.serving.router import Router

    router = Router.load(bundles["anchored"], strict=True)
    manifest = json.loads((bundles["anchored"] / "manifest.json").read_text(encoding="utf-8"))
    j = manifest["objective"]["point"]["candidate"]
    assert manifest["policy"] == {"kind": "share", "value": -2.0, "frontier": j}
    requests = [r for r in conformance_requests(2, n=60, objectives=False)[: -len(MALFORMED_REQUESTS)] if r.get("latency_sla_ms") is None]
    decisions = [router.route(r) for r in requests]
    assert len(decisions) >= 20 and {d.model for d in decisions if d.source == "learned"} == {manifest["candidates"][j]}  # no SLA
    # a named budget takes a point of the curve: the knob is read as the curve's own policy's (lambda)
    assert router.route({"prompt": "Sort these.", "objective": "budget=0"}).reason.startswith("lambda policy (knob ")


def test_a_corrupted_vector_is_detected_and_reported(bundles: dict[str, Path], tmp_path: Path, capsys: Any) -> None:
    bundle = Path(shutil.copytree(bundles["pooled"], tmp_path / "bundle"))
    path = bundle / CONFORMANCE_FILE
    lines = path.read_text(encoding="utf-8").split("\n")
    record = json.loads(lines[4])
    record["tokens"] += 1
    record["decision"]["probabilities"][next(iter(record["decision"]["probabilities"]))] += 0.001
    record["features"][-1] += 0.5  # an embedding column (the static encoder's last)
    lines[4] = json.dumps(record)
    path.write_text("\n".join(lines), encoding="utf-8")
    report = check_conformance(bundle)
    assert not report.ok
    assert [(m["i"], m["field"]) for m in report.mismatches] == [
        (record["i"], "tokens"),
        (record["i"], "features"),
        (record["i"], "decision.probabilities"),
    ]
    assert report.summary().startswith(f"conformance: 3 mismatch(es) in {report.records} records of {path}")
    assert f"  record {record['i']}: tokens: expected {record['tokens']}, got {record['tokens'] - 1}" in report.summary()
    assert main(["conformance", str(bundle)]) == 5
    assert "3 mismatch(es)" in capsys.readouterr().out
    assert main(["conformance", str(bundles["pooled"]), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["ok"] is True


def test_compare_record_reports_an_error_the_runtime_did_not_raise() -> None:
    assert compare_record({"i": 3, "error": "Malformed output_schema: ..."}, {"i": 3, "decision": {"tier": "tier1"}}) == [
        {"i": 3, "field": "error", "expected": "Malformed output_schema: ...", "got": {"tier": "tier1"}}
    ]
    assert compare_record({"i": 3, "error": "a"}, {"i": 3, "error": "b"}) == []  # the wording is each runtime's own


def test_a_file_from_another_bundle_or_none_is_refused(bundles: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"was made from bundle '[0-9a-f]{16}'; .* is '[0-9a-f]{16}'. Regenerate it"):
        check_conformance(bundles["pooled"], bundles["per_candidate"] / CONFORMANCE_FILE)
    bare = Path(shutil.copytree(bundles["per_candidate"], tmp_path / "bare"))
    (bare / CONFORMANCE_FILE).unlink()
    with pytest.raises(ConfigError, match=r"^No conformance file at .*; bundles exported before conformance vectors have none"):
        check_conformance(bare)
    assert main(["conformance", str(bare)]) == 1
    (bare / "junk.jsonl").write_text('{"kind": "other"}\n', encoding="utf-8")
    with pytest.raises(ConfigError, match=r"starts with kind 'other'; expected a 'tierroute.conformance' header line"):
        check_conformance(bare, bare / "junk.jsonl")


def test_a_previous_release_bundle_loads_without_one_and_gets_one_written(tmp_path: Path) -> None:
    from tierroute.serving.router import Router, RouterConfig

    fixture = ROOT / "tests" / "fixtures" / "previous_release" / "bundle_none"
    bundle = Path(shutil.copytree(fixture, tmp_path / "old"))
    assert not (bundle / CONFORMANCE_FILE).exists()
    assert Router.load(bundle, RouterConfig(deadline_ms=None), strict=True).learned
    assert main(["conformance", str(bundle), "--write"]) == 0
    assert check_conformance(bundle).ok
    assert Router.load(bundle, RouterConfig(deadline_ms=None), strict=True).learned  # still verifies: not in the digest


def test_the_node_runtime_article_catalogue_is_the_builtin_one() -> None:
    from tierroute.models.catalogue import builtin_catalogue

    copy = json.loads((ROOT / "serving" / "node" / "lib" / "article-catalogue.json").read_text(encoding="utf-8"))
    assert copy == builtin_catalogue("article").to_dict(), "regenerate serving/node/lib/article-catalogue.json"


def test_tierroute_export_writes_the_vectors(tmp_path: Path, capsys: Any) -> None:
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    import pandas as pd

    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
    from tierroute.pipelines.training.tracking import save_router

    frame = pd.DataFrame(list(generate(SyntheticConfig(120, seed=3))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    params = RouterParams(kind="per_candidate", n_estimators=10, n_folds=2, early_stopping_rounds=5, n_threads=1)
    router = LearnedRouter(LearnedConfig(encoder="none", router=params)).fit(RoutingData.from_frame(frame), builtin_catalogue("article"))
    model = save_router(router, tmp_path / "model")
    assert main(["export", str(model), "--out", str(tmp_path / "bundle")]) == 0
    capsys.readouterr()
    assert (tmp_path / "bundle" / CONFORMANCE_FILE).is_file()
    assert main(["conformance", str(tmp_path / "bundle")]) == 0
    assert capsys.readouterr().out.startswith("conformance: ")

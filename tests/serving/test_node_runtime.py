"""The Node.js runtime (serving/node/) against bundles this test trains: `node --test` runs its
conformance, fallback and formatting tests with $TIERROUTE_NODE_BUNDLES pointing at a pooled bundle
with a static encoder (lambda policy, isotonic calibration), a per-candidate bundle without one
(threshold, sigmoid), a pooled one with the share policy, a low-rank and a kNN one (each with its
conformance.jsonl) and the
Python tree's decisions without a bundle (tree.json).

The conformance vectors' token counts are bpe-openai's; the Node runtime counts with js-tiktoken's
o200k_base, so passing them proves the two tokenizers agree on every conformance prompt.

Skips only when `node` or serving/node/node_modules is absent (`cd serving/node && npm ci
--ignore-scripts` installs them; CI does)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).resolve().parents[2] / "serving" / "node"


def node_or_skip() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed (Node.js 20 runs serving/node's tests)")
    if not (NODE_DIR / "node_modules" / "onnxruntime-node").is_dir() or not (NODE_DIR / "node_modules" / "js-tiktoken").is_dir():
        pytest.skip("serving/node/node_modules is absent: run `cd serving/node && npm ci --ignore-scripts` first")
    return node


def test_node_runtime_passes_conformance_and_falls_back(tmp_path: Path) -> None:
    node = node_or_skip()
    from test_conformance import make_bundles

    from tierroute.serving.conformance_requests import MALFORMED_REQUESTS, conformance_requests
    from tierroute.serving.router import Router

    make_bundles(tmp_path)
    tree = Router.load(None)
    requests = conformance_requests(1, n=120, objectives=False)[: -len(MALFORMED_REQUESTS)]
    expected = [{"request": r, "decision": tree.route(r).to_dict()} for r in requests]
    (tmp_path / "tree.json").write_text(json.dumps(expected), encoding="utf-8")
    files = sorted(str(p.relative_to(NODE_DIR)) for p in (NODE_DIR / "test").glob("*.test.js") if p.name != "minilm.test.js")
    run_node_tests(node, tmp_path, *files)


def run_node_tests(node: str, root: Path, *files: str) -> None:
    env = {**os.environ, "TIERROUTE_NODE_BUNDLES": str(root), "TIERROUTE_NODE_SCRATCH": str(root / "node-scratch")}
    done = subprocess.run([node, "--test", *files], cwd=NODE_DIR, env=env, capture_output=True, text=True, timeout=540)
    summary = [line for line in done.stdout.splitlines() if line.startswith(("# pass", "# fail", "# skipped", "not ok"))]
    assert done.returncode == 0, f"node --test failed ({summary}):\n{done.stdout[-6000:]}\n{done.stderr[-2000:]}"
    assert "# fail 0" in summary and "# skipped 0" in summary, summary


def test_node_runtime_serves_a_minilm_bundle(tmp_path: Path) -> None:
    """The MiniLM-ONNX encoder: the BERT WordPiece port (serving/node/lib/wordpiece.js) and the
    graph give the Python runtime's vectors (fewer conformance requests: a prompt costs milliseconds)."""
    node = node_or_skip()
    pytest.importorskip("torch")
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    import pandas as pd

    from tierroute.features.minilm_onnx import export_minilm_onnx
    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.export import export_bundle
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
    from tierroute.serving.conformance import write_conformance

    frame = pd.DataFrame(list(generate(SyntheticConfig(120, seed=7))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    data = RoutingData.from_frame(frame)
    encoder = export_minilm_onnx(tmp_path / "minilm-export")
    params = RouterParams(kind="per_candidate", n_estimators=10, n_folds=2, early_stopping_rounds=5, n_threads=1)
    router = LearnedRouter(LearnedConfig(encoder="minilm", router=params), encoder=encoder).fit(data, builtin_catalogue("article"))
    bundle = export_bundle(router, tmp_path / "bundles" / "minilm")
    write_conformance(bundle, n=40)
    run_node_tests(node, tmp_path / "bundles", "test/minilm.test.js")


def test_node_picks_the_same_points_on_curves_with_paired_errors(tmp_path: Path) -> None:
    """KnobCurve.pick and KnobCurve.policy in both runtimes, on random curves with and without
    margins (se_best, se_tree, margin_z), anchors and recorded policy kinds: the same knob, anchor
    candidate, 'reached' and policy for every objective."""
    node = node_or_skip()
    import numpy as np

    from tierroute.models.objective import CurvePoint, KnobCurve
    from tierroute.models.policy import Policy

    rng = np.random.default_rng(3)
    objectives = ["match-best", "match-heuristic", "max-accuracy", "budget=0.4"]
    served = Policy("threshold", 0.5)
    cases = []
    for i in range(160):  # values on a coarse grid (ties), in no order; a third of the curves without errors
        k = int(rng.integers(2, 9))
        accuracy, cost = np.round(rng.uniform(0.6, 0.95, k), 2), np.round(rng.uniform(0.05, 1.0, k), 1)
        errors = np.round(rng.uniform(0, 0.03, (k, 2)), 3) if i % 3 else np.zeros((k, 2))
        points = tuple(
            CurvePoint(float(9 - j), float(a), float(c), float(e[0]), float(e[1]))
            for j, (a, c, e) in enumerate(zip(accuracy, cost, errors))
        )
        best, tree = float(np.round(rng.uniform(0.7, 0.95), 2)), float(np.round(rng.uniform(0.6, 0.9), 2))
        anchor = None
        if i % 3 and i % 2:  # an anchor at the best single's accuracy, surer or less sure of the tree's
            se = float(np.round(rng.uniform(0, 0.03), 3))
            anchor = CurvePoint(-2.0, best, float(np.round(rng.uniform(0.5, 1.2), 1)), 0.0, se, int(rng.integers(0, 3)))
        kind = [None, "lambda", "share"][i % 3]
        curve = KnobCurve(
            points, best, tree, margin_z=[0.0, 1.645, 3.0][i % 3], anchor=anchor, kind=kind, frontier=1 if kind == "share" else None
        )
        picks = [curve.pick(o) for o in objectives]
        cases.append(
            {"curve": curve.to_dict(), "expected": [[p.knob, p.candidate, p.reached, curve.policy(p, served).to_dict()] for p in picks]}
        )
    for gap in (-1e-15, -1e-11, 0.0):  # an anchor a float step under the tree (taken), one clearly under (not), a tie
        low = (CurvePoint(2.0, 0.80, 0.2, 0.01, 0.02), CurvePoint(1.0, 0.805, 0.5, 0.01, 0.02))
        tied = KnobCurve(low, 0.81, 0.81, margin_z=1.645, anchor=CurvePoint(-2.0, 0.81 + gap, 1.0, 0.0, 0.0, 1), kind="lambda")
        picks = [tied.pick(o) for o in objectives]
        assert (picks[1].candidate is None) == (gap == -1e-11)
        cases.append(
            {"curve": tied.to_dict(), "expected": [[p.knob, p.candidate, p.reached, tied.policy(p, served).to_dict()] for p in picks]}
        )
    assert sum(1 for c in cases for e in c["expected"] if e[1] is not None) >= 20  # anchors are taken, and checked
    (tmp_path / "curves.json").write_text(json.dumps(cases), encoding="utf-8")
    script = (
        "const { KnobCurve } = require('./lib/decision');"
        f"const cases = require({json.dumps(str(tmp_path / 'curves.json'))});"
        f"const objectives = {json.dumps(objectives)};"
        f"const served = {json.dumps(served.to_dict())};"
        "console.log(JSON.stringify(cases.map((c) => objectives.map((o) => {"
        "const curve = new KnobCurve(c.curve, 'curve'); const p = curve.pick(o);"
        "const q = curve.policy(p, served);"
        "return [p.knob, p.candidate, p.reached, { kind: q.kind, value: q.value, frontier: q.frontier }]; }))));"
    )
    done = subprocess.run([node, "-e", script], cwd=NODE_DIR, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout) == [c["expected"] for c in cases]
    assert any(c["curve"].get("margin_z") for c in cases) and any(not c["curve"].get("margin_z") for c in cases)

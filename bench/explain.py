"""Decision explanations: what ``route(..., explain=True)`` costs beside a plain ``route()`` (same
run, calls interleaved so both see the same noise), and how the served Saabas contributions agree
with LightGBM's exact TreeSHAP.

    python bench/explain.py [--run DIR] [--iterations 2000] [--requests 3000] [--encoder static|none]
                            [--parity-data OUTCOMES...]

A pooled router is trained first on the built-in synthetic workload (``tierroute train --kind
pooled``, tracking off) into --run DIR (a temporary folder without it); a --run folder that
already holds a train run (``model/``, ``bundle/``, ``evaluation/``) is reused as it is. Figures, all from this run on this machine:

1. route() single thread, p50 / p99 in microseconds, plain and explain=True, for ~30-, ~400- and
   ~2,000-token prompts, and the explain/plain p50 ratio (target <= 2); the one-off cost of
   building the explainer from ``trees.npy`` (on the first explain=True call).
2. parity on held-out synthetic requests (every candidate's pooled row): the largest |bias + sum
   of contributions - LightGBM raw score|, the largest |sigmoid(margin) - the served ONNX raw
   score|, and Saabas against TreeSHAP by feature group (Pearson correlation, share of rows whose
   largest group is the same, mean |difference|).
3. the global importance table ``tierroute train`` wrote into report.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

from latency import make_prompt  # noqa: E402  (bench/latency.py: prompts of a given token count)

SCHEMA = {"type": "object", "properties": {"order_id": {"type": "string"}}, "required": ["order_id"]}


def train(folder: Path, requests: int, encoder: str) -> Path:
    from tierroute.pipelines.training.train import TrainConfig, run_train

    print(f"training a pooled router ({encoder} encoder) on {requests:,} built-in synthetic requests into {folder} ...", flush=True)
    result = run_train(
        TrainConfig(
            out_dir=str(folder),
            tracking_uri="",
            encoder=encoder,
            kind="pooled",
            synthetic_requests=requests,
            stability_requests=0,
            cache_dir=str(ROOT / "runs" / "cache"),
        )
    )
    return result.out_dir


def timing(router: object, iterations: int) -> None:
    started = time.perf_counter()
    router.route({"prompt": "warm up"}, explain=True)  # type: ignore[attr-defined]  # builds the explainer once
    print(
        f"\n== route(), one thread, {iterations:,} calls each, interleaved (first explain call, building the explainer: "
        f"{(time.perf_counter() - started) * 1e3:.1f} ms)"
    )
    print(f"{'prompt':<22} {'plain p50':>10} {'p99':>8} | {'explain p50':>11} {'p99':>8} | {'p50 ratio':>9}")
    for label, tokens, schema in (("~30 tokens + schema", 30, SCHEMA), ("~400 tokens", 400, None), ("~2,000 tokens", 2000, None)):
        request = {"prompt": make_prompt(tokens), "output_schema": schema}
        for _ in range(50):
            router.route(request), router.route(request, explain=True)  # type: ignore[attr-defined]
        plain, explained = np.empty(iterations), np.empty(iterations)
        for i in range(iterations):
            t0 = time.perf_counter()
            router.route(request)  # type: ignore[attr-defined]
            t1 = time.perf_counter()
            router.route(request, explain=True)  # type: ignore[attr-defined]
            t2 = time.perf_counter()
            plain[i], explained[i] = (t1 - t0) * 1e6, (t2 - t1) * 1e6
        p, e = np.percentile(plain, [50, 99]), np.percentile(explained, [50, 99])
        print(f"{label:<22} {p[0]:>10.0f} {p[1]:>8.0f} | {e[0]:>11.0f} {e[1]:>8.0f} | {e[0] / p[0]:>9.2f}")


def held_out_requests(learned: object, n: int, data: list[str]) -> tuple[list[object], str]:
    """``n`` requests: from the outcome files ``data`` (the first n, e.g. a benchmark's test split),
    else drawn from the synthetic workload with a seed training never used."""
    from tierroute.request import Request

    if data:
        from tierroute.pipelines.data.dataset import RoutingData
        from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

        with tempfile.TemporaryDirectory() as tmp:
            frame = run_ingest(IngestConfig(paths=tuple(data), out_dir=str(Path(tmp) / "ingest")), catalogue=learned.catalogue_).to_pandas()  # type: ignore[attr-defined]
        return list(RoutingData.from_frame(frame).requests[:n]), "held-out requests of " + ", ".join(Path(p).name for p in data)
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    first = learned.candidates_[0]  # type: ignore[attr-defined]
    return (
        [
            Request(r["prompt"], r.get("output_schema"), r.get("latency_sla_ms"))
            for r in generate(SyntheticConfig(n, seed=99))
            if r["model"] == first
        ],
        "held-out synthetic requests",
    )


def parity(run: Path, router: object, n: int, data: list[str]) -> None:
    from tierroute.pipelines.evaluation.importance import saabas_agreement
    from tierroute.pipelines.training.tracking import load_router
    from tierroute.serving.bundle import bundle_rows

    learned = load_router(run / "model")
    requests, source = held_out_requests(learned, n, data)
    figures = saabas_agreement(learned, requests)
    bundle = router.bundle  # type: ignore[attr-defined]
    served = []
    for request in requests:
        decision = router.route(request, explain=True)  # type: ignore[attr-defined]
        X = learned.features([request])
        raw = bundle.sessions[0].run(["probabilities"], {"input": bundle_rows(bundle, X)[0]}, bundle.run_options)[0][:, 1]
        for entry in decision.explanation["candidates"]:
            served.append(abs(entry["raw_score"] - float(raw[bundle.candidates.index(entry["model"])])))
    print(f"\n== parity on {len(requests):,} {source} x {len(learned.candidates_)} candidates ({figures['groups']} feature groups)")
    print(f"max |bias + sum(contributions) - LightGBM raw score|: {figures['max_sum_error']:.3g}")
    print(f"max |bias - TreeSHAP expected value|:                 {figures['max_bias_error']:.3g}")
    print(f"max |sigmoid(margin) - served ONNX raw score|:        {max(served):.3g} (float32 ONNX output)")
    print(
        f"Saabas vs TreeSHAP by group: Pearson {figures['pearson']:.4f}, top-group agreement "
        f"{figures['top_group_agreement']:.3f}, mean |difference| {figures['mean_abs_difference']:.4f} (margin units)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="train into this folder, or reuse the `tierroute train` run already there")
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--requests", type=int, default=3000, help="synthetic training requests when training")
    parser.add_argument("--encoder", default="static", choices=["static", "none"])
    parser.add_argument("--parity-requests", type=int, default=600, help="requests for the parity figures")
    parser.add_argument(
        "--parity-data",
        nargs="*",
        default=[],
        metavar="PATH",
        help="outcome files the parity requests come from (e.g. a benchmark's test split; default: synthetic)",
    )
    args = parser.parse_args()
    from tierroute.serving import Router, RouterConfig

    with tempfile.TemporaryDirectory() as tmp:
        run = (
            args.run
            if args.run is not None and (args.run / "bundle").is_dir()
            else train(args.run or Path(tmp) / "run", args.requests, args.encoder)
        )
        router = Router.load(run / "bundle", RouterConfig(deadline_ms=None), strict=True)
        print(
            f"bundle {router.bundle_id}: {router.bundle.kind}, {len(router.bundle.candidates)} candidates, encoder "
            f"{router.bundle.encoder.id if router.bundle.encoder else 'none'}"
        )
        timing(router, args.iterations)
        parity(run, router, args.parity_requests, args.parity_data)
        metrics = json.loads((run / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
        if metrics.get("importances"):
            from tierroute.pipelines.evaluation.importance import importance_markdown

            print("\n== report.md", *importance_markdown(metrics["importances"]), sep="\n")


if __name__ == "__main__":
    main()

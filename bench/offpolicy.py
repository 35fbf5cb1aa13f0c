"""Learning from production logs (the chosen model's outcome only) against learning from full
benchmarks, and how well the off-policy estimates recover the truth, on the synthetic workload.

    python bench/offpolicy.py [--requests 3000] [--epsilon 0.2] [--seeds 0 1 2] [--encoder none|static]

Per seed, the same N requests are seen three ways: a benchmark (every candidate's outcome), and a
production log of the article's tree with an epsilon-uniform exploration slice (one outcome per
request, with its propensity) used with inverse-propensity weights (`max_ips_weight` 20) or
unweighted (`max_ips_weight` 1). Each trained router is judged on the same benchmarked test
requests (3,000, observed outcomes), and, on the logged version of those same test requests,
by IPS, SNIPS and DR: the estimates are compared with the router's observed accuracy on the
benchmarked version (same requests, same outcomes). Synthetic data: figures show the method's
behaviour, not real models' quality.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def _dump(rows: object, path: Path) -> str:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:  # type: ignore[attr-defined]
            fh.write(json.dumps(row) + "\n")
    return str(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--epsilon", type=float, default=0.2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--encoder", default="none", choices=["none", "static"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from tierroute.models.learned import LearnedConfig
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.synthetic import SyntheticConfig, production_log, write_jsonl
    from tierroute.pipelines.training.train import TrainConfig, run_train

    work = Path(tempfile.mkdtemp(prefix="tierroute-offpolicy-"))
    test_config = SyntheticConfig(3000, seed=999)
    bench_test = str(write_jsonl(test_config, work / "test-bench.jsonl"))
    logged_test = _dump(production_log(test_config, args.epsilon, seed=998), work / "test-logged.jsonl")
    ways = (("benchmark (all outcomes)", "bench", 20.0), ("log + IPS weights", "log", 20.0), ("log, unweighted", "log", 1.0))
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _, _ in ways}
    errors: dict[str, list[float]] = {"ips": [], "snips": [], "dr": []}
    covered = {"ips": 0, "snips": 0, "dr": 0}
    for seed in args.seeds:
        config = SyntheticConfig(args.requests, seed=100 + seed)
        sources = {
            "bench": str(write_jsonl(config, work / f"bench-{seed}.jsonl")),
            "log": _dump(production_log(config, args.epsilon, seed=seed), work / f"log-{seed}.jsonl"),
        }
        for name, source, max_weight in ways:
            common = dict(
                data=(sources[source],),
                encoder=args.encoder,
                tracking_uri="",
                cache_dir=str(work / "cache"),
                learned=LearnedConfig(router=RouterParams(seed=seed), max_ips_weight=max_weight),
                seed=seed,
            )
            observed = run_train(TrainConfig(**common, eval_data=(bench_test,), out_dir=str(work / f"{source}-{max_weight}-{seed}-b")))
            report = observed.report
            results[name].append(
                {
                    "accuracy": report["accuracy"],
                    "cost_per_query": report["cost_per_query"],
                    "aiq": report["aiq"],
                    "heuristic": report["baselines"]["heuristic"]["accuracy"],
                }
            )
            if name.startswith("benchmark"):
                estimated = run_train(TrainConfig(**common, eval_data=(logged_test,), out_dir=str(work / f"{source}-{seed}-l")))
                figures = estimated.report["off_policy"]["learned"]["accuracy"]
                for key in errors:
                    errors[key].append(figures[key]["value"] - report["accuracy"])
                    covered[key] += figures[key]["ci_low"] <= report["accuracy"] <= figures[key]["ci_high"]
        print(f"seed {seed} done", file=sys.stderr)
    print(
        f"{args.requests:,} training requests per seed, seeds {args.seeds}, epsilon {args.epsilon}, encoder {args.encoder}; "
        "judged on 3,000 benchmarked test requests"
    )
    print(f"{'trained on':<26} {'accuracy':>9} {'cost/query':>11} {'AIQ':>7} {'acc vs benchmark-trained':>25}")
    base = np.mean([r["accuracy"] for r in results[ways[0][0]]])
    for name, _, _ in ways:
        rows = results[name]
        acc = np.mean([r["accuracy"] for r in rows])
        print(
            f"{name:<26} {acc:>9.4f} {np.mean([r['cost_per_query'] for r in rows]):>11.5f} "
            f"{np.mean([r['aiq'] for r in rows]):>7.4f} {acc - base:>+25.4f}"
        )
    print(f"heuristic (the logging policy's greedy part) accuracy {np.mean([r['heuristic'] for r in results[ways[0][0]]]):.4f}")
    print(
        "off-policy estimates of the benchmark-trained router's accuracy on the logged test requests, "
        "against its observed accuracy on the same requests benchmarked:"
    )
    for key, values in errors.items():
        print(
            f"  {key:<6} mean error {np.mean(values):+.4f}  mean |error| {np.mean(np.abs(values)):.4f}  "
            f"95% interval covered the truth {covered[key]}/{len(values)}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Retrain time against log size on this machine: `tierroute retrain` end to end (ingest the new
log, join the previous data, train the challenger with the champion's settings, export, track,
gate), with the embedding cache warm.

    python bench/retrain.py [--sizes 10000 100000 1000000] [--encoder static|none]

For each size N (outcome rows; the built-in synthetic workload has 3 candidates, so N/3 requests):
a champion is trained on N rows of week-1 logs and made champion (untimed), the new week-2 log of
N rows is embedded once to warm the cache (untimed), then `run_retrain` on the week-2 log (the
week-1 rows joined as previous data) is timed. Printed beside it: the same run's training-only
time, and seconds per 1,000 rows, so sizes compare as ratios in the same run. Synthetic data:
the times say how the pipeline scales here, not how well it routes.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--encoder", default="static", choices=["static", "none"])
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import datasets
    import mlflow

    from tierroute.pipelines.retrain import RetrainConfig, run_retrain
    from tierroute.pipelines.synthetic import SyntheticConfig, write_jsonl
    from tierroute.pipelines.train import TrainConfig, run_train

    datasets.disable_progress_bars()
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    print(f"{'rows':>10} {'requests':>9} {'retrain s':>10} {'train part s':>13} {'s / 1k rows':>12}  promoted")
    base = None
    for size in args.sizes:
        requests = size // 3
        with tempfile.TemporaryDirectory(prefix="tierroute-retrain-bench-") as tmp:
            root = Path(tmp)
            uri = f"sqlite:///{root / 'mlflow.db'}"
            cache = str(root / "cache")
            week1 = write_jsonl(SyntheticConfig(requests, seed=1), root / "week1.jsonl")
            week2 = write_jsonl(SyntheticConfig(requests, seed=2), root / "week2.jsonl")
            run_train(TrainConfig(data=(str(week1),), encoder=args.encoder, tracking_uri=uri, cache_dir=cache,
                                  out_dir=str(root / "champion")))
            mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("tierroute", "champion", "1")
            if args.encoder == "static":  # warm the embedding cache for week 2 (the bench times retraining, not first sight)
                run_train(TrainConfig(data=(str(week2),), encoder="static", tracking_uri="", cache_dir=cache,
                                      out_dir=str(root / "warm")))
            start = time.perf_counter()
            result = run_retrain(RetrainConfig(logs=(str(week2),), previous=(str(week1),), tracking_uri=uri,
                                               out_dir=str(root / "retrain"), cache_dir=cache), progress=None)
            total = time.perf_counter() - start
            trained = result.gate.figures.get("requests")
            train_seconds = _train_seconds(root / "retrain")
            per_k = total / (size / 1000)
            base = base or per_k
            print(f"{size:>10,} {requests:>9,} {total:>10.1f} {train_seconds:>13.1f} {per_k:>12.3f}  "
                  f"{result.gate.promote} (gate on {trained} held-out requests; {per_k / base:.2f}x the first size's s/1k)",
                  flush=True)
    return 0


def _train_seconds(folder: Path) -> float:
    import json

    metrics = json.loads((folder / "train" / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    return float(metrics.get("train_seconds", float("nan")))


if __name__ == "__main__":
    sys.exit(main())

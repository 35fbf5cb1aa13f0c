"""Retrain time against log size on this machine: `tierroute retrain` end to end (ingest the new
log, join the previous data, train the challenger with the champion's settings, export, track,
gate), with the embedding cache warm.

    python bench/retrain.py [--sizes 10000 100000 1000000] [--encoder static|none]

For each size N (outcome rows; the built-in synthetic workload has 3 candidates, so N/3 requests):
a champion is trained on the first min(N, --champion-rows) rows of the week-1 log and made
champion (untimed: it only supplies the settings and the gate's comparison), the prompts of both
weeks are embedded once with the encoder the challenger will use to warm the cache (untimed), then
`run_retrain` on the week-2 log of N rows (the N week-1 rows joined as previous data) is timed.
Printed beside it: the same run's training-only time, and seconds per 1,000 rows, so sizes compare
as ratios in the same run. Synthetic data: the times say how the pipeline scales here, not how well
it routes.
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
    parser.add_argument("--champion-rows", type=int, default=100_000, help="rows the (untimed) champion trains on, at most")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import logging

    import datasets
    import mlflow

    from tierroute.pipelines.data.synthetic import SyntheticConfig, write_jsonl
    from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain
    from tierroute.pipelines.training.train import TrainConfig, run_train

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
            first = root / "champion.jsonl"
            with week1.open(encoding="utf-8") as src, first.open("w", encoding="utf-8") as dst:
                dst.writelines(line for _, line in zip(range(min(size, args.champion_rows)), src))
            run_train(
                TrainConfig(data=(str(first),), encoder=args.encoder, tracking_uri=uri, cache_dir=cache, out_dir=str(root / "champion"))
            )
            mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("tierroute", "champion", "1")
            if args.encoder == "static":  # warm the cache (the bench times retraining, not first sight of the prompts)
                _warm(week1, week2, Path(cache))
            start = time.perf_counter()
            result = run_retrain(
                RetrainConfig(logs=(str(week2),), previous=(str(week1),), tracking_uri=uri, out_dir=str(root / "retrain"), cache_dir=cache),
                progress=None,
            )
            total = time.perf_counter() - start
            trained = result.gate.figures.get("requests")
            train_seconds = _train_seconds(root / "retrain")
            per_k = total / (size / 1000)
            base = base or per_k
            print(
                f"{size:>10,} {requests:>9,} {total:>10.1f} {train_seconds:>13.1f} {per_k:>12.3f}  "
                f"{result.gate.promote} (gate on {trained} held-out requests; {per_k / base:.2f}x the first size's s/1k)",
                flush=True,
            )
    return 0


def _warm(week1: Path, week2: Path, cache: Path) -> None:
    """Embed both weeks' prompts with the static encoder distilled for their token vocabulary (the
    synthetic workload's vocabulary is the same in any sizeable sample, so the challenger's encoder
    is this one)."""
    import json

    from tierroute.features.embeddings import EmbeddingCache
    from tierroute.pipelines.encoders import make_encoder

    prompts = sorted({json.loads(line)["prompt"] for path in (week1, week2) for line in path.open(encoding="utf-8")})
    encoder = make_encoder("static", prompts, cache)
    EmbeddingCache(cache / "embeddings").encode(encoder, prompts)


def _train_seconds(folder: Path) -> float:
    import json

    metrics = json.loads((folder / "train" / "evaluation" / "metrics.json").read_text(encoding="utf-8"))
    return float(metrics.get("train_seconds", float("nan")))


if __name__ == "__main__":
    sys.exit(main())

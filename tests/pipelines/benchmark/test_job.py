"""``tierroute benchmark`` end to end (tierroute.pipelines.benchmark.job) against OpenAI-compatible stub
servers on loopback: a healthy one (fixed answers per prompt, and a judge), a slow one (past the
timeout on one prompt), a flaky one (429 with Retry-After, then 500, then the answer, per prompt)
and a broken one (malformed JSON, a body without choices, an answer without usage); then in-process
fake upstreams (no sockets) for the budget under timeouts and a judge sharing a candidate's limit."""

from __future__ import annotations

import json
import math
import random
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")

from tierroute.errors import CatalogueError, ConfigError, DataValidationError, OutputDirError  # noqa: E402
from tierroute.models.catalogue import load_catalogue  # noqa: E402
from tierroute.pipelines.benchmark.client import RetryPolicy, parse_completion, parse_retry_after, retry_after_header, retry_delay  # noqa: E402
from tierroute.pipelines.benchmark.job import BenchmarkConfig, plan_pairs, run_benchmark  # noqa: E402
from tierroute.pipelines.data.records import OUTCOME_FIELDS  # noqa: E402

KEY_ENV, KEY = "TIERROUTE_BENCH_KEY", "sk-bench"
TIMEOUT_S = 1.5  # generous: a healthy stub on a loaded 2-core machine can take a few hundred ms; the slow one waits 3 s
PRICES = {"ok-model": (1.0, 2.0), "slow-model": (0.5, 0.5), "flaky-model": (0.2, 0.4), "broken-model": (0.1, 0.1), "judge": (3.0, 3.0)}

# prompt id -> (prompt line fields, the healthy answer)
PROMPTS: dict[str, tuple[dict[str, Any], str]] = {
    "exact": ({"prompt": "Capital of France?", "reference": "Paris", "scorer": "exact", "task": "qa"}, "Paris."),
    "wrong": ({"prompt": "Capital of Germany?", "reference": "Berlin", "scorer": "exact", "task": "qa"}, "Paris"),
    "choice": ({"prompt": "2+2? (A) 3 (B) 4", "reference": "(B)", "scorer": "choice"}, "The answer is (B)."),
    "numeric": ({"prompt": "What is 17*3?", "reference": 51, "scorer": "numeric", "latency_sla_ms": 800}, "17*3 = 51. Answer: 51"),
    "f1": (
        {
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Status of A-1?"}],
            "reference": "order A-1 shipped",
            "scorer": "f1",
            "task": "extract",
        },
        "The order A-1 has shipped",
    ),
    "json": (
        {
            "prompt": "Extract the order as JSON.",
            "reference": {"order_id": "A-1", "status": "shipped"},
            "scorer": "json",
            "output_schema": {"order_id": "string", "status": "shipped | lost"},
        },
        '```json\n{"order_id": "A-1", "status": "shipped"}\n```',
    ),
    "code": (
        {"prompt": "Write add(a, b).", "reference": "assert add(2, 3) == 5", "scorer": "code"},
        "```python\ndef add(a, b):\n    return a + b\n```",
    ),
    "judge": (
        {"prompt": "Explain recursion in one line.", "reference": "a function calling itself", "scorer": "judge"},
        "A function that calls itself.",
    ),
    "slow": ({"prompt": "Say SLOW please.", "reference": "slow", "scorer": "exact"}, "slow"),
    "nousage": ({"prompt": "Say hello nousage.", "reference": "hello", "scorer": "exact"}, "hello"),
    "nochoices": ({"prompt": "Say bye nochoices.", "reference": "bye", "scorer": "exact"}, "bye"),
}
ANSWERS = {(f.get("prompt") or f["messages"][-1]["content"]): answer for f, answer in PROMPTS.values()}


def usage_of(messages: list[dict[str, Any]], answer: str) -> tuple[int, int]:
    return sum(len(m["content"].split()) for m in messages), len(answer.split())


class Stub(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, kind: str) -> None:
        super().__init__(("127.0.0.1", 0), StubHandler)
        self.kind = kind
        self.calls: list[dict[str, Any]] = []
        self.seen: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.release = threading.Event()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1/"

    def prompts_called(self) -> Counter[str]:
        return Counter(c["content"] for c in self.calls)


class StubHandler(BaseHTTPRequestHandler):
    server: Stub

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        try:
            self._post()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
            pass

    def _post(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        messages, model = body["messages"], body["model"]
        content = messages[-1]["content"]
        with self.server.lock:
            self.server.calls.append(
                {"model": model, "content": content, "path": self.path, "body": body, "authorization": self.headers.get("authorization")}
            )
            self.server.seen[content] += 1
            nth = self.server.seen[content]
        answer = "Score: 8" if model == "judge" else ANSWERS.get(content, "I do not know")
        n_in, n_out = usage_of(messages, answer)
        completion = {
            "id": "cmpl",
            "object": "chat.completion",
            "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        }
        kind = self.server.kind
        if kind == "slow" and "SLOW" in content:
            self.server.release.wait(3.0)
        if kind == "flaky" and nth == 1:
            return self._send(429, b'{"error": {"message": "slow down"}}', {"retry-after": "0"})
        if kind == "flaky" and nth == 2:
            return self._send(500, b'{"error": {"message": "upstream exploded"}}')
        if kind == "broken":
            if "nousage" in content:
                del completion["usage"]
            elif "nochoices" in content:
                completion = {"id": "cmpl", "object": "chat.completion"}
            else:
                return self._send(200, b'{"choices": [{"message": ')
        self._send(200, json.dumps(completion).encode())


@pytest.fixture(scope="module")
def stubs(serving: Any) -> Iterator[dict[str, Stub]]:
    with serving({kind: Stub(kind) for kind in ("ok", "slow", "flaky", "broken")}) as servers:
        yield servers


@pytest.fixture(autouse=True)
def _fresh(stubs: dict[str, Stub]) -> None:
    for server in stubs.values():
        server.calls.clear()
        server.seen.clear()


def write_catalogue(path: Path, stubs: dict[str, Stub]) -> Path:
    servers = {"ok-model": "ok", "slow-model": "slow", "flaky-model": "flaky", "broken-model": "broken", "judge": "ok"}
    lines = ["schema_version = 1", 'name = "stubs"', 'tiers = ["tier1", "tier2"]']
    for model, (inp, out) in PRICES.items():
        lines += [
            "",
            "[[candidates]]",
            f'model = "{model}"',
            f'tier = "{"tier2" if model == "judge" else "tier1"}"',
            f"input_per_1k = {inp}",
            f"output_per_1k = {out}",
            f'base_url = "{stubs[servers[model]].base_url}"',
        ]
        lines += [f'api_key_env = "{KEY_ENV}"'] if model == "ok-model" else []
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def write_prompts(path: Path, ids: list[str] | None = None) -> Path:
    rows = [{"id": pid, **PROMPTS[pid][0]} for pid in (ids or list(PROMPTS))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def config(tmp_path: Path, stubs: dict[str, Stub], out: str = "out.jsonl", **kw: Any) -> BenchmarkConfig:
    catalogue = tmp_path / "stubs.toml"
    if not catalogue.exists():
        write_catalogue(catalogue, stubs)
    prompts = tmp_path / "prompts.jsonl"
    if not prompts.exists():
        write_prompts(prompts)
    settings: dict[str, Any] = {
        "catalogue": str(catalogue),
        "models": ("ok-model", "slow-model", "flaky-model", "broken-model"),
        "judge_model": "judge",
        "allow_code_execution": True,
        "timeout_s": TIMEOUT_S,
        "max_retries": 2,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "concurrency": 2,
        "cache": str(tmp_path / "cache.sqlite"),
        "max_tokens": 64,
        **kw,
    }
    return BenchmarkConfig(prompts=str(prompts), out=str(tmp_path / out), **settings)


def read_rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


ENV = {KEY_ENV: KEY}


def worst_case(model: str, pid: str, max_tokens: int = 64) -> float:
    """The worst case the run reserves for one attempt of ``pid`` on ``model`` (see the README)."""
    from tierroute.features.tokens import BpeTokenCounter
    from tierroute.request import messages_to_prompt

    fields = PROMPTS[pid][0]
    messages = fields.get("messages") or [{"role": "user", "content": fields["prompt"]}]
    n_in = math.ceil(1.1 * BpeTokenCounter().count(messages_to_prompt(messages))) + 8 * len(messages)
    inp, out = PRICES[model]
    return (n_in * inp + max_tokens * out) / 1000.0


def test_full_run_then_rerun_from_the_cache(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    result = run_benchmark(config(tmp_path, stubs), env=ENV)
    rows = read_rows(tmp_path / "out.jsonl")
    by = {(r["request_id"], r["model"]): r for r in rows}
    s = result.summary

    # every prompt x model is an outcome, in prompt x catalogue order, canonical fields first
    assert len(rows) == s["outcomes"] == s["pairs_planned"] == 4 * len(PROMPTS)
    assert [r["request_id"] for r in rows[:4]] == ["exact"] * 4 and [r["model"] for r in rows[:4]] == list(PRICES)[:4]
    assert list(rows[0])[: len(OUTCOME_FIELDS)] == list(OUTCOME_FIELDS)
    assert all(r["chosen"] is None and r["propensity"] is None and r["timestamp"] for r in rows)

    # the healthy model: every scorer, costs = usage x prices exactly, the key sent
    ok = {pid: by[(pid, "ok-model")] for pid in PROMPTS}
    assert {pid: r["correct"] for pid, r in ok.items()} == {
        "exact": True,
        "wrong": False,
        "choice": True,
        "numeric": True,
        "f1": True,
        "json": True,
        "code": True,
        "judge": True,
        "slow": True,
        "nousage": True,
        "nochoices": True,
    }
    assert ok["judge"]["quality"] == 0.8 and ok["judge"]["judge_model"] == "judge" and ok["judge"]["threshold"] == 0.7
    assert ok["f1"]["quality"] == pytest.approx(6 / 7) and ok["f1"]["threshold"] == 0.5
    for pid, (fields, answer) in PROMPTS.items():
        messages = fields.get("messages") or [{"role": "user", "content": fields["prompt"]}]
        n_in, n_out = usage_of(messages, answer)
        assert (ok[pid]["input_tokens"], ok[pid]["output_tokens"], ok[pid]["cost_source"]) == (n_in, n_out, "usage")
        assert ok[pid]["cost_usd"] == (n_in * 1.0 + n_out * 2.0) / 1000.0
    assert ok["judge"]["judge_cost_usd"] > 0 and ok["exact"]["judge_cost_usd"] is None
    assert ok["f1"]["prompt"] == "system: Be brief.\nuser: Status of A-1?"
    assert ok["numeric"]["latency_sla_ms"] == 800 and ok["exact"]["task"] == "qa"
    assert {c["authorization"] for c in stubs["ok"].calls if c["model"] == "ok-model"} == {f"Bearer {KEY}"}
    assert {c["path"] for c in stubs["ok"].calls} == {"/v1/chat/completions"}
    assert stubs["ok"].calls[0]["body"]["max_tokens"] == 64 and stubs["ok"].calls[0]["body"]["temperature"] == 0.0

    # the flaky model: 429 (Retry-After 0), then 500, then the answer, for every prompt
    assert all(by[(pid, "flaky-model")]["error"] is None for pid in PROMPTS)
    assert all(by[(pid, "flaky-model")]["attempts"] == 3 for pid in PROMPTS)
    assert stubs["flaky"].prompts_called() == Counter({c: 3 for c in stubs["flaky"].prompts_called()})
    assert len(stubs["flaky"].calls) == 3 * len(PROMPTS)

    # the slow model: past the timeout on one prompt, retried, then an outcome with the error, booked at
    # the worst case reserved for each attempt (the provider may bill a call it answered too late)
    slow = by[("slow", "slow-model")]
    assert (slow["error_kind"], slow["quality"], slow["correct"], slow["attempts"]) == ("timeout", 0.0, False, 3)
    assert slow["cost_source"] == "reserved_worst_case" and slow["cost_usd"] == pytest.approx(3 * worst_case("slow-model", "slow"))
    assert slow["error"] == f"no answer within {TIMEOUT_S:g} s (gave up after 3 attempt(s))"
    assert by[("exact", "slow-model")]["correct"] is True

    # the broken model: malformed JSON and no choices are errors; no usage is an estimated cost
    assert by[("exact", "broken-model")]["error_kind"] == "malformed_json"
    assert by[("exact", "broken-model")]["error"].startswith("HTTP 200 with a body that is not a JSON object: ")
    assert by[("nochoices", "broken-model")]["error_kind"] == "no_choices"
    nousage = by[("nousage", "broken-model")]
    assert (nousage["error_kind"], nousage["correct"], nousage["cost_source"]) == (None, True, "estimated:o200k_base")
    assert nousage["cost_usd"] == pytest.approx((nousage["input_tokens"] + nousage["output_tokens"]) * 0.1 / 1000)

    assert s["failures_by_kind"] == {"malformed_json": len(PROMPTS) - 2, "no_choices": 1, "timeout": 1}
    assert by[("exact", "broken-model")]["cost_usd"] == pytest.approx(worst_case("broken-model", "exact"))  # a 2xx: billed
    assert by[("nochoices", "broken-model")]["cost_usd"] == 0.0 and by[("nochoices", "broken-model")]["cost_source"] == "none"
    assert s["worst_case_booked_usd"] == pytest.approx(sum(r["cost_usd"] for r in rows if r["cost_source"] == "reserved_worst_case"))
    assert s["retries"] == 2 * len(PROMPTS) + 2 and s["cost_estimated"] == 1
    # three models gave the same answer to the judge prompt: the same judge call, paid once
    assert s["cache_hits"] == 2 and s["calls_made"] == 4 * len(PROMPTS) + 1
    judged = ok["judge"]["judge_cost_usd"]  # the same judge call each time
    assert s["judge_cost_usd"] == pytest.approx(3 * judged)
    assert s["stopped_by_budget"] is False and s["spent_usd"] == pytest.approx(s["outcomes_cost_usd"] + (3 - s["cache_hits"]) * judged)
    assert s["thresholds"] == {"choice": 1.0, "code": 1.0, "exact": 1.0, "f1": 0.5, "json": 0.5, "judge": 0.7, "numeric": 1.0}
    assert s["per_model"]["ok-model"]["accuracy"] == pytest.approx(10 / 11)

    # a rerun (new out file, same cache): no call for anything answered; the failures are retried
    for server in stubs.values():
        server.calls.clear()
        server.seen.clear()
    again = run_benchmark(config(tmp_path, stubs, out="again.jsonl"), env=ENV)
    assert stubs["ok"].calls == [] and stubs["flaky"].calls == []
    assert stubs["slow"].prompts_called() == Counter({"Say SLOW please.": 3})
    assert sum(stubs["broken"].prompts_called().values()) == len(PROMPTS) - 1  # all but the cached no-usage answer
    failed = (len(PROMPTS) - 2) + 1 + 1  # malformed, no choices, timeout
    assert again.summary["cache_hits"] == 4 * len(PROMPTS) - failed + 3  # + the 3 judge calls
    rerun = {(r["request_id"], r["model"]): r for r in read_rows(tmp_path / "again.jsonl")}
    assert rerun[("exact", "ok-model")]["cached"] is True and rerun[("exact", "ok-model")]["attempts"] == 0
    for key, row in by.items():  # the same outcomes, at the original cost and latency
        assert {k: rerun[key][k] for k in ("quality", "correct", "cost_usd")} == {k: row[k] for k in ("quality", "correct", "cost_usd")}
        if row["error"] is None:
            assert rerun[key]["latency_ms"] == row["latency_ms"] and rerun[key]["timestamp"] == row["timestamp"]


def test_the_output_ingests_without_quarantine(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    pytest.importorskip("datasets")
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

    run_benchmark(config(tmp_path, stubs, models=("ok-model", "broken-model"), max_retries=0), env=ENV)
    ingested = run_ingest(IngestConfig(paths=(str(tmp_path / "out.jsonl"),), out_dir=str(tmp_path / "ingested")))
    assert ingested.rows_quarantined == 0 and ingested.rows_kept == 2 * len(PROMPTS)
    frame = ingested.to_pandas().set_index(["request_id", "model"])
    assert frame.loc[("exact", "broken-model"), "correct"] == False  # noqa: E712 - a numpy bool
    assert frame.loc[("json", "ok-model"), "output_schema"] == '{"order_id": "string", "status": "shipped | lost"}'


def test_budget_cap_stops_cleanly_and_a_rerun_finishes_without_paying_twice(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    ids = ["exact", "wrong", "choice", "numeric", "slow", "nousage"]
    write_prompts(tmp_path / "prompts.jsonl", ids)
    first = run_benchmark(config(tmp_path, stubs, models=("ok-model",), concurrency=1, budget_usd=0.155), env=ENV)
    s = first.summary
    paid = len(stubs["ok"].calls)
    assert first.stopped_by_budget and s["stopped_by_budget"] is True
    assert 0 < s["outcomes"] == paid < len(ids) and s["pairs_not_run"] == len(ids) - paid
    assert s["spent_usd"] <= 0.155 and s["spent_usd"] == pytest.approx(s["outcomes_cost_usd"])
    assert len(read_rows(tmp_path / "out.jsonl")) == paid

    stubs["ok"].calls.clear()
    second = run_benchmark(config(tmp_path, stubs, out="more.jsonl", models=("ok-model",), budget_usd=10.0), env=ENV)
    assert second.summary["stopped_by_budget"] is False and second.summary["outcomes"] == len(ids)
    assert len(stubs["ok"].calls) == len(ids) - paid and second.summary["cache_hits"] == paid
    assert second.summary["spent_usd"] == pytest.approx(second.summary["outcomes_cost_usd"] - s["outcomes_cost_usd"])


def test_a_zero_budget_makes_no_call(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    result = run_benchmark(config(tmp_path, stubs, models=("ok-model",), budget_usd=0.0), env=ENV)
    assert stubs["ok"].calls == [] and result.summary["outcomes"] == 0 and result.stopped_by_budget
    assert (tmp_path / "out.jsonl").read_text() == ""


def test_sampled_candidates_are_a_fixed_draw_per_prompt(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    pairs = plan_pairs([f"p{i}" for i in range(50)], ["a", "b", "c", "d"], 0.5, seed=7)
    assert Counter(i for i, _ in pairs) == Counter({i: 2 for i in range(50)})
    assert pairs == plan_pairs([f"p{i}" for i in range(50)], ["a", "b", "c", "d"], 0.5, seed=7)
    assert pairs != plan_pairs([f"p{i}" for i in range(50)], ["a", "b", "c", "d"], 0.5, seed=8)
    assert set(j for _, j in pairs) == {0, 1, 2, 3}
    assert plan_pairs(["x"], ["a", "b", "c"], 0.01, seed=0) in ([(0, 0)], [(0, 1)], [(0, 2)])
    ids = ["exact", "wrong", "choice"]
    write_prompts(tmp_path / "prompts.jsonl", ids)
    result = run_benchmark(config(tmp_path, stubs, models=("ok-model", "flaky-model"), sample_fraction=0.5), env=ENV)
    assert result.summary["pairs_planned"] == result.summary["outcomes"] == 3
    assert len({r["request_id"] for r in result.rows}) == 3


def _dead_base_url() -> str:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # bound then closed: nobody listens
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}/v1"


def _one_model_catalogue(path: Path, url: str) -> Path:
    path.write_text(
        f'schema_version = 1\nname = "one"\ntiers = ["t"]\n[[candidates]]\nmodel = "m"\ntier = "t"\n'
        f'input_per_1k = 1\noutput_per_1k = 1\nbase_url = "{url}"\n'
    )
    return path


def test_a_dead_endpoint_gives_outcomes_not_a_crash(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    catalogue = _one_model_catalogue(tmp_path / "dead.toml", _dead_base_url())
    write_prompts(tmp_path / "prompts.jsonl", ["exact", "wrong"])
    result = run_benchmark(config(tmp_path, stubs, catalogue=str(catalogue), models=(), judge_model=None, max_retries=1))
    assert [(r["error_kind"], r["attempts"], r["correct"], r["cost_usd"]) for r in result.rows] == [("connect", 2, False, 0.0)] * 2
    assert result.rows[0]["error"].startswith("could not connect to http://127.0.0.1:")
    assert result.summary["retries"] == 2 and result.summary["failures_by_kind"] == {"connect": 2}


# -- refused before any call ---------------------------------------------------------------------


def test_a_base_url_that_is_not_http_is_refused(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    catalogue = _one_model_catalogue(tmp_path / "ftp.toml", "ftp://example/v1")
    write_prompts(tmp_path / "prompts.jsonl", ["exact"])
    with pytest.raises(
        ConfigError,
        match=r"base_url must start with http:// or https://; got m \('ftp://example/v1'\) in "
        r"catalogue 'one'\. Write the endpoint's full URL",
    ):
        run_benchmark(config(tmp_path, stubs, catalogue=str(catalogue), models=(), judge_model=None))


def _no_calls(stubs: dict[str, Stub]) -> bool:
    return all(not s.calls for s in stubs.values())


def test_an_existing_out_file_is_refused_before_any_call(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    (tmp_path / "out.jsonl").write_text("mine\n")
    with pytest.raises(
        OutputDirError,
        match=r"Output file '.*out\.jsonl' already exists; tierroute never writes over "
        r"existing files\. Pass a new --out path: the call cache holds",
    ):
        run_benchmark(config(tmp_path, stubs), env=ENV)
    assert (tmp_path / "out.jsonl").read_text() == "mine\n" and _no_calls(stubs)


def test_code_prompts_need_allow_code_execution(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    with pytest.raises(
        ConfigError,
        match=r"1 prompt\(s\) of '.*prompts\.jsonl' use the 'code' scorer \(first: 'code'\), "
        r"which runs model-written code on this machine\. Pass --allow-code-execution",
    ):
        run_benchmark(config(tmp_path, stubs, allow_code_execution=False), env=ENV)
    assert _no_calls(stubs) and not (tmp_path / "out.jsonl").exists()


def test_judge_prompts_need_a_judge(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    with pytest.raises(
        ConfigError,
        match=r"use the 'judge' scorer \(first: 'judge'\) but no judge model was given\. "
        r"Pass --judge MODEL",
    ):
        run_benchmark(config(tmp_path, stubs, judge_model=None), env=ENV)
    with pytest.raises(CatalogueError, match="unknown model 'nobody'"):
        run_benchmark(config(tmp_path, stubs, judge_model="nobody"), env=ENV)
    assert _no_calls(stubs)


def test_missing_keys_and_base_urls_are_refused(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    with pytest.raises(
        ConfigError,
        match=rf"The API key variable\(s\) named by api_key_env are not set: {KEY_ENV} "
        r"\(for ok-model\)\. Export them",
    ):
        run_benchmark(config(tmp_path, stubs), env={})
    with pytest.raises(
        ConfigError,
        match=r"Candidate\(s\) claude-3-haiku, llama-3-70b-q4, .* of catalogue 'article' "
        r"have no base_url, so the benchmark cannot call them\.",
    ):
        run_benchmark(config(tmp_path, stubs, catalogue="article", models=(), judge_model=None), env=ENV)
    assert _no_calls(stubs)


def test_bad_prompt_lines_are_listed_and_refused(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    lines = [
        json.dumps({"id": "a", "prompt": "hi", "reference": "x", "scorer": "exact"}),
        "{oops",
        json.dumps({"id": "b", "prompt": "hi", "refrence": "x", "scorer": "exact"}),
    ]
    (tmp_path / "prompts.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataValidationError, match=r"2 bad line\(s\) in prompts file .* \(at most 0 allowed\): line 2: not JSON"):
        run_benchmark(config(tmp_path, stubs, models=("ok-model",)), env=ENV)
    assert _no_calls(stubs)
    result = run_benchmark(config(tmp_path, stubs, models=("ok-model",), max_bad_prompts=2), env=ENV)
    assert result.summary["outcomes"] == 1 and result.summary["bad_prompt_lines"] == 2
    assert result.summary["bad_prompts"][1].startswith("line 3: unknown field 'refrence'")


def test_config_errors_are_worded_like_every_parameter_error(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError,
        match=r"The 'concurrency' parameter of BenchmarkConfig must be an int in the range "
        r"\[1, 1024\]\. Got 0 instead\.",
    ):
        BenchmarkConfig("p", "c", "o", concurrency=0)
    with pytest.raises(
        ConfigError,
        match=r"The 'budget_usd' parameter of BenchmarkConfig must be a finite number in the "
        r"range \[0, inf\)\. Got -1 instead\.",
    ):
        BenchmarkConfig("p", "c", "o", budget_usd=-1)
    with pytest.raises(ConfigError, match="names an unknown scorer 'bleu'; the scorers are exact, choice"):
        BenchmarkConfig("p", "c", "o", thresholds={"bleu": 0.5})
    config = BenchmarkConfig("p", "c", "o", thresholds={"f1": 0.8})
    assert config.threshold_map()["f1"] == 0.8 and config.threshold_map()["exact"] == 1.0
    assert config.to_dict()["thresholds"] == {"f1": 0.8}


# -- the HTTP layer's pieces -------------------------------------------------------------------------


def test_retry_delay_honours_retry_after_up_to_the_cap() -> None:
    policy = RetryPolicy(timeout_s=1, max_retries=3, backoff_base_s=1.0, backoff_cap_s=10.0)
    rng = random.Random(0)
    assert retry_delay(0, "2", policy, rng) == 2.0
    assert retry_delay(0, "120", policy, rng) == 10.0
    assert 0.5 <= retry_delay(0, None, policy, rng) <= 1.0
    assert 4.0 <= retry_delay(3, "soon", policy, rng) <= 8.0  # unreadable header: the backoff
    assert 5.0 <= retry_delay(9, None, policy, rng) <= 10.0
    from datetime import datetime, timezone

    now = datetime(2026, 11, 28, 12, 0, 0, tzinfo=timezone.utc)
    assert parse_retry_after("Sat, 28 Nov 2026 12:00:03 GMT", now) == 3.0
    assert parse_retry_after("Sat, 28 Nov 2026 11:00:00 GMT", now) == 0.0
    assert parse_retry_after("", now) is None


def test_parse_completion_reads_text_tool_calls_and_usage() -> None:
    body = {
        "choices": [{"message": {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 1},
    }
    assert parse_completion(body) == ("ab", 3, 1)
    tool = {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"arguments": '{"x": 1}'}}]}}]}
    assert parse_completion(tool) == ('{"x": 1}', None, None)
    bad_usage = {"choices": [{"message": {"content": "x"}}], "usage": {"prompt_tokens": -1, "completion_tokens": True}}
    assert parse_completion(bad_usage) == ("x", None, None)
    from tierroute.pipelines.benchmark.client import CompletionError

    with pytest.raises(CompletionError, match=r"no_choices: the response has no choices\[0\] \(an error object: "):
        parse_completion({"error": {"message": "overloaded"}})


def test_catalogue_fixture_is_valid(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    catalogue = load_catalogue(write_catalogue(tmp_path / "c.toml", stubs))
    assert catalogue.candidate("ok-model").api_key_env == KEY_ENV


# -- pinned fixes --------------------------------------------------------------------------------------


def test_parse_completion_never_raises_on_odd_tool_calls() -> None:
    from tierroute.pipelines.benchmark.client import CompletionError

    with pytest.raises(CompletionError, match=r"no_choices: choices\[0\] holds no answer text"):
        parse_completion({"choices": [{"message": {"content": None, "tool_calls": [{"function": "f"}]}}]})
    as_object = {"choices": [{"message": {"content": None, "tool_calls": [{"function": {"arguments": {"x": 1}}}]}}]}
    assert parse_completion(as_object) == ('{"x": 1}', None, None)


def test_an_int_temperature_shares_the_cache_with_a_float_one(tmp_path: Path, stubs: dict[str, Stub]) -> None:
    write_prompts(tmp_path / "prompts.jsonl", ["exact"])
    run_benchmark(config(tmp_path, stubs, models=("ok-model",), temperature=0), env=ENV)
    assert len(stubs["ok"].calls) == 1 and stubs["ok"].calls[0]["body"]["temperature"] == 0.0
    again = run_benchmark(config(tmp_path, stubs, out="again.jsonl", models=("ok-model",), temperature=0.0), env=ENV)
    assert len(stubs["ok"].calls) == 1 and again.summary["cache_hits"] == 1


def test_the_cache_is_read_and_written_off_the_event_loop(tmp_path: Path, stubs: dict[str, Stub], monkeypatch: pytest.MonkeyPatch) -> None:
    from tierroute.pipelines.benchmark.callcache import CallCache

    on_loop: list[str] = []
    for name in ("get", "put"):
        original = getattr(CallCache, name)

        def spy(self: Any, *args: Any, _name: str = name, _original: Any = original) -> Any:
            if threading.current_thread() is threading.main_thread():
                on_loop.append(_name)
            return _original(self, *args)

        monkeypatch.setattr(CallCache, name, spy)
    write_prompts(tmp_path / "prompts.jsonl", ["exact", "wrong"])
    result = run_benchmark(config(tmp_path, stubs, models=("ok-model",)), env=ENV)
    assert result.summary["calls_made"] == 2 and on_loop == []


def test_retry_after_ms_is_read_when_retry_after_is_absent() -> None:
    assert retry_after_header({"retry-after": "2", "retry-after-ms": "9000"}) == "2"
    assert retry_after_header({"retry-after-ms": "1500"}) == "1.5"
    assert retry_after_header({"retry-after-ms": "soon"}) is None and retry_after_header({}) is None


def test_out_may_not_be_the_cache_or_the_prompts(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"^The 'out' parameter of BenchmarkConfig names the same file as the cache \("):
        BenchmarkConfig(
            prompts=str(tmp_path / "p.jsonl"), catalogue="c.toml", out=str(tmp_path / "c.sqlite"), cache=str(tmp_path / "c.sqlite")
        )
    with pytest.raises(ConfigError, match=r"^The 'out' parameter of BenchmarkConfig names the same file as the prompts \("):
        BenchmarkConfig(prompts=str(tmp_path / "p.jsonl"), catalogue="c.toml", out=str(tmp_path / "p.jsonl"))


# --- in-process fake upstreams (no sockets): the budget under timeouts, and shared semaphores ------


class FakeResponse:
    def __init__(self, model: str, messages: list[dict[str, Any]]) -> None:
        answer = "Score: 8" if "Candidate answer" in messages[-1]["content"] else f"answer from {model}"
        self.status_code, self.headers, self.text = 200, {}, ""
        self._body = {
            "choices": [{"message": {"role": "assistant", "content": answer}}],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3},
        }

    def json(self) -> dict[str, Any]:
        return self._body


class FakeUpstreams:
    """Stands in for httpx.AsyncClient: every call to a model in ``timeout`` times out; calls to
    ``hold`` are held until a second call to that model is in flight (or 0.5 s passed), so that any
    overlap the run allows is seen. Records attempts and the most calls in flight per model."""

    def __init__(self, timeout: frozenset[str] = frozenset(), hold: frozenset[str] = frozenset()) -> None:
        self.timeout, self.hold = timeout, hold
        self.attempts: Counter[str] = Counter()
        self.in_flight: Counter[str] = Counter()
        self.most: Counter[str] = Counter()

    def __call__(self, *args: Any, **kwargs: Any) -> FakeUpstreams:  # httpx.AsyncClient(timeout=..., limits=...)
        return self

    async def __aenter__(self) -> FakeUpstreams:
        return self

    async def __aexit__(self, *exc: Any) -> None:
        return None

    async def post(self, url: str, content: bytes, headers: dict[str, str]) -> FakeResponse:
        import asyncio

        import httpx

        body = json.loads(content)
        model = body["model"]
        self.attempts[model] += 1
        self.in_flight[model] += 1
        self.most[model] = max(self.most[model], self.in_flight[model])
        try:
            if model in self.timeout:
                raise httpx.ReadTimeout("no answer in time")
            if model in self.hold:
                for _ in range(100):
                    if self.in_flight[model] > 1:
                        break
                    await asyncio.sleep(0.005)
            return FakeResponse(model, body["messages"])
        finally:
            self.in_flight[model] -= 1


def fake_catalogue(path: Path, models: dict[str, tuple[float, float]]) -> Path:
    lines = ["schema_version = 1", 'name = "fakes"', 'tiers = ["tier1"]']
    for model, (inp, out) in models.items():
        lines += [
            "",
            "[[candidates]]",
            f'model = "{model}"',
            'tier = "tier1"',
            f"input_per_1k = {inp}",
            f"output_per_1k = {out}",
            'base_url = "http://fake.invalid/v1"',
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_calls_in_flight_never_carry_the_spend_past_the_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    fake = FakeUpstreams(timeout=frozenset({"slow-model"}))
    monkeypatch.setattr(httpx, "AsyncClient", fake)
    ids = ["exact", "wrong", "choice", "slow"]
    write_prompts(tmp_path / "prompts.jsonl", ids)
    per_attempt = max(worst_case("slow-model", pid) for pid in ids)
    cap = 2.5 * min(worst_case("slow-model", pid) for pid in ids)
    catalogue = fake_catalogue(tmp_path / "f.toml", {"slow-model": PRICES["slow-model"]})
    cfg = BenchmarkConfig(
        prompts=str(tmp_path / "prompts.jsonl"),
        catalogue=str(catalogue),
        out=str(tmp_path / "out.jsonl"),
        cache=str(tmp_path / "cache.sqlite"),
        concurrency=4,
        max_retries=2,
        backoff_base_s=0.0,
        backoff_cap_s=0.0,
        max_tokens=64,
        budget_usd=cap,
    )
    result = run_benchmark(cfg, env={})
    s = result.summary
    # every attempt sent may be billed (each timed out): together they stay within the cap
    assert fake.attempts["slow-model"] * per_attempt <= cap + 1e-12
    assert s["stopped_by_budget"] is True and 0 < s["spent_usd"] <= cap
    # and each timed-out call is booked at its reserved worst case, saying so, not at $0
    assert result.rows and all(r["error_kind"] == "timeout" and r["cost_source"] == "reserved_worst_case" for r in result.rows)
    assert s["spent_usd"] == pytest.approx(s["outcomes_cost_usd"]) == pytest.approx(s["worst_case_booked_usd"])
    assert all(r["cost_usd"] == pytest.approx(r["attempts"] * worst_case("slow-model", r["request_id"])) for r in result.rows)
    assert any(r["error"].endswith("attempt(s): the budget has no room for another)") for r in result.rows)


def test_a_judge_that_is_also_a_candidate_keeps_to_its_concurrency(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import httpx

    fake = FakeUpstreams(hold=frozenset({"judge"}))
    monkeypatch.setattr(httpx, "AsyncClient", fake)
    (tmp_path / "prompts.jsonl").write_text(
        "".join(json.dumps({"id": f"j{i}", "prompt": f"Explain topic {i}.", "scorer": "judge"}) + "\n" for i in range(3)), encoding="utf-8"
    )
    catalogue = fake_catalogue(tmp_path / "f.toml", {"judge": (1.0, 1.0), "other": (0.1, 0.1)})
    cfg = BenchmarkConfig(
        prompts=str(tmp_path / "prompts.jsonl"),
        catalogue=str(catalogue),
        out=str(tmp_path / "out.jsonl"),
        cache=str(tmp_path / "cache.sqlite"),
        models=("judge", "other"),
        judge_model="judge",
        concurrency=3,
        model_concurrency={"judge": 1},
        max_retries=0,
        max_tokens=16,
    )
    result = run_benchmark(cfg, env={})
    assert result.summary["outcomes"] == 6 and all(r["judge_model"] == "judge" for r in result.rows)
    assert fake.attempts["judge"] == 3 + 6  # its own answers, then a grade for each of the six
    assert fake.most["judge"] == 1  # candidate calls and judge calls share its limit of 1
    assert fake.most["other"] >= 1

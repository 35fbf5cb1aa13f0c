"""``tierroute benchmark`` through ``tierroute.cli.main`` against one healthy stub upstream on
loopback: the summary (--json or a table), the progress bar on stderr, errors as one line, and
the output read back by ``tierroute ingest``."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("httpx")

from tierroute.cli import build_parser, main  # noqa: E402

ANSWERS = {"Capital of France?": "Paris", "2+2? (A) 3 (B) 4": "(B)", "Write add(a, b).": "def add(a, b): return a + b"}


class _Handler(BaseHTTPRequestHandler):
    server: Any

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet
        pass

    def do_POST(self) -> None:  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.server.calls.append(body["model"])
        answer = ANSWERS.get(body["messages"][-1]["content"], "?")
        payload = json.dumps(
            {"choices": [{"message": {"role": "assistant", "content": answer}}], "usage": {"prompt_tokens": 10, "completion_tokens": 2}}
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def upstream() -> Iterator[Any]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.calls = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.fixture
def files(tmp_path: Path, upstream: Any) -> dict[str, str]:
    upstream.calls.clear()
    url = f"http://127.0.0.1:{upstream.server_address[1]}/v1"
    lines = ["schema_version = 1", 'name = "cli"', 'tiers = ["tier1", "tier3"]']
    for model, tier, price in (("small", "tier1", 0.5), ("big", "tier3", 5.0)):
        lines += [
            "[[candidates]]",
            f'model = "{model}"',
            f'tier = "{tier}"',
            f"input_per_1k = {price}",
            f"output_per_1k = {2 * price}",
            f'base_url = "{url}"',
        ]
    (tmp_path / "cat.toml").write_text("\n".join(lines) + "\n")
    prompts = [
        {"id": "a", "prompt": "Capital of France?", "reference": "Paris", "scorer": "exact", "task": "qa"},
        {"id": "b", "prompt": "2+2? (A) 3 (B) 4", "reference": "B", "scorer": "choice", "task": "mc"},
    ]
    (tmp_path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return {
        "--prompts": str(tmp_path / "prompts.jsonl"),
        "--catalogue": str(tmp_path / "cat.toml"),
        "--out": str(tmp_path / "out.jsonl"),
        "--cache": str(tmp_path / "cache.sqlite"),
    }


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    return main(argv, out=out), out.getvalue()


def args(files: dict[str, str], *extra: str) -> list[str]:
    return ["benchmark", *(x for pair in files.items() for x in pair), *extra]


def one_error_line(err: str, starts: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: " + starts), err


def test_json_summary_and_the_output_ingests(
    files: dict[str, str], tmp_path: Path, upstream: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out = run(args(files, "--json", "--threshold", "exact=1", "--model-concurrency", "big=1"))
    assert code == 0 and capsys.readouterr().err == ""  # --json: no progress bar
    summary = json.loads(out)
    assert summary["schema_version"] == 1 and summary["outcomes"] == 4 and summary["calls_made"] == 4
    assert summary["thresholds"] == {"choice": 1.0, "exact": 1.0} and summary["stopped_by_budget"] is False
    assert summary["per_model"]["big"]["cost_usd"] == pytest.approx(2 * (10 * 5.0 + 2 * 10.0) / 1000)
    assert summary["config"]["model_concurrency"] == {"big": 1} and sorted(upstream.calls) == ["big", "big", "small", "small"]

    pytest.importorskip("datasets")
    code, out = run(["ingest", files["--out"], "--out", str(tmp_path / "ingested"), "--json"])
    ingested = json.loads(out)
    assert code == 0 and ingested["rows_kept"] == 4 and ingested["rows_quarantined"] == 0
    assert ingested["models"] == ["big", "small"] and ingested["tasks"] == {"mc": 1, "qa": 1}


def test_table_summary_with_a_progress_bar(files: dict[str, str], capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(args(files, "--models", "small"))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"2 prompts x 1 models: 2 of 2 outcomes -> {files['--out']}"
    assert lines[1] == "calls 2 (2 HTTP requests, 0 retries), cache hits 0; new spend $0.014000 (no cap)"
    assert lines[-2].split() == ["small", "2", "100.0%", "0", "0.014000", lines[-2].split()[-1]]
    assert lines[-1] == "correct = quality >= choice 1, exact 1"
    pytest.importorskip("tqdm")
    assert "benchmarking" in capsys.readouterr().err


def test_budget_stop_is_reported(files: dict[str, str]) -> None:
    code, out = run(args(files, "--budget", "0", "--models", "small"))
    assert code == 0
    assert "stopped by the budget cap: 2 pairs not run; rerun with a higher --budget and a new --out" in out


def test_errors_are_one_line(files: dict[str, str], capsys: pytest.CaptureFixture[str], upstream: Any) -> None:
    Path(files["--out"]).write_text("keep me\n")
    assert run(args(files))[0] == 1
    one_error_line(capsys.readouterr().err, f"Output file {files['--out']!r} already exists; tierroute never writes over")
    Path(files["--out"]).unlink()
    assert run(args(files, "--threshold", "f1"))[0] == 1
    one_error_line(capsys.readouterr().err, "--threshold expects NAME=VALUE (e.g. f1=0.8); got 'f1'.")
    assert run(args(files, "--concurrency", "0"))[0] == 1
    one_error_line(capsys.readouterr().err, "The 'concurrency' parameter of BenchmarkConfig must be an int")
    with open(files["--prompts"], "a") as fh:
        fh.write(json.dumps({"id": "c", "prompt": "Write add(a, b).", "reference": "assert add(1, 2) == 3", "scorer": "code"}) + "\n")
    assert run(args(files))[0] == 1
    one_error_line(capsys.readouterr().err, "1 prompt(s) of")
    assert upstream.calls == []


def test_code_prompts_run_with_the_flag(files: dict[str, str]) -> None:
    with open(files["--prompts"], "a") as fh:
        fh.write(json.dumps({"id": "c", "prompt": "Write add(a, b).", "reference": "assert add(1, 2) == 3", "scorer": "code"}) + "\n")
    code, out = run(args(files, "--allow-code-execution", "--models", "small", "--json"))
    assert code == 0 and json.loads(out)["per_model"]["small"]["correct"] == 3


def test_the_command_is_registered() -> None:
    help_text = build_parser().format_help()
    assert "benchmark" in help_text
    parsed = build_parser().parse_args(["benchmark", "--prompts", "p", "--catalogue", "c", "--out", "o"])
    assert (parsed.concurrency, parsed.max_retries, parsed.budget, parsed.cache) == (4, 3, None, "runs/cache/benchmark.sqlite")

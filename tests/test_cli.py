"""The command line through ``tierroute.cli.main`` (stdout captured in a StringIO, stderr by capsys),
plus one real ``python -m tierroute.cli`` subprocess."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tierroute import __version__
from tierroute.cli import build_parser, main

DECISION_FIELDS = {"tier", "model", "source", "reason", "node", "schema_version"}


def run(argv: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    code = main(argv, out=out)
    return code, out.getvalue()


def outcome_log(path: Path, bad: int = 0) -> Path:
    rows: list[Any] = []
    for i in range(4):
        for model, quality, cost in (("claude-3-haiku", i % 2, 0.003), ("gpt-4o-mini", 1, 0.01), ("gpt-4o", 1, 0.12)):
            rows.append(
                {
                    "request_id": f"r{i}",
                    "prompt": f"Extract the order id from order {i}.",
                    "model": model,
                    "quality": quality,
                    "cost_usd": cost,
                    "task": "extract",
                    "output_schema": {"order_id": "string"},
                }
            )
    rows += [{"request_id": f"bad{i}", "prompt": "p", "model": "gpt-4o", "quality": 2, "cost_usd": 0} for i in range(bad)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def assert_one_error_line(err: str, starts: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: " + starts), err
    assert "Traceback" not in err


# --- route --------------------------------------------------------------------------------------


def test_route_prompt_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["route", "--prompt", "Extract the order id.", "--schema", '{"order_id": "string"}', "--json"])
    assert code == 0
    lines = out.splitlines()
    assert len(lines) == 1
    decision = json.loads(lines[0])
    assert DECISION_FIELDS <= set(decision)
    assert decision["line"] == 1 and decision["id"] is None
    assert decision["tier"] == "tier1" and decision["model"] == "claude-3-haiku"
    assert decision["source"] == "heuristic" and decision["node"] == "rule1"
    assert decision["reason"].startswith("rule1: ")
    assert decision["schema_version"] == 1
    assert capsys.readouterr().err == ""


def test_route_prompt_sla_and_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(
        ["route", "--prompt", "Step by step, analyze and compare these plans.", "--sla", "100", "--catalogue", "routerbench", "--json"]
    )
    decision = json.loads(out)
    assert code == 0
    assert (decision["tier"], decision["model"], decision["node"]) == ("tier3", "gpt-4-1106-preview", "rule3")


def test_route_prompt_human_line(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["route", "--prompt", "Summarise this thread."])
    assert code == 0
    assert out.startswith("tier2  gpt-4o-mini  [heuristic] rule2: ")
    assert out.count("\n") == 1
    assert capsys.readouterr().err == ""


def test_route_input_file_with_bad_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text(
        json.dumps({"id": "a", "prompt": "Pull the order id.", "output_schema": {"order_id": "string"}})
        + "\n"
        + json.dumps({"id": "b", "prompt": 42})
        + "\n"
        + "\n"
        + "{not json\n"
        + json.dumps({"id": "c", "messages": [{"role": "user", "content": "Summarise this."}], "latency_sla_ms": 500})
        + "\n",
        encoding="utf-8",
    )
    code, out = run(["route", "--input", str(requests), "--json"])
    assert code == 2
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["line"] for line in lines] == [1, 2, 4, 5]
    good, malformed, not_json, chat = lines
    assert good["id"] == "a" and good["tier"] == "tier1" and DECISION_FIELDS <= set(good)
    assert malformed == {"line": 2, "id": "b", "error": "'prompt' must be a string; got 42 (int). Send the prompt text."}
    assert not_json["id"] is None and set(not_json) == {"line", "id", "error"}
    assert not_json["error"] == (
        "line 4 is not JSON (Expecting property name enclosed in double quotes at char 1); each line must be one request object."
    )
    assert chat["id"] == "c" and chat["tier"] == "tier2"
    assert capsys.readouterr().err == ""


def test_route_input_errors_without_json_go_to_stderr(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"prompt": "hello"}\n[1, 2]\n{"prompt": "x", "colour": "red"}\n', encoding="utf-8")
    code, out = run(["route", "--input", str(requests)])
    assert code == 2
    assert out.startswith("tier2  gpt-4o-mini  [heuristic] ") and out.count("\n") == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2
    assert err[0].startswith("line 2: error: A request must be an object with 'prompt' (or 'messages'); got [1, 2] (list).")
    assert err[1].startswith("line 3: error: Unknown request field(s) ['colour']")


def test_route_input_defaults_from_flags(tmp_path: Path) -> None:
    requests = tmp_path / "requests.jsonl"
    requests.write_text('{"prompt": "Pull the id."}\n{"prompt": "Pull the id.", "output_schema": null}\n', encoding="utf-8")
    code, out = run(["route", "--input", str(requests), "--schema", '["a", "b"]', "--json"])
    assert code == 0
    tiers = [json.loads(line)["tier"] for line in out.splitlines()]
    assert tiers == ["tier1", "tier2"]  # a line's own field wins over the flag


def test_route_missing_input_file(capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["route", "--input", "nope.jsonl", "--json"])
    assert code == 1 and out == ""
    err = capsys.readouterr().err
    assert_one_error_line(err, "Cannot read --input 'nope.jsonl': No such file or directory. Check the path.")


def test_route_unknown_catalogue(capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = run(["route", "--prompt", "hi", "--catalogue", "missing.toml"])
    assert code == 1
    assert_one_error_line(capsys.readouterr().err, "catalogue file 'missing.toml' not found.")


def test_route_needs_a_source(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["route"])
    assert exc.value.code == 2
    assert "one of the arguments --prompt --input is required" in capsys.readouterr().err


# --- ingest and audit ---------------------------------------------------------------------------


def test_ingest_json_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl", bad=1)
    code, out = run(["ingest", str(log), "--out", "run", "--json", "--max-bad", "0.2"])
    assert code == 0
    summary = json.loads(out)
    assert summary["out_dir"] == "run"
    assert (summary["rows_read"], summary["rows_kept"], summary["rows_quarantined"]) == (13, 12, 1)
    assert summary["quarantine_by_reason"] == {"quality_out_of_range": 1}
    assert summary["requests"] == 4 and summary["models"] == ["claude-3-haiku", "gpt-4o", "gpt-4o-mini"]
    assert summary["tasks"] == {"extract": 4} and summary["formats"] == {"outcomes": 1}
    assert (tmp_path / "run" / "ingest.json").is_file() and (tmp_path / "run" / "outcomes").is_dir()
    assert capsys.readouterr().err == ""  # --json: no progress lines


def test_ingest_text_summary_and_progress(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl")
    code, out = run(["ingest", str(log), "--out", "run"])
    assert code == 0
    assert out.splitlines()[0] == "read 12 rows; kept 12 outcomes for 4 requests x 3 models"
    assert f"quarantined 0 rows -> {Path('run') / 'quarantine.jsonl'}" in out
    assert "table: run/outcomes (datasets, load with datasets.load_from_disk)" in out
    assert capsys.readouterr().err == f"... reading {log} as outcomes\n"


def test_ingest_map_and_threshold(tmp_path: Path) -> None:
    log = tmp_path / "f1.jsonl"
    log.write_text('{"id": "a", "prompt": "p", "model": "m", "f1": 0.6, "cost_usd": 0}\n', encoding="utf-8")
    code, out = run(
        ["ingest", str(log), "--out", "run", "--json", "--map", "request_id=id", "--map", "quality = f1", "--correct-threshold", "0.7"]
    )
    assert code == 0
    import datasets

    table = datasets.load_from_disk(str(tmp_path / "run" / "outcomes"))
    assert (table[0]["request_id"], table[0]["quality"], table[0]["correct"]) == ("a", 0.6, False)


def test_audit_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl")
    code, out = run(["audit", str(log), "--json", "--out", "aud"])
    assert code == 0
    report = json.loads(out)
    assert report["kind"] == "tierroute.audit" and report["catalogue"] == "article"
    assert report["requests"] == 4 and report["outcomes"] == 12
    (task,) = report["tasks"]
    assert task["task"] == "extract" and task["verdict"] == "route to tier2"  # gpt-4o-mini matches gpt-4o
    assert task["gap"] == pytest.approx(50.0)
    assert task["tree_tiers"]["tier1"] == 1.0
    assert json.loads((tmp_path / "aud" / "audit.json").read_text(encoding="utf-8")) == report
    assert capsys.readouterr().err == ""


def test_audit_text_and_gap_points(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl")
    code, out = run(["audit", str(log), "--gap-points", "60"])
    assert code == 0
    assert "1. Call types by volume" in out and "route to tier1" in out
    assert "Written to runs/audit-" in out
    assert capsys.readouterr().err.startswith("... reading ")


# --- user mistakes: exit 1, one line, no traceback ----------------------------------------------


@pytest.mark.parametrize("command", ["ingest", "audit"])
@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_missing_path(command: str, json_flag: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run([command, "nope.jsonl", *json_flag])
    assert code == 1 and out == ""
    assert_one_error_line(capsys.readouterr().err, "No such file or folder: 'nope.jsonl'.")


@pytest.mark.parametrize("bad", ["quality", "=f1", "quality=", "qualty=f1"])
def test_bad_map(bad: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl")
    code, out = run(["ingest", str(log), "--map", bad, "--out", "run"])
    assert code == 1 and out == ""
    err = capsys.readouterr().err
    if "=" in bad and bad.split("=")[0] and bad.split("=")[1]:
        assert_one_error_line(err, "Column mapping names unknown field(s) ['qualty']")
    else:
        assert_one_error_line(err, f"--map expects FIELD=COLUMN (e.g. quality=f1); got {bad!r}.")


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_non_empty_out(json_flag: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl")
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "keep.txt").write_text("mine", encoding="utf-8")
    code, out = run(["ingest", str(log), "--out", "run", *json_flag])
    assert code == 1 and out == ""
    assert_one_error_line(capsys.readouterr().err, "Output folder 'run' already exists and is not empty")
    assert [p.name for p in (tmp_path / "run").iterdir()] == ["keep.txt"]
    assert (tmp_path / "run" / "keep.txt").read_text(encoding="utf-8") == "mine"


def test_too_many_bad_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl", bad=2)
    code, out = run(["ingest", str(log), "--out", "run", "--json"])
    assert code == 1 and out == ""
    assert_one_error_line(capsys.readouterr().err, "2 of 14 rows (14.3%) failed validation, above the cap of 5.0%")
    assert len((tmp_path / "run" / "quarantine.jsonl").read_text(encoding="utf-8").splitlines()) == 2


def test_bad_max_bad(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = outcome_log(tmp_path / "log.jsonl")
    code, _ = run(["ingest", str(log), "--max-bad", "2"])
    assert code == 1
    assert_one_error_line(capsys.readouterr().err, "The 'max_bad_fraction' parameter of IngestConfig must be a finite number")


def test_unknown_format_choice_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        run(["ingest", "x", "--format", "xml"])
    assert exc.value.code == 2
    assert "invalid choice: 'xml'" in capsys.readouterr().err


# --- version and the real entry point ------------------------------------------------------------


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out == f"tierroute {__version__}\n"


def test_parser_commands() -> None:
    parser = build_parser()
    assert parser.prog == "tierroute"
    args = parser.parse_args(["ingest", "a", "b", "--map", "quality=f1"])
    assert args.paths == ["a", "b"] and args.map == ["quality=f1"] and args.max_bad == 0.05


def test_module_entry_point_subprocess(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "tierroute.cli", "route", "--prompt", "hi", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1
    decision = json.loads(lines[0])
    assert DECISION_FIELDS <= set(decision)
    assert decision["tier"] == "tier2" and decision["line"] == 1


def test_audit_catalogue_also_prices_routellm_rows(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "mmlu_x.csv").write_text("prompt,gpt-4-1106-preview,my-local\nWhat is 2+2?,True,False\n", encoding="utf-8")
    (tmp_path / "mine.toml").write_text(
        'schema_version = 1\nname = "mine"\ntiers = ["tier1", "tier3"]\n'
        '[[candidates]]\nmodel = "my-local"\ntier = "tier1"\ninput_per_1k = 0.0001\noutput_per_1k = 0.0001\n'
        '[[candidates]]\nmodel = "gpt-4-1106-preview"\ntier = "tier3"\ninput_per_1k = 0.01\noutput_per_1k = 0.03\n',
        encoding="utf-8",
    )
    assert run(["ingest", "mmlu_x.csv", "--catalogue", "mine.toml", "--out", "ing", "--json"])[0] == 0
    code, out = run(["audit", "mmlu_x.csv", "--catalogue", "mine.toml", "--out", "aud", "--json"])
    assert code == 0, capsys.readouterr().err
    assert json.loads(out)["catalogue"] == "mine"


def test_route_option_mistakes_are_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--prompt", "hi", "--sla", "-5"], out=io.StringIO()) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --sla: 'latency_sla_ms' must be >= 0")
    assert main(["route", "--prompt", "hi", "--schema", "{bad"], out=io.StringIO()) == 1
    assert capsys.readouterr().err.startswith("error: --schema: 'output_schema' is a string that is not JSON")


def test_route_input_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "bin.jsonl"
    path.write_bytes(b'{"prompt": "\xff\xfe"}\n')
    assert main(["route", "--input", str(path), "--json"], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: --input {str(path)!r} is not UTF-8 text") and "Traceback" not in err


def test_train_then_evaluate_through_the_cli(tmp_path: Path) -> None:
    out = io.StringIO()
    status = main(
        ["train", "--synthetic-requests", "160", "--encoder", "none", "--tracking-uri", "", "--out", str(tmp_path / "run"), "--json"],
        out=out,
    )
    assert status == 0
    summary = json.loads(out.getvalue())
    assert set(summary) >= {"aiq", "accuracy", "cost_per_query", "cost_per_correct", "baselines", "run_id", "out_dir"}
    assert summary["run_id"] is None and set(summary["baselines"]) >= {"heuristic", "random", "oracle", "singles"}
    data = tmp_path / "run" / "data" / "synthetic.jsonl"
    out = io.StringIO()
    assert main(["evaluate", "--model", str(tmp_path / "run"), "--data", str(data), "--out", str(tmp_path / "ev"), "--json"], out=out) == 0
    report = json.loads(out.getvalue())
    assert report["requests"] == 160 and 0 < report["aiq"] <= 1
    assert (tmp_path / "ev" / "report.md").is_file() and (tmp_path / "ev" / "cost_quality.png").is_file()


def test_evaluate_with_an_unknown_model_is_one_error_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate", "--model", str(tmp_path / "none"), "--data", str(tmp_path)], out=io.StringIO()) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: --model ") and "is neither a folder holding a trained router" in err and "Traceback" not in err


# --- export and route --bundle ------------------------------------------------------------------


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A train run's folder as `tierroute export` reads it (model/router.pkl), from a tiny router."""
    pytest.importorskip("lightgbm")
    pytest.importorskip("onnxmltools")
    import pandas as pd

    from tierroute.models.catalogue import builtin_catalogue
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.synthetic import SyntheticConfig, generate
    from tierroute.pipelines.training.tracking import save_router

    frame = pd.DataFrame(list(generate(SyntheticConfig(120, seed=2))))
    frame["output_schema"] = [None if s is None else json.dumps(s) for s in frame["output_schema"]]
    params = RouterParams(n_estimators=20, n_folds=2, early_stopping_rounds=10, n_threads=1)
    router = LearnedRouter(LearnedConfig(encoder="none", router=params)).fit(RoutingData.from_frame(frame), builtin_catalogue("article"))
    run = tmp_path_factory.mktemp("cli-run")
    save_router(router, run / "model")
    return run


def test_export_then_route_with_the_bundle(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = run(["export", str(run_dir), "--out", str(tmp_path / "bundle"), "--json"])
    assert code == 0, capsys.readouterr().err
    summary = json.loads(out)
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text(encoding="utf-8"))
    assert summary == {
        "schema_version": 1,
        "bundle": str(tmp_path / "bundle"),
        "bundle_id": manifest["bundle_id"],
        "files": manifest["files"],
        "candidates": ["claude-3-haiku", "gpt-4o", "gpt-4o-mini"],
    }
    # the model/ folder itself exports the same bundle, told in one line without --json
    code, out = run(["export", str(run_dir / "model"), "--out", str(tmp_path / "again")])
    assert code == 0
    assert out == (
        f"bundle {manifest['bundle_id']} -> {tmp_path / 'again'}/ (2 files, 3 candidates, policy "  # model.onnx, trees.npy
        f"{manifest['policy']['kind']})\n"
    )
    code, out = run(
        ["route", "--bundle", str(tmp_path / "bundle"), "--prompt", "Pull the order id.", "--schema", '{"order_id": "string"}', "--json"]
    )
    assert code == 0 and capsys.readouterr().err == ""
    (decision,) = [json.loads(line) for line in out.splitlines()]
    assert DECISION_FIELDS <= set(decision)
    assert decision["source"] == "learned" and decision["fallback"] is None and decision["bundle_id"] == manifest["bundle_id"]
    assert set(decision["probabilities"]) == set(manifest["candidates"]) and decision["model"] in manifest["candidates"]
    # --policy heuristic ignores the bundle
    code, out = run(
        [
            "route",
            "--bundle",
            str(tmp_path / "bundle"),
            "--policy",
            "heuristic",
            "--prompt",
            "Pull the order id.",
            "--schema",
            '{"order_id": "string"}',
            "--json",
        ]
    )
    assert code == 0 and json.loads(out)["source"] == "heuristic" and json.loads(out)["fallback"] is None


def test_route_objective_picks_the_operating_point(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["export", str(run_dir), "--out", str(tmp_path / "bundle")])[0] == 0
    capsys.readouterr()
    base = ["route", "--bundle", str(tmp_path / "bundle"), "--prompt", "Summarize this ticket.", "--json"]
    for objective in ("max-accuracy", "budget=0"):
        code, out = run([*base, "--objective", objective])
        assert code == 0 and json.loads(out)["objective"] == objective
    assert json.loads(run(base)[1])["objective"] == "match-best"  # the bundle's own
    capsys.readouterr()
    assert main([*base, "--objective", "cheapest"], out=io.StringIO()) == 1
    assert_one_error_line(capsys.readouterr().err, "The 'objective' parameter of RouterConfig must be one of ('match-best', ")
    assert main(["route", "--prompt", "x", "--objective", "max-accuracy"], out=io.StringIO()) == 1
    assert_one_error_line(capsys.readouterr().err, "--objective picks a learned operating point; pass --bundle DIR")


def test_export_refuses_a_non_empty_folder(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine", encoding="utf-8")
    assert main(["export", str(run_dir), "--out", str(tmp_path / "taken")], out=io.StringIO()) == 1
    assert_one_error_line(capsys.readouterr().err, f"The bundle folder {str(tmp_path / 'taken')!r} already exists and is not empty")
    assert [p.name for p in (tmp_path / "taken").iterdir()] == ["keep.txt"]
    assert main(["export", str(tmp_path / "no-run"), "--out", str(tmp_path / "b")], out=io.StringIO()) == 1
    assert_one_error_line(capsys.readouterr().err, f"--model {str(tmp_path / 'no-run')!r} is neither a folder holding a trained router")
    assert not (tmp_path / "b").exists()


def test_route_with_a_missing_bundle_warns_and_falls_back(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere"
    code, out = run(["route", "--bundle", str(missing), "--prompt", "Pull the order id.", "--schema", '{"order_id": "string"}', "--json"])
    assert code == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: No router bundle at {str(missing)!r} (nothing there). Pass the folder `tierroute export` wrote. "
        "Deciding with the heuristic tree (fallback no_bundle)."
    ]
    decision = json.loads(out)
    assert decision["source"] == "heuristic" and decision["fallback"] == "no_bundle" and decision["bundle_id"] is None
    assert decision["tier"] == "tier1" and decision["model"] == "claude-3-haiku" and decision["reason"].startswith("no_bundle; rule1: ")
    code, out = run(["route", "--bundle", str(missing), "--prompt", "Summarize this ticket."])
    assert code == 0 and out.startswith("tier2  gpt-4o-mini  [heuristic] no_bundle; rule2: ")


def test_route_learned_without_a_bundle_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["route", "--policy", "learned", "--prompt", "hi"], out=io.StringIO()) == 1
    assert_one_error_line(
        capsys.readouterr().err, "--policy learned needs --bundle DIR (a folder from `tierroute export`) or a models:/ URI."
    )


# --- --json runs keep MLflow quiet on stderr ------------------------------------------------------


MLFLOW_NOISE = (
    "INFO mlflow",
    "WARNING mlflow",
    "INFO alembic",
    "Downloading artifacts",
    "Successfully registered model",
    "Created version",
    "CloudPickle",
    "Registered model",
)


def test_json_runs_keep_mlflow_off_stderr(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlflow")
    capfd.readouterr()
    out = io.StringIO()
    assert (
        main(
            ["train", "--synthetic-requests", "160", "--encoder", "none", "--kind", "pooled", "--out", str(tmp_path / "run"), "--json"],
            out=out,
        )
        == 0
    )  # tracked in sqlite:///mlruns/mlflow.db (in tmp_path)
    run_id = json.loads(out.getvalue())["run_id"]
    assert run_id and capfd.readouterr().err == ""
    data = tmp_path / "run" / "data" / "synthetic.jsonl"
    assert main(["evaluate", "--model", run_id, "--data", str(data), "--out", str(tmp_path / "ev"), "--json"], out=io.StringIO()) == 0
    err = capfd.readouterr().err  # only tierroute's own warning: these requests were trained on
    assert not [noise for noise in MLFLOW_NOISE if noise in err], err
    assert err.startswith("warning: 120 of 160 evaluated requests were in the training data") and len(err.splitlines()) == 1
    assert "MLFLOW_LOGGING_LEVEL" not in __import__("os").environ  # the quiet block put the environment back

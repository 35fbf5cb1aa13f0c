"""tierroute outcomes: decision logs joined with feedback into chosen-only outcome rows, with
every line that is not joined counted and kept apart with its reason."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from tierroute.errors import ConfigError
from tierroute.pipelines.lifecycle.outcomes import OutcomesConfig, join_outcomes


def _decision(rid: Any, model: str = "m1", **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "time": "2026-11-02T10:00:00.000+00:00",
        "request_id": rid,
        "prompt": f"prompt {rid}",
        "output_schema": None,
        "latency_sla_ms": None,
        "model": model,
        "tier": "tier1",
        "source": "learned",
        "fallback": None,
        "greedy_model": model,
        "explored": False,
        "propensity": 0.9,
        "expected_cost_usd": 0.001,
        **extra,
    }


def _feedback(rid: Any, time: str = "2026-11-02T11:00:00.000+00:00", **extra: Any) -> dict[str, Any]:
    return {
        "schema_version": 1,
        "request_id": rid,
        "quality": None,
        "correct": True,
        "cost_usd": None,
        "latency_ms": None,
        "source": "human",
        "time": time,
        **extra,
    }


def _write(path: Path, rows: list[Any]) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def test_the_join_classifies_every_line_and_writes_canonical_rows(tmp_path: Path) -> None:
    decisions = _write(
        tmp_path / "d.jsonl",
        [
            _decision("ok", cost_usd=0.004, latency_ms=120.0, served_model="m1", upstream_status=200),
            _decision("explored", model="m2", explored=True, propensity=0.05),
            _decision("dup"),
            _decision("conflict"),
            _decision("late"),
            _decision("nofb"),
            _decision("fallback", fallback="deadline_exceeded", source="heuristic", propensity=1.0),
            _decision("moved", served_model="m3", upstream_status=200),
            _decision("failed", served_model=None, upstream_status=502),
            _decision("refused", served_model="m1", upstream_status=400),
            {**_decision("private"), "prompt": None},
            _decision("twice"),
            _decision("twice"),
            _decision("auto", auto_feedback=[{"source": "schema", "quality": 0.0, "correct": False}]),
            _decision(7),
            "{not json",
        ],
    )
    feedback = _write(
        tmp_path / "f.jsonl",
        [
            _feedback("ok", quality=0.8, correct=None, cost_usd=0.005),
            _feedback("explored", correct=False, latency_ms=900),
            _feedback("dup"),
            _feedback("dup"),
            _feedback("conflict"),
            _feedback("conflict", correct=False),
            _feedback("late", time="2026-12-30T00:00:00+00:00"),
            _feedback("fallback"),
            _feedback("moved"),
            _feedback("failed"),
            _feedback("private"),
            _feedback("twice"),
            _feedback("refused"),
            _feedback("auto", correct=True),  # a person outranks the schema check
            _feedback("7"),
            _feedback("nobody"),
            {"request_id": "x"},
        ],
    )
    out = tmp_path / "outcomes.jsonl"
    report = join_outcomes(OutcomesConfig(decisions=(decisions,), feedback=(feedback,)), out)
    rows = {r["request_id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert sorted(rows) == ["7", "auto", "dup", "explored", "ok"]
    assert rows["ok"] | {"timestamp": None} == {
        "request_id": "ok",
        "prompt": "prompt ok",
        "output_schema": None,
        "latency_sla_ms": None,
        "task": None,
        "model": "m1",
        "quality": 0.8,
        "correct": True,
        "cost_usd": 0.005,
        "latency_ms": 120.0,
        "timestamp": None,
        "chosen": True,
        "propensity": 0.9,
    }
    assert (rows["explored"]["model"], rows["explored"]["propensity"], rows["explored"]["quality"]) == ("m2", 0.05, 0.0)
    assert rows["explored"]["latency_ms"] == 900 and rows["explored"]["cost_usd"] == 0.001  # the expected cost
    assert rows["auto"]["correct"] is True
    assert report["rows"] == 5 and report["decisions"] == 13 and report["decision_lines"] == 16
    assert report["unmatched_feedback"] == 1 and report["unmatched_decisions"] == 1  # "nobody"; "nofb"
    assert (report["duplicate"], report["conflicting"], report["late"], report["superseded"]) == (1, 2, 1, 1)
    assert (report["duplicate_decision_id"], report["unreadable_decision"], report["unreadable_feedback"]) == (3, 1, 1)
    assert report["excluded"] == {
        "fallback:deadline_exceeded": 1,
        "served_by_other_model": 1,
        "upstream_failed": 1,
        "upstream_error": 1,
        "no_prompt": 1,
    }
    assert report["cost_from"] == {"feedback": 1, "expected": 4} and report["explored_rows"] == 1
    assert report["auto_feedback"] == 1 and report["feedback_sources"] == {"human": 5}
    apart = [json.loads(line) for line in Path(report["apart"]).read_text(encoding="utf-8").splitlines()]
    reasons = sorted(a["reason"] for a in apart)
    assert reasons.count("conflicting") == 2 and "unknown_request_id" in reasons and "late" in reasons
    assert json.loads((tmp_path / "outcomes.jsonl.report.json").read_text(encoding="utf-8")) == report


def test_the_rows_ingest_as_chosen_only_outcomes(tmp_path: Path) -> None:
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

    decisions = _write(tmp_path / "d.jsonl", [_decision(f"r{i}", model=("gpt-4o" if i % 2 else "claude-3-haiku")) for i in range(6)])
    feedback = _write(tmp_path / "f.jsonl", [_feedback(f"r{i}", correct=bool(i % 3)) for i in range(6)])
    join_outcomes(OutcomesConfig(decisions=(decisions,), feedback=(feedback,)), tmp_path / "o.jsonl")
    table = run_ingest(IngestConfig(paths=(str(tmp_path / "o.jsonl"),), out_dir=str(tmp_path / "ingest"))).to_pandas()
    assert len(table) == 6 and table["chosen"].all() and (table["propensity"] == 0.9).all()


def test_a_privacy_mode_decision_becomes_a_feature_only_row_that_ingests(tmp_path: Path) -> None:
    """--log-features without --log-prompts: the row holds the vector and the spec instead of the
    prompt; a decision with neither is still excluded as no_prompt; a broken vector is quarantined."""
    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

    spec = "ab" * 32
    private = {"prompt": None, "prompt_sha256": "0" * 16, "features": [12.0, None, 1.0], "feature_spec": spec}
    decisions = _write(
        tmp_path / "d.jsonl",
        [{**_decision(f"p{i}"), **private} for i in range(4)]
        + [{**_decision("hashed"), "prompt": None}, {**_decision("broken"), **private, "features": [12.0, "x"]}],
    )
    feedback = _write(tmp_path / "f.jsonl", [_feedback(rid) for rid in ("p0", "p1", "p2", "p3", "hashed", "broken")])
    out = tmp_path / "o.jsonl"
    report = join_outcomes(OutcomesConfig(decisions=(decisions,), feedback=(feedback,)), out)
    assert report["rows"] == 5 and report["feature_rows"] == 5 and report["excluded"] == {"no_prompt": 1}
    rows = {r["request_id"]: r for r in map(json.loads, out.read_text(encoding="utf-8").splitlines())}
    assert rows["p0"] | {"timestamp": None} == {
        "request_id": "p0",
        "prompt": None,
        "output_schema": None,
        "latency_sla_ms": None,
        "task": None,
        "model": "m1",
        "quality": 1.0,
        "correct": True,
        "cost_usd": 0.001,
        "latency_ms": None,
        "timestamp": None,
        "chosen": True,
        "propensity": 0.9,
        "features": [12.0, None, 1.0],
        "feature_spec": spec,
    }
    ingested = run_ingest(IngestConfig(paths=(str(out),), out_dir=str(tmp_path / "ingest"), max_bad_fraction=0.5))
    assert ingested.rows_kept == 4 and ingested.reasons == {"bad_features": 1}
    table = ingested.to_pandas()
    assert table["prompt"].isna().all() and (table["feature_spec"] == spec).all()


def test_the_cli_prints_the_report_and_refuses_to_overwrite(tmp_path: Path) -> None:
    from tierroute.cli import main

    decisions = _write(tmp_path / "d.jsonl", [_decision("a"), _decision("b")])
    feedback = _write(tmp_path / "f.jsonl", [_feedback("a"), _feedback("zzz")])
    out = io.StringIO()
    assert main(["outcomes", "--decisions", decisions, "--feedback", feedback, "--out", str(tmp_path / "o.jsonl")], out=out) == 0
    text = out.getvalue()
    assert text.startswith(
        "1 outcome rows from 2 decisions and 2 feedback lines (+0 automatic): 1 matched, 1 decisions "
        "without feedback, 1 feedback for unknown ids\n"
    )
    with pytest.raises(ConfigError, match=r"already exists; tierroute does not overwrite outputs"):
        join_outcomes(OutcomesConfig(decisions=(decisions,), feedback=(feedback,)), tmp_path / "o.jsonl")
    with pytest.raises(ConfigError, match=r"^The decision log '.*nope.jsonl' does not exist"):
        join_outcomes(OutcomesConfig(decisions=(str(tmp_path / "nope.jsonl"),)), tmp_path / "o2.jsonl")


def test_retrain_needs_logs_or_decisions_and_feedback_needs_decisions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tierroute.cli import main

    uri = f"sqlite:///{tmp_path / 'empty.db'}"
    assert main(["retrain", "--tracking-uri", uri], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: The 'logs' parameter of RetrainConfig needs at least one outcome log. Pass --logs FILE..., or --decisions "
        "FILE... --feedback FILE... to join served traffic with its feedback."
    )
    assert main(["retrain", "--feedback", "f.jsonl", "--tracking-uri", uri], out=io.StringIO()) == 1
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        "error: --feedback needs --decisions (the decision logs the feedback is about). Pass both."
    )

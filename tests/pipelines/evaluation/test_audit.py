"""run_audit on a tiny synthetic log (article catalogue, three tasks with known verdicts), its
files and text rendering, the catalogue errors; then the whole RouterBench folder."""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

import pytest

from tierroute.errors import CatalogueError, ConfigError
from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.heuristic import TIERS, HeuristicTree
from tierroute.pipelines.data.ingest import IngestConfig
from tierroute.pipelines.evaluation.audit import AuditConfig, render_audit, run_audit
from tierroute.request import Request

#: model -> (tier in the article catalogue, cost per call)
MODELS = {"claude-3-haiku": ("tier1", 0.003), "gpt-4o-mini": ("tier2", 0.01), "gpt-4o": ("tier3", 0.12)}

#: task -> (prompt template, schema, sla, per-model quality of each request)
TASKS: dict[str, tuple[str, Any, float | None, dict[str, list[float]]]] = {
    # tier1 3 points behind tier3 -> route to tier1
    "extract": (
        "Extract the order id from: order {i} shipped.",
        {"order_id": "string"},
        None,
        {"claude-3-haiku": [1, 1, 1, 1, 1, 0.4], "gpt-4o-mini": [1, 1, 1, 1, 1, 0.46], "gpt-4o": [1, 1, 1, 1, 1, 0.58]},
    ),
    # tier1 20 and tier2 15 points behind -> keep tier3
    "reason": (
        "Step by step, analyze and compare plan {i} with the others, then justify which is better.",
        None,
        150.0,
        {"claude-3-haiku": [1, 1, 0.8, 0], "gpt-4o-mini": [1, 1, 1, 0], "gpt-4o": [1, 1, 1, 0.6]},
    ),
    # tier1 20 points behind, tier2 2 points behind -> route to tier2
    "summary": (
        "Summarise thread {i} in two sentences.",
        None,
        None,
        {"claude-3-haiku": [0.6, 0.6], "gpt-4o-mini": [0.78, 0.78], "gpt-4o": [0.8, 0.8]},
    ),
}
QUALITY = {"extract": (0.9, 0.91, 0.93), "reason": (0.7, 0.75, 0.9), "summary": (0.6, 0.78, 0.8)}
HEADERS = (
    "1. Call types by volume",
    "2. Reasoning depth (1-5), requests per score",
    "3. Where the heuristic tree sends them",
    "4. Cheapest tier vs frontier (verdict: under 5 points -> cheaper tier)",
)


def synthetic_rows() -> list[dict[str, Any]]:
    rows = []
    for task, (template, schema, sla, qualities) in TASKS.items():
        for model, values in qualities.items():
            for i, quality in enumerate(values):
                row = {
                    "request_id": f"{task}-{i}",
                    "prompt": template.format(i=i),
                    "model": model,
                    "task": task,
                    "quality": quality,
                    "cost_usd": MODELS[model][1],
                }
                if schema is not None:
                    row["output_schema"] = schema
                if sla is not None:
                    row["latency_sla_ms"] = sla
                rows.append(row)
    return rows


def write_log(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def audit(path: Path | str, out: str | None = "audit", **kwargs: Any) -> dict[str, Any]:
    ingest_kwargs = {k: kwargs.pop(k) for k in ("max_bad_fraction", "format") if k in kwargs}
    return run_audit(AuditConfig(ingest=IngestConfig(paths=(str(path),), **ingest_kwargs), out_dir=out, **kwargs))


@pytest.fixture
def report(tmp_path: Path) -> dict[str, Any]:
    log = write_log(tmp_path / "log.jsonl", synthetic_rows() + ["not json"])
    return audit(log)


def test_report_header(report: dict[str, Any]) -> None:
    assert report["kind"] == "tierroute.audit" and report["schema_version"] == 1
    assert report["out_dir"] == "audit"
    assert report["catalogue"] == "article"  # auto-detected: the first built-in listing every model
    assert report["gap_points"] == 5.0
    assert report["requests"] == 12
    assert report["outcomes"] == 36
    assert report["models"] == sorted(MODELS)
    assert report["quarantined"] == 1
    assert report["quarantine_by_reason"] == {"unparseable_row": 1}
    assert report["quarantine_file"] == str(Path("audit") / "quarantine.jsonl")


def test_tasks_by_volume(report: dict[str, Any]) -> None:
    tasks = report["tasks"]
    assert [t["task"] for t in tasks] == ["extract", "reason", "summary"]
    assert [t["requests"] for t in tasks] == [6, 4, 2]
    assert [t["share"] for t in tasks] == pytest.approx([0.5, 1 / 3, 1 / 6])
    counter = BpeTokenCounter()
    for t in tasks:
        template = TASKS[t["task"]][0]
        expected = statistics.median(counter.count(template.format(i=i)) for i in range(t["requests"]))
        assert t["median_tokens"] == expected


def test_depth_and_tree_tiers(report: dict[str, Any]) -> None:
    tree = HeuristicTree()
    assert sum(report["depth"].values()) == report["requests"]
    assert list(report["depth"]) == ["1", "2", "3", "4", "5"]
    assert sum(report["tree_tiers"].values()) == pytest.approx(1.0)
    assert list(report["tree_tiers"]) == list(TIERS)
    expected_tier = {"extract": "tier1", "reason": "tier3", "summary": "tier2"}
    total_depth = dict.fromkeys(report["depth"], 0)
    for t in report["tasks"]:
        template, schema, sla, _ = TASKS[t["task"]]
        decisions = [tree.route(Request(template.format(i=i), schema, sla)) for i in range(t["requests"])]
        depths = {str(d): sum(x.depth == d for x in decisions) for d in range(1, 6)}
        assert t["depth"] == depths
        assert sum(t["depth"].values()) == t["requests"]
        for d, n in depths.items():
            total_depth[d] += n
        assert {x.tier for x in decisions} == {expected_tier[t["task"]]}
        assert t["tree_tiers"] == {k: (1.0 if k == expected_tier[t["task"]] else 0.0) for k in TIERS}
    assert report["depth"] == total_depth
    assert report["tree_tiers"] == pytest.approx({"tier1": 0.5, "tier2": 1 / 6, "tier3": 1 / 3})


def test_tier_rows(report: dict[str, Any]) -> None:
    for t in report["tasks"]:
        rows = t["tiers"]
        assert [r["tier"] for r in rows] == ["tier1", "tier2", "tier3"]
        assert [r["model"] for r in rows] == ["claude-3-haiku", "gpt-4o-mini", "gpt-4o"]
        assert [r["quality"] for r in rows] == pytest.approx(QUALITY[t["task"]])
        for r in rows:
            values = TASKS[t["task"]][3][r["model"]]
            correct = sum(v >= 0.5 for v in values)
            cost = MODELS[r["model"]][1]
            assert r["outcomes"] == len(values)
            assert r["accuracy"] == pytest.approx(correct / len(values))
            assert r["cost_per_request"] == pytest.approx(cost)
            assert r["cost_per_correct"] == pytest.approx(cost * len(values) / correct)


def test_gap_and_verdict(report: dict[str, Any]) -> None:
    by_task = {t["task"]: t for t in report["tasks"]}
    for t in by_task.values():
        assert t["cheapest_tier"] == "tier1" and t["frontier_tier"] == "tier3"
        assert t["frontier_cost_ratio"] == pytest.approx(0.12 / 0.003)
    assert by_task["extract"]["gap"] == pytest.approx(3.0)
    assert by_task["extract"]["route_to"] == "tier1"
    assert by_task["extract"]["verdict"] == "route to tier1"
    assert by_task["reason"]["gap"] == pytest.approx(20.0)
    assert by_task["reason"]["route_to"] == "tier3"
    assert by_task["reason"]["verdict"] == "keep tier3 (every cheaper tier is >= 5 points behind)"
    assert by_task["summary"]["gap"] == pytest.approx(20.0)
    assert by_task["summary"]["route_to"] == "tier2"
    assert by_task["summary"]["verdict"] == "route to tier2"


def test_gap_points_moves_the_verdict(tmp_path: Path) -> None:
    log = write_log(tmp_path / "log.jsonl", synthetic_rows())
    wide = {t["task"]: t["verdict"] for t in audit(log, gap_points=25)["tasks"]}
    assert wide == {"extract": "route to tier1", "reason": "route to tier1", "summary": "route to tier1"}
    narrow = {t["task"]: t["verdict"] for t in audit(log, out="audit2", gap_points=1)["tasks"]}
    assert narrow["extract"] == "keep tier3 (every cheaper tier is >= 1 points behind)"


def test_files_written(report: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "audit"
    assert sorted(p.name for p in out.iterdir()) == ["audit.json", "audit.md", "ingest.json", "outcomes", "quarantine.jsonl"]
    assert json.loads((out / "audit.json").read_text(encoding="utf-8")) == report
    markdown = (out / "audit.md").read_text(encoding="utf-8")
    assert markdown == render_audit(report, markdown=True)
    assert markdown.startswith(
        "# tierroute audit\n\n12 requests, 36 outcomes, 3 models, catalogue 'article'; 1 rows quarantined (unparseable_row 1)"
    )
    for header in HEADERS:
        assert f"## {header}\n" in markdown
    assert "| task | requests | share | median tokens |\n|---|---|---|---|\n| extract | 6 | 50.0% |" in markdown
    assert "| reason | 20.0 | 40.0x | keep tier3 (every cheaper tier is >= 5 points behind) |" in markdown


def test_render_audit_text(report: dict[str, Any]) -> None:
    text = render_audit(report)
    assert text.endswith("Written to audit/ (audit.json, audit.md, quarantine.jsonl, outcomes/)\n")
    assert "#" not in text.splitlines()[0]
    for header in HEADERS:
        assert f"{header}\n{'=' * len(header)}\n" in text
    lines = text.splitlines()
    assert any(line.split() == ["(all)", "50.0%", "16.7%", "33.3%"] for line in lines)
    assert any(line.split()[:5] == ["extract", "tier1", "claude-3-haiku", "0.900", "$0.003000"] for line in lines)
    assert any(line.split() == ["summary", "20.0", "40.0x", "route", "to", "tier2"] for line in lines)


def test_audit_config_validation() -> None:
    with pytest.raises(ConfigError) as err:
        AuditConfig(ingest=IngestConfig(paths=("x",)), gap_points=-1)
    assert str(err.value) == "The 'gap_points' parameter of AuditConfig must be a finite number in the range [0, 100]. Got -1 instead."
    d = AuditConfig(ingest=IngestConfig(paths=("x",), mapping=(("quality", "f1"),))).to_dict()
    assert d["ingest"]["mapping"] == {"quality": "f1"} and d["gap_points"] == 5.0


def test_unknown_models_are_tiered_by_the_data_s_own_costs(tmp_path: Path) -> None:
    rows = [
        {"request_id": f"r{j}", "prompt": "p", "model": f"my-model-{i}", "quality": 1, "cost_usd": 0.001 * (i + 1)}
        for i in range(6)
        for j in range(3)
    ]
    log = write_log(tmp_path / "log.jsonl", rows)
    said: list[str] = []
    report = run_audit(AuditConfig(ingest=IngestConfig(paths=(str(log),)), out_dir=str(tmp_path / "audit")), progress=said.append)
    assert report["catalogue"] == "from-data"
    assert any(line.startswith("no built-in catalogue lists these models: tiers and prices read off the data's costs") for line in said)
    tiers = (tmp_path / "audit" / "catalogue.toml").read_text(encoding="utf-8")
    assert 'model = "my-model-0"\ntier = "tier1"' in tiers and 'model = "my-model-5"\ntier = "tier3"' in tiers


def test_model_missing_from_the_named_catalogue(tmp_path: Path) -> None:
    rows = synthetic_rows() + [{"request_id": "extra", "prompt": "q", "model": "mystery", "quality": 1, "cost_usd": 0.0}]
    log = write_log(tmp_path / "log.jsonl", rows)
    with pytest.raises(CatalogueError) as err:
        audit(log, catalogue="article")
    assert str(err.value) == (
        "Catalogue 'article' has no tier for model(s) ['mystery']. Add them to the TOML (model, tier, prices) or pass another --catalogue."
    )


def test_a_catalogue_file(tmp_path: Path) -> None:
    toml = tmp_path / "mine.toml"
    toml.write_text(
        'schema_version = 1\nname = "mine"\ntiers = ["small", "big"]\n'
        '[[candidates]]\nmodel = "s"\ntier = "small"\ninput_per_1k = 0.001\noutput_per_1k = 0.001\n'
        '[[candidates]]\nmodel = "b"\ntier = "big"\ninput_per_1k = 0.01\noutput_per_1k = 0.03\n',
        encoding="utf-8",
    )
    rows = [
        {"request_id": f"r{i}", "prompt": f"Question {i}?", "model": m, "quality": q, "cost_usd": c}
        for i in range(4)
        for m, q, c in (("s", 0.5, 0.001), ("b", 1.0, 0.01))
    ]
    report = audit(write_log(tmp_path / "log.jsonl", rows), catalogue=str(toml))
    assert report["catalogue"] == "mine"
    (task,) = report["tasks"]
    assert task["task"] == "(none)"
    assert [r["tier"] for r in task["tiers"]] == ["small", "big"]
    assert task["verdict"] == "keep big (every cheaper tier is >= 5 points behind)"
    assert task["gap"] == pytest.approx(50.0)


@pytest.mark.shared_data
def test_real_routerbench_audit(shared_data: Path) -> None:
    report = audit(shared_data / "routerbench" / "routerbench_zs")
    assert report["catalogue"] == "routerbench"
    assert len(report["models"]) == 11
    tasks = {t["task"]: t for t in report["tasks"]}
    assert set(tasks) == {"arc-challenge", "mbpp", "winogrande"}
    assert [t["requests"] for t in report["tasks"]] == sorted((t["requests"] for t in report["tasks"]), reverse=True)
    assert sum(t["requests"] for t in report["tasks"]) == report["requests"]
    # no schema, no SLA, depth <= 3: the tree sends everything to tier2
    assert report["tree_tiers"] == {"tier1": 0.0, "tier2": 1.0, "tier3": 0.0}
    assert report["depth"]["4"] == report["depth"]["5"] == 0
    assert sum(report["depth"].values()) == report["requests"]
    assert set(report["quarantine_by_reason"]) == {"quality_nan", "conflicting_request_id"}
    for t in tasks.values():
        assert t["tree_tiers"] == {"tier1": 0.0, "tier2": 1.0, "tier3": 0.0}
        assert [r["tier"] for r in t["tiers"]] == ["tier1", "tier2", "tier3"]
        frontier = t["tiers"][-1]
        cheaper = [r for r in t["tiers"][:-1] if (frontier["quality"] - r["quality"]) * 100 < 5.0]
        expected = cheaper[0]["tier"] if cheaper else frontier["tier"]
        assert t["route_to"] == expected
        assert t["verdict"] == (f"route to {expected}" if cheaper else "keep tier3 (every cheaper tier is >= 5 points behind)")
        assert t["gap"] == pytest.approx((frontier["quality"] - t["tiers"][0]["quality"]) * 100)
        assert t["frontier_cost_ratio"] > 1
    text = render_audit(report)
    for header in HEADERS:
        assert header in text


def test_a_task_with_one_tier_has_nothing_to_compare(tmp_path: Path) -> None:
    rows = [
        {"request_id": f"q{i}", "prompt": f"question {i}", "model": "gpt-4o", "quality": 1, "cost_usd": 0.1, "task": "solo"}
        for i in range(3)
    ]
    report = run_audit(AuditConfig(IngestConfig(paths=(str(write_log(tmp_path / "one.jsonl", rows)),)), out_dir=str(tmp_path / "a")))
    (task,) = report["tasks"]
    assert task["verdict"] == "only tier3 is in the data: nothing to compare" and task["gap"] == 0.0

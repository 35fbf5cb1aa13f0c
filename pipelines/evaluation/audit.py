"""``tierroute audit``: the article's checklist as a command.

1. call types (tasks) by volume;
2. the reasoning-depth distribution (1-5);
3. the share of requests the heuristic tree sends to each tier;
4. per task, the quality gap between the cheapest tier and the frontier, with the article's verdict
   ("if the delta is under 5 points, route to tier 1"), and what each tier costs per correct answer.

Quality is the outcome's ``quality`` (F1, a judge score or 0/1 correctness) averaged per model; a
tier's figure is its best model on that task (ties go to the cheaper one).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from tierroute._params import check_number
from tierroute.models.catalogue import Catalogue, load_catalogue
from tierroute.models.heuristic import TIERS, HeuristicTree
from tierroute.pipelines.data.catalogues import pick_catalogue
from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
from tierroute.pipelines.outputs import prepare_out_dir
from tierroute.request import Request

__all__ = ["AuditConfig", "run_audit", "render_audit"]


@dataclass(frozen=True)
class AuditConfig:
    """``gap_points``: the article's threshold (quality points, i.e. x100) under which the cheaper
    tier is good enough."""

    ingest: IngestConfig
    catalogue: str | None = None
    gap_points: float = 5.0
    out_dir: str | None = None

    def __post_init__(self) -> None:
        check_number(self.gap_points, "gap_points", "AuditConfig", 0.0, 100.0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ingest"] = self.ingest.to_dict()
        return d


def _tier_rows(frame: Any, catalogue: Catalogue) -> list[dict[str, Any]]:
    """Per tier present in ``frame``: its best model with quality, accuracy, cost."""
    per_model = frame.groupby("model").agg(
        quality=("quality", "mean"),
        accuracy=("correct", "mean"),
        cost=("cost_usd", "mean"),
        cost_sum=("cost_usd", "sum"),
        correct_sum=("correct", "sum"),
        n=("quality", "size"),
    )
    per_model["tier"] = [catalogue.tier_of(m) for m in per_model.index]
    rows = []
    for tier in sorted(per_model["tier"].unique(), key=catalogue.tier_rank):
        group = per_model[per_model["tier"] == tier].sort_values(["quality", "cost"], ascending=[False, True])
        best_model, best = group.index[0], group.iloc[0]
        rows.append(
            {
                "tier": tier,
                "model": best_model,
                "quality": float(best["quality"]),
                "accuracy": float(best["accuracy"]),
                "cost_per_request": float(best["cost"]),
                "cost_per_correct": float(best["cost_sum"] / best["correct_sum"]) if best["correct_sum"] else None,
                "outcomes": int(best["n"]),
            }
        )
    return rows


def _verdict(tiers: list[dict[str, Any]], gap_points: float) -> dict[str, Any]:
    frontier = tiers[-1]
    cheapest = tiers[0]
    if len(tiers) == 1:
        return {
            "cheapest_tier": cheapest["tier"],
            "frontier_tier": frontier["tier"],
            "gap": 0.0,
            "frontier_cost_ratio": 1.0,
            "route_to": frontier["tier"],
            "verdict": f"only {frontier['tier']} is in the data: nothing to compare",
        }
    gap = (frontier["quality"] - cheapest["quality"]) * 100.0
    route_to = frontier["tier"]
    for row in tiers[:-1]:
        if (frontier["quality"] - row["quality"]) * 100.0 < gap_points:
            route_to = row["tier"]
            break
    cost_ratio = frontier["cost_per_request"] / cheapest["cost_per_request"] if cheapest["cost_per_request"] else None
    return {
        "cheapest_tier": cheapest["tier"],
        "frontier_tier": frontier["tier"],
        "gap": gap,
        "frontier_cost_ratio": cost_ratio,
        "route_to": route_to,
        "verdict": (
            f"route to {route_to}"
            if route_to != frontier["tier"]
            else f"keep {route_to} (every cheaper tier is >= {gap_points:g} points behind)"
        ),
    }


def run_audit(config: AuditConfig, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Ingest the logs, then measure the checklist. Writes ``audit.json`` and ``audit.md`` beside the
    ingested table in the run folder and returns the report as a dict."""
    if config.catalogue:
        load_catalogue(config.catalogue)  # a bad --catalogue fails before anything is written
    out_dir = prepare_out_dir(config.out_dir, "audit")
    ingest_cfg = IngestConfig(
        **{
            **config.ingest.to_dict(),
            "out_dir": str(out_dir),
            "mapping": config.ingest.mapping,
            "catalogue": config.ingest.catalogue or config.catalogue,  # also prices cost-less data (RouteLLM)
        }
    )
    result = run_ingest(ingest_cfg, progress=progress)
    frame = result.to_pandas()
    models = sorted(frame["model"].unique().tolist())
    catalogue, derived = pick_catalogue(config.catalogue, frame, out_dir)
    if derived and progress:
        progress(derived)

    requests = frame.drop_duplicates("request_id")[["request_id", "prompt", "output_schema", "latency_sla_ms", "task"]]
    requests = requests.assign(task=requests["task"].fillna("(none)"))
    tree = HeuristicTree()
    if progress:
        progress(f"measuring {len(requests):,} requests")
    verdicts = [
        tree.route(Request(p, json.loads(s) if isinstance(s, str) else None, None if sla is None or sla != sla else float(sla)))
        for p, s, sla in zip(requests["prompt"], requests["output_schema"], requests["latency_sla_ms"])
    ]
    requests = requests.assign(depth=[v.depth for v in verdicts], tier=[v.tier for v in verdicts], tokens=[v.token_count for v in verdicts])
    n = len(requests)

    def shares(series: Any, keys: list[Any]) -> dict[str, float]:
        counts = series.value_counts()
        return {str(k): float(counts.get(k, 0)) / len(series) for k in keys}

    tasks = []
    frame = frame.assign(task=frame["task"].fillna("(none)"))
    for task, group in requests.groupby("task"):
        tiers = _tier_rows(frame[frame["task"] == task], catalogue)
        tasks.append(
            {
                "task": task,
                "requests": len(group),
                "share": len(group) / n,
                "median_tokens": float(group["tokens"].median()),
                "depth": {str(d): int((group["depth"] == d).sum()) for d in range(1, 6)},
                "tree_tiers": shares(group["tier"], list(TIERS)),
                "tiers": tiers,
                **_verdict(tiers, config.gap_points),
            }
        )
    tasks.sort(key=lambda t: (-t["requests"], t["task"]))
    report = {
        "kind": "tierroute.audit",
        "schema_version": 1,
        "out_dir": str(out_dir),
        "catalogue": catalogue.name,
        "gap_points": config.gap_points,
        "requests": n,
        "outcomes": len(frame),
        "models": models,
        "quarantined": result.rows_quarantined,
        "quarantine_by_reason": dict(sorted(result.reasons.items())),
        "quarantine_file": str(result.quarantine_path),
        "depth": {str(d): int((requests["depth"] == d).sum()) for d in range(1, 6)},
        "tree_tiers": shares(requests["tier"], list(TIERS)),
        "tasks": tasks,
    }
    (out_dir / "audit.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out_dir / "audit.md").write_text(render_audit(report, markdown=True), encoding="utf-8")
    return report


def _table(headers: list[str], rows: list[list[str]], markdown: bool) -> str:
    if markdown:
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*headers), fmt.format(*("-" * w for w in widths)), *(fmt.format(*r) for r in rows)])


def _money(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}" if value < 0.01 else f"${value:.4f}"


def render_audit(report: dict[str, Any], markdown: bool = False) -> str:
    """The report as text tables (terminal) or Markdown (``audit.md``)."""
    h = (lambda s: f"## {s}") if markdown else (lambda s: f"{s}\n{'=' * len(s)}")
    out = [
        ("# tierroute audit\n\n" if markdown else "")
        + f"{report['requests']:,} requests, {report['outcomes']:,} outcomes, {len(report['models'])} models, "
        f"catalogue {report['catalogue']!r}; {report['quarantined']:,} rows quarantined "
        f"({', '.join(f'{k} {v}' for k, v in report['quarantine_by_reason'].items()) or 'none'})",
        "",
        h("1. Call types by volume"),
        _table(
            ["task", "requests", "share", "median tokens"],
            [[t["task"], f"{t['requests']:,}", f"{t['share']:.1%}", f"{t['median_tokens']:.0f}"] for t in report["tasks"]],
            markdown,
        ),
        "",
        h("2. Reasoning depth (1-5), requests per score"),
        _table(
            ["task", "1", "2", "3", "4", "5"],
            [[t["task"], *(str(t["depth"][str(d)]) for d in range(1, 6))] for t in report["tasks"]]
            + [["(all)", *(str(report["depth"][str(d)]) for d in range(1, 6))]],
            markdown,
        ),
        "",
        h("3. Where the heuristic tree sends them"),
        _table(
            ["task", *TIERS],
            [[t["task"], *(f"{t['tree_tiers'][k]:.1%}" for k in TIERS)] for t in report["tasks"]]
            + [["(all)", *(f"{report['tree_tiers'][k]:.1%}" for k in TIERS)]],
            markdown,
        ),
        "",
        h(f"4. Cheapest tier vs frontier (verdict: under {report['gap_points']:g} points -> cheaper tier)"),
        _table(
            ["task", "tier", "best model", "quality", "cost/request", "cost/correct"],
            [
                [t["task"], r["tier"], r["model"], f"{r['quality']:.3f}", _money(r["cost_per_request"]), _money(r["cost_per_correct"])]
                for t in report["tasks"]
                for r in t["tiers"]
            ],
            markdown,
        ),
        "",
        _table(
            ["task", "gap (points)", "frontier cost x", "verdict"],
            [
                [
                    t["task"],
                    f"{t['gap']:.1f}",
                    "n/a" if t["frontier_cost_ratio"] is None else f"{t['frontier_cost_ratio']:.1f}x",
                    t["verdict"],
                ]
                for t in report["tasks"]
            ],
            markdown,
        ),
        "",
        f"Written to {report['out_dir']}/ (audit.json, audit.md, quarantine.jsonl, outcomes/)",
    ]
    return "\n".join(out) + "\n"

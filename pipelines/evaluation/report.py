"""The evaluation report: ``metrics.json``, ``report.md`` (the learned router against the baselines,
by objective, per task, with the stability, importance and selection tables when the report has them)
and PNG plots (cost-quality curve, calibration, tier mix), written from :func:`evaluate`'s report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.pipelines.evaluation.stability import stability_markdown

__all__ = ["write_report"]


def write_report(report: dict[str, Any], folder: str | Path) -> list[Path]:
    """``metrics.json``, ``report.md`` and PNG plots (cost-quality curve, tier mix) in ``folder``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    b = report["baselines"]
    # every single candidate gets a row (cheapest first), then the baselines and the learned router
    rows = [*sorted(b["singles"], key=lambda r: r["cost_per_query"]), b["oracle"], b["random"], b["heuristic"], report["learned"]]
    lines = [
        "# tierroute evaluation",
        "",
        f"{report['requests']:,} requests ({report['requests_left_out']} left out: incomplete outcomes; "
        f"{report.get('logged_requests', 0)} logged requests judged by doubly-robust estimates: figures are "
        f"{report.get('estimator', 'observed')}); "
        f"AIQ {report['aiq']:.4f} ({report['aiq_normalisation']}); ECE {report['ece']:.4f}; "
        f"{report['overlap_with_training']} of these requests were seen in training",
        "",
        "| router | accuracy | cost/query | cost/correct |",
        "|---|---|---|---|",
    ]
    for r in rows:
        if r.get("accuracy") is None:  # the oracle of logged-only data: unknown
            continue
        cpc = "n/a" if r.get("cost_per_correct") is None else f"{r['cost_per_correct']:.6g}"
        label = r["name"] + (" (best single)" if r["name"] == b["best_single"]["name"] and r in b["singles"] else "")
        label += " (cheapest)" if r["name"] == b["cheapest"]["name"] and r in b["singles"] else ""
        lines.append(f"| {label} | {r['accuracy']:.4f} | {r['cost_per_query']:.6g} | {cpc} |")
    if report.get("objectives"):
        lines += [
            "",
            "Operating points by objective (knob chosen out of fold on training data; figures on this data):",
            "",
            "| objective | reached out of fold | accuracy | cost/query | cost/correct | note |",
            "|---|---|---|---|---|---|",
        ]
        for o in report["objectives"]:
            cpc = "n/a" if o["cost_per_correct"] is None else f"{o['cost_per_correct']:.6g}"
            mark = " (served)" if o["chosen"] else ""
            lines.append(
                f"| {o['objective']}{mark} | {'yes' if o['reached_out_of_fold'] else 'no'} | {o['accuracy']:.4f} | "
                f"{o['cost_per_query']:.6g} | {cpc} | {o['note']} |"
            )
    for key, label in (("at_heuristic_accuracy", "the heuristic's"), ("at_best_single_accuracy", "the best single's")):
        at = report[key]
        hull = "not reached" if at["cost_ratio"] is None else f"{at['cost_ratio']:.3f}x its cost"
        point_ = at["curve_point"]
        swept = (
            "no swept point reaches it"
            if point_ is None
            else (f"cheapest swept point {point_['accuracy']:.4f} at {point_['cost_per_query']:.6g}/query (knob {point_['knob']:.6g})")
        )
        lines.append(f"\nLearned curve at {label} accuracy (read on this data, not a held-out choice): hull {hull}; {swept}.")
    lines += [
        "",
        "Per task (accuracy / cost per query):",
        "",
        "| task | requests | learned | heuristic | best single |",
        "|---|---|---|---|---|",
    ]
    for task, t in report["per_task"].items():
        cells = [f"{t[k]['accuracy']:.3f} / {t[k]['cost_per_query']:.4g}" for k in ("learned", "heuristic", "best_single")]
        lines.append(f"| {task} | {t['requests']} | " + " | ".join(cells) + " |")
    if report.get("stability"):  # flip rates under prompt perturbations (stability.py)
        lines += ["", *stability_markdown(report["stability"])]
    if report.get("importances"):  # global importances per candidate (importance.py; tierroute train adds them)
        from tierroute.pipelines.evaluation.importance import importance_markdown

        lines += ["", *importance_markdown(report["importances"])]
    if report.get("selection"):  # the family selection table (pipelines/training/selection.py), when train chose one
        from tierroute.pipelines.training.selection import selection_markdown

        lines += ["", *selection_markdown(report["selection"])]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5))
    curve = report["curve"]
    ax.plot([c["cost_per_query"] for c in curve], [c["accuracy"] for c in curve], "-", label="learned (curve)")
    for s in b["singles"]:
        ax.scatter(s["cost_per_query"], s["accuracy"], marker="o", s=18)
        ax.annotate(s["name"].split("/")[-1], (s["cost_per_query"], s["accuracy"]), fontsize=6)
    for key, marker in (("heuristic", "s"), ("oracle", "*")):
        if b[key].get("accuracy") is None:
            continue
        ax.scatter(b[key]["cost_per_query"], b[key]["accuracy"], marker=marker, s=80, label=key)
    ax.scatter(report["learned"]["cost_per_query"], report["learned"]["accuracy"], marker="D", s=60, label="learned (chosen)")
    _finish(plt, fig, ax, out / "cost_quality.png", "cost per query (USD)", "accuracy")

    fig, ax = plt.subplots(figsize=(5, 5))
    bins = report["calibration"]
    ax.plot([0, 1], [0, 1], ":", color="grey")
    ax.plot([b["mean_p"] for b in bins], [b["observed"] for b in bins], "o-", label=f"learned (ECE {report['ece']:.3f})")
    _finish(plt, fig, ax, out / "calibration.png", "predicted P(correct)", "observed share correct")

    fig, ax = plt.subplots(figsize=(6, 3.5))
    names = ["learned", "heuristic", "oracle"]
    shares = [report["learned"]["tier_share"], _tier_share(report, "heuristic"), _tier_share(report, "oracle")]
    left = np.zeros(len(names))
    for tier in shares[0]:
        values = np.array([s.get(tier, 0.0) for s in shares])
        ax.barh(names, values, left=left, label=tier)
        left += values
    _finish(plt, fig, ax, out / "tier_mix.png", "share of requests", "")
    return [out / "metrics.json", out / "report.md", out / "cost_quality.png", out / "calibration.png", out / "tier_mix.png"]


def _finish(plt: Any, fig: Any, ax: Any, path: Path, xlabel: str, ylabel: str) -> None:
    """Label, legend and save one plot, then free it."""
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _tier_share(report: dict[str, Any], name: str) -> dict[str, float]:
    """A baseline's tier shares (empty when it has none)."""
    return dict(report["baselines"][name].get("tier_share", {}))

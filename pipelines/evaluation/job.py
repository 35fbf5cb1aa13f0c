"""``tierroute evaluate``: judge a trained router on outcome data it was not trained on.

    result = run_evaluate(EvaluateConfig(model="runs/train-.../", data=("held_out.jsonl",)))
    result.report["aiq"], result.out_dir

The data is ingested (priced with the router's own catalogue when a format has no costs), judged
against the baselines by :func:`tierroute.pipelines.evaluation.evaluate.evaluate`, and written as
report.md and metrics.json into a new folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tierroute.pipelines.data.dataset import RoutingData
from tierroute.pipelines.data.ingest import IngestConfig, run_ingest
from tierroute.pipelines.evaluation.evaluate import evaluate, write_report
from tierroute.pipelines.outputs import prepare_out_dir
from tierroute.pipelines.training.tracking import load_router_from
from tierroute.tracking_uri import DEFAULT_TRACKING_URI

__all__ = ["EvaluateConfig", "EvaluateResult", "run_evaluate"]

#: the figures ``EvaluateResult.summary`` copies from the report, and per baseline
_SUMMARY_KEYS = ("aiq", "accuracy", "cost_per_query", "cost_per_correct", "ece", "requests")
_BASELINE_KEYS = ("accuracy", "cost_per_query", "cost_per_correct")
_BASELINES = ("heuristic", "random", "oracle", "best_single", "cheapest")


@dataclass(frozen=True)
class EvaluateConfig:
    """One evaluation. ``model``: a train run's folder (or its ``model/``) or an MLflow run id in
    ``tracking_uri`` (``''``: no MLflow; then ``model`` must be a folder)."""

    model: str
    data: tuple[str, ...]
    format: str = "auto"
    tracking_uri: str = DEFAULT_TRACKING_URI
    out_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "data", tuple(map(str, self.data)))


@dataclass(frozen=True)
class EvaluateResult:
    report: dict[str, Any]
    out_dir: Path

    def summary(self) -> dict[str, Any]:
        """The headline figures and the baselines' (the ``--json`` output)."""
        summary: dict[str, Any] = {k: self.report[k] for k in _SUMMARY_KEYS}
        summary["baselines"] = {k: {s: self.report["baselines"][k].get(s) for s in _BASELINE_KEYS} for k in _BASELINES}
        return {"schema_version": 1, "out_dir": str(self.out_dir), **summary}


def run_evaluate(config: EvaluateConfig) -> EvaluateResult:
    """Ingest ``config.data`` into ``out_dir/ingest``, judge the router on it and write the report."""
    router = load_router_from(config.model, config.tracking_uri)
    folder = prepare_out_dir(config.out_dir, "evaluate")
    ingested = run_ingest(
        IngestConfig(paths=config.data, format=config.format, out_dir=str(folder / "ingest")), catalogue=router.catalogue_
    )  # price cost-less formats as the router was trained
    data = RoutingData.from_frame(ingested.to_pandas(), router.candidates_)
    report = evaluate(router, data, router.catalogue_)
    write_report(report, folder)
    return EvaluateResult(report=report, out_dir=folder)

"""What ``tierroute benchmark`` writes: one outcome row per prompt x candidate, and the summary.

A row holds the canonical outcome fields (:data:`~tierroute.pipelines.data.records.OUTCOME_FIELDS`;
``request_id`` is the prompt's id, ``chosen`` and ``propensity`` are null: nothing was routed),
then these extra fields, which ``tierroute ingest`` ignores:

- ``scorer``, ``threshold``: how ``quality`` was computed and the cut ``correct`` was made at;
- ``error_kind``, ``error``: null for a scored answer; otherwise why there is none (the call
  failed: timeout, connect, transport, http_<status>, malformed_json, no_choices; or the judge
  did: judge_<kind>, judge_unparseable; or the scorer crashed: scorer_error). Such a row has
  quality 0 and correct false;
- ``response`` (the answer text, kept for audits), ``score_detail`` (what the scorer found);
- ``input_tokens``, ``output_tokens``, ``cost_source`` (``usage``, ``estimated:o200k_base`` when
  the upstream sent no usage; for a failed call ``reserved_worst_case`` when one of its attempts
  may have been billed (it timed out, broke off or got an unreadable 2xx body: the row is booked
  at the worst case reserved for each such attempt), else ``none`` at cost 0);
- ``cached`` (the answer came from the call cache, at its original cost and latency), ``attempts``
  (HTTP attempts; 0 when cached); ``judge_model``, ``judge_cost_usd`` (the judge's cost is kept
  apart from ``cost_usd``, the candidate's own).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tierroute.models.catalogue import Candidate
from tierroute.pipelines.benchmark.prompts import PromptItem

__all__ = ["Answer", "Failure", "Scored", "SUMMARY_SCHEMA_VERSION", "make_row", "summarize"]

SUMMARY_SCHEMA_VERSION = 1
_SHOWN_BAD_LINES = 20


@dataclass(frozen=True, slots=True)
class Answer:
    """A model's answer with its usage, cost (USD, from ``source``) and latency."""

    text: str
    input_tokens: int
    output_tokens: int
    cost: float
    source: str
    latency_ms: float | None
    attempts: int
    cached: bool
    created: str


@dataclass(frozen=True, slots=True)
class Failure:
    """A call that brought no answer: its error kind and detail."""

    kind: str
    detail: str
    latency_ms: float | None
    attempts: int
    cost: float = 0.0
    cost_source: str = "none"


@dataclass(frozen=True, slots=True)
class Scored:
    """A scored answer (or why it could not be scored: ``error_kind``), with the judge's part."""

    quality: float
    detail: str
    error_kind: str | None = None
    error: str | None = None
    judge_model: str | None = None
    judge_cost_usd: float | None = None


def make_row(
    item: PromptItem,
    cand: Candidate,
    threshold: float,
    *,
    timestamp: str,
    answer: Answer | None = None,
    scored: Scored | None = None,
    failure: Failure | None = None,
) -> dict[str, Any]:
    """One outcome row (canonical fields first) from an answer + its score, or a failure."""
    error_kind: str | None
    error: str | None
    if failure is not None or scored is None or answer is None:
        failure = failure or Failure("unknown", "no answer", None, 0)
        quality, error_kind, error, detail = 0.0, failure.kind, failure.detail, ""
        latency, attempts = failure.latency_ms, failure.attempts
    else:
        quality, error_kind, error, detail = scored.quality, scored.error_kind, scored.error, scored.detail
        latency, attempts = answer.latency_ms, answer.attempts
    quality = min(1.0, max(0.0, float(quality)))
    return {
        "request_id": item.id,
        "prompt": item.prompt,
        "output_schema": item.output_schema,
        "latency_sla_ms": item.latency_sla_ms,
        "task": item.task,
        "model": cand.model,
        "quality": quality,
        "correct": error_kind is None and quality >= threshold,
        "cost_usd": answer.cost if answer is not None else failure.cost if failure is not None else 0.0,
        "latency_ms": None if latency is None else round(latency, 3),
        "timestamp": timestamp,
        "chosen": None,
        "propensity": None,
        "scorer": item.scorer,
        "threshold": threshold,
        "error_kind": error_kind,
        "error": error,
        "response": answer.text if answer is not None else None,
        "score_detail": detail,
        "input_tokens": answer.input_tokens if answer else None,
        "output_tokens": answer.output_tokens if answer else None,
        "cost_source": answer.source if answer else failure.cost_source if failure else "none",
        "cached": bool(answer and answer.cached),
        "attempts": attempts,
        "judge_model": scored.judge_model if scored else None,
        "judge_cost_usd": scored.judge_cost_usd if scored else None,
    }


def _per_model(rows: list[dict[str, Any]], models: list[str]) -> dict[str, dict[str, Any]]:
    out = {}
    for model in models:
        mine = [r for r in rows if r["model"] == model]
        answered = [r["latency_ms"] for r in mine if r["error_kind"] is None and r["latency_ms"] is not None]
        correct = sum(r["correct"] for r in mine)
        out[model] = {
            "outcomes": len(mine),
            "correct": correct,
            "accuracy": correct / len(mine) if mine else None,
            "mean_quality": statistics.fmean(r["quality"] for r in mine) if mine else None,
            "failures": sum(r["error_kind"] is not None for r in mine),
            "cost_usd": sum(r["cost_usd"] for r in mine),
            "p50_latency_ms": statistics.median(answered) if answered else None,
        }
    return out


def summarize(plan: Any, rows: list[dict[str, Any]], counts: Mapping[str, Any]) -> dict[str, Any]:
    """The run's summary (``benchmark --json`` prints it): what was asked, called, cached, retried,
    failed and spent, whether the budget stopped it, the thresholds and per-model figures."""
    models = [c.model for c in plan.candidates]
    used = sorted({i.scorer for i in plan.prompts.items})
    issues = plan.prompts.issues
    return {
        "schema_version": SUMMARY_SCHEMA_VERSION,
        "prompts": len(plan.prompts.items),
        "bad_prompt_lines": len(issues),
        "bad_prompts": [str(i) for i in issues[:_SHOWN_BAD_LINES]],
        "models": models,
        "judge_model": plan.judge.model if plan.judge else None,
        "pairs_planned": len(plan.pairs),
        "outcomes": len(rows),
        "pairs_not_run": len(plan.pairs) - len(rows),
        **dict(counts),
        "budget_usd": plan.config.budget_usd,
        "outcomes_cost_usd": sum(r["cost_usd"] for r in rows),
        "judge_cost_usd": sum(r["judge_cost_usd"] or 0.0 for r in rows),
        "failures_by_kind": dict(sorted(Counter(r["error_kind"] for r in rows if r["error_kind"]).items())),
        "cost_estimated": sum(r["cost_source"].startswith("estimated") for r in rows),
        "thresholds": {s: plan.thresholds[s] for s in used},
        "per_model": _per_model(rows, models),
        "cache": plan.config.cache,
    }

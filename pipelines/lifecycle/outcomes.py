"""Served traffic -> chosen-only outcome rows: the decision log joined with feedback.

    report = join_outcomes(OutcomesConfig(decisions=("decisions.jsonl",), feedback=("feedback.jsonl",)), "out.jsonl")
    report["rows"], report["unmatched_feedback"], report["excluded"]

Each decision line (``tierroute serve --decision-log``; the proxy's lines also carry the served
model, the upstream's status, usage, real cost and latency, and any ``auto_feedback``) is joined by
``request_id`` with the feedback items (``POST /v1/feedback``, :class:`tierroute.serving.feedback.FeedbackLog`).
A joined decision becomes one canonical outcome row (:mod:`tierroute.pipelines.data.records`)
with ``chosen: true`` and the ``propensity`` the router logged, ready for ``tierroute retrain``
(inverse-propensity weights) and the gate (doubly-robust estimates).

Nothing is merged silently; the report counts, and ``<out>.apart.jsonl`` keeps, every line not
turned into a row, each with its reason:

- ``unknown_request_id``: feedback for an id no decision log holds;
- ``late``: feedback that arrived more than ``max_delay_days`` after its decision;
- ``duplicate``: a repeat of an item already counted (same id, source and verdict): one is used;
- ``conflicting``: the same source gave one id different verdicts: none of that source is used;
- ``superseded``: a lower-priority source for an id that has a higher one (``source_priority``:
  any other source, e.g. an application's own, first; then ``human``, ``judge``, ``schema``);
- ``duplicate_decision_id``: two decisions logged under one id (a caller reusing ids): neither
  decision nor its feedback is used, since which one was judged cannot be known;
- excluded decisions (feedback known, no row): ``fallback:<code>`` (the tree decided because the
  learned path could not: not the logging policy the propensities describe; ``include_fallbacks``
  keeps them, propensity 1), ``served_by_other_model`` (the proxy moved up after an upstream
  failure, so the outcome is not the chosen model's), ``upstream_failed`` (no model answered),
  ``upstream_error`` (the chosen model answered with an error status, e.g. the caller's 400),
  ``no_prompt`` (logged without ``--log-prompts`` nor ``--log-features``), ``no_cost`` (no real
  or expected cost);
- ``no_feedback``: decisions nobody judged (counted only, not written apart).

A decision logged in privacy mode (``--log-features`` without ``--log-prompts``) becomes a
feature-only row: ``prompt`` null, ``features`` (the logged vector) and ``feature_spec`` (the
bundle's FeatureSpec fingerprint) instead (``feature_rows`` counts them); ingestion checks both and
training uses the vector when the spec is the model's own (:mod:`tierroute.features.logged`).

A row's cost is the feedback's ``cost_usd``, else the proxy's usage x price, else the decision's
expected cost (``cost_from`` counts which); its latency the feedback's, else the proxy's.
"""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from tierroute._params import check_number
from tierroute.errors import ConfigError

__all__ = ["OutcomesConfig", "join_outcomes", "read_jsonl"]

_PRIORITY = ("human", "judge", "schema")


@dataclass(frozen=True)
class OutcomesConfig:
    decisions: tuple[str, ...]
    feedback: tuple[str, ...] = ()
    correct_threshold: float = 0.5
    max_delay_days: float | None = 30.0  # feedback later than this after its decision is late (None: never)
    include_fallbacks: bool = False
    source_priority: tuple[str, ...] = _PRIORITY

    def __post_init__(self) -> None:
        object.__setattr__(self, "decisions", tuple(map(str, self.decisions)))
        object.__setattr__(self, "feedback", tuple(map(str, self.feedback)))
        if not self.decisions:
            raise ConfigError(
                "The 'decisions' parameter of OutcomesConfig needs at least one decision log. Pass "
                "--decisions FILE.jsonl (written by tierroute serve --decision-log)."
            )
        check_number(self.correct_threshold, "correct_threshold", "OutcomesConfig", 0.0, 1.0)
        if self.max_delay_days is not None:
            check_number(self.max_delay_days, "max_delay_days", "OutcomesConfig", 0.0)


def read_jsonl(paths: tuple[str, ...], what: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
    """(where, the object or None when the line is not a JSON object) per non-blank line."""
    for path in paths:
        if not Path(path).is_file():
            raise ConfigError(f"The {what} {path!r} does not exist or is not a file. Pass the JSONL file the service wrote.")
        with open(path, "rb") as fh:
            for number, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                try:
                    obj = json.loads(raw)
                except (ValueError, UnicodeDecodeError):
                    obj = None
                yield f"{path}:{number}", obj if isinstance(obj, dict) else None


def _time(value: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None


def _verdict(item: dict[str, Any], threshold: float) -> tuple[float, bool]:
    quality, correct = item.get("quality"), item.get("correct")
    if quality is None:
        quality = 1.0 if correct else 0.0
    if correct is None:
        correct = quality >= threshold
    return float(quality), bool(correct)


class _Join:
    def __init__(self, config: OutcomesConfig) -> None:
        self.config = config
        self.counts: Counter[str] = Counter()
        self.excluded: Counter[str] = Counter()
        self.cost_from: Counter[str] = Counter()
        self.sources: Counter[str] = Counter()
        self.apart: list[dict[str, Any]] = []
        self.ambiguous: set[str] = set()  # ids logged for two decisions

    def keep_apart(self, reason: str, kind: str, where: str, line: Any) -> None:
        self.counts[reason] += 1
        self.apart.append({"reason": reason, "kind": kind, "where": where, "line": line})

    def decisions(self) -> dict[str, tuple[str, dict[str, Any]]]:
        seen: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for where, line in read_jsonl(self.config.decisions, "decision log"):
            self.counts["decision_lines"] += 1
            if line is None or line.get("request_id") is None or "model" not in line:
                self.keep_apart("unreadable_decision", "decision", where, line)
                continue
            seen[str(line["request_id"])].append((where, line))
        out = {}
        for rid, lines in seen.items():
            if len(lines) > 1:
                self.ambiguous.add(rid)
                for where, line in lines:
                    self.keep_apart("duplicate_decision_id", "decision", where, line)
                continue
            out[rid] = lines[0]
        return out

    def feedback(self, decisions: dict[str, tuple[str, dict[str, Any]]]) -> dict[str, list[tuple[str, dict[str, Any]]]]:
        items: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for where, line in read_jsonl(self.config.feedback, "feedback log"):
            self.counts["feedback_lines"] += 1
            if line is None or line.get("request_id") is None or (line.get("quality") is None and line.get("correct") is None):
                self.keep_apart("unreadable_feedback", "feedback", where, line)
                continue
            items[str(line["request_id"])].append((where, line))
        for rid, (where, line) in decisions.items():  # the proxy's automatic signals
            for auto in line.get("auto_feedback") or []:
                self.counts["auto_feedback"] += 1
                items[rid].append((where, {**auto, "request_id": rid, "time": line.get("time")}))
        return items

    def choose(self, rid: str, decision: dict[str, Any] | None, given: list[tuple[str, dict[str, Any]]]) -> dict[str, Any] | None:
        """The feedback item used for ``rid`` (None: none usable), every other one kept apart."""
        if decision is None:
            why = "duplicate_decision_id" if rid in self.ambiguous else "unknown_request_id"
            for where, item in given:
                self.keep_apart(why, "feedback", where, item)
            return None
        decided, usable = _time(decision.get("time")), []
        for where, item in given:
            received = _time(item.get("time"))
            limit = self.config.max_delay_days
            if limit is not None and decided and received and (received - decided).total_seconds() > limit * 86400:
                self.keep_apart("late", "feedback", where, item)
            else:
                usable.append((where, item))
        by_source: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
        for where, item in usable:
            by_source[str(item.get("source") or "human")].append((where, item))
        agreed: dict[str, dict[str, Any]] = {}
        for source, group in by_source.items():
            verdicts = {_verdict(item, self.config.correct_threshold) for _, item in group}
            if len(verdicts) > 1:
                for where, item in group:
                    self.keep_apart("conflicting", "feedback", where, item)
                continue
            for where, item in group[1:]:
                self.keep_apart("duplicate", "feedback", where, item)
            agreed[source] = group[0][1]
        if not agreed:
            return None
        rank = {s: i for i, s in enumerate(self.config.source_priority)}
        ordered = sorted(agreed, key=lambda s: (rank.get(s, -1), s))
        for source in ordered[1:]:
            self.keep_apart("superseded", "feedback", rid, agreed[source])
        return {**agreed[ordered[0]], "source": ordered[0]}

    def row(self, rid: str, where: str, d: dict[str, Any], fb: dict[str, Any]) -> dict[str, Any] | None:
        why = None
        if d.get("fallback") and not self.config.include_fallbacks:
            why = f"fallback:{d['fallback']}"
        elif "upstream_status" in d and d.get("served_model") is None:
            why = "upstream_failed"
        elif d.get("served_model") not in (None, d["model"]):
            why = "served_by_other_model"
        elif d.get("upstream_status") not in (None, 200):
            why = "upstream_error"
        elif not isinstance(d.get("prompt"), str) and not isinstance(d.get("features"), list):
            why = "no_prompt"
        cost, source = next(
            (
                (d2, s)
                for d2, s in ((fb.get("cost_usd"), "feedback"), (d.get("cost_usd"), "usage"), (d.get("expected_cost_usd"), "expected"))
                if d2 is not None
            ),
            (None, None),
        )
        if why is None and cost is None:
            why = "no_cost"
        if why is not None:
            self.excluded[why] += 1
            self.apart.append({"reason": why, "kind": "decision", "where": where, "line": d, "feedback": fb})
            return None
        assert cost is not None  # else why == "no_cost"
        self.cost_from[str(source)] += 1
        self.counts["explored_rows"] += bool(d.get("explored"))
        self.sources[str(fb["source"])] += 1
        quality, correct = _verdict(fb, self.config.correct_threshold)
        latency = fb.get("latency_ms") if fb.get("latency_ms") is not None else d.get("latency_ms")
        text = isinstance(d.get("prompt"), str)
        self.counts["feature_rows"] += not text
        vector = {} if text else {"features": d["features"], "feature_spec": d.get("feature_spec")}
        return {
            "request_id": rid,
            "prompt": d["prompt"] if text else None,
            "output_schema": d.get("output_schema"),
            "latency_sla_ms": d.get("latency_sla_ms"),
            "task": None,
            "model": d["model"],
            "quality": quality,
            "correct": correct,
            "cost_usd": float(cost),
            "latency_ms": latency,
            "timestamp": d.get("time"),
            "chosen": True,
            "propensity": float(d.get("propensity") or 1.0),
            **vector,
        }


def join_outcomes(config: OutcomesConfig, out: str | Path) -> dict[str, Any]:
    """Write the joined rows to ``out`` (JSONL, a new file), the lines kept apart to
    ``<out>.apart.jsonl`` and the report (returned) to ``<out>.report.json``."""
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{str(out)!r} already exists; tierroute does not overwrite outputs. Pass a new --out path.")
    join = _Join(config)
    decisions = join.decisions()
    feedback = join.feedback(decisions)
    rows: list[dict[str, Any]] = []
    for rid in feedback:
        where, decision = decisions.get(rid, ("", None))
        item = join.choose(rid, decision, feedback[rid])
        if item is not None and decision is not None:
            row = join.row(rid, where, decision, item)
            if row is not None:
                rows.append(row)
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("x", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    apart = out.with_name(out.name + ".apart.jsonl")
    with apart.open("w", encoding="utf-8") as fh:
        for line in join.apart:
            fh.write(json.dumps(line, default=str) + "\n")
    matched_ids = {rid for rid in feedback if rid in decisions}
    report = {
        "schema_version": 1,
        "rows": len(rows),
        "decisions": len(decisions),
        "decision_lines": join.counts["decision_lines"],
        "feedback_lines": join.counts["feedback_lines"],
        "auto_feedback": join.counts["auto_feedback"],
        "matched_requests": len(matched_ids),
        "unmatched_decisions": len(decisions) - len(matched_ids),
        "unmatched_feedback": join.counts["unknown_request_id"],
        **{
            k: join.counts[k]
            for k in (
                "duplicate",
                "conflicting",
                "late",
                "superseded",
                "duplicate_decision_id",
                "unreadable_decision",
                "unreadable_feedback",
            )
        },
        "excluded": dict(join.excluded),
        "cost_from": dict(join.cost_from),
        "feedback_sources": dict(join.sources),
        "explored_rows": join.counts["explored_rows"],
        "feature_rows": join.counts["feature_rows"],
        "out": str(out),
        "apart": str(apart),
    }
    out.with_name(out.name + ".report.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return report

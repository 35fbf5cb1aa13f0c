"""Drift: how today's traffic, predictions and decisions differ from what the router was trained on.

The reference is computed when the router is trained (:func:`reference_stats`, kept in the
bundle's manifest as ``reference``): decile bins and shares of the logged request signals, of each
candidate's P(correct) from the served model on the training requests, the tier mix it chose
there, and the training prompts' embedding centroid. :func:`drift_report` compares a decision log with it:

- PSI per signal and per candidate's P(correct): sum over bins of (p - q) ln(p / q), shares
  floored at 1e-4; >= 0.1 is flagged ``watch``, >= 0.25 ``shift`` (the usual reading);
- the realised tier mix against the reference mix: a tier whose share moved by more than
  ``mix_tolerance`` (default 0.10) is flagged;
- the embedding centroid's cosine distance to the training centroid, when the log holds prompt
  text (``--log-prompts``) and the bundle has an encoder; above ``centroid_tolerance`` (0.05) is
  flagged.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import ConfigError, DataFormatError
from tierroute.pipelines.outputs import prepare_out_dir

__all__ = ["reference_stats", "psi", "drift_report", "LOGGED_SIGNALS", "read_decision_log", "DriftConfig", "DriftResult", "run_drift"]

#: decision-log field -> the FeatureSpec name whose training distribution it is compared with
LOGGED_SIGNALS = {
    "token_count": "n_tokens",
    "depth": "depth_score",
    "latency_sla_ms": "sla_ms",
    "has_schema": "schema_present",
    "latency_sensitive": "latency_sensitive",
}
WATCH, SHIFT = 0.1, 0.25


def _bins(values: np.ndarray, n_bins: int = 10) -> dict[str, Any]:
    """Decile edges of ``values`` (distinct), and the share of values in each bin (NaN: its own bin)."""
    finite = values[np.isfinite(values)]
    edges = np.unique(np.quantile(finite, np.linspace(0, 1, n_bins + 1)[1:-1])) if len(finite) else np.zeros(0)
    return {"edges": edges.tolist(), "shares": _shares(values, edges).tolist()}


def _shares(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=float)
    counts = np.bincount(np.searchsorted(edges, values[np.isfinite(values)], side="right"), minlength=len(edges) + 1)
    counts = np.append(counts, np.isnan(values).sum()).astype(float)  # last bin: missing
    return counts / max(1, len(values))


def psi(expected: Sequence[float] | np.ndarray, actual: Sequence[float] | np.ndarray, floor: float = 1e-4) -> float:
    """Population stability index of two share vectors over the same bins."""
    p = np.maximum(np.asarray(actual, dtype=float), floor)
    q = np.maximum(np.asarray(expected, dtype=float), floor)
    return float(np.sum((p - q) * np.log(p / q)))


def reference_stats(
    X: np.ndarray,
    names: Sequence[str],
    proba: np.ndarray,
    candidates: Sequence[str],
    chosen_tiers: Sequence[str],
    embedding: np.ndarray | None,
) -> dict[str, Any]:
    """What :func:`drift_report` compares against, from the training features ``X`` (columns
    ``names``), the served model's P(correct) on them, the tiers it chose, and the embeddings."""
    index = {n: i for i, n in enumerate(names)}
    signals = {n: _bins(X[:, index[n]].astype(float)) for n in LOGGED_SIGNALS.values() if n in index}
    per_candidate = {c: _bins(proba[:, j].astype(float)) for j, c in enumerate(candidates)}
    tiers, counts = np.unique(np.asarray(chosen_tiers), return_counts=True)
    out: dict[str, Any] = {
        "requests": int(len(X)),
        "signals": signals,
        "probabilities": per_candidate,
        "tier_mix": {str(t): float(c / counts.sum()) for t, c in zip(tiers, counts)},
    }
    if embedding is not None and len(embedding):
        centroid = embedding.mean(axis=0)
        norm = float(np.linalg.norm(centroid))
        out["embedding_centroid"] = (centroid / norm if norm > 0 else centroid).tolist()
    return out


def read_decision_log(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """The decision log's lines (tierroute's JSONL); a line that is not a JSON object is an error naming it."""
    rows: list[dict[str, Any]] = []
    for path in paths:
        try:
            lines = Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataFormatError(
                f"Cannot read the decision log {str(path)!r} ({exc}). Pass the file `serve --decision-log` wrote."
            ) from None
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataFormatError(f"{path}:{number} is not JSON ({exc.msg}); a decision log has one object per line.") from None
            if not isinstance(row, dict) or "model" not in row:
                raise DataFormatError(
                    f"{path}:{number} is not a decision-log record (no 'model'); pass the file `serve --decision-log` wrote."
                )
            rows.append(row)
    return rows


def _flag(value: float) -> str:
    return "shift" if value >= SHIFT else "watch" if value >= WATCH else "ok"


def drift_report(
    reference: Mapping[str, Any],
    rows: Sequence[Mapping[str, Any]],
    encoder: Any = None,
    mix_tolerance: float = 0.10,
    centroid_tolerance: float = 0.05,
) -> dict[str, Any]:
    """Compare decision-log ``rows`` with a bundle's ``reference``; ``flagged`` lists what crossed."""
    if not rows:
        raise DataFormatError("The decision log is empty; nothing to compare. Serve with --decision-log first.")
    report: dict[str, Any] = {
        "requests": len(rows),
        "reference_requests": reference.get("requests"),
        "signals": {},
        "probabilities": {},
        "tier_mix": {},
        "flagged": [],
    }
    for field, name in LOGGED_SIGNALS.items():
        ref = reference.get("signals", {}).get(name)
        if ref is None:
            continue
        values = np.array(
            [
                np.nan if r.get(field, r.get("signals", {}).get(field)) is None else float(r.get(field, r.get("signals", {}).get(field)))
                for r in rows
            ]
        )
        value = psi(ref["shares"], _shares(values, np.asarray(ref["edges"])))
        report["signals"][name] = {"psi": value, "flag": _flag(value)}
    learned = [r for r in rows if r.get("probabilities")]
    for candidate, ref in reference.get("probabilities", {}).items():
        values = np.array([r["probabilities"].get(candidate, np.nan) for r in learned], dtype=float)
        if len(values):
            value = psi(ref["shares"], _shares(values, np.asarray(ref["edges"])))
            report["probabilities"][candidate] = {"psi": value, "flag": _flag(value)}
    tiers = [str(r.get("tier")) for r in rows]
    for tier in sorted(set(tiers) | set(reference.get("tier_mix", {}))):
        now, then = tiers.count(tier) / len(tiers), float(reference.get("tier_mix", {}).get(tier, 0.0))
        report["tier_mix"][tier] = {
            "share": now,
            "reference": then,
            "moved": now - then,
            "flag": "shift" if abs(now - then) > mix_tolerance else "ok",
        }
    prompts = [r["prompt"] for r in rows if isinstance(r.get("prompt"), str)]
    if encoder is not None and prompts and reference.get("embedding_centroid"):
        centroid = encoder.encode(prompts).mean(axis=0)
        ref_c = np.asarray(reference["embedding_centroid"], dtype=float)
        cos = float(centroid @ ref_c / max(1e-12, np.linalg.norm(centroid) * np.linalg.norm(ref_c)))
        report["embedding_centroid"] = {
            "cosine_distance": 1 - cos,
            "prompts": len(prompts),
            "flag": "shift" if 1 - cos > centroid_tolerance else "ok",
        }
    for section in ("signals", "probabilities", "tier_mix"):
        report["flagged"] += [f"{section}.{k}: {v['flag']}" for k, v in report[section].items() if v["flag"] != "ok"]
    if report.get("embedding_centroid", {}).get("flag") == "shift":
        report["flagged"].append("embedding_centroid: shift")
    if not all(math.isfinite(v["psi"]) for s in ("signals", "probabilities") for v in report[s].values()):
        raise DataFormatError("A PSI came out non-finite; the reference in this bundle is damaged. Re-export it.")
    return report


@dataclass(frozen=True)
class DriftConfig:
    """One drift check: the ``bundle`` folder that served the decisions in the ``logs``."""

    bundle: str
    logs: tuple[str, ...]
    out_dir: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "logs", tuple(map(str, self.logs)))


@dataclass(frozen=True)
class DriftResult:
    report: dict[str, Any]
    bundle_id: str
    out_dir: Path


def run_drift(config: DriftConfig) -> DriftResult:
    """``tierroute drift``: the decision logs against the bundle's training reference, written to
    ``out_dir/drift.json``."""
    from tierroute.serving.bundle import load_bundle

    bundle = load_bundle(config.bundle)
    reference = bundle.manifest.get("reference")
    if not reference:
        raise ConfigError(
            f"Bundle {config.bundle!r} carries no training reference (exported before drift reports, or "
            "not by `tierroute train`). Retrain or re-export it with `tierroute train`."
        )
    report = drift_report(reference, read_decision_log(config.logs), encoder=bundle.encoder)
    folder = prepare_out_dir(config.out_dir, "drift")
    (folder / "drift.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    return DriftResult(report=report, bundle_id=str(bundle.bundle_id), out_dir=folder)

"""Conformance vectors: what a bundle decides, step by step, so that any runtime proves itself.

``conformance.jsonl`` (beside ``manifest.json`` in every bundle `tierroute train` and `tierroute
export` write) holds a header line, then one line per request: the request object, its token
count, signals, feature vector, raw scores, calibrated probabilities, expected costs, SLA
feasibility and the decision (``Decision.to_dict`` without ``elapsed_ms``), or the error a
malformed request must raise. docs/bundle-format.md describes each field.

    write_conformance("bundle/")                       # -> bundle/conformance.jsonl
    report = check_conformance("bundle/")              # the Python Router against it
    report.ok, report.summary()

The file is derived data: it is not in the manifest's ``files`` and not in ``bundle_id`` (a
bundle is the same router with or without it, and bundles from before it still load). Its
header names the ``bundle_id`` it was made from, so a file copied beside another bundle is caught.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import ConfigError, RequestError
from tierroute.models.decision import feature_matrix
from tierroute.request import parse_request
from tierroute.serving.bundle import bundle_rows
from tierroute.serving.conformance_requests import conformance_requests
from tierroute.serving.router import Router, RouterConfig

__all__ = [
    "CONFORMANCE_FILE",
    "CONFORMANCE_KIND",
    "CONFORMANCE_VERSION",
    "TOLERANCE",
    "ConformanceReport",
    "conformance_records",
    "write_conformance",
    "read_conformance",
    "check_conformance",
    "compare_record",
]

CONFORMANCE_FILE = "conformance.jsonl"
CONFORMANCE_KIND = "tierroute.conformance"
CONFORMANCE_VERSION = 1
#: probabilities, raw scores and embedding features may differ by this much (absolute); the rest is exact
TOLERANCE = 1e-5
_EXACT_DECISION = (
    "schema_version",
    "tier",
    "model",
    "source",
    "reason",
    "node",
    "signals",
    "fallback",
    "bundle_id",
    "propensity",
    "explored",
    "objective",
)


def _num(value: float) -> float | None:
    """A float for JSON: NaN (a missing SLA in the features) as null."""
    return None if math.isnan(value) else float(value)


def _signals(sig: Any) -> dict[str, Any]:
    kw, schema, shape = sig.keywords, sig.schema, sig.shape
    return {
        "token_count": sig.token_count,
        "keywords": {
            "present": list(kw.present),
            "word_present": list(kw.word_present),
            "total": kw.total,
            "word_total": kw.word_total,
            "occurrences": kw.occurrences,
        },
        "depth": sig.depth,
        "schema": {
            "present": schema.present,
            "kind": schema.kind,
            "n_fields": schema.n_fields,
            "n_required": schema.n_required,
            "n_enum_fields": schema.n_enum_fields,
            "n_enum_values": schema.n_enum_values,
            "depth": schema.depth,
            "n_tools": schema.n_tools,
        },
        "sla_ms": sig.sla_ms,
        "latency_sensitive": sig.latency_sensitive,
        "shape": {
            "chars": shape.chars,
            "lines": shape.lines,
            "code_blocks": shape.code_blocks,
            "has_code": shape.has_code,
            "questions": shape.questions,
            "list_items": shape.list_items,
            "urls": shape.urls,
            "digit_frac": shape.digit_frac,
            "non_ascii_frac": shape.non_ascii_frac,
        },
    }


def _steps(router: Router, request: Any) -> dict[str, Any]:
    """The learned path's intermediate values for one parsed request, from the bundle's public
    parts (the same steps Router takes; :func:`conformance_records` checks they agree)."""
    b = router.bundle
    assert b is not None
    ids = b.encoder.ids(request.prompt) if b.encoder is not None and hasattr(b.encoder, "ids") else None
    tokens = len(ids) if ids is not None else b.extractor.counter.count(request.prompt)
    sig = b.extractor.signals(request, token_count=tokens)
    embedding = None
    if b.encoder is not None:
        embedding = b.encoder.encode_many_ids([ids]) if ids is not None else b.encoder.encode([request.prompt])
    X = feature_matrix([sig.as_vector()], embedding)
    if b.scorer is not None:
        raw = np.asarray(b.scorer(X), dtype=np.float64)[0]
    else:
        outs = [s.run(["probabilities"], {"input": x}, b.run_options)[0][:, 1] for s, x in zip(b.sessions, bundle_rows(b, X))]
        raw = outs[0] if b.kind == "pooled" else np.asarray([o[0] for o in outs])
    core = b.core
    proba = core.probabilities(np.asarray(raw, dtype=np.float64)[None, :])[0].tolist()
    return {
        "tokens": tokens,
        "signals": _signals(sig),
        "features": [_num(v) for v in X[0].tolist()],
        "raw": [float(v) for v in np.asarray(raw).tolist()],
        "probabilities": proba,
        "expected_cost": core.expected_cost_row(float(X[0, core.token_index])),
        "feasible": core.feasible_row(request.latency_sla_ms),
    }


def _decision(decision: Any) -> dict[str, Any]:
    out: dict[str, Any] = decision.to_dict()
    out.pop("elapsed_ms")
    return out


def conformance_records(router: Router, requests: Iterable[Any]) -> list[dict[str, Any]]:
    """One record per request object (see the module doc; a malformed one gets its error).
    ``router`` must serve a bundle, with no deadline."""
    if router.bundle is None:
        raise ConfigError(
            "Conformance vectors need a Router serving a bundle; this one answers with the tree "
            f"({router.unavailable.code if router.unavailable else 'no_bundle'}). Pass a bundle that loads."
        )
    records = []
    for i, item in enumerate(requests):
        record: dict[str, Any] = {"i": i, "request": item}
        try:
            decision = router.route(item)
        except RequestError as exc:
            records.append({**record, "error": str(exc)})
            continue
        record.update(_steps(router, parse_request(item)))
        record["decision"] = _decision(decision)
        if decision.source == "learned":
            drift = max(abs(a - b) for a, b in zip(record["probabilities"], decision.probabilities.values()))
            if drift > 1e-12:
                raise ConfigError(
                    f"Conformance request {i}: the recomputed probabilities differ from the Router's by "
                    f"{drift:.3g}; expected none. The conformance module no longer follows serving/router.py."
                )
        records.append(record)
    return records


def _header(router: Router, count: int) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for name in ("tierroute", "bpe-openai", "onnxruntime", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "kind": CONFORMANCE_KIND,
        "schema_version": CONFORMANCE_VERSION,
        "bundle_id": router.bundle_id,
        "records": count,
        "tolerance": TOLERANCE,
        "generator": versions,
        "config": {
            "deadline_ms": None,
            "min_confidence": None,
            "epsilon": 0.0,
            "expected_output_tokens": router.config.expected_output_tokens,
            "max_prompt_chars": router.config.max_prompt_chars,
        },
    }


def _router(bundle: str | os.PathLike[str]) -> Router:
    """The Python Router on ``bundle`` as conformance runs it (no deadline; BundleError if it cannot serve)."""
    return Router.load(bundle, RouterConfig(deadline_ms=None), strict=True)


def write_conformance(bundle: str | os.PathLike[str], out: str | os.PathLike[str] | None = None, seed: int = 0, n: int = 260) -> Path:
    """Generate the vectors for ``bundle`` and write them (default: ``bundle/conformance.jsonl``;
    written beside it, then moved into place): ``n`` generated requests, then every edge and
    malformed one. Returns the file's path."""
    router = _router(bundle)
    requests = conformance_requests(seed, n, objectives=router.bundle is not None and router.bundle.core.curve is not None)
    records = conformance_records(router, requests)
    target = Path(out) if out is not None else Path(bundle) / CONFORMANCE_FILE
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}-", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            for line in (_header(router, len(records)), *records):
                fh.write(json.dumps(line, allow_nan=False) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def read_conformance(path: str | os.PathLike[str]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(header, records) of a conformance file; ConfigError saying what is wrong with it."""
    try:
        lines = Path(path).read_text(encoding="utf-8").split("\n")
        parsed = [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"Cannot read the conformance file {str(path)!r} ({type(exc).__name__}: {exc}); expected the "
            f"JSONL `tierroute conformance` checks. Regenerate it with write_conformance."
        ) from None
    if not parsed or not isinstance(parsed[0], dict) or parsed[0].get("kind") != CONFORMANCE_KIND:
        got = parsed[0].get("kind") if parsed and isinstance(parsed[0], dict) else None
        raise ConfigError(
            f"{str(path)!r} starts with kind {got!r}; expected a {CONFORMANCE_KIND!r} header line. "
            "Pass a conformance.jsonl written by tierroute."
        )
    if parsed[0].get("schema_version") != CONFORMANCE_VERSION:
        raise ConfigError(
            f"{str(path)!r} has conformance schema version {parsed[0].get('schema_version')!r}; this "
            f"tierroute checks version {CONFORMANCE_VERSION}. Regenerate it."
        )
    return parsed[0], parsed[1:]


@dataclass
class ConformanceReport:
    """The outcome of checking a runtime against a conformance file."""

    file: str
    records: int = 0
    mismatches: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.records > 0 and not self.mismatches

    def summary(self, limit: int = 10) -> str:
        if self.ok:
            return f"conformance: {self.records} records of {self.file} match (tolerance {TOLERANCE:g})"
        head = f"conformance: {len(self.mismatches)} mismatch(es) in {self.records} records of {self.file}"
        lines = [f"  record {m['i']}: {m['field']}: expected {m['expected']!r}, got {m['got']!r}" for m in self.mismatches[:limit]]
        more = [f"  ... and {len(self.mismatches) - limit} more"] if len(self.mismatches) > limit else []
        return "\n".join([head, *lines, *more])

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": 1, "file": self.file, "records": self.records, "ok": self.ok, "mismatches": self.mismatches}


def _close(a: Any, b: Any) -> bool:
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    return abs(float(a) - float(b)) <= TOLERANCE


def compare_record(want: Mapping[str, Any], got: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The differences between an expected record and a runtime's (both in the file's format)."""
    i, out = want.get("i"), []

    def miss(name: str, expected: Any, actual: Any) -> None:
        out.append({"i": i, "field": name, "expected": expected, "got": actual})

    if "error" in want or "error" in got:
        if ("error" in want) != ("error" in got):
            miss("error", want.get("error"), got.get("error") or got.get("decision"))
        return out
    for name in ("tokens", "signals", "feasible"):
        if want.get(name) != got.get(name):
            miss(name, want.get(name), got.get(name))
    for name in ("features", "raw", "probabilities", "expected_cost"):
        if not _close(want.get(name), got.get(name)):
            miss(name, want.get(name), got.get(name))
    wd, gd = want.get("decision") or {}, got.get("decision") or {}
    for name in _EXACT_DECISION:
        if wd.get(name) != gd.get(name):
            miss(f"decision.{name}", wd.get(name), gd.get(name))
    for name in ("probabilities", "expected_cost_usd"):
        if not _close(wd.get(name), gd.get(name)):
            miss(f"decision.{name}", wd.get(name), gd.get(name))
    return out


def check_conformance(bundle: str | os.PathLike[str], file: str | os.PathLike[str] | None = None) -> ConformanceReport:
    """The Python Router on ``bundle`` against its conformance file (default ``bundle/conformance.jsonl``).
    ConfigError when the file is missing, unreadable or made from another bundle; BundleError when
    the bundle cannot be served."""
    path = Path(file) if file is not None else Path(bundle) / CONFORMANCE_FILE
    if not path.is_file():
        raise ConfigError(
            f"No conformance file at {str(path)!r}; bundles exported before conformance vectors have none. "
            "Write one with `tierroute conformance BUNDLE --write`."
        )
    header, records = read_conformance(path)
    router = _router(bundle)
    if header.get("bundle_id") != router.bundle_id:
        raise ConfigError(
            f"{str(path)!r} was made from bundle {header.get('bundle_id')!r}; {str(bundle)!r} is "
            f"{router.bundle_id!r}. Regenerate it with `tierroute conformance BUNDLE --write`."
        )
    report = ConformanceReport(str(path), len(records))
    mine = conformance_records(router, [r.get("request") for r in records])
    for want, got in zip(records, mine):
        report.mismatches.extend(compare_record(want, {**got, "i": want.get("i")}))
    return report

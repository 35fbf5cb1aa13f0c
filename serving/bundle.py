"""Read and verify a RouterBundle (written by :func:`tierroute.models.export.export_bundle`).

Verification happens before anything is served: the manifest's kind and schema version, the
sha256 of every listed file (and no unlisted model file), the FeatureSpec the runtime rebuilds
from the manifest's signal config against the one the model was trained with, and that the ONNX
models and calibration tables fit the candidates. Any failure is a :class:`BundleError` whose
``code`` is machine-readable (it becomes a fallback decision's reason) and whose message says
what arrived, what was expected and what to do.

Imports numpy, onnxruntime and the tokenizer runtime only.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import FeatureError, TierrouteError, describe

__all__ = ["BundleError", "Bundle", "load_bundle", "BUNDLE_SCHEMA_VERSION", "BUNDLE_KIND", "Calibration", "CalibrationSet",
           "bundle_rows", "manifest_digest"]

BUNDLE_SCHEMA_VERSION = 1  # kept equal to tierroute.models.export's (a test pins it)
BUNDLE_KIND = "tierroute.router_bundle"


class BundleError(TierrouteError, ValueError):
    """A bundle that cannot be served; ``code`` names the failure for fallback reasons and metrics."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Calibration:
    """One candidate's calibration, applied with numpy (the same maps the trainer fitted)."""

    method: str
    x: np.ndarray | None = None
    y: np.ndarray | None = None
    a: float = 1.0
    b: float = 0.0

    @classmethod
    def from_dict(cls, raw: Any, where: str) -> Calibration:
        method = raw.get("method") if isinstance(raw, Mapping) else None
        if method == "none":
            return cls("none")
        if method == "isotonic":
            x, y = np.asarray(raw.get("x"), dtype=np.float64), np.asarray(raw.get("y"), dtype=np.float64)
            if x.ndim != 1 or x.shape != y.shape or len(x) < 1 or not (np.isfinite(x).all() and np.isfinite(y).all()):
                raise BundleError("bundle_invalid", f"{where}: isotonic knots must be two equal-length finite lists; "
                                  f"got x {describe(raw.get('x'))}, y {describe(raw.get('y'))}. Re-export the bundle.")
            return cls("isotonic", x, y)
        if method == "sigmoid" and all(isinstance(raw.get(k), (int, float)) for k in ("a", "b")):
            return cls("sigmoid", a=float(raw["a"]), b=float(raw["b"]))
        raise BundleError("bundle_invalid", f"{where}: expected a calibration with method isotonic (x, y), sigmoid "
                          f"(a, b) or none; got {describe(raw)}. Re-export the bundle.")

    def apply(self, scores: np.ndarray) -> np.ndarray:
        if self.method == "isotonic":
            return np.interp(scores, self.x, self.y)  # type: ignore[arg-type]
        if self.method == "sigmoid":
            clipped = np.clip(scores, 1e-6, 1 - 1e-6)
            logit = np.log(clipped / np.clip(1 - scores, 1e-6, 1))
            return 1.0 / (1.0 + np.exp(-(self.a * logit + self.b)))
        return np.asarray(scores, dtype=np.float64)


class CalibrationSet:
    """All candidates' calibrations applied to an (n, m) score matrix at once. Isotonic maps are
    laid end to end on one axis (candidate j's knots shifted by 2j, scores clipped to its own
    knot range first), so one ``np.interp`` serves every candidate: the same numbers as applying
    each map alone, for a fraction of the per-call overhead on the serving path."""

    def __init__(self, calibrations: Sequence[Calibration]) -> None:
        self.calibrations = tuple(calibrations)
        self.isotonic = bool(self.calibrations) and all(c.method == "isotonic" for c in self.calibrations)
        if self.isotonic:
            shift = 2.0 * np.arange(len(self.calibrations))
            self.lo = np.array([c.x[0] for c in self.calibrations])  # type: ignore[index]
            self.hi = np.array([c.x[-1] for c in self.calibrations])  # type: ignore[index]
            self.shift = shift
            self.x = np.concatenate([c.x + shift[j] for j, c in enumerate(self.calibrations)])  # type: ignore[operator]
            self.y = np.concatenate([c.y for c in self.calibrations])  # type: ignore[misc]

    def apply(self, scores: np.ndarray) -> np.ndarray:
        scores = np.asarray(scores, dtype=np.float64)
        if self.isotonic:
            placed = np.minimum(np.maximum(scores, self.lo), self.hi) + self.shift
            return np.interp(placed.ravel(), self.x, self.y).reshape(scores.shape)
        return np.column_stack([c.apply(scores[:, j]) for j, c in enumerate(self.calibrations)])


@dataclass(frozen=True)
class Bundle:
    """A verified bundle, ready to serve (immutable; safe to share between threads)."""

    path: Path
    manifest: Mapping[str, Any]
    bundle_id: str
    extractor: Any  # SignalExtractor
    encoder: Any  # StaticEncoder or None
    sessions: tuple[Any, ...]  # onnxruntime.InferenceSession, one (pooled) or one per candidate
    kind: str
    candidates: tuple[str, ...]
    candidate_features: np.ndarray  # (m, k) float32
    calibrations: tuple[Calibration, ...]
    cost_intercept: np.ndarray
    cost_slope: np.ndarray
    policy: Any  # tierroute.models.policy.Policy
    catalogue: Any  # tierroute.models.catalogue.Catalogue
    p95_ms: np.ndarray  # (m,) NaN = unknown
    calibration_set: CalibrationSet
    run_options: Any  # one onnxruntime.RunOptions, passed to every run (saves building one per call)
    row_template: np.ndarray | None  # pooled: (m, d+1+k) with the candidate columns filled in

    @property
    def n_features(self) -> int:
        return len(self.extractor.feature_names) + (0 if self.encoder is None else self.encoder.dims)


def _need(manifest: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind):
        raise BundleError("bundle_invalid", f"The manifest of bundle {str(path)!r} has {key!r} = {describe(value)}; "
                          "expected it from `tierroute export`. The bundle is damaged or from another tool: re-export it.")
    return value


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, checked for kind and schema version (BundleError otherwise)."""
    if not path.is_dir():
        code = "no_bundle" if not path.exists() else "bundle_unreadable"
        raise BundleError(code, f"No router bundle at {str(path)!r} ({'nothing there' if not path.exists() else 'not a folder'}). "
                          "Pass the folder `tierroute export` wrote.")
    try:
        manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError("bundle_unreadable", f"{str(path)!r} has no manifest.json, so it is not a router bundle. "
                          "Pass the folder `tierroute export` wrote.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError("bundle_unreadable", f"The manifest.json of {str(path)!r} cannot be read ({exc}). "
                          "The bundle is damaged: re-export it.") from None
    if not isinstance(manifest, dict) or manifest.get("kind") != BUNDLE_KIND:
        got = describe(manifest.get("kind")) if isinstance(manifest, dict) else describe(manifest)
        raise BundleError("bundle_unreadable", f"{str(path)!r}/manifest.json has kind {got}; expected {BUNDLE_KIND!r}. "
                          "Pass the folder `tierroute export` wrote.")
    version = manifest.get("schema_version")
    if version != BUNDLE_SCHEMA_VERSION:
        raise BundleError("unknown_schema_version", f"Bundle {str(path)!r} has schema version {describe(version)}; this "
                          f"tierroute serves version {BUNDLE_SCHEMA_VERSION}. Re-export it with this tierroute, or "
                          "upgrade tierroute.")
    return manifest


#: manifest keys that record provenance, not behaviour: left out of the digest (editable)
PROVENANCE = ("created", "versions", "metrics", "training", "reference", "bundle_id")


def manifest_digest(manifest: Mapping[str, Any]) -> str:
    """16 hex digits over everything that decides: the files' sha256s and the rest of the manifest
    (calibration, cost model, policy, candidates, ...) but its provenance. It is the bundle id:
    the same router exported twice gets the same id; anything that changes a decision changes it."""
    content = {k: v for k, v in manifest.items() if k not in PROVENANCE}
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:16]


def verify_files(path: Path, manifest: Mapping[str, Any]) -> None:
    """The manifest's own digest, then every listed file present with its sha256; BundleError
    naming the first that is not."""
    digest = manifest_digest(manifest)
    if manifest.get("bundle_id") != digest:
        raise BundleError("checksum_mismatch", f"The manifest.json of bundle {str(path)!r} changed after export: its content "
                          f"digest is {digest}, its bundle_id says {describe(manifest.get('bundle_id'))}. Re-export the "
                          "bundle rather than editing it.")
    files = _need(manifest, "files", dict, path)
    for name, digest in sorted(files.items()):
        target = path / name
        if os.path.basename(name) != name or not target.is_file():
            raise BundleError("checksum_mismatch", f"Bundle {str(path)!r} lists {name!r} but it is missing. "
                              "Copy the whole bundle folder, or re-export it.")
        actual = _sha256(target)
        if actual != digest:
            raise BundleError("checksum_mismatch", f"{name!r} in bundle {str(path)!r} has sha256 {actual[:12]}..., the "
                              f"manifest expects {str(digest)[:12]}...: the file changed after export. Re-export the bundle.")


def _session(path: Path, threads: int) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise BundleError("onnx_error", f"onnxruntime cannot load {path.name!r} from bundle {str(path.parent)!r} "
                          f"({type(exc).__name__}: {str(exc)[:200]}). Re-export the bundle.") from None


def load_bundle(source: str | os.PathLike[str], intra_op_threads: int = 1, verify: bool = True) -> Bundle:
    """Read, verify and open a bundle folder. Raises BundleError (with ``code``) when it cannot be served."""
    from tierroute.features.static import StaticEncoder
    from tierroute.features.signals import SignalConfig, SignalExtractor
    from tierroute.features.spec import FeatureSpec
    from tierroute.models.catalogue import Catalogue
    from tierroute.models.policy import Policy

    path = Path(source)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    try:
        extractor = SignalExtractor(SignalConfig(**_need(manifest, "signals", dict, path)))
        trained = FeatureSpec.from_dict(_need(manifest, "feature_spec", dict, path))
        encoder = StaticEncoder.load(path) if manifest.get("encoder") is not None else None
        names = (*extractor.feature_names, *(f"emb_{i}" for i in range(0 if encoder is None else encoder.dims)))
        built = FeatureSpec(names, extractor.spec.version, extractor.spec.tokenizer, extractor.spec.signals,
                            None if encoder is None else encoder.id, 0 if encoder is None else encoder.dims)
        trained.check_compatible(built)
        catalogue = Catalogue.from_dict(_need(manifest, "catalogue", dict, path), source=f"bundle {path}")
        candidates = tuple(_need(manifest, "candidates", list, path))
        policy = Policy(**_need(manifest, "policy", dict, path))
        model = _need(manifest, "model", dict, path)
        cost = _need(manifest, "cost_model", dict, path)
        calibrations = tuple(Calibration.from_dict(c, f"bundle {path} calibration[{j}]")
                             for j, c in enumerate(_need(manifest, "calibration", list, path)))
    except BundleError:
        raise
    except FeatureError as exc:  # the spec this runtime builds differs, or the encoder files are bad
        raise BundleError("feature_spec_mismatch", f"Bundle {str(path)!r} cannot be served: {exc}") from None
    except TierrouteError as exc:  # CatalogueError, ConfigError (policy)
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r} cannot be served: {exc}") from None
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r} is incomplete or damaged ({type(exc).__name__}: {exc}). "
                          "Re-export it.") from None
    try:
        m = len(candidates)
        cand = np.asarray(model.get("candidate_features"), dtype=np.float32)
        files = list(model.get("files") or [])
        kind = model.get("kind")
        fits = (kind in ("pooled", "per_candidate") and len(files) == (1 if kind == "pooled" else m) and cand.ndim == 2
                and cand.shape[0] == m and len(calibrations) == m and len(cost["intercept"]) == m and len(cost["slope"]) == m
                and (policy.frontier is None or 0 <= policy.frontier < m))
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r} is incomplete or damaged ({type(exc).__name__}: {exc}). "
                          "Re-export it.") from None
    if not fits:
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r} does not fit together: {m} candidates, model kind "
                          f"{kind!r} with {len(files)} file(s), candidate features of shape {cand.shape}, "
                          f"{len(calibrations)} calibrations, policy frontier {policy.frontier!r}. Re-export it.")
    opened = [*files, *(((manifest.get("encoder") or {}).get("files")) or [])]
    listed = manifest.get("files") or {}
    for name in opened:  # only files the checksums cover, inside the folder
        if not isinstance(name, str) or os.path.basename(name) != name or name not in listed or (path / name).is_symlink():
            raise BundleError("bundle_invalid", f"Bundle {str(path)!r} names {name!r} as a model or encoder file; expected a "
                              "plain file name inside the bundle that manifest 'files' lists with its sha256. Re-export it.")
    missing = catalogue.missing(candidates)
    if missing:
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r}: candidates {missing} are not in its catalogue. Re-export it.")
    sessions = tuple(_session(path / f, intra_op_threads) for f in files)
    width = len(names) + (1 + cand.shape[1] if kind == "pooled" else 0)
    for f, session in zip(files, sessions):
        shape = session.get_inputs()[0].shape
        if len(shape) != 2 or shape[1] != width:
            raise BundleError("feature_spec_mismatch", f"{f!r} in bundle {str(path)!r} takes input shape {shape}; the "
                              f"FeatureSpec builds {width} columns. Re-export the bundle.")
    p95 = np.array([np.nan if (v := catalogue.candidate(c).p95_latency_ms) is None else v for c in candidates])
    return Bundle(
        path=path, manifest=manifest, bundle_id=str(manifest.get("bundle_id", "")), extractor=extractor, encoder=encoder,
        sessions=sessions, kind=str(kind), candidates=candidates, candidate_features=cand, calibrations=calibrations,
        cost_intercept=np.asarray(cost["intercept"], dtype=np.float64), cost_slope=np.asarray(cost["slope"], dtype=np.float64),
        policy=policy, catalogue=catalogue, p95_ms=p95, calibration_set=CalibrationSet(calibrations),
        run_options=_run_options(),
        row_template=_row_template(len(names), cand) if kind == "pooled" else None,
    )


def _run_options() -> Any:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 3
    return options


def _row_template(n_request: int, candidate_features: np.ndarray) -> np.ndarray:
    m = len(candidate_features)
    template = np.zeros((m, n_request + 1 + candidate_features.shape[1]), dtype=np.float32)
    template[:, n_request] = np.arange(m)
    template[:, n_request + 1:] = candidate_features
    template.setflags(write=False)
    return template


def bundle_rows(bundle: Bundle, features: np.ndarray) -> Sequence[np.ndarray]:
    """The ONNX inputs for request feature rows (n, d): pooled -> one (n*m, d+1+k) matrix in
    request-major order; per candidate -> the (n, d) matrix for each session."""
    if bundle.row_template is None:
        return [features] * len(bundle.sessions)
    n, d = features.shape
    rows = np.tile(bundle.row_template, (n, 1)) if n > 1 else bundle.row_template.copy()
    rows[:, :d] = np.repeat(features, len(bundle.candidates), axis=0) if n > 1 else features
    return [rows]

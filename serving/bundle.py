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

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import BundleError, FeatureError, TierrouteError, describe
from tierroute.hashing import sha256_file
from tierroute.models.bundle_format import BUNDLE_KIND, BUNDLE_SCHEMA_VERSION, BUNDLE_SCHEMA_VERSIONS, PROVENANCE, manifest_digest
from tierroute.models.decision import Calibration, CalibrationSet, DecisionCore
from tierroute.models.objective import KnobCurve

__all__ = [
    "BundleError",
    "Bundle",
    "load_bundle",
    "BUNDLE_SCHEMA_VERSION",
    "BUNDLE_KIND",
    "Calibration",
    "CalibrationSet",
    "bundle_rows",
    "manifest_digest",
    "PROVENANCE",
]


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
    core: DecisionCore  # calibration, expected cost, SLA feasibility, policy and objectives
    scorer: Any = None  # knn / lowrank: the numpy raw scorer (no ONNX sessions)

    @property
    def n_features(self) -> int:
        return len(self.extractor.feature_names) + (0 if self.encoder is None else self.encoder.dims)


def _need(manifest: Mapping[str, Any], key: str, kind: type | tuple[type, ...], path: Path) -> Any:
    value = manifest.get(key)
    if not isinstance(value, kind):
        raise BundleError(
            "bundle_invalid",
            f"The manifest of bundle {str(path)!r} has {key!r} = {describe(value)}; "
            "expected it from `tierroute export`. The bundle is damaged or from another tool: re-export it.",
        )
    return value


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest, checked for kind and schema version (BundleError otherwise)."""
    if not path.is_dir():
        code = "no_bundle" if not path.exists() else "bundle_unreadable"
        raise BundleError(
            code,
            f"No router bundle at {str(path)!r} ({'nothing there' if not path.exists() else 'not a folder'}). "
            "Pass the folder `tierroute export` wrote.",
        )
    from tierroute.safejson import UnsafeJSONError, read_json_file

    try:  # a regular file only (a FIFO would block the reload), at most 64 MiB, nested at most 64 deep
        manifest = read_json_file(path / "manifest.json", max_bytes=64 << 20, max_depth=64)
    except FileNotFoundError:
        raise BundleError(
            "bundle_unreadable",
            f"{str(path)!r} has no manifest.json, so it is not a router bundle. Pass the folder `tierroute export` wrote.",
        ) from None
    except (OSError, UnsafeJSONError) as exc:
        detail = exc.detail if isinstance(exc, UnsafeJSONError) and exc.reason in ("syntax", "encoding") else str(exc)
        raise BundleError(
            "bundle_unreadable",
            f"The manifest.json of {str(path)!r} cannot be read ({detail.rstrip('.')}). The bundle is damaged: re-export it.",
        ) from None
    if not isinstance(manifest, dict) or manifest.get("kind") != BUNDLE_KIND:
        got = describe(manifest.get("kind")) if isinstance(manifest, dict) else describe(manifest)
        raise BundleError(
            "bundle_unreadable",
            f"{str(path)!r}/manifest.json has kind {got}; expected {BUNDLE_KIND!r}. Pass the folder `tierroute export` wrote.",
        )
    version = manifest.get("schema_version")
    if isinstance(version, bool) or version not in BUNDLE_SCHEMA_VERSIONS:
        raise BundleError(
            "unknown_schema_version",
            f"Bundle {str(path)!r} has schema version {describe(version)}; this "
            f"tierroute serves versions {' and '.join(map(str, BUNDLE_SCHEMA_VERSIONS))}. Re-export it with this tierroute, or "
            "upgrade tierroute.",
        )
    return manifest


def verify_files(path: Path, manifest: Mapping[str, Any]) -> None:
    """The manifest's own digest, then every listed file present with its sha256; BundleError
    naming the first that is not."""
    digest = manifest_digest(manifest)
    if manifest.get("bundle_id") != digest:
        raise BundleError(
            "checksum_mismatch",
            f"The manifest.json of bundle {str(path)!r} changed after export: its content "
            f"digest is {digest}, its bundle_id says {describe(manifest.get('bundle_id'))}. Re-export the "
            "bundle rather than editing it.",
        )
    files = _need(manifest, "files", dict, path)
    for name, digest in sorted(files.items()):
        target = path / name
        if os.path.basename(name) != name or not target.is_file():
            raise BundleError(
                "checksum_mismatch",
                f"Bundle {str(path)!r} lists {name!r} but it is missing. Copy the whole bundle folder, or re-export it.",
            )
        actual = sha256_file(target)
        if actual != digest:
            raise BundleError(
                "checksum_mismatch",
                f"{name!r} in bundle {str(path)!r} has sha256 {actual[:12]}..., the "
                f"manifest expects {str(digest)[:12]}...: the file changed after export. Re-export the bundle.",
            )


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
        raise BundleError(
            "onnx_error",
            f"onnxruntime cannot load {path.name!r} from bundle {str(path.parent)!r} "
            f"({type(exc).__name__}: {str(exc)[:200]}). Re-export the bundle.",
        ) from None


def load_bundle(source: str | os.PathLike[str], intra_op_threads: int = 1, verify: bool = True) -> Bundle:
    """Read, verify and open a bundle folder. Raises BundleError (with ``code``) when it cannot be served."""
    path = Path(source)
    manifest = read_manifest(path)
    if verify:
        verify_files(path, manifest)
    parts = _read_parts(path, manifest, intra_op_threads)
    _check_layout(path, manifest, parts)
    sessions, scorer = _open_model(path, parts, intra_op_threads)
    catalogue, candidates = parts["catalogue"], parts["candidates"]
    p95 = np.array([np.nan if (v := catalogue.candidate(c).p95_latency_ms) is None else v for c in candidates])
    cost, names, cand = parts["cost"], parts["names"], parts["candidate_features"]
    core = DecisionCore.build(
        candidates, names, parts["calibrations"], cost["intercept"], cost["slope"], p95, parts["policy"], parts["curve"]
    )
    return Bundle(
        path=path,
        manifest=manifest,
        bundle_id=str(manifest.get("bundle_id", "")),
        extractor=parts["extractor"],
        encoder=parts["encoder"],
        sessions=sessions,
        kind=parts["kind"],
        candidates=candidates,
        candidate_features=cand,
        calibrations=parts["calibrations"],
        cost_intercept=np.asarray(cost["intercept"], dtype=np.float64),
        cost_slope=np.asarray(cost["slope"], dtype=np.float64),
        policy=parts["policy"],
        catalogue=catalogue,
        p95_ms=p95,
        calibration_set=core.calibration,
        run_options=_run_options(),
        row_template=_row_template(len(names), cand) if parts["kind"] == "pooled" else None,
        core=core,
        scorer=scorer,
    )


def _read_parts(path: Path, manifest: Mapping[str, Any], threads: int) -> dict[str, Any]:
    """The manifest's parts as runtime objects, the FeatureSpec this runtime rebuilds checked
    against the trained one; BundleError naming what is wrong."""
    from tierroute.features.embeddings import load_encoder
    from tierroute.features.signals import SignalConfig, SignalExtractor
    from tierroute.features.spec import FeatureSpec
    from tierroute.models.catalogue import Catalogue
    from tierroute.models.policy import Policy

    try:
        extractor = SignalExtractor(SignalConfig(**_need(manifest, "signals", dict, path)))
        trained = FeatureSpec.from_dict(_need(manifest, "feature_spec", dict, path))
        encoder = load_encoder(path, manifest["encoder"], threads) if manifest.get("encoder") is not None else None
        names = (*extractor.feature_names, *(f"emb_{i}" for i in range(0 if encoder is None else encoder.dims)))
        built = FeatureSpec(
            names,
            extractor.spec.version,
            extractor.spec.tokenizer,
            extractor.spec.signals,
            None if encoder is None else encoder.id,
            0 if encoder is None else encoder.dims,
        )
        trained.check_compatible(built)
        model = _need(manifest, "model", dict, path)
        objective = manifest.get("objective")
        return {
            "extractor": extractor,
            "encoder": encoder,
            "names": names,
            "model": model,
            "kind": str(model.get("kind")),
            "catalogue": Catalogue.from_dict(_need(manifest, "catalogue", dict, path), source=f"bundle {path}"),
            "candidates": tuple(_need(manifest, "candidates", list, path)),
            "policy": Policy(**_need(manifest, "policy", dict, path)),
            "cost": _need(manifest, "cost_model", dict, path),
            "calibrations": tuple(
                Calibration.from_dict(c, f"bundle {path} calibration[{j}]")
                for j, c in enumerate(_need(manifest, "calibration", list, path))
            ),
            "curve": None
            if objective is None
            else KnobCurve.from_dict(
                objective.get("curve") if isinstance(objective, Mapping) else objective, f"knob curve of bundle {path}"
            ),
            "candidate_features": np.asarray(model.get("candidate_features"), dtype=np.float32),
        }
    except BundleError:
        raise
    except FeatureError as exc:  # the spec this runtime builds differs, or the encoder files are bad
        raise BundleError("feature_spec_mismatch", f"Bundle {str(path)!r} cannot be served: {exc}") from None
    except TierrouteError as exc:  # CatalogueError, ConfigError (policy, curve)
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r} cannot be served: {exc}") from None
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise BundleError(
            "bundle_invalid", f"Bundle {str(path)!r} is incomplete or damaged ({type(exc).__name__}: {exc}). Re-export it."
        ) from None


#: model kinds and how many files each has (m: one per candidate; None: any, one per array)
_MODEL_FILES: dict[str, str | int | None] = {"pooled": 1, "per_candidate": "m", "knn": None, "lowrank": None}


def _curve_candidates(curve: KnobCurve | None) -> list[int]:
    """The candidate indices a knob curve names (its frontier, its anchor's candidate)."""
    if curve is None:
        return []
    return [j for j in (curve.frontier, None if curve.anchor is None else curve.anchor.candidate) if j is not None]


def _check_layout(path: Path, manifest: Mapping[str, Any], parts: Mapping[str, Any]) -> None:
    """The parts fit together (counts, shapes, file names the checksums cover)."""
    kind, model, cand, policy = parts["kind"], parts["model"], parts["candidate_features"], parts["policy"]
    m = len(parts["candidates"])
    try:
        files = list(model.get("files") or [])
        count = _MODEL_FILES.get(kind, -1)
        fits = (
            kind in _MODEL_FILES
            and (count is None and len(files) > 0 or len(files) == (m if count == "m" else count))
            and cand.ndim == 2
            and cand.shape[0] == m
            and len(parts["calibrations"]) == m
            and len(parts["cost"]["intercept"]) == m
            and len(parts["cost"]["slope"]) == m
            and (policy.frontier is None or 0 <= policy.frontier < m)
            and all(0 <= j < m for j in _curve_candidates(parts["curve"]))
        )
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BundleError(
            "bundle_invalid", f"Bundle {str(path)!r} is incomplete or damaged ({type(exc).__name__}: {exc}). Re-export it."
        ) from None
    if not fits or not all(isinstance(f, str) for f in files):
        raise BundleError(
            "bundle_invalid",
            f"Bundle {str(path)!r} does not fit together: {m} candidates, model kind "
            f"{kind!r} with {len(files)} file(s), candidate features of shape {cand.shape}, "
            f"{len(parts['calibrations'])} calibrations, policy frontier {policy.frontier!r}, knob curve "
            f"candidates {_curve_candidates(parts['curve'])}. Re-export it.",
        )
    opened = [*files, *(((manifest.get("encoder") or {}).get("files")) or [])]
    listed = manifest.get("files") or {}
    for name in opened:  # only files the checksums cover, inside the folder
        if not isinstance(name, str) or os.path.basename(name) != name or name not in listed or (path / name).is_symlink():
            raise BundleError(
                "bundle_invalid",
                f"Bundle {str(path)!r} names {name!r} as a model or encoder file; expected a "
                "plain file name inside the bundle that manifest 'files' lists with its sha256. Re-export it.",
            )
    missing = parts["catalogue"].missing(parts["candidates"])
    if missing:
        raise BundleError("bundle_invalid", f"Bundle {str(path)!r}: candidates {missing} are not in its catalogue. Re-export it.")


def _open_model(path: Path, parts: Mapping[str, Any], threads: int) -> tuple[tuple[Any, ...], Any]:
    """(ONNX sessions, None) for the LightGBM kinds, ((), numpy scorer) for knn/lowrank; each
    checked to take this FeatureSpec's columns."""
    kind, files, names = parts["kind"], list(parts["model"].get("files") or []), parts["names"]
    if kind in ("knn", "lowrank"):
        from tierroute.models.families import load_scorer

        try:
            arrays = {f.removeprefix("model-").removesuffix(".npy"): np.load(path / f, allow_pickle=False) for f in files}
            scorer = load_scorer(kind, arrays, parts["model"].get("params") or {})
            probe = np.asarray(scorer(np.zeros((1, len(names)), dtype=np.float32)))
        except Exception as exc:  # noqa: BLE001 - any damage in the arrays or params
            raise BundleError(
                "bundle_invalid",
                f"The {kind} model of bundle {str(path)!r} cannot be opened "
                f"({type(exc).__name__}: {str(exc)[:200]}). Re-export the bundle.",
            ) from None
        if probe.shape != (1, len(parts["candidates"])):
            raise BundleError(
                "feature_spec_mismatch",
                f"The {kind} model of bundle {str(path)!r} scores {probe.shape} for one "
                f"request of {len(names)} features; expected (1, {len(parts['candidates'])}). Re-export it.",
            )
        return (), scorer
    sessions = tuple(_session(path / f, threads) for f in files)
    width = len(names) + (1 + parts["candidate_features"].shape[1] if kind == "pooled" else 0)
    for f, session in zip(files, sessions):
        shape = session.get_inputs()[0].shape
        if len(shape) != 2 or shape[1] != width:
            raise BundleError(
                "feature_spec_mismatch",
                f"{f!r} in bundle {str(path)!r} takes input shape {shape}; the FeatureSpec builds {width} columns. Re-export the bundle.",
            )
    return sessions, None


def _run_options() -> Any:
    import onnxruntime as ort

    options = ort.RunOptions()
    options.log_severity_level = 3
    return options


def _row_template(n_request: int, candidate_features: np.ndarray) -> np.ndarray:
    m = len(candidate_features)
    template = np.zeros((m, n_request + 1 + candidate_features.shape[1]), dtype=np.float32)
    template[:, n_request] = np.arange(m)
    template[:, n_request + 1 :] = candidate_features
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

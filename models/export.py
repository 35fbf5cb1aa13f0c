"""Export a fitted LearnedRouter as a RouterBundle: everything the serving runtime needs, nothing
it must not import (no pickle, no LightGBM, no scikit-learn, no torch).

A bundle is a folder:

- ``manifest.json``: bundle schema version, FeatureSpec (with its fingerprint), signal config,
  encoder, model layout, calibration tables, expected-cost model, decision policy and knob,
  candidates and their catalogue, training-data hash, metrics, package versions, and the sha256 of
  every other file in the folder;
- ``model.onnx`` (pooled) or ``model-<j>.onnx`` (one per candidate): the LightGBM boosters as
  ONNX tree ensembles, outputting P(correct) before calibration;
- ``static_ids.npy``, ``static_table.npy``, ``static.json``: the static encoder the model was
  trained with (BPE-keyed token vectors); or ``minilm.onnx``, ``minilm_tokenizer.json``,
  ``minilm.json``: the MiniLM-ONNX encoder (see :func:`tierroute.features.embeddings.encoder_manifest`);
- ``trees.npy`` (LightGBM kinds): the same trees as a flat numpy table, read to explain decisions
  (manifest ``model.trees``; bundles from before it serve without explanations).

    export_bundle(router, "bundle/", metrics=report)      # refuses a non-empty folder

The runtime (:mod:`tierroute.serving.bundle`) verifies the checksums, the schema version and the
FeatureSpec before it serves a single learned decision.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import ConfigError, OutputDirError
from tierroute.hashing import sha256_file
from tierroute.models.bundle_format import BUNDLE_KIND, BUNDLE_SCHEMA_VERSION, manifest_digest, schema_version_for
from tierroute.models.decision import Calibration

__all__ = ["BUNDLE_SCHEMA_VERSION", "BUNDLE_KIND", "export_bundle", "booster_to_onnx", "calibration_table", "sha256_file", "training_hash"]

ONNX_OPSET = 15  # the highest onnxmltools' LightGBM converter supports here
_VERSIONED = ("tierroute", "numpy", "onnxruntime", "tokenizers", "bpe-openai", "lightgbm", "onnx", "onnxmltools", "scikit-learn")


def booster_to_onnx(booster: Any, n_features: int) -> bytes:
    """One LightGBM binary booster as an ONNX model: input ``input`` (n, n_features) float32,
    output ``probabilities`` (n, 2) float32 (column 1 = P(class 1), before calibration)."""
    import onnxmltools
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(
        booster, initial_types=[("input", FloatTensorType([None, n_features]))], zipmap=False, target_opset=ONNX_OPSET
    )
    # the converter declares `label` with a fixed shape it does not produce for batches; only the
    # probabilities are served, so the label leaves the graph's outputs
    outputs = [o for o in model.graph.output if o.name == "probabilities"]
    if len(outputs) != 1:
        names = [o.name for o in model.graph.output]
        raise ConfigError(
            f"The ONNX converter produced outputs {names}; expected one named 'probabilities'. "
            "Check the onnxmltools version against pyproject.toml."
        )
    del model.graph.output[:]
    model.graph.output.extend(outputs)
    model.graph.name = "tierroute_lgbm"  # the converter names the graph with a random uuid: keep bytes reproducible
    return model.SerializeToString()  # type: ignore[no-any-return]


def calibration_table(calibrator: Any) -> dict[str, Any]:
    """A fitted calibrator as the plain numbers the runtime applies with numpy alone (see
    :class:`tierroute.models.decision.Calibration`)."""
    return Calibration.from_calibrator(calibrator).to_dict()


def training_hash(router: Any) -> str:
    """sha256 over the sorted prompt hashes the router was trained on."""
    joined = "\n".join(sorted(router.train_prompt_hashes_)).encode("utf-8")
    return hashlib.sha256(joined).hexdigest()


def _versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in _VERSIONED:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _jsonable(value: Any) -> Any:
    """Metrics as strict JSON: numpy scalars made plain, NaN and infinities as null."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value if value is None or isinstance(value, (str, int, float, bool)) else str(value)


def _check_out(path: Path) -> None:
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise OutputDirError(
            f"The bundle folder {str(path)!r} already exists and is not empty; a bundle is never written over "
            "existing files. Pass a new --out folder (or remove that one yourself)."
        )


def export_bundle(
    router: Any,
    out_dir: str | os.PathLike[str],
    *,
    metrics: Mapping[str, Any] | None = None,
    training: Mapping[str, Any] | None = None,
    reference: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``router`` (a fitted LearnedRouter) as a bundle in ``out_dir`` (new or empty). The
    folder appears whole or not at all: files are written beside it, then moved in."""
    if not hasattr(router, "model_"):
        raise ConfigError("Only a fitted LearnedRouter can be exported; call fit first (or load a trained one).")
    if router.encoder is not None:
        from tierroute.features.embeddings import encoder_manifest

        encoder_manifest(router.encoder)  # ConfigError, before any file is written, for an encoder a bundle cannot serve
    out = Path(out_dir)
    _check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    work.chmod(0o755)  # mkdtemp makes it private; a bundle is read by the serving user too
    try:
        manifest = _write_files(router, work, metrics, training)
        if reference is not None:  # the training distributions drift reports compare against
            manifest["reference"] = _jsonable(dict(reference))
        files = {p.name: sha256_file(p) for p in sorted(work.iterdir()) if p.is_file()}
        manifest["files"] = files
        manifest["bundle_id"] = manifest_digest(manifest)
        (work / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        _check_out(out)
        if out.exists():
            out.rmdir()  # empty, checked just above
        work.rename(out)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
    return out


def _write_model(estimator: Any, kind: str, n_request: int, work: Path) -> tuple[list[str], dict[str, Any] | None]:
    """The P(correct) model's files: LightGBM boosters as ONNX (``model.onnx`` pooled,
    ``model-<j>.onnx`` per candidate); a numpy-served family (knn, lowrank) as ``model-<name>.npy``
    arrays plus its params for the manifest. Returns (file names, params or None)."""
    from tierroute.models.families import estimator_arrays

    numpy_model = estimator_arrays(estimator)
    if numpy_model is not None:
        arrays, params = numpy_model
        files = []
        for name, array in sorted(arrays.items()):
            with open(work / f"model-{name}.npy", "wb") as fh:
                np.save(fh, np.ascontiguousarray(array), allow_pickle=False)
            files.append(f"model-{name}.npy")
        return files, _jsonable(dict(params))
    if kind == "pooled":
        n_inputs = n_request + 1 + estimator.candidate_features_.shape[1]
        (work / "model.onnx").write_bytes(booster_to_onnx(estimator.models_[0], n_inputs))
        return ["model.onnx"], None
    files = []
    for j, booster in enumerate(estimator.models_):
        (work / f"model-{j}.onnx").write_bytes(booster_to_onnx(booster, n_request))
        files.append(f"model-{j}.onnx")
    return files, None


def _write_trees(estimator: Any, work: Path) -> str | None:
    """``trees.npy``: the boosters' trees as a flat table, so a runtime explains a decision (per-feature
    contributions, :mod:`tierroute.models.contributions`) with numpy alone; None (no file) when a tree
    has a split the table cannot hold (a categorical set beyond 0..63)."""
    from tierroute.models.contributions import tree_tables

    try:
        records = tree_tables(estimator.models_)
    except ValueError:
        return None
    with open(work / "trees.npy", "wb") as fh:
        np.save(fh, records, allow_pickle=False)
    return "trees.npy"


def _objective(router: Any) -> dict[str, Any]:
    """The manifest's ``objective`` entry: the out-of-fold knob curve, so a service picks another
    objective without retraining (absent in bundles from before objectives; those serve their fixed policy)."""
    if not hasattr(router, "knob_curve_"):
        return {}
    return {
        "objective": {"default": router.config.objective, "point": router.objective_point_.to_dict(), "curve": router.knob_curve_.to_dict()}
    }


def _write_files(router: Any, work: Path, metrics: Mapping[str, Any] | None, training: Mapping[str, Any] | None) -> dict[str, Any]:
    lgbm = router.model_
    kind = lgbm.params.kind
    n_request = int(lgbm.n_features_in_)
    model_files, numpy_params = _write_model(lgbm, kind, n_request, work)
    trees = _write_trees(lgbm, work) if numpy_params is None else None
    encoder_info: dict[str, Any] | None = None
    if router.encoder is not None:
        from tierroute.features.embeddings import encoder_manifest

        router.encoder.save(work)
        encoder_info = encoder_manifest(router.encoder)
    spec = router.feature_spec_
    return {
        "kind": BUNDLE_KIND,
        "schema_version": schema_version_for(router.policy_.to_dict(), _objective(router).get("objective", {}).get("curve")),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "feature_spec": spec.to_dict(),
        "feature_spec_fingerprint": spec.fingerprint(),
        "signals": router.config.signals.to_dict(),
        "encoder": encoder_info,
        "model": {
            "kind": kind,
            "files": model_files,
            "input": "input",
            "output": "probabilities",
            "n_request_features": n_request,
            **({} if numpy_params is None else {"params": numpy_params}),
            **({} if trees is None else {"trees": trees}),
            "candidate_features": np.asarray(lgbm.candidate_features_, dtype=float).tolist(),
        },
        "calibration": [calibration_table(c) for c in lgbm.calibrators_],
        "cost_model": {
            "intercept": [float(v) for v in router.cost_model_.intercept],
            "slope": [float(v) for v in router.cost_model_.slope],
        },
        "policy": router.policy_.to_dict(),
        **_objective(router),
        "candidates": list(router.candidates_),
        "catalogue": router.catalogue_.to_dict(),
        "training": {
            "prompts_sha256": training_hash(router),
            "requests": len(router.train_prompt_hashes_),
            "config": router.config.to_dict(),
            **dict(training or {}),
        },
        "metrics": _jsonable(dict(metrics or {})),
        "versions": _versions(),
    }

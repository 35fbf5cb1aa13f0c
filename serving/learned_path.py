"""The learned path's model-facing steps: a batch of requests to the feature matrix training built
(signals, then the embedding) and the matrix to the bundle's raw scores (ONNX sessions or a
numpy-served family's scorer). Either raises :class:`~tierroute.serving.router_config.Fallback` when
it cannot answer; :class:`~tierroute.serving.router.Router` turns the scores into decisions.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tierroute.models.decision import feature_matrix
from tierroute.request import Request
from tierroute.serving.bundle import Bundle, bundle_rows
from tierroute.serving.router_config import Fallback

__all__ = ["raw_scores", "request_matrix"]

_OUTPUT = ["probabilities"]


def request_matrix(b: Bundle, requests: list[Request], max_prompt_chars: int) -> tuple[np.ndarray, list[Any]]:
    """(the feature matrix, the measured signals) of ``requests``, as training built them; Fallback
    (prompt_too_large, tokenizer_error, embedding_error) when they cannot be had."""
    too_long = [r for r in requests if len(r.prompt) > max_prompt_chars]
    if too_long:
        raise Fallback(
            "prompt_too_large", f"a prompt of {len(too_long[0].prompt):,} characters exceeds max_prompt_chars={max_prompt_chars:,}"
        )
    encoder = b.encoder
    # count once: the static encoder's BPE ids are the token counter's (same tokenizer)
    shared = encoder is not None and getattr(encoder, "tokenizer", None) == b.extractor.counter.id
    try:
        if shared:
            token_ids = [encoder.ids(r.prompt) for r in requests]
            measured = [b.extractor.signals(r, token_count=len(t)) for r, t in zip(requests, token_ids)]
        else:
            measured = [b.extractor.signals(r) for r in requests]
    except Exception as exc:  # noqa: BLE001 - tokenizer or schema summary failure
        raise Fallback("tokenizer_error", f"{type(exc).__name__}: {exc}") from None
    embedding = None
    if encoder is not None:
        try:
            embedding = encoder.encode_many_ids(token_ids) if shared else encoder.encode([r.prompt for r in requests])
        except Exception as exc:  # noqa: BLE001
            raise Fallback("embedding_error", f"{type(exc).__name__}: {exc}") from None
    return feature_matrix([s.as_vector() for s in measured], embedding), measured


def raw_scores(b: Bundle, X: np.ndarray) -> np.ndarray:
    """(n, m) raw scores from the bundle's model (the only step training does differently); Fallback
    (model_error, onnx_error) when the model fails."""
    if b.scorer is not None:  # a numpy-served family (knn, lowrank)
        try:
            return np.asarray(b.scorer(X), dtype=np.float64)
        except Exception as exc:  # noqa: BLE001
            raise Fallback("model_error", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    try:
        raw = [s.run(_OUTPUT, {"input": x}, b.run_options)[0][:, 1] for s, x in zip(b.sessions, bundle_rows(b, X))]
    except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
        raise Fallback("onnx_error", f"{type(exc).__name__}: {str(exc)[:200]}") from None
    return raw[0].reshape(len(X), len(b.candidates)) if b.kind == "pooled" else np.column_stack(raw)

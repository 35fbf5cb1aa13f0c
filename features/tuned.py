"""An outcome-tuned static encoder: the static table, projected onto directions learned from the
training outcomes themselves, so that prompts on which the same candidates succeed end up close
(RouterDC's idea: a contrastive objective over the outcomes), still served by numpy alone.

    base = distill_static(vocabulary, dims=256)                 # the PCA table (features/static.py)
    tuned = tune_static(base, embeddings_256, correct, dims=64)  # a StaticEncoder, 64 columns
    tuned.encode(["Extract the order id."])                      # exactly normalise(W^T static_256(x))

Model: z = normalise(W^T x), x the base static embedding (the L2-normalised sum of token rows), W
(base dims x ``dims``) linear, no bias. Because the static pooling is a sum followed by a
normalisation and W is linear, normalise(W^T normalise(sum rows)) = normalise(sum (rows W)): the
tuned embedding distils *exactly* into a static table, ``base.table @ W`` (no approximation, the
same lookup, pooling and head+tail cut as the base; bundles store it as a ``static`` encoder).

Objective, per mini-batch of training prompts (torch, CPU, seeded, one thread):
- sample-sample (RouterDC's contrastive term with soft positives): the target distribution of
  prompt i over the other prompts j is softmax_j(cos(o_i, o_j) / target_temperature), o the
  per-candidate outcome vector centred (and scaled) per candidate; the model's is
  softmax_j(z_i . z_j / temperature); the loss is their cross-entropy;
- sample-candidate (``candidate_weight``): BCE of sigmoid(scale x z_i . v_j + b_j) against the
  outcome, v_j a learned vector per candidate (RouterDC's sample-LLM term, in its binary form).
W starts at the base table's first ``dims`` PCA components (the plain static encoder of that width)
and is pulled back toward it by ``anchor`` x ||W - W0||^2, so a weak signal changes little.
Unknown outcomes (NaN) are filled with the candidate's mean; rows with none known are left out.
Needs torch (the training extra), imported only when tuning.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from tierroute._params import check_int, check_number
from tierroute.errors import ConfigError
from tierroute.features.static import StaticEncoder

__all__ = ["TuneConfig", "outcome_vectors", "tune_projection", "tune_static", "TUNED_NAME"]

TUNED_NAME = "static-tuned-bpe"


@dataclass(frozen=True)
class TuneConfig:
    """How the projection is tuned (see the module docstring)."""

    steps: int = 300
    batch_size: int = 512
    learning_rate: float = 0.01
    temperature: float = 0.1
    target_temperature: float = 0.1
    candidate_weight: float = 1.0
    anchor: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.steps, "steps", "TuneConfig", 0)
        check_int(self.batch_size, "batch_size", "TuneConfig", 4)
        for name in ("learning_rate", "temperature", "target_temperature"):
            check_number(getattr(self, name), name, "TuneConfig", 1e-6)
        for name in ("candidate_weight", "anchor"):
            check_number(getattr(self, name), name, "TuneConfig", 0.0)


def outcome_vectors(correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows kept (k,), their outcome vectors (k, m) float32): each candidate's column centred and
    scaled to unit standard deviation, unknown outcomes at the column mean (0). Rows with no known
    outcome are dropped; a constant column is all zeros."""
    y = np.asarray(correct, dtype=np.float64)
    if y.ndim != 2:
        raise ConfigError(f"outcome_vectors needs a 2-D (requests x candidates) array; got shape {y.shape}.")
    known = ~np.isnan(y)
    rows = np.flatnonzero(known.any(axis=1))
    y, known = y[rows], known[rows]
    with np.errstate(invalid="ignore"):
        mean = np.where(known.any(axis=0), np.nanmean(np.where(known, y, np.nan), axis=0), 0.0)
    centred = np.where(known, y - mean, 0.0)
    std = centred.std(axis=0)
    return rows, (centred / np.where(std > 1e-9, std, 1.0)).astype(np.float32)


def tune_projection(vectors: np.ndarray, correct: np.ndarray, dims: int = 64, config: TuneConfig | None = None) -> np.ndarray:
    """W (d, dims) float32 from base embeddings ``vectors`` (n, d) and outcomes ``correct`` (n, m)
    (1/0/NaN) of the same training prompts. Deterministic for a seed."""
    import torch

    config = config or TuneConfig()
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or len(x) != len(correct):
        raise ConfigError(
            f"tune_projection needs vectors (n, d) and outcomes (n, m) for the same n; got {x.shape} and {np.shape(correct)}."
        )
    check_int(dims, "dims", "tune_projection", 2, x.shape[1])
    rows, target = outcome_vectors(correct)
    if len(rows) < 4:
        raise ConfigError(f"tune_projection needs at least 4 prompts with known outcomes; got {len(rows)}.")
    known = ~np.isnan(np.asarray(correct, dtype=np.float64)[rows])
    label = np.nan_to_num(np.asarray(correct, dtype=np.float64)[rows]).astype(np.float32)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # bit-reproducible, and polite on a shared machine
    try:
        gen = torch.Generator().manual_seed(config.seed)
        X, T = torch.from_numpy(x[rows]), torch.from_numpy(target)
        Y, K = torch.from_numpy(label), torch.from_numpy(known.astype(np.float32))
        w0 = torch.zeros(x.shape[1], dims)
        w0[:dims, :dims] = torch.eye(dims)  # the base table's first PCA components: the plain static encoder
        W = w0.clone().requires_grad_(True)
        m = target.shape[1]
        V = (0.1 * torch.randn(dims, m, generator=gen)).requires_grad_(True)
        b = torch.zeros(m, requires_grad=True)
        log_scale = torch.tensor(float(np.log(10.0)), requires_grad=True)
        opt = torch.optim.Adam([W, V, b, log_scale], lr=config.learning_rate)
        size = min(config.batch_size, len(rows))
        eye = torch.eye(size, dtype=torch.bool)
        for _ in range(config.steps):
            pick = torch.randperm(len(rows), generator=gen)[:size]
            z = torch.nn.functional.normalize(X[pick] @ W, dim=1)
            t = torch.nn.functional.normalize(T[pick], dim=1)
            q = torch.softmax((t @ t.T / config.target_temperature).masked_fill(eye, -1e9), dim=1)
            logp = torch.log_softmax((z @ z.T / config.temperature).masked_fill(eye, -1e9), dim=1)
            loss = -(q * logp).sum(dim=1).mean()
            if config.candidate_weight > 0:
                logits = log_scale.exp() * (z @ torch.nn.functional.normalize(V, dim=0)) + b
                bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, Y[pick], weight=K[pick], reduction="sum")
                loss = loss + config.candidate_weight * bce / K[pick].sum().clamp(min=1.0)
            if config.anchor > 0:
                loss = loss + config.anchor * ((W - w0) ** 2).sum()
            opt.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            opt.step()
        return W.detach().numpy().astype(np.float32)
    finally:
        torch.set_num_threads(threads)


def tune_static(
    base: StaticEncoder, vectors: np.ndarray, correct: np.ndarray, dims: int = 64, config: TuneConfig | None = None
) -> StaticEncoder:
    """The tuned encoder: ``base`` (its table, token ids, tokenizer and cut) with the table
    ``base.table @ W``, W from :func:`tune_projection` on ``vectors`` = ``base.encode(prompts)``
    of the training prompts and their outcomes ``correct``. Saved and served as any static encoder."""
    if vectors.shape[1] != base.dims:
        raise ConfigError(f"tune_static: the vectors have {vectors.shape[1]} columns, the base table {base.dims}.")
    W = tune_projection(vectors, correct, dims, config)
    table = np.ascontiguousarray((base.table.astype(np.float64) @ W.astype(np.float64)).astype(np.float32))
    return dataclasses.replace(base, table=table, name=TUNED_NAME)

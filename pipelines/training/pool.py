"""The family pool of :mod:`~tierroute.pipelines.training.selection`: a :class:`FamilySpec` is a
router kind with an encoder (and a static table's width), ranked by what it costs to cross-fit and to
serve; :data:`POOL` is what the selection tries, :func:`default_pool` the pool for a pinned kind or
encoder, and :func:`bundleable` whether a fitted family can be served from a bundle.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from tierroute.errors import ConfigError
from tierroute.models.families import FAMILY_KINDS, SCORER_KINDS, family_params
from tierroute.models.learned import LearnedConfig
from tierroute.models.router import ROUTER_KINDS

__all__ = ["POOL", "FamilySpec", "bundleable", "default_pool", "family_config", "kind_supported"]

_ENCODER_RANK = {"none": 0, "static": 1, "tuned": 1, "minilm": 2}  # tuned: a static table (features/tuned.py)
_KIND_FIT_RANK = {"lowrank": 0, "per_candidate": 1, "pooled": 2, "knn": 3}  # cheapest to cross-fit first
_KIND_SERVE_RANK = {"lowrank": 0, "pooled": 1, "per_candidate": 1, "knn": 2}  # one dot product < trees < neighbours


@dataclass(frozen=True)
class FamilySpec:
    """A router ``kind``, an ``encoder`` ("none", "static", "tuned", "minilm") and the static (or tuned) table's width ``dims``."""

    kind: str
    encoder: str = "none"
    dims: int | None = None

    def __post_init__(self) -> None:
        if self.encoder not in _ENCODER_RANK:
            raise ConfigError(f"FamilySpec encoder must be one of {tuple(_ENCODER_RANK)}; got {self.encoder!r}.")
        if (self.encoder in ("static", "tuned")) != (self.dims is not None):
            raise ConfigError(f"FamilySpec needs dims for the static encoder only; got {self.encoder!r} with dims={self.dims}.")

    name = property(lambda self: f"{self.kind}/{self.encoder}" + (f"-{self.dims}" if self.dims else ""))

    @property
    def width(self) -> int:  # embedding columns beside the request signals
        return self.dims if self.dims is not None else {"none": 0, "minilm": 384}[self.encoder]

    def serve_rank(self) -> tuple[int, int, int]:
        """Deterministic serving-cost order: the encoder dominates (none < static table gather, by width < MiniLM)."""
        return _ENCODER_RANK[self.encoder], self.width, _KIND_SERVE_RANK.get(self.kind, 3)

    def fit_rank(self) -> tuple[int, int, int]:  # cheapest to cross-fit first
        return _ENCODER_RANK[self.encoder], self.width, _KIND_FIT_RANK.get(self.kind, 4)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "encoder": self.encoder, "dims": self.dims}


# the pool: adding a family is one line
POOL: tuple[FamilySpec, ...] = (
    FamilySpec("pooled", "none"),
    FamilySpec("per_candidate", "none"),
    FamilySpec("pooled", "static", 64),
    FamilySpec("per_candidate", "static", 64),
    FamilySpec("pooled", "static", 256),
    FamilySpec("per_candidate", "static", 256),
    FamilySpec("pooled", "minilm"),
    FamilySpec("per_candidate", "minilm"),
    FamilySpec("knn", "static", 256),
    FamilySpec("knn", "minilm"),
    FamilySpec("lowrank", "static", 256),
    FamilySpec("lowrank", "minilm"),
)


def kind_supported(kind: str) -> bool:
    """True when :class:`LearnedRouter` can fit ``kind`` (any of the families' kinds)."""
    return kind in ROUTER_KINDS or kind in FAMILY_KINDS


def default_pool(kind: str = "auto", encoder: str = "auto", static_dims: int | None = None) -> tuple[FamilySpec, ...]:
    """:data:`POOL` less unsupported kinds, for the pinned ``kind`` / ``encoder`` ("auto": all), at one static width if given."""
    pool = []
    for spec in POOL:
        if not kind_supported(spec.kind) or kind not in ("auto", spec.kind) or encoder not in ("auto", spec.encoder):
            continue
        if spec.encoder == "static" and static_dims is not None:
            spec = dataclasses.replace(spec, dims=static_dims)
        if spec not in pool:
            pool.append(spec)
    if not pool and encoder != "auto":  # an encoder outside the auto pool (tuned): the pinned kind, else every kind of the pool
        kinds = [kind] if kind != "auto" else list(dict.fromkeys(s.kind for s in POOL if kind_supported(s.kind)))
        pool = [FamilySpec(k, encoder, (static_dims or 64) if encoder in ("static", "tuned") else None) for k in kinds]
    return tuple(pool)


def family_config(base: LearnedConfig, spec: FamilySpec) -> LearnedConfig:
    """``base`` with ``spec``'s encoder and kind (another family's params keep folds, calibration, seed)."""
    return dataclasses.replace(base, encoder=spec.encoder, router=family_params(spec.kind, base.router))


def bundleable(encoder: Any, kind: str) -> bool:
    """Servable from a bundle: the encoder's ``bundleable`` flag, else it saves itself (static,
    MiniLM-ONNX; not the torch MiniLM); a LightGBM (ONNX) or numpy-scored kind."""
    flag = getattr(encoder, "bundleable", None)
    encoder_ok = bool(flag() if callable(flag) else flag) if flag is not None else (encoder is None or hasattr(encoder, "save"))
    return encoder_ok and (kind in ROUTER_KINDS or kind in SCORER_KINDS)

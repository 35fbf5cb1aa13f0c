"""FeatureSpec: the contract between a trained model and whoever feeds it vectors.

Saved with every model; a model is only ever fed vectors built under an equal spec. Anything that
changes a value for the same request (feature order, tokenizer, keyword list, thresholds, the
embedding) must change the spec, and :meth:`FeatureSpec.check_compatible` refuses the pair.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tierroute.errors import FeatureError, describe

__all__ = ["FeatureSpec", "FEATURE_VERSION"]

#: Bump when the meaning of a feature changes without its name changing.
FEATURE_VERSION = 1


@dataclass(frozen=True)
class FeatureSpec:
    """Ordered feature names plus everything that determines their values."""

    names: tuple[str, ...]
    version: int = FEATURE_VERSION
    tokenizer: str = ""
    signals: Mapping[str, Any] = field(default_factory=dict)
    embedding: str | None = None
    embedding_dims: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "names", tuple(self.names))
        if len(set(self.names)) != len(self.names):
            dupes = sorted({n for n in self.names if self.names.count(n) > 1})
            raise FeatureError(f"FeatureSpec names must be unique; duplicated: {dupes}.")

    @property
    def n_features(self) -> int:
        return len(self.names)

    def to_dict(self) -> dict[str, Any]:
        return {
            "names": list(self.names),
            "version": self.version,
            "tokenizer": self.tokenizer,
            "signals": json.loads(json.dumps(dict(self.signals))),
            "embedding": self.embedding,
            "embedding_dims": self.embedding_dims,
        }

    @classmethod
    def from_dict(cls, data: object) -> FeatureSpec:
        if not isinstance(data, Mapping) or not isinstance(data.get("names"), list):
            raise FeatureError(
                f"A FeatureSpec must be an object with a 'names' list; got {describe(data)}. "
                "The model file is damaged or from another tool: re-export it."
            )
        try:
            if not all(isinstance(n, str) for n in data["names"]):
                raise TypeError("names must be strings")
            return cls(
                names=tuple(data["names"]),
                version=int(data.get("version", 0)),
                tokenizer=str(data.get("tokenizer", "")),
                signals=dict(data.get("signals") or {}),
                embedding=data.get("embedding"),
                embedding_dims=int(data.get("embedding_dims") or 0),
            )
        except FeatureError:
            raise
        except (TypeError, ValueError) as exc:
            raise FeatureError(
                f"A FeatureSpec field has the wrong type ({exc}); got {describe(dict(data))}. "
                "The model file is damaged or from another tool: re-export it."
            ) from None

    def fingerprint(self) -> str:
        """sha256 of the canonical JSON form; equal specs have equal fingerprints."""
        blob = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()

    def check_compatible(self, other: FeatureSpec) -> None:
        """Raise FeatureError naming the first difference between the two specs, if any."""
        mine, theirs = self.to_dict(), other.to_dict()
        for key in ("version", "tokenizer", "embedding", "embedding_dims", "signals"):
            if mine[key] != theirs[key]:
                raise FeatureError(
                    f"Feature spec mismatch on {key!r}: the model was trained with {mine[key]!r}, "
                    f"this runtime builds {theirs[key]!r}. Retrain, or serve with the configuration "
                    "the model was trained with."
                )
        if mine["names"] != theirs["names"]:
            missing = [n for n in mine["names"] if n not in theirs["names"]]
            extra = [n for n in theirs["names"] if n not in mine["names"]]
            detail = f"missing {missing[:5]}, extra {extra[:5]}" if missing or extra else "same names, other order"
            raise FeatureError(
                f"Feature spec mismatch on 'names' ({detail}). Retrain, or serve with the configuration the model was trained with."
            )

"""The two fields of a feature-only outcome row (privacy mode), read and checked.

``tierroute serve --log-features`` (without ``--log-prompts``) logs, per decision, the feature
vector the bundle's model read and the bundle's FeatureSpec fingerprint instead of the prompt;
``tierroute outcomes`` turns such decisions into canonical rows holding ``features`` (a list of
numbers, null for a missing value) and ``feature_spec`` (64 hex digits) with no ``prompt``.
:class:`~tierroute.pipelines.data.records.OutcomeValidator` reads them through :func:`feature_fields`.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from tierroute.errors import describe

__all__ = ["FeatureFieldError", "feature_fields", "MAX_FEATURES"]

#: the longest feature vector accepted (the signals + the widest embedding, with room to spare)
MAX_FEATURES = 4096
_FINGERPRINT = re.compile(r"[0-9a-f]{64}")


class FeatureFieldError(ValueError):
    """Why a row's feature fields were refused: a quarantine ``reason`` and its ``detail``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason, self.detail = reason, detail


def _absent(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _number(value: object) -> float | None:
    """``value`` as a finite float, None for null/NaN; raises ValueError otherwise."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError
    number = float(value)  # an int beyond a float's range raises OverflowError, a ValueError's sibling
    if not math.isfinite(number):
        raise ValueError
    return number


def feature_fields(raw: Mapping[str, Any]) -> tuple[list[float | None], str] | None:
    """A feature-only row's (vector, FeatureSpec fingerprint), or None when the row has neither.
    Raises FeatureFieldError: ``missing_field`` when one comes without the other, ``bad_features``
    when the vector is not a non-empty list of numbers and nulls (JSON text of one, as a CSV cell
    holds it, is read) or the fingerprint is not 64 lowercase hex digits."""
    vector, spec = raw.get("features"), raw.get("feature_spec")
    if _absent(vector) and _absent(spec):
        return None
    if _absent(vector) or _absent(spec):
        given, absent = ("features", "feature_spec") if _absent(spec) else ("feature_spec", "features")
        raise FeatureFieldError(
            "missing_field", f"a feature-only row needs both 'features' and 'feature_spec'; it has {given!r} but no {absent!r}"
        )
    if isinstance(vector, str):
        try:
            vector = json.loads(vector)
        except ValueError:
            raise FeatureFieldError("bad_features", f"features must be a JSON list of numbers and nulls; got {describe(vector)}") from None
    tolist = getattr(vector, "tolist", None)
    if callable(tolist) and not isinstance(vector, (list, tuple)):
        vector = tolist()  # a numpy array, as pandas hands a list column over
    if not isinstance(vector, (list, tuple)) or not 0 < len(vector) <= MAX_FEATURES:
        raise FeatureFieldError(
            "bad_features", f"features must be a non-empty list of at most {MAX_FEATURES} numbers and nulls; got {describe(vector)}"
        )
    out: list[float | None] = []
    for i, value in enumerate(vector):
        try:
            out.append(_number(value))
        except (ValueError, OverflowError):
            raise FeatureFieldError("bad_features", f"features[{i}] must be a finite number or null; got {describe(value)}") from None
    if not isinstance(spec, str) or not _FINGERPRINT.fullmatch(spec.strip()):
        raise FeatureFieldError(
            "bad_features",
            f"feature_spec must be a FeatureSpec fingerprint (64 hex digits: the bundle's feature_spec_fingerprint); got {describe(spec)}",
        )
    return out, spec.strip()

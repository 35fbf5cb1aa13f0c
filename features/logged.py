"""Requests known by their logged feature vector only (privacy mode): no prompt text.

A decision logged with ``serve --log-features`` (and without ``--log-prompts``) holds the vector the
bundle's model read (signals, then the embedding; null for a missing value) and the bundle's
FeatureSpec fingerprint. :class:`LoggedRequest` carries that vector where a
:class:`~tierroute.request.Request` carries a prompt (its ``prompt`` is empty). The one feature
assembly of training and evaluation (``tierroute.models.learned.request_features``) reads the
vector instead of measuring text, once :func:`check_logged_spec` has found the fingerprint equal
to its own; the signal extractor and the heuristic tree read the signal columns by name.

    >>> r = LoggedRequest("", None, 800.0, features=(12.0, 0.0), feature_spec="ab" * 32)
    >>> r.prompt, r.features
    ('', (12.0, 0.0))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from tierroute.errors import FeatureError
from tierroute.features.spec import FeatureSpec
from tierroute.request import Request

__all__ = ["LoggedRequest", "is_logged", "logged_matrix", "logged_signal", "check_logged_spec", "spec_mismatch"]


@dataclass(frozen=True, slots=True)
class LoggedRequest(Request):
    """A request seen through its logged feature vector (``features``, NaN for a missing value, in
    the order of the FeatureSpec whose fingerprint is ``feature_spec``); ``prompt`` is empty."""

    features: tuple[float, ...] = ()
    feature_spec: str = ""


def is_logged(requests: Sequence[Request]) -> np.ndarray:
    """(n,) True where the request is a :class:`LoggedRequest`."""
    return np.fromiter((isinstance(r, LoggedRequest) for r in requests), dtype=bool, count=len(requests))


def logged_matrix(requests: Sequence[Request], width: int) -> np.ndarray:
    """(n, width) float32: the first ``width`` values of each LoggedRequest's vector. A vector
    shorter than ``width`` raises FeatureError."""
    rows = []
    for r in requests:
        vector = r.features if isinstance(r, LoggedRequest) else ()
        if len(vector) < width:
            raise FeatureError(
                f"A logged feature vector holds {len(vector)} values; {width} are expected (FeatureSpec "
                f"{getattr(r, 'feature_spec', '')!r}). The outcome row is damaged: drop it, or retrain "
                "from prompt-bearing logs (serve --log-prompts)."
            )
        rows.append(vector[:width])
    return np.asarray(rows, dtype=np.float32).reshape(len(rows), width)


def logged_signal(request: LoggedRequest, names: Sequence[str], name: str) -> float:
    """The value of the signal ``name`` in ``request``'s vector, laid out as ``names``."""
    try:
        return float(request.features[list(names).index(name)])
    except (ValueError, IndexError):
        raise FeatureError(
            f"The logged feature vector ({len(request.features)} values) has no {name!r} signal among "
            f"{len(names)} signal names. Retrain from prompt-bearing logs (serve --log-prompts)."
        ) from None


def spec_mismatch(logged: str, expected: str, count: int, reader: str) -> str:
    """The refusal of vectors logged under FeatureSpec ``logged`` by a ``reader`` built under ``expected``."""
    return (
        f"{count} feature-only request(s) were logged under FeatureSpec {logged or '(none)'}, but {reader} reads "
        f"FeatureSpec {expected}: the logged vectors do not mean the features it reads, so it cannot use them. "
        "Retrain from prompt-bearing logs (serve --log-prompts), or train on vectors logged while serving this "
        "same bundle (serve --log-features with the champion)."
    )


def check_logged_spec(requests: Sequence[Request], spec: FeatureSpec, reader: str = "this router") -> None:
    """Raise FeatureError (naming both fingerprints) unless every LoggedRequest in ``requests`` was
    logged under ``spec``."""
    expected = spec.fingerprint()
    other = [r.feature_spec for r in requests if isinstance(r, LoggedRequest) and r.feature_spec != expected]
    if other:
        raise FeatureError(spec_mismatch(other[0], expected, len(other), reader))

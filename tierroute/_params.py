"""Parameter checks worded the same way everywhere (the scikit-learn habit).

The 'token_limit' parameter of HeuristicParams must be an int in the range [1, inf). Got 0 instead.
"""

from __future__ import annotations

import math

from tierroute.errors import ConfigError

__all__ = ["check_int", "check_number", "check_fraction"]


def _fail(name: str, owner: str, expected: str, got: object) -> ConfigError:
    return ConfigError(f"The {name!r} parameter of {owner} must be {expected}. Got {got!r} instead.")


def _finite(value: float) -> bool:
    try:
        return math.isfinite(value)
    except OverflowError:  # an int too large for a float
        return False


def check_int(value: object, name: str, owner: str, low: int | None = None, high: int | None = None) -> int:
    """Return ``value`` if it is an int (not bool) within [low, high], else raise ConfigError."""
    lo = "-inf" if low is None else str(low)
    hi = "inf" if high is None else str(high)
    expected = f"an int in the range [{lo}, {hi}{']' if high is not None else ')'}"
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(name, owner, expected, value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, owner, expected, value)
    return value


def check_number(value: object, name: str, owner: str, low: float | None = None, high: float | None = None) -> float:
    """Return ``value`` as float if it is a finite real number within [low, high]."""
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    expected = f"a finite number in the range [{lo}, {hi}{']' if high is not None else ')'}"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not _finite(value):
        raise _fail(name, owner, expected, value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise _fail(name, owner, expected, value)
    return float(value)


def check_fraction(value: object, name: str, owner: str) -> float:
    """A number in [0, 1]."""
    return check_number(value, name, owner, 0.0, 1.0)

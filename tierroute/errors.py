"""Every exception tierroute raises on purpose.

Each message says what arrived, what was expected and what to do next, so the CLI and the HTTP
edge can print it as one line. Library code raises these; it never ``assert``s on input.
"""

from __future__ import annotations

__all__ = [
    "TierrouteError",
    "ConfigError",
    "FeatureError",
    "RequestError",
    "CatalogueError",
    "DataFormatError",
    "DataValidationError",
    "OutputDirError",
    "BundleError",
    "describe",
]


class TierrouteError(Exception):
    """Base class: a mistake the user can fix (bad input, bad file, bad option)."""


class ConfigError(TierrouteError, ValueError):
    """A configuration value is out of its allowed range or of the wrong type."""


class FeatureError(TierrouteError, ValueError):
    """A request field could not be turned into features (e.g. a malformed output schema)."""


class RequestError(TierrouteError, ValueError):
    """A routing request is malformed: no prompt, wrong types, a negative SLA, too large."""


class CatalogueError(TierrouteError, ValueError):
    """A candidate catalogue is unreadable or inconsistent (unknown tier, missing price, ...)."""


class DataFormatError(TierrouteError, ValueError):
    """An outcome file could not be read as the format asked for (or none could be detected)."""


class DataValidationError(TierrouteError, ValueError):
    """Too many outcome rows failed validation, or none survived it."""


class OutputDirError(TierrouteError, FileExistsError):
    """A run would write into a folder that already holds something the user wrote."""


class BundleError(TierrouteError, ValueError):
    """A router bundle that cannot be served; ``code`` names the failure (it becomes a fallback
    decision's reason and a metric label)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def describe(value: object, limit: int = 80) -> str:
    """A short, safe rendering of a user value for error messages: type and truncated repr."""
    text = repr(value)
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{text} ({type(value).__name__})"

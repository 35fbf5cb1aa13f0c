"""What :func:`~tierroute.schema.summarize_schema` returns: a :class:`SchemaSummary` of an output
schema (its kind and counts), the feature names it becomes, and :data:`NO_SCHEMA`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tierroute.errors import FeatureError, describe

__all__ = ["SCHEMA_KINDS", "SCHEMA_FEATURE_NAMES", "SchemaSummary", "NO_SCHEMA"]

SCHEMA_KINDS: tuple[str, ...] = ("none", "json_schema", "response_format", "tools", "enum", "compact")

SCHEMA_FEATURE_NAMES: tuple[str, ...] = (
    "schema_present",
    *(f"schema_kind_{kind}" for kind in SCHEMA_KINDS[1:]),
    "schema_n_fields",
    "schema_n_required",
    "schema_n_enum_fields",
    "schema_n_enum_values",
    "schema_depth",
    "schema_n_tools",
)


@dataclass(frozen=True, slots=True)
class SchemaSummary:
    """Counts describing an output schema, in ``SCHEMA_FEATURE_NAMES`` order via :meth:`as_vector`.

    ``n_fields``: named properties at every nesting level (each entry of every JSON Schema
    ``properties`` object, including inside ``items``, ``anyOf``/``oneOf``/``allOf`` and
    ``$defs``; each key of the compact form at every level), whether leaf or object. A schema
    with no properties at all whose value is itself a finite set (an enum list, a root
    ``enum``/``const``) counts as one field. ``depth``: 0 for no schema; otherwise the largest
    number of nested objects on one path, at least 1. An object level is a node with non-empty
    ``properties`` (or a non-empty compact dict); arrays and ``anyOf`` branches add nothing of
    their own, so object → array of objects is depth 2. ``$defs`` hang one level below their holder.

    >>> from tierroute.schema import summarize_schema
    >>> summarize_schema(["billing", "technical"]).as_vector()[-6:]
    (1.0, 1.0, 1.0, 2.0, 1.0, 0.0)
    """

    present: bool
    kind: str
    n_fields: int
    n_required: int
    n_enum_fields: int
    n_enum_values: int
    depth: int
    n_tools: int

    def __post_init__(self) -> None:
        if self.kind not in SCHEMA_KINDS:
            raise FeatureError(f"SchemaSummary.kind must be one of {SCHEMA_KINDS}; got {describe(self.kind)}.")

    def as_vector(self) -> tuple[float, ...]:
        """The summary as floats, one per name in ``SCHEMA_FEATURE_NAMES``."""
        return (
            float(self.present),
            *_ONE_HOT[self.kind],
            float(self.n_fields),
            float(self.n_required),
            float(self.n_enum_fields),
            float(self.n_enum_values),
            float(self.depth),
            float(self.n_tools),
        )


#: each kind's one-hot columns (``schema_kind_*``; "none" has none set), built once
_ONE_HOT: Mapping[str, tuple[float, ...]] = MappingProxyType(
    {kind: tuple(float(kind == other) for other in SCHEMA_KINDS[1:]) for kind in SCHEMA_KINDS}
)


NO_SCHEMA = SchemaSummary(False, "none", 0, 0, 0, 0, 0, 0)

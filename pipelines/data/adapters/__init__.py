"""Outcome-data adapters: each brings one source format to the canonical outcome record.

The registry is a plain dict of small classes; :func:`detect_format` asks each whether a file looks
like its format, most specific first."""

from __future__ import annotations

from pathlib import Path

from tierroute.pipelines.data.adapters.base import Adapter, RawRow
from tierroute.pipelines.data.adapters.outcomes import OUTCOME_SUFFIXES, OutcomesAdapter
from tierroute.pipelines.data.adapters.routellm import RouteLLMAdapter
from tierroute.pipelines.data.adapters.routerbench import RouterBenchAdapter

__all__ = ["Adapter", "RawRow", "ADAPTERS", "FORMATS", "OUTCOME_SUFFIXES", "detect_format"]

#: name -> adapter class, in sniffing order (most specific first).
ADAPTERS: dict[str, type] = {"routerbench": RouterBenchAdapter, "routellm": RouteLLMAdapter, "outcomes": OutcomesAdapter}
FORMATS: tuple[str, ...] = ("auto", *ADAPTERS)


def detect_format(path: Path, adapters: dict[str, Adapter]) -> str | None:
    """The name of the first adapter whose ``sniff`` accepts ``path``, or None."""
    for name, adapter in adapters.items():
        if adapter.sniff(path):
            return name
    return None

"""What every outcome-data adapter provides, and the helpers they share."""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["RawRow", "Adapter", "read_csv_header", "iter_csv"]


@dataclass(frozen=True, slots=True)
class RawRow:
    """One candidate outcome row as an adapter produced it, before validation.

    ``fields`` uses canonical names; ``where`` is ``file:line`` (or ``file:row N``); ``issue`` is
    set when the adapter itself could not make sense of the source row (then it is quarantined
    with that reason and ``detail``)."""

    fields: dict[str, Any]
    where: str
    issue: str | None = None
    detail: str = ""


class Adapter(Protocol):
    """An outcome-data format: ``sniff`` says whether a file looks like it, ``rows`` reads it."""

    name: str

    def sniff(self, path: Path) -> bool: ...

    def rows(self, path: Path) -> Iterator[RawRow]: ...


def _raise_field_limit() -> None:
    limit = sys.maxsize
    while True:  # the C long may be smaller than sys.maxsize on some platforms
        try:
            csv.field_size_limit(limit)
            return
        except OverflowError:
            limit //= 10


def read_csv_header(path: Path) -> list[str]:
    """The header row of a CSV file ([] when empty or unreadable as text)."""
    _raise_field_limit()
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:  # -sig: Excel writes a BOM
            return next(csv.reader(fh), [])
    except (UnicodeDecodeError, csv.Error, OSError):
        return []


def iter_csv(path: Path) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number of the row's start, row dict) for each data row of a CSV with a header."""
    _raise_field_limit()
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        _ = reader.fieldnames  # read the header now, so line_num counts it
        line = reader.line_num + 1
        for row in reader:
            yield line, row
            line = reader.line_num + 1

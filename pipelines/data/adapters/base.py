"""What every outcome-data adapter provides, and the helpers they share.

The CSV reader never lets one bad line end or bend a file: an undecodable byte sends that row to
quarantine (``bad_encoding``, its cells kept with ``\\xNN`` escapes), a row with more non-empty
cells than the header names goes there too (``unparseable_row``) instead of losing its extra
cells, and a file whose quoting cannot be split into cells reliably (a quote opened and never
closed swallows every following line into one cell) is refused with the line number instead of
being half-read.
"""

from __future__ import annotations

import csv
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from tierroute.errors import DataFormatError
from tierroute.pipelines.data.records import escape_text

__all__ = ["RawRow", "Adapter", "CsvRow", "read_csv_header", "iter_csv"]


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


class CsvRow(NamedTuple):
    """One data row of a CSV: the line it starts on, its cells by header name, and (``issue``,
    ``detail``) when the row must be quarantined instead of validated."""

    line: int
    row: dict[str, Any]
    issue: str | None = None
    detail: str = ""


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
    try:  # -sig: Excel writes a BOM; surrogateescape: a bad byte further down must not hide the header
        with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
            return [escape_text(name) for name in next(csv.reader(fh), [])]
    except (csv.Error, OSError):
        return []


def _undecodable(cells: list[str]) -> int | None:
    """The index of the first cell holding a byte that was not UTF-8 (a surrogateescape), or None."""
    for i, cell in enumerate(cells):
        if not cell.isascii() and any(0xDC80 <= ord(ch) <= 0xDCFF for ch in cell):
            return i
    return None


def iter_csv(path: Path) -> Iterator[CsvRow]:
    """Each data row of a CSV with a header, as a :class:`CsvRow` (see the module doc). Blank lines
    are not rows. Raises DataFormatError, naming the line, when the quoting cannot be split
    reliably (the rows before it have been yielded; callers discard the file's rows)."""
    _raise_field_limit()
    # -sig: Excel writes a BOM; surrogateescape: one undecodable byte quarantines its row, not the file
    with path.open(newline="", encoding="utf-8-sig", errors="surrogateescape") as fh:
        reader = csv.reader(fh, strict=True)
        start = 1
        try:
            header = next(reader, None)
            if header is None:
                return
            names = [escape_text(h) for h in header]
            start = reader.line_num + 1
            for cells in reader:
                line, start = start, reader.line_num + 1
                if not cells:  # a blank line
                    continue
                yield _row(line, names, cells)
        except csv.Error as exc:
            raise DataFormatError(
                f"{path.name}: cannot split line {start} into cells reliably ({exc}): a quoted cell that starts "
                "there is never closed, or text follows its closing quote, so every later line would be misread. "
                f'Fix the quoting at line {start} (a quote inside a quoted cell is written twice: ""), then ingest '
                "the file again."
            ) from None


def _row(line: int, names: list[str], cells: list[str]) -> CsvRow:
    bad = _undecodable(cells)
    if bad is not None:
        row: dict[str, Any] = {name: escape_text(c) for name, c in zip(names, cells)}
        if len(cells) > len(names):
            row["_extra_cells"] = [escape_text(c) for c in cells[len(names) :]]
        column = names[bad] if bad < len(names) else f"extra cell {bad - len(names) + 1}"
        return CsvRow(
            line,
            row,
            "bad_encoding",
            f"line {line} is not UTF-8 text (column {column!r}); the row is kept here with \\xNN "
            "escapes for the bytes. Re-save the file as UTF-8.",
        )
    row = dict(zip(names, cells))
    for name in names[len(cells) :]:  # a short row: the missing cells are absent (as csv.DictReader does)
        row[name] = None
    extra = cells[len(names) :]
    if any(c.strip() for c in extra):
        row["_extra_cells"] = extra
        return CsvRow(
            line,
            row,
            "unparseable_row",
            f"line {line} has {len(cells)} cells but the header names {len(names)} columns; the extra "
            f'cells cannot be placed. Quote cells that hold commas ("a, b"), or add the missing '
            "column names to the header.",
        )
    return CsvRow(line, row)

"""Generic outcome files: JSONL, CSV or Parquet whose columns are the canonical fields, or any
columns renamed onto them through a mapping (``{"quality": "f1", "request_id": "id"}``).

A JSONL file is read line by line as bytes, so no line can end the file: a line that is not
UTF-8 is quarantined as ``bad_encoding`` (kept with ``\\xNN`` escapes), one that is not JSON, nests
too deep or holds a number too long to read safely (:mod:`tierroute.safejson`) as
``unparseable_row``. A UTF-8 byte-order mark before the first line is skipped.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tierroute import safejson
from tierroute.errors import DataFormatError
from tierroute.pipelines.data.adapters.base import RawRow, iter_csv, read_csv_header
from tierroute.pipelines.data.records import OUTCOME_FIELDS

__all__ = ["OutcomesAdapter", "OUTCOME_SUFFIXES", "parse_json_line"]

OUTCOME_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")
_BOM = b"\xef\xbb\xbf"
#: a quarantined line keeps at most this many bytes of its text
_RAW_LIMIT = 2000


def parse_json_line(data: bytes, where: str) -> tuple[Any, str | None, str]:
    """One JSONL line's bytes -> (value, None, "") or (what to keep of it, reason, detail) when
    it cannot be read: ``bad_encoding`` (not UTF-8) or ``unparseable_row`` (not JSON, too deep, a
    number too long). ``NaN``/``Infinity`` tokens, which Python's json module writes, are read as
    numbers (the validator then judges them), as before."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raw = data[:_RAW_LIMIT].decode("utf-8", "backslashreplace")
        return (
            {"raw": raw},
            "bad_encoding",
            (
                f"{where} is not UTF-8 text ({exc.reason}: byte 0x{data[exc.start]:02x} at byte {exc.start}); the line is "
                "kept here with \\xNN escapes for the bytes. Re-save the file as UTF-8."
            ),
        )
    try:
        return safejson.loads(text, where=where), None, ""
    except safejson.UnsafeJSONError as exc:
        if exc.reason == "constant":
            try:  # depth was checked before parsing; the rest is what json.loads has always read
                return json.loads(text), None, ""
            except (ValueError, RecursionError) as again:
                exc = safejson.UnsafeJSONError("syntax", str(again))
        detail = f"not JSON: {exc.detail}" if exc.reason == "syntax" else str(exc)
        return {"raw": text[:_RAW_LIMIT]}, "unparseable_row", detail


def _starts_with_array(path: Path) -> bool:
    with path.open("rb") as fh:
        head = fh.read(4096).removeprefix(_BOM).lstrip()
    return head.startswith(b"[")


class OutcomesAdapter:
    """Reads canonical (or mapped) outcome rows. ``mapping`` maps canonical name -> source column."""

    name = "outcomes"

    def __init__(self, mapping: Mapping[str, str] | None = None) -> None:
        mapping = dict(mapping or {})
        unknown = sorted(set(mapping) - set(OUTCOME_FIELDS) - {"messages"})
        if unknown:
            raise DataFormatError(
                f"Column mapping names unknown field(s) {unknown}; the canonical fields are "
                f"{', '.join(OUTCOME_FIELDS)}. Write the mapping as canonical=source."
            )
        self.mapping = mapping

    def _rename(self, row: Mapping[str, Any]) -> dict[str, Any]:
        if not self.mapping:
            return dict(row)
        out = dict(row)
        for canonical, source in self.mapping.items():
            if source in row:
                out[canonical] = row[source]
        return out

    def sniff(self, path: Path) -> bool:
        if path.suffix not in OUTCOME_SUFFIXES:
            return False
        if path.suffix == ".csv":
            header = set(read_csv_header(path))
            wanted = {self.mapping.get(f, f) for f in ("request_id", "model")}
            return wanted <= header
        return True

    def rows(self, path: Path) -> Iterator[RawRow]:
        if path.suffix == ".csv":
            for line, row, issue, detail in iter_csv(path):
                yield RawRow(self._rename(row), f"{path.name}:{line}", issue, detail)
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq  # train extra

            for i, row in enumerate(pq.read_table(path).to_pylist()):
                yield RawRow(self._rename(row), f"{path.name}:row {i}")
        else:
            yield from self._jsonl(path)

    def _json_array(self, path: Path) -> Iterator[RawRow]:
        """A ``.json`` file holding one array of row objects."""
        try:
            items = safejson.loads(path.read_bytes().removeprefix(_BOM), where=path.name)
        except safejson.UnsafeJSONError as exc:
            raise DataFormatError(
                f"{path.name} starts like a JSON array but cannot be read: {exc} Fix the file, or write one JSON "
                "object per line (JSONL), where a bad line is quarantined instead of refusing the file."
            ) from None
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield RawRow(self._rename(item), f"{path.name}:item {i}")
            else:
                yield RawRow(
                    {"raw": item}, f"{path.name}:item {i}", "unparseable_row", f"an array item must be an object; got {type(item).__name__}"
                )

    def _jsonl(self, path: Path) -> Iterator[RawRow]:
        if path.suffix == ".json" and _starts_with_array(path):
            yield from self._json_array(path)
            return
        with path.open("rb") as fh:
            for number, data in enumerate(fh, start=1):
                if number == 1:
                    data = data.removeprefix(_BOM)  # a BOM is an encoding mark, not part of the first row
                if not data.strip():
                    continue
                where = f"{path.name}:{number}"
                item, issue, detail = parse_json_line(data, f"line {number}")
                if issue:
                    yield RawRow(item, where, issue, detail)
                    continue
                if not isinstance(item, dict):
                    yield RawRow({"raw": item}, where, "unparseable_row", f"a JSON line must be an object; got {type(item).__name__}")
                    continue
                yield RawRow(self._rename(item), where)

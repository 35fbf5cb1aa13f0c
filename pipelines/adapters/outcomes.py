"""Generic outcome files: JSONL, CSV or Parquet whose columns are the canonical fields, or any
columns renamed onto them through a mapping (``{"quality": "f1", "request_id": "id"}``)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tierroute.errors import DataFormatError
from tierroute.pipelines.adapters.base import RawRow, iter_csv, read_csv_header
from tierroute.pipelines.records import OUTCOME_FIELDS

__all__ = ["OutcomesAdapter", "OUTCOME_SUFFIXES"]

OUTCOME_SUFFIXES = (".jsonl", ".ndjson", ".json", ".csv", ".parquet")


def _starts_with_array(path: Path) -> bool:
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(4096).lstrip()
    return head.startswith("[")


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
            for line, row in iter_csv(path):
                yield RawRow(self._rename(row), f"{path.name}:{line}")
        elif path.suffix == ".parquet":
            import pyarrow.parquet as pq  # train extra

            for i, row in enumerate(pq.read_table(path).to_pylist()):
                yield RawRow(self._rename(row), f"{path.name}:row {i}")
        else:
            yield from self._jsonl(path)

    def _json_array(self, path: Path) -> Iterator[RawRow]:
        """A ``.json`` file holding one array of row objects."""
        try:
            items = json.loads(path.read_text(encoding="utf-8-sig"))
        except json.JSONDecodeError as exc:
            raise DataFormatError(
                f"{path.name} starts like a JSON array but is not valid JSON ({exc.msg} at line {exc.lineno}). "
                "Fix the file, or write one JSON object per line (JSONL)."
            ) from None
        for i, item in enumerate(items):
            if isinstance(item, dict):
                yield RawRow(self._rename(item), f"{path.name}:item {i}")
            else:
                yield RawRow({"raw": item}, f"{path.name}:item {i}", "unparseable_row", f"an array item must be an object; got {type(item).__name__}")

    def _jsonl(self, path: Path) -> Iterator[RawRow]:
        if path.suffix == ".json" and _starts_with_array(path):
            yield from self._json_array(path)
            return
        with path.open(encoding="utf-8") as fh:
            for number, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                where = f"{path.name}:{number}"
                try:
                    item = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield RawRow({"raw": line[:2000]}, where, "unparseable_row", f"not JSON: {exc.msg} at char {exc.pos}")
                    continue
                if not isinstance(item, dict):
                    yield RawRow({"raw": item}, where, "unparseable_row", f"a JSON line must be an object; got {type(item).__name__}")
                    continue
                yield RawRow(self._rename(item), where)

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

    def _jsonl(self, path: Path) -> Iterator[RawRow]:
        with path.open(encoding="utf-8", errors="replace") as fh:
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

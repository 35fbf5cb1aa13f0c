"""Reading outcome rows back: a reader that fails mid-file as one DataFormatError naming the file
(:func:`guarded_rows`), the rows of an ingested run folder (:func:`ingested_rows`), and the Arrow schema
of the canonical outcome table that ``tierroute ingest`` saves (:func:`outcome_features`).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tierroute.errors import DataFormatError
from tierroute.pipelines.data.adapters.base import RawRow
from tierroute.pipelines.data.records import FEATURE_FIELDS, OUTCOME_FIELDS

__all__ = ["guarded_rows", "ingested_rows", "outcome_features"]


def guarded_rows(rows: Iterator[RawRow], path: Path, fmt: str) -> Iterator[RawRow]:
    """Re-raise a file that breaks mid-read (bad encoding, corrupt pickle/parquet, truncated CSV)
    as one DataFormatError naming the file, instead of a library traceback."""
    try:
        yield from rows
    except DataFormatError:
        raise
    except Exception as exc:  # noqa: BLE001 - any reader failure is the file's, reported as such
        raise DataFormatError(
            f"Could not read {str(path)!r} as {fmt}: {type(exc).__name__}: {str(exc)[:200]}. "
            "Check that the file is complete and in that format (UTF-8 text for CSV/JSONL)."
        ) from exc


def ingested_rows(folder: Path) -> Iterator[RawRow]:
    import datasets

    table = datasets.load_from_disk(str(folder / "outcomes"))
    for i, row in enumerate(table):
        yield RawRow(dict(row), f"{folder.name}/outcomes:row {i}")


def outcome_features() -> Any:
    """The Arrow schema of the canonical outcome table: the canonical fields, then a feature-only
    row's ``features`` (list of float64, null for a missing value) and ``feature_spec`` (null on other rows)."""
    import datasets

    string, number, flag = datasets.Value("string"), datasets.Value("float64"), datasets.Value("bool")
    # prompts and schemas as large_string (64-bit offsets): a million logged prompts pass the 2 GB
    # that 32-bit string offsets can address
    text = datasets.Value("large_string")
    types = {
        "request_id": string,
        "prompt": text,
        "output_schema": text,
        "latency_sla_ms": number,
        "task": string,
        "model": string,
        "quality": number,
        "correct": flag,
        "cost_usd": number,
        "latency_ms": number,
        "timestamp": string,
        "chosen": flag,
        "propensity": number,
        "features": datasets.Sequence(number),
        "feature_spec": string,
    }
    return datasets.Features({name: types[name] for name in (*OUTCOME_FIELDS, *FEATURE_FIELDS)})

"""``tierroute ingest``: read outcome files of any supported format, validate every row, quarantine
the bad ones with their reason, and save the canonical table as a ``datasets`` Arrow dataset.

Rows are parsed one at a time (not by Arrow's whole-column type inference) so that one bad cell
sends one row to quarantine instead of failing the file; no line ends a file (bad bytes, deep
nesting and huge numbers are quarantined too), and rows read = kept + quarantined, always. Only a
CSV whose quoting cannot be split reliably is refused whole, leaving nothing of the run behind. The validated table is then a
``datasets.Dataset`` with a fixed schema, saved under the run folder and memory-mapped on reload.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tierroute._params import check_fraction
from tierroute.errors import ConfigError, DataFormatError, DataValidationError
from tierroute.pipelines.data.adapters import ADAPTERS, FORMATS, OUTCOME_SUFFIXES, detect_format
from tierroute.pipelines.data.reading import guarded_rows, ingested_rows, outcome_features
from tierroute.pipelines.data.records import FEATURE_FIELDS, OUTCOME_FIELDS, OutcomeValidator, RowIssue, quarantine_line
from tierroute.pipelines.outputs import prepare_out_dir

if TYPE_CHECKING:
    from tierroute.models.catalogue import Catalogue

__all__ = ["IngestConfig", "IngestResult", "run_ingest", "prepare_out_dir", "INGEST_MANIFEST", "EXCLUSION_REASONS"]

INGEST_MANIFEST = "ingest.json"
#: Version of the JSON summary (``ingest --json`` and ingest.json); bumped on breaking changes.
SUMMARY_SCHEMA_VERSION = 1
#: Reasons that exclude a row on purpose; they are quarantined and counted but not "bad".
EXCLUSION_REASONS = frozenset({"contaminated"})
#: Files of RouteLLM's layout that hold no outcomes; skipped only in a folder that has a
#: contaminated_prompts.jsonl (that layout), and listed as skipped.
_ROUTELLM_SIDE_FILES = {"contaminated_prompts.jsonl", "question.jsonl", "test.jsonl", "train.jsonl"}


@dataclass(frozen=True)
class IngestConfig:
    """What to ingest and how strictly.

    ``max_bad_fraction``: the run fails when more than this share of rows is quarantined (rows
    excluded on purpose, e.g. contaminated prompts, do not count). ``mapping``: canonical field ->
    source column, for generic files. ``catalogue``: prices for formats without a cost column.
    """

    paths: tuple[str, ...]
    format: str = "auto"
    out_dir: str | None = None
    max_bad_fraction: float = 0.05
    correct_threshold: float = 0.5
    mapping: tuple[tuple[str, str], ...] = ()
    catalogue: str | None = None
    exclude_contaminated: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "paths", tuple(str(p) for p in self.paths))
        pairs = self.mapping.items() if isinstance(self.mapping, Mapping) else self.mapping
        if not all(isinstance(m, (tuple, list)) and len(m) == 2 and all(isinstance(x, str) for x in m) for m in pairs):
            raise ConfigError(
                f"The 'mapping' parameter of IngestConfig must be a dict or (field, column) pairs of strings. Got {self.mapping!r} instead."
            )
        object.__setattr__(self, "mapping", tuple((str(f), str(c)) for f, c in pairs))
        if not self.paths:
            raise ConfigError("IngestConfig needs at least one path to an outcome file or folder.")
        if self.format not in FORMATS:
            raise ConfigError(f"The 'format' parameter of IngestConfig must be one of {', '.join(FORMATS)}. Got {self.format!r} instead.")
        check_fraction(self.max_bad_fraction, "max_bad_fraction", "IngestConfig")
        check_fraction(self.correct_threshold, "correct_threshold", "IngestConfig")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["paths"] = list(self.paths)
        d["mapping"] = dict(self.mapping)
        return d


@dataclass
class IngestResult:
    """The validated table and what happened to every row."""

    dataset: Any  # datasets.Dataset
    out_dir: Path
    rows_read: int
    reasons: dict[str, int]
    inputs: list[dict[str, Any]]
    formats: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    origins: list[int] = field(default_factory=list)  # per entry of ``inputs``: the index of the path it came from

    @property
    def rows_kept(self) -> int:
        return len(self.dataset)

    def row_origins(self) -> Any:
        """(rows_kept,) the index into ``config.paths`` each kept row was read from (rows keep the
        order they were read in, input by input)."""
        import numpy as np

        kept = [i["rows"] - i["quarantined"] for i in self.inputs]
        return np.repeat(np.asarray(self.origins, dtype=np.int64), kept)

    @property
    def rows_quarantined(self) -> int:
        return sum(self.reasons.values())

    @property
    def quarantine_path(self) -> Path:
        return self.out_dir / "quarantine.jsonl"

    def to_pandas(self) -> Any:
        return self.dataset.to_pandas()

    def summary(self) -> dict[str, Any]:
        frame = self.dataset.select_columns(["request_id", "model", "task"]).to_pandas()
        return {
            "schema_version": SUMMARY_SCHEMA_VERSION,
            "out_dir": str(self.out_dir),
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "rows_quarantined": self.rows_quarantined,
            "quarantine_by_reason": dict(sorted(self.reasons.items())),
            "quarantine_file": str(self.quarantine_path),
            "requests": int(frame["request_id"].nunique()),
            "models": sorted(frame["model"].unique().tolist()),
            "tasks": {
                str(k): int(v) for k, v in frame.assign(task=frame["task"].fillna("(none)")).groupby("task")["request_id"].nunique().items()
            },
            "formats": self.formats,
            "skipped_files": self.skipped,
            "inputs": self.inputs,
        }


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _expand(paths: Sequence[str], skipped: list[str]) -> list[tuple[Path, bool, int]]:
    """Files to read, each with whether the user named it (True) or it came from a folder (False),
    and the index of the given path it came from. Files of a folder that are passed over are
    appended to ``skipped``."""
    files: list[tuple[Path, bool, int]] = []
    for origin, text in enumerate(paths):
        path = Path(text)
        if path.is_dir():
            if (path / INGEST_MANIFEST).is_file():
                files.append((path, True, origin))
                continue
            routellm_layout = (path / "contaminated_prompts.jsonl").is_file()
            found = []
            for p in sorted(path.iterdir()):
                if not p.is_file():
                    continue
                if p.suffix in (*OUTCOME_SUFFIXES, ".pkl", ".pickle") and not (routellm_layout and p.name in _ROUTELLM_SIDE_FILES):
                    found.append(p)
                else:
                    skipped.append(f"{p} (not an outcome file)")
            if not found:
                raise DataFormatError(
                    f"Folder {text!r} holds no outcome files (.jsonl, .csv, .parquet, .pkl). "
                    "Point at the files themselves or at the folder that holds them."
                )
            files.extend((p, False, origin) for p in found)
        elif path.is_file():
            files.append((path, True, origin))
        else:
            raise DataFormatError(f"No such file or folder: {text!r}. Check the path (relative to {Path.cwd()}).")
    return files


def _local_rows(
    plan: Sequence[tuple[Path, str, int]], adapters: dict[str, Any], validator: OutcomeValidator, progress: Callable[[str], None] | None
) -> Iterator[Iterator[tuple[str, Any, Any]]]:
    """Per planned file, its rows as (where, normalised record | (reason, detail), raw fields)."""

    def rows_of(path: Path, fmt: str) -> Iterator[tuple[str, Any, Any]]:
        rows = ingested_rows(path) if fmt == "ingested" else adapters[fmt].rows(path)
        for raw in guarded_rows(rows, path, fmt):
            if raw.issue:
                yield raw.where, (raw.issue, raw.detail), raw.fields
                continue
            result = validator.normalise(raw.fields)
            yield raw.where, (result.reason, result.detail) if isinstance(result, RowIssue) else result, raw.fields

    for n, (path, fmt, _) in enumerate(plan):
        if progress and (len(plan) <= 8 or not n):
            progress(f"reading {path} as {fmt}" + ("" if len(plan) <= 8 else f" (and {len(plan) - 1} more files)"))
        yield rows_of(path, fmt)


def _per_file(
    plan: Sequence[tuple[Path, str, int]],
    adapters: dict[str, Any],
    validator: OutcomeValidator,
    progress: Callable[[str], None] | None,
    engine: Any,
    config: IngestConfig,
) -> Any:
    if engine is None:
        return _local_rows(plan, adapters, validator, progress)
    if progress:
        progress(f"reading {len(plan)} file(s) on the Dask workers")
    return engine.normalise_files(plan, adapters, config.correct_threshold)


def _read_all(
    plan: Sequence[tuple[Path, str, int]],
    per_file: Any,
    validator: OutcomeValidator,
    out_dir: Path,
    columns: dict[str, list[Any]],
    reasons: Counter[str],
    formats: Counter[str],
    inputs: list[dict[str, Any]],
) -> int:
    """Keep or quarantine every row of every planned file (in order: the uniqueness checks depend
    on it); returns the rows read, which always equals kept + quarantined."""
    rows_read = 0
    with (out_dir / "quarantine.jsonl").open("w", encoding="utf-8") as quarantine:
        for (path, fmt, _), rows in zip(plan, per_file):
            formats[fmt] += 1
            read_before, bad_before = rows_read, sum(reasons.values())
            for where, result, fields in rows:
                rows_read += 1
                if isinstance(result, dict):
                    result = validator.check_unique(result, where)
                if isinstance(result, dict):
                    for name in (*OUTCOME_FIELDS, *FEATURE_FIELDS):  # feature fields: feature-only rows only
                        columns[name].append(result.get(name))
                    continue
                reason, detail = result if isinstance(result, tuple) else (result.reason, result.detail)
                reasons[reason] += 1
                quarantine.write(quarantine_line(where, reason, detail, fields) + "\n")
            inputs.append(
                {
                    "path": str(path),
                    "format": fmt,
                    "sha256": None if path.is_dir() else _sha256(path),
                    "rows": rows_read - read_before,
                    "quarantined": sum(reasons.values()) - bad_before,
                }
            )
    return rows_read


def _discard(out_dir: Path, existed: bool) -> None:
    """Remove what a refused run wrote (its quarantine file; the folder when the run made it)."""
    (out_dir / "quarantine.jsonl").unlink(missing_ok=True)
    if not existed:
        try:
            out_dir.rmdir()
        except OSError:  # something else appeared in it: leave it
            pass


def run_ingest(
    config: IngestConfig, progress: Callable[[str], None] | None = None, catalogue: Catalogue | None = None, engine: Any = None
) -> IngestResult:
    """Ingest ``config.paths``; write ``outcomes/``, ``quarantine.jsonl`` and ``ingest.json`` under
    the run folder. Raises DataValidationError when too many rows are bad (after writing the
    quarantine file, so the reasons can be read). ``catalogue`` (a loaded one, e.g. a trained
    router's) prices formats without a cost column; it takes precedence over ``config.catalogue``.
    ``engine``: a connected :class:`tierroute.pipelines.training.distributed.DaskEngine` reads and normalises
    the files on its workers; the order-dependent checks and the outputs are the same."""
    import datasets
    import pyarrow as pa

    from tierroute.models.catalogue import load_catalogue

    skipped: list[str] = []
    files = _expand(config.paths, skipped)
    if catalogue is None and config.catalogue:
        catalogue = load_catalogue(config.catalogue)
    adapters = {
        "routerbench": ADAPTERS["routerbench"](),
        "routellm": ADAPTERS["routellm"](catalogue=catalogue, exclude_contaminated=config.exclude_contaminated),
        "outcomes": ADAPTERS["outcomes"](mapping=dict(config.mapping)),
    }
    plan: list[tuple[Path, str, int]] = []
    for path, named, origin in files:  # decide every file's format before anything is written
        if path.is_dir():
            plan.append((path, "ingested", origin))
            continue
        fmt = config.format if config.format != "auto" else detect_format(path, adapters)
        if fmt is None:
            if named:
                raise DataFormatError(
                    f"Cannot tell the format of {str(path)!r}: it is not a RouterBench table, a RouteLLM "
                    "correctness CSV, nor an outcome file with request_id and model columns. "
                    "Pass --format, or --map canonical=column for other column names."
                )
            skipped.append(f"{path} (format not recognised)")
            continue
        if fmt == "routellm":
            adapters["routellm"].check_prices(path)
        plan.append((path, fmt, origin))
    existed = config.out_dir is not None and Path(config.out_dir).exists()
    out_dir = prepare_out_dir(config.out_dir, "ingest")
    validator = OutcomeValidator(correct_threshold=config.correct_threshold)
    columns: dict[str, list[Any]] = {name: [] for name in (*OUTCOME_FIELDS, *FEATURE_FIELDS)}
    reasons: Counter[str] = Counter()
    formats: Counter[str] = Counter()
    inputs: list[dict[str, Any]] = []
    try:
        rows_read = _read_all(
            plan, _per_file(plan, adapters, validator, progress, engine, config), validator, out_dir, columns, reasons, formats, inputs
        )
    except DataFormatError:  # a file that cannot be read reliably is refused whole: nothing of this run stays
        _discard(out_dir, existed)
        raise
    features = outcome_features()
    arrow = pa.Table.from_pydict(columns, schema=features.arrow_schema)
    # fingerprinted by what was read (file hashes, config), not by hashing the whole table again
    digest = hashlib.sha256(json.dumps([config.to_dict(), inputs], sort_keys=True, default=str).encode()).hexdigest()[:16]
    table = datasets.Dataset(arrow, info=datasets.DatasetInfo(features=features), fingerprint=digest)
    result = IngestResult(table, out_dir, rows_read, dict(reasons), inputs, dict(formats), skipped, [origin for _, _, origin in plan])
    bad = sum(n for r, n in reasons.items() if r not in EXCLUSION_REASONS)
    counted = rows_read - sum(n for r, n in reasons.items() if r in EXCLUSION_REASONS)
    listing = ", ".join(f"{r} {n}" for r, n in sorted(reasons.items())) or "none"
    if not rows_read:
        raise DataValidationError(
            f"The input holds no data rows ({', '.join(i['path'] for i in inputs) or 'no files'}). "
            "Check that you pointed at the right files and that they are not empty."
        )
    if not len(table):
        raise DataValidationError(
            f"No valid outcome rows in {rows_read:,} read (quarantined: {listing}); see {result.quarantine_path}. "
            "Check the --format and the column names."
        )
    if counted and bad / counted > config.max_bad_fraction:
        raise DataValidationError(
            f"{bad:,} of {counted:,} rows ({bad / counted:.1%}) failed validation, above the cap of "
            f"{config.max_bad_fraction:.1%} (quarantined: {listing}); see {result.quarantine_path}. "
            "Fix the source rows, or raise --max-bad if this is expected."
        )
    table.save_to_disk(str(out_dir / "outcomes"))
    result.dataset = datasets.load_from_disk(str(out_dir / "outcomes"))  # memory-mapped: the big table leaves RAM
    manifest = {"kind": "tierroute.ingest", "version": 1, "config": config.to_dict(), **result.summary()}
    (out_dir / INGEST_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return result

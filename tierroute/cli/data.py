"""The data commands of the ``tierroute`` CLI: ``ingest`` (validate outcome logs into a canonical
table, quarantining bad rows) and ``audit`` (the article's checklist over outcome logs).
:mod:`tierroute.cli` registers them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from tierroute.cli.options import progress_for, quiet_datasets
from tierroute.errors import ConfigError

__all__ = ["add_data_commands", "DATA_COMMANDS"]


def _add_ingest_options(p: argparse.ArgumentParser) -> None:
    from tierroute.pipelines.data.adapters import FORMATS

    p.add_argument("paths", nargs="+", metavar="PATH", help="outcome files or folders of them")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input format (default: detect per file)")
    p.add_argument("--out", default=None, metavar="DIR", help="new folder for the run's outputs (default: runs/<job>-<time>)")
    p.add_argument(
        "--max-bad",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="fail when more than this share of rows is quarantined (default 0.05)",
    )
    p.add_argument(
        "--map", action="append", default=[], metavar="FIELD=COLUMN", help="read canonical FIELD from COLUMN (generic files; repeatable)"
    )
    p.add_argument(
        "--correct-threshold", type=float, default=0.5, metavar="Q", help="correct = quality >= Q when a row has no 'correct' (default 0.5)"
    )
    p.add_argument("--keep-contaminated", action="store_true", help="keep prompts listed in contaminated_prompts.jsonl (RouteLLM data)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def add_data_commands(sub: Any) -> None:
    ingest = sub.add_parser("ingest", help="validate outcome logs into a canonical table; quarantine bad rows")
    _add_ingest_options(ingest)
    ingest.add_argument("--catalogue", default=None, metavar="FILE", help="prices for data without costs (RouteLLM)")

    audit = sub.add_parser("audit", help="the article's checklist over outcome logs")
    _add_ingest_options(audit)
    audit.add_argument(
        "--catalogue",
        default=None,
        metavar="FILE",
        help="model -> tier TOML or built-in name (default: the built-in that lists every model, else one read off the data's costs)",
    )
    audit.add_argument(
        "--gap-points", type=float, default=5.0, metavar="POINTS", help="quality gap under which the cheaper tier is enough (default 5)"
    )


def _mapping(items: Sequence[str]) -> tuple[tuple[str, str], ...]:
    pairs = []
    for item in items:
        field, sep, column = item.partition("=")
        if not sep or not field or not column:
            raise ConfigError(f"--map expects FIELD=COLUMN (e.g. quality=f1); got {item!r}.")
        pairs.append((field.strip(), column.strip()))
    return tuple(pairs)


def _ingest_config(args: argparse.Namespace, out: str | None) -> Any:
    from tierroute.pipelines.data.ingest import IngestConfig

    return IngestConfig(
        paths=tuple(args.paths),
        format=args.format,
        out_dir=out,
        max_bad_fraction=args.max_bad,
        correct_threshold=args.correct_threshold,
        mapping=_mapping(args.map),
        catalogue=args.catalogue if args.command == "ingest" else None,
        exclude_contaminated=not args.keep_contaminated,
    )


def _cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.data.ingest import run_ingest

    quiet_datasets()
    result = run_ingest(_ingest_config(args, args.out), progress=progress_for(args))
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2), file=out)
        return 0
    print(
        f"read {summary['rows_read']:,} rows; kept {summary['rows_kept']:,} outcomes for {summary['requests']:,} "
        f"requests x {len(summary['models'])} models",
        file=out,
    )
    print(f"quarantined {summary['rows_quarantined']:,} rows -> {summary['quarantine_file']}", file=out)
    for reason, count in summary["quarantine_by_reason"].items():
        print(f"  {reason:<26} {count:>8,}", file=out)
    for task, count in summary["tasks"].items():
        print(f"  task {task!s:<21} {count:>8,} requests", file=out)
    for skipped in summary["skipped_files"]:
        print(f"skipped {skipped}", file=out)
    print(f"table: {summary['out_dir']}/outcomes (datasets, load with datasets.load_from_disk)", file=out)
    return 0


def _cmd_audit(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.evaluation.audit import AuditConfig, render_audit, run_audit

    quiet_datasets()
    config = AuditConfig(ingest=_ingest_config(args, None), catalogue=args.catalogue, gap_points=args.gap_points, out_dir=args.out)
    report = run_audit(config, progress=progress_for(args))
    print(json.dumps(report, indent=2) if args.json else render_audit(report), file=out, end="\n" if args.json else "")
    return 0


DATA_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {"ingest": _cmd_ingest, "audit": _cmd_audit}

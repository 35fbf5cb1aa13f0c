"""The ``tierroute`` command line. Argument parsing lives in the CLI modules only; every command
builds a frozen config and calls a job. A TierrouteError becomes one line on stderr and exit 1.

    tierroute ingest PATH... [--format auto|routerbench|routellm|outcomes] [--out DIR] [--json]
    tierroute audit PATH... [--catalogue FILE] [--json]
    tierroute train [--data PATH...] [--format ...] [--catalogue FILE] [--kind auto|KIND] [--encoder auto|static|minilm|none]
                    [--eval-data PATH...] [--engine local|dask --scheduler ADDRESS] [--out DIR] [--json]
    tierroute evaluate --model RUN_ID|DIR --data PATH... [--out DIR] [--json]
    tierroute export RUN_ID|DIR|models:/URI --out DIR [--json]
    tierroute route (--prompt TEXT | --input REQUESTS.jsonl) [--bundle DIR|models:/URI] [--schema JSON]
                    [--sla MS] [--json]
    tierroute serve (--bundle DIR|models:/URI | --proxy CATALOGUE) [--host H] [--port P] ...
    tierroute promote --version N --data PATH... [--json]      (exit 3: refused, the champion stays)
    tierroute rollback [--json]
    tierroute retrain --logs NEW... [--previous PATH...] [--window-days N] [--json]   (exit 3: refused)
    tierroute drift --bundle DIR --log FILE... [--fail-on-drift] [--json]             (exit 4: drift)
    tierroute benchmark --prompts FILE --catalogue FILE --out OUTCOMES.jsonl [--budget USD] [--json]

The serving-side commands (export, route, serve) are parsed in :mod:`tierroute.cli.serving`, the
lifecycle ones (retrain, promote, rollback, drift) in :mod:`tierroute.cli.lifecycle`, benchmark in
:mod:`tierroute.cli.benchmark`; the rest here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from tierroute import __version__
from tierroute.cli.options import add_engine_options
from tierroute.errors import ConfigError, TierrouteError

__all__ = ["main", "build_parser"]


def _add_ingest_options(p: argparse.ArgumentParser) -> None:
    from tierroute.pipelines.data.adapters import FORMATS

    p.add_argument("paths", nargs="+", metavar="PATH", help="outcome files or folders of them")
    p.add_argument("--format", default="auto", choices=FORMATS, help="input format (default: detect per file)")
    p.add_argument("--out", default=None, metavar="DIR", help="new folder for the run's outputs (default: runs/<job>-<time>)")
    p.add_argument("--max-bad", type=float, default=0.05, metavar="FRACTION",
                   help="fail when more than this share of rows is quarantined (default 0.05)")
    p.add_argument("--map", action="append", default=[], metavar="FIELD=COLUMN",
                   help="read canonical FIELD from COLUMN (generic files; repeatable)")
    p.add_argument("--correct-threshold", type=float, default=0.5, metavar="Q",
                   help="correct = quality >= Q when a row has no 'correct' (default 0.5)")
    p.add_argument("--keep-contaminated", action="store_true",
                   help="keep prompts listed in contaminated_prompts.jsonl (RouteLLM data)")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of tables")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tierroute",
                                     description="Route each LLM request to the cheapest tier likely to answer it correctly.")
    parser.add_argument("--version", action="version", version=f"tierroute {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ingest = sub.add_parser("ingest", help="validate outcome logs into a canonical table; quarantine bad rows")
    _add_ingest_options(ingest)
    ingest.add_argument("--catalogue", default=None, metavar="FILE", help="prices for data without costs (RouteLLM)")

    audit = sub.add_parser("audit", help="the article's checklist over outcome logs")
    _add_ingest_options(audit)
    audit.add_argument("--catalogue", default=None, metavar="FILE",
                       help="model -> tier TOML or built-in name (default: the built-in that lists every model)")
    audit.add_argument("--gap-points", type=float, default=5.0, metavar="POINTS",
                       help="quality gap under which the cheaper tier is enough (default 5)")

    train = sub.add_parser("train", help="fit the learned router and judge it against the baselines (MLflow-tracked)")
    train.add_argument("--data", nargs="+", default=[], metavar="PATH", help="outcome files/folders (default: built-in synthetic workload)")
    train.add_argument("--format", default="auto", choices=["auto", "routerbench", "routellm", "outcomes"])
    train.add_argument("--catalogue", default=None, metavar="FILE", help="candidate catalogue (default: the built-in listing every model)")
    train.add_argument("--encoder", default="auto", choices=["auto", "static", "minilm", "none"],
                       help="prompt embedding (default auto: chosen with the kind by out-of-fold AIQ on the training data)")
    train.add_argument("--static-dims", type=int, default=None, metavar="N",
                       help="width of the static embedding (default 64 when pinned; auto tries 64 and 256)")
    train.add_argument("--eval-data", nargs="+", default=[], metavar="PATH", help="held-out outcomes (default: 25%% of --data)")
    train.add_argument("--kind", default="auto", choices=["auto", "pooled", "per_candidate", "knn", "lowrank"],
                       help="router family (default auto: chosen by out-of-fold AIQ on the training data; pooled: one "
                            "LightGBM over candidates, per_candidate: one each, knn, lowrank)")
    train.add_argument("--select-budget-min", type=float, default=None, metavar="MIN",
                       help="time budget of the family selection and the chosen family's refit (default: 8 at 10k requests "
                            "x 10 candidates, in proportion below, at least 1.5); families that would overrun it are skipped")
    train.add_argument("--policy", default="lambda", choices=["threshold", "lambda", "share"], help="decision policy (default lambda)")
    train.add_argument("--objective", default="match-best", metavar="OBJECTIVE",
                       help="operating point: match-best (default: the cheapest point at the best single candidate's "
                            "accuracy), match-heuristic, max-accuracy or budget=USD_PER_QUERY")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--synthetic-requests", type=int, default=3000, metavar="N", help="size of the built-in workload (default 3000)")
    train.add_argument("--tracking-uri", default=None, metavar="URI",
                       help="MLflow tracking URI (default sqlite:///mlruns/mlflow.db; '' = off)")
    train.add_argument("--out", default=None, metavar="DIR", help="new folder for the run (default runs/train-<time>)")
    add_engine_options(train)
    train.add_argument("--json", action="store_true", help="print one JSON object")

    evaluate = sub.add_parser("evaluate", help="judge a trained router on outcome data")
    evaluate.add_argument("--model", required=True, metavar="RUN_ID|DIR", help="MLflow run id or a train run's folder")
    evaluate.add_argument("--data", nargs="+", required=True, metavar="PATH", help="outcome files or folders")
    evaluate.add_argument("--format", default="auto", choices=["auto", "routerbench", "routellm", "outcomes"])
    evaluate.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow tracking URI for a run id")
    evaluate.add_argument("--out", default=None, metavar="DIR", help="new folder for the report (default runs/evaluate-<time>)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")

    from tierroute.cli.benchmark import add_benchmark_command
    from tierroute.cli.lifecycle import add_lifecycle_commands
    from tierroute.cli.serving import add_serving_commands

    add_serving_commands(sub)
    add_lifecycle_commands(sub)
    add_benchmark_command(sub)
    return parser


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
        paths=tuple(args.paths), format=args.format, out_dir=out, max_bad_fraction=args.max_bad,
        correct_threshold=args.correct_threshold, mapping=_mapping(args.map),
        catalogue=args.catalogue if args.command == "ingest" else None,
        exclude_contaminated=not args.keep_contaminated,
    )


def _quiet_datasets() -> None:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            "ingest and audit need the training extras (datasets, pandas), which are not installed. "
            "Install them: pip install 'tierroute[train]' (or pip install -e '.[train]' in a checkout)."
        ) from None

    datasets.disable_progress_bars()  # per-file save bars are noise in a CLI summary


def _quiet_mlflow() -> None:
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # its INFO/WARNING chatter buries the summary


def _bars(args: argparse.Namespace) -> Any:
    """Stage lines and progress bars on stderr; none with --json (stdout is then one object)."""
    from tierroute.progress import Progress

    return Progress(enabled=not args.json)


def _cmd_ingest(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.data.ingest import run_ingest

    _quiet_datasets()
    result = run_ingest(_ingest_config(args, args.out), progress=_bars(args))
    summary = result.summary()
    if args.json:
        print(json.dumps(summary, indent=2), file=out)
        return 0
    print(f"read {summary['rows_read']:,} rows; kept {summary['rows_kept']:,} outcomes for {summary['requests']:,} "
          f"requests x {len(summary['models'])} models", file=out)
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

    _quiet_datasets()
    config = AuditConfig(ingest=_ingest_config(args, None), catalogue=args.catalogue, gap_points=args.gap_points, out_dir=args.out)
    report = run_audit(config, progress=_bars(args))
    print(json.dumps(report, indent=2) if args.json else render_audit(report), file=out, end="\n" if args.json else "")
    return 0


def _print_eval(report: dict[str, Any], out: TextIO) -> None:
    b = report["baselines"]
    served = next((o["objective"] for o in report.get("objectives", []) if o["chosen"]), None)
    rows = [(f"learned ({served})" if served else "learned", report["learned"]), ("heuristic (the article's tree)", b["heuristic"])]
    rows += [(f"  objective {o['objective']}" + ("" if o["reached_out_of_fold"] else " (not reached out of fold)"), o)
             for o in report.get("objectives", [])]
    for s in sorted(b["singles"], key=lambda r: r["cost_per_query"]):  # every candidate, cheapest first
        tag = " (best single)" if s["name"] == b["best_single"]["name"] else ""
        rows.append((f"single {s['name']}{tag}", s))
    rows += [("random", b["random"]), ("oracle", b["oracle"])]
    print(f"{'router':<44} {'accuracy':>9} {'cost/query':>12} {'cost/correct':>13}", file=out)
    for label, r in rows:
        if r.get("accuracy") is None:  # the oracle of logged-only data is unknown
            continue
        cpc = "n/a" if r.get("cost_per_correct") is None else f"{r['cost_per_correct']:.6g}"
        print(f"{label:<44} {100 * r['accuracy']:>8.2f}% {r['cost_per_query']:>12.6g} {cpc:>13}", file=out)
    print(f"AIQ {report['aiq']:.4f}  ECE {report['ece']:.4f}  requests {report['requests']:,}", file=out)
    if report.get("logged_requests"):
        print(f"figures are {report['estimator']} estimates ({report['logged_requests']:,} logged requests judged by "
              "doubly-robust pseudo-outcomes; IPS/SNIPS/DR per router in metrics.json 'off_policy')", file=out)


def _cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    import os

    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI
    from tierroute.pipelines.training.train import TrainConfig, run_train

    # before LightGBM loads OpenMP: threads that spin while waiting made the family selection's many
    # small fits ~4x slower on a busy 2-core machine; passive waiting changes no result
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    _quiet_datasets()
    _quiet_mlflow()
    config = TrainConfig(
        data=tuple(args.data), format=args.format, catalogue=args.catalogue, encoder=args.encoder,
        eval_data=tuple(args.eval_data), out_dir=args.out, static_dims=args.static_dims, seed=args.seed,
        router=RouterParams(seed=args.seed),
        kind=args.kind, select_budget_min=args.select_budget_min,
        policy=args.policy, objective=args.objective,
        tracking_uri=DEFAULT_TRACKING_URI if args.tracking_uri is None else args.tracking_uri,
        synthetic_requests=args.synthetic_requests, engine=args.engine, scheduler=args.scheduler,
    )
    result = run_train(config, progress=_bars(args))
    if args.json:
        print(json.dumps(result.summary(), indent=2), file=out)
        return 0
    _print_eval(result.report, out)
    family = result.report.get("family")
    if family:
        how = "chosen by out-of-fold AIQ on the training data; table in evaluation/report.md" if family["selected"] else "pinned"
        print(f"family {family['name']} ({how})", file=out)
    print(f"policy {result.report['learned']['policy']}; run {result.run_id}; outputs in {result.out_dir}/", file=out)
    return 0


def _cmd_evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.data.dataset import RoutingData
    from tierroute.pipelines.data.ingest import IngestConfig, prepare_out_dir, run_ingest
    from tierroute.pipelines.evaluation.evaluate import evaluate, write_report
    from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI, load_router_from

    _quiet_datasets()
    _quiet_mlflow()
    router = load_router_from(args.model, args.tracking_uri or DEFAULT_TRACKING_URI)
    folder = prepare_out_dir(args.out, "evaluate")
    ingested = run_ingest(IngestConfig(paths=tuple(args.data), format=args.format, out_dir=str(folder / "ingest")),
                          catalogue=router.catalogue_)  # price cost-less formats as the router was trained
    data = RoutingData.from_frame(ingested.to_pandas(), router.candidates_)
    report = evaluate(router, data, router.catalogue_)
    write_report(report, folder)
    if report["overlap_with_training"]:
        print(f"warning: {report['overlap_with_training']:,} of {report['requests']:,} evaluated requests were in the "
              "training data; their figures are not held-out figures.", file=sys.stderr)
    if args.json:
        summary = {k: report[k] for k in ("aiq", "accuracy", "cost_per_query", "cost_per_correct", "ece", "requests")}
        summary["baselines"] = {k: {s: report["baselines"][k].get(s) for s in ("accuracy", "cost_per_query", "cost_per_correct")}
                                for k in ("heuristic", "random", "oracle", "best_single", "cheapest")}
        print(json.dumps({"schema_version": 1, "out_dir": str(folder), **summary}, indent=2), file=out)
        return 0
    _print_eval(report, out)
    print(f"report in {folder}/", file=out)
    return 0


#: commands that may call MLflow (train/retrain log and register, the others read runs and the registry)
_MLFLOW_COMMANDS = frozenset({"train", "retrain", "promote", "rollback", "evaluate", "export"})


def _quiet_mlflow_for(args: argparse.Namespace) -> Any:
    """MLflow's INFO lines, warnings, download bars and notices kept off stderr for ``--json`` runs
    (and export, whose output is one line); errors still show. Commands that never touch MLflow
    skip even the import of the helper."""
    import contextlib

    if args.command not in _MLFLOW_COMMANDS or not (getattr(args, "json", False) or args.command == "export"):
        return contextlib.nullcontext()
    from tierroute.pipelines.training.tracking import quiet_mlflow

    return quiet_mlflow()


def main(argv: Sequence[str] | None = None, out: TextIO | None = None) -> int:
    """Run the CLI; returns the exit status (0 ok, 1 error, 2 some requests were malformed, 3 promotion
    refused, 4 drift flagged with --fail-on-drift)."""
    args = build_parser().parse_args(argv)
    stream = out if out is not None else sys.stdout
    from tierroute.cli.benchmark import BENCHMARK_COMMANDS
    from tierroute.cli.lifecycle import LIFECYCLE_COMMANDS
    from tierroute.cli.serving import SERVING_COMMANDS

    commands = {"ingest": _cmd_ingest, "audit": _cmd_audit, "train": _cmd_train, "evaluate": _cmd_evaluate,
                **SERVING_COMMANDS, **LIFECYCLE_COMMANDS, **BENCHMARK_COMMANDS}
    try:
        with _quiet_mlflow_for(args):
            return commands[args.command](args, stream)
    except TierrouteError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

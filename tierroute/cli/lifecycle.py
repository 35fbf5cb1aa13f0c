"""The model-lifecycle commands of the ``tierroute`` CLI: ``promote`` (the gate, then the
``champion`` alias), ``rollback`` (the previous champion back) and ``drift`` (a decision log
against the bundle's training distributions). :mod:`tierroute.cli` registers them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from tierroute.cli.options import add_engine_options

__all__ = ["add_lifecycle_commands", "LIFECYCLE_COMMANDS"]


def add_lifecycle_commands(sub: Any) -> None:
    promote = sub.add_parser("promote", help="make a registered version the champion if the gate passes")
    promote.add_argument("--version", required=True, help="the registered version of 'tierroute' to promote")
    promote.add_argument("--data", nargs="+", required=True, metavar="PATH", help="held-out outcome data (every candidate's outcome)")
    promote.add_argument("--quality-tolerance", type=float, default=0.005, metavar="POINTS",
                         help="accuracy the challenger may lose against the champion (interval low end; default 0.005)")
    promote.add_argument("--cost-tolerance", type=float, default=0.05, metavar="FRACTION",
                         help="cost per correct the challenger may add (interval high end; default 0.05)")
    promote.add_argument("--out", default=None, metavar="DIR", help="new folder for gate.json (default runs/promote-<time>)")
    promote.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow store (default sqlite:///mlruns/mlflow.db)")
    promote.add_argument("--json", action="store_true", help="print the gate's decision as one JSON object")

    retrain = sub.add_parser("retrain", help="train a challenger on new logs with the champion's settings, then gate it")
    retrain.add_argument("--logs", nargs="+", required=True, metavar="PATH", help="new outcome logs")
    retrain.add_argument("--previous", nargs="*", default=None, metavar="PATH",
                         help="previous training data (default: the champion's own training files, if still on disk)")
    retrain.add_argument("--window-days", type=float, default=None, metavar="DAYS", help="drop previous rows older than this")
    retrain.add_argument("--previous-weight", type=float, default=1.0, metavar="W",
                         help="training weight of a previous request relative to a new one (default 1)")
    retrain.add_argument("--holdout-fraction", type=float, default=0.25, metavar="F",
                         help="share of the new requests held out for the gate (default 0.25)")
    retrain.add_argument("--seed", type=int, default=0)
    add_engine_options(retrain)
    retrain.add_argument("--out", default=None, metavar="DIR", help="new folder for the run (default runs/retrain-<time>)")
    retrain.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow store (default sqlite:///mlruns/mlflow.db)")
    retrain.add_argument("--json", action="store_true", help="print one JSON object")

    drift = sub.add_parser("drift", help="compare a decision log with the bundle's training distributions")
    drift.add_argument("--bundle", required=True, metavar="DIR", help="the bundle that served the logged decisions")
    drift.add_argument("--log", nargs="+", required=True, metavar="FILE.jsonl", help="decision logs (serve --decision-log)")
    drift.add_argument("--out", default=None, metavar="DIR", help="new folder for drift.json (default runs/drift-<time>)")
    drift.add_argument("--fail-on-drift", action="store_true", help="exit 4 when anything is flagged (for alerting)")
    drift.add_argument("--json", action="store_true", help="print the report as one JSON object")

    rollback = sub.add_parser("rollback", help="make the previous champion the champion again")
    rollback.add_argument("--tracking-uri", default=None, metavar="URI", help="MLflow store (default sqlite:///mlruns/mlflow.db)")
    rollback.add_argument("--json", action="store_true", help="print one JSON object")


def _quiet() -> None:
    import logging

    logging.getLogger("mlflow").setLevel(logging.ERROR)
    try:
        import datasets

        datasets.disable_progress_bars()
    except ImportError:
        pass


def _cmd_promote(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.lifecycle.promote import GateConfig, promote_version
    from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI

    _quiet()
    config = GateConfig(quality_tolerance=args.quality_tolerance, cost_tolerance=args.cost_tolerance)
    result = promote_version(args.tracking_uri or DEFAULT_TRACKING_URI, args.version, tuple(args.data), config, out_dir=args.out)
    if args.json:
        print(json.dumps({"schema_version": 1, **result.to_dict()}, indent=2), file=out)
    else:
        verdict = "promoted to champion" if result.promote else "refused; the champion stays"
        print(f"version {args.version}: {verdict}", file=out)
        for reason in result.reasons:
            print(f"  - {reason}", file=out)
        print(f"gate report: {result.figures['out_dir']}/gate.json", file=out)
    return 0 if result.promote else 3


def _cmd_rollback(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.lifecycle.promote import rollback
    from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI

    _quiet()
    result = rollback(args.tracking_uri or DEFAULT_TRACKING_URI)
    if args.json:
        print(json.dumps({"schema_version": 1, **result}, indent=2), file=out)
    else:
        print(f"champion is version {result['champion']} again (version {result['previous_champion']} is now "
              "previous_champion)", file=out)
    return 0


def _cmd_retrain(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain
    from tierroute.pipelines.training.tracking import DEFAULT_TRACKING_URI
    from tierroute.progress import Progress

    _quiet()
    config = RetrainConfig(logs=tuple(args.logs), previous=None if args.previous is None else tuple(args.previous),
                           window_days=args.window_days, previous_weight=args.previous_weight, engine=args.engine,
                           scheduler=args.scheduler, holdout_fraction=args.holdout_fraction, seed=args.seed,
                           tracking_uri=args.tracking_uri or DEFAULT_TRACKING_URI, out_dir=args.out)
    result = run_retrain(config, progress=Progress(enabled=not args.json))
    if args.json:
        print(json.dumps(result.summary(), indent=2, default=str), file=out)
    else:
        verdict = "promoted to champion" if result.gate.promote else "refused; the champion stays"
        print(f"challenger version {result.version} (run {result.run_id}): {verdict}", file=out)
        for reason in result.gate.reasons:
            print(f"  - {reason}", file=out)
        figures = result.gate.figures
        if figures.get("logged_requests"):
            print(f"  held-out figures are {figures['estimator']} estimates ({figures['logged_requests']} logged requests):", file=out)
            for name, est in figures["off_policy"].items():
                if isinstance(est, dict):
                    acc = est["accuracy"]
                    print(f"    {name:<11} accuracy dr {acc['dr']['value']:.4f} [{acc['dr']['ci_low']:.4f}, {acc['dr']['ci_high']:.4f}]"
                          f"  ips {acc['ips']['value']:.4f}  cost/query dr {est['cost_per_query']['dr']['value']:.6g}", file=out)
        print(f"rows: {result.rows}; outputs in {result.out_dir}/", file=out)
    return 0 if result.gate.promote else 3


def _cmd_drift(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.errors import ConfigError
    from tierroute.pipelines.data.ingest import prepare_out_dir
    from tierroute.pipelines.lifecycle.drift import drift_report, read_decision_log
    from tierroute.serving.bundle import load_bundle

    bundle = load_bundle(args.bundle)
    reference = bundle.manifest.get("reference")
    if not reference:
        raise ConfigError(f"Bundle {args.bundle!r} carries no training reference (exported before drift reports, or "
                          "not by `tierroute train`). Retrain or re-export it with `tierroute train`.")
    report = drift_report(reference, read_decision_log(args.log), encoder=bundle.encoder)
    folder = prepare_out_dir(args.out, "drift")
    (folder / "drift.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if args.json:
        print(json.dumps({"schema_version": 1, "out_dir": str(folder), **report}, indent=2), file=out)
    else:
        print(f"{report['requests']:,} logged decisions vs {report['reference_requests']:,} training requests "
              f"(bundle {bundle.bundle_id})", file=out)
        for section in ("signals", "probabilities"):
            for name, v in report[section].items():
                print(f"  PSI {section[:-1] if section == 'signals' else 'P(correct)'} {name:<28} {v['psi']:7.3f}  {v['flag']}", file=out)
        for tier, v in report["tier_mix"].items():
            print(f"  tier mix {tier:<12} {100 * v['share']:5.1f}% (trained {100 * v['reference']:5.1f}%)  {v['flag']}", file=out)
        if "embedding_centroid" in report:
            e = report["embedding_centroid"]
            print(f"  embedding centroid cosine distance {e['cosine_distance']:.4f} over {e['prompts']} prompts  {e['flag']}", file=out)
        print("flagged: " + (", ".join(report["flagged"]) or "nothing"), file=out)
        print(f"report: {folder}/drift.json", file=out)
    return 4 if args.fail_on_drift and report["flagged"] else 0


LIFECYCLE_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {"promote": _cmd_promote, "rollback": _cmd_rollback,
                                                                          "drift": _cmd_drift, "retrain": _cmd_retrain}

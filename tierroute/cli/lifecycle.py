"""The model-lifecycle commands of the ``tierroute`` CLI: ``promote`` (the gate, then the
``champion`` alias), ``rollback`` (the previous champion back), ``drift`` (a decision log
against the bundle's training distributions), ``outcomes`` (decision logs + feedback ->
chosen-only outcome rows) and ``retrain``. :mod:`tierroute.cli` registers them."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, TextIO

from tierroute.cli.options import add_engine_options, add_tracking_option, tracking_store

__all__ = ["add_lifecycle_commands", "LIFECYCLE_COMMANDS"]


def add_lifecycle_commands(sub: Any) -> None:
    promote = sub.add_parser("promote", help="make a registered version the champion if the gate passes")
    promote.add_argument("--version", required=True, help="the registered version of 'tierroute' to promote")
    promote.add_argument("--data", nargs="+", required=True, metavar="PATH", help="held-out outcome data (every candidate's outcome)")
    promote.add_argument(
        "--quality-tolerance",
        type=float,
        default=0.005,
        metavar="POINTS",
        help="accuracy the challenger may lose against the champion (interval low end; default 0.005)",
    )
    promote.add_argument(
        "--cost-tolerance",
        type=float,
        default=0.05,
        metavar="FRACTION",
        help="cost per correct the challenger may add (interval high end; default 0.05)",
    )
    promote.add_argument(
        "--flip-tolerance",
        type=float,
        default=0.05,
        metavar="RATE",
        help="flip rate under prompt perturbations the challenger may add to the champion's (default 0.05)",
    )
    promote.add_argument("--out", default=None, metavar="DIR", help="new folder for gate.json (default runs/promote-<time>)")
    add_tracking_option(promote, "of the registry")
    promote.add_argument("--json", action="store_true", help="print the gate's decision as one JSON object")

    retrain = sub.add_parser("retrain", help="train a challenger on new logs with the champion's settings, then gate it")
    retrain.add_argument("--logs", nargs="+", default=(), metavar="PATH", help="new outcome logs")
    retrain.add_argument(
        "--decisions",
        nargs="+",
        default=(),
        metavar="FILE.jsonl",
        help="decision logs to join with --feedback into new chosen-only outcome rows (as `outcomes`)",
    )
    retrain.add_argument("--feedback", nargs="+", default=(), metavar="FILE.jsonl", help="feedback logs (POST /v1/feedback)")
    retrain.add_argument(
        "--previous",
        nargs="*",
        default=None,
        metavar="PATH",
        help="previous training data (default: the champion's own training files, if still on disk)",
    )
    retrain.add_argument("--window-days", type=float, default=None, metavar="DAYS", help="drop previous rows older than this")
    retrain.add_argument(
        "--previous-weight",
        type=float,
        default=1.0,
        metavar="W",
        help="training weight of a previous request relative to a new one (default 1)",
    )
    retrain.add_argument(
        "--holdout-fraction", type=float, default=0.25, metavar="F", help="share of the new requests held out for the gate (default 0.25)"
    )
    retrain.add_argument("--seed", type=int, default=0)
    add_engine_options(retrain)
    retrain.add_argument("--out", default=None, metavar="DIR", help="new folder for the run (default runs/retrain-<time>)")
    add_tracking_option(retrain, "of the registry")
    retrain.add_argument("--json", action="store_true", help="print one JSON object")

    outcomes = sub.add_parser("outcomes", help="join decision logs with feedback into chosen-only outcome rows")
    outcomes.add_argument("--decisions", nargs="+", required=True, metavar="FILE.jsonl", help="decision logs (serve --decision-log)")
    outcomes.add_argument("--feedback", nargs="*", default=(), metavar="FILE.jsonl", help="feedback logs (serve --feedback-log)")
    outcomes.add_argument(
        "--out",
        required=True,
        metavar="OUT.jsonl",
        help="the outcome rows (a new file); beside it OUT.jsonl.apart.jsonl (every line not joined, with why) and OUT.jsonl.report.json",
    )
    outcomes.add_argument("--correct-threshold", type=float, default=0.5, metavar="Q", help="quality counted correct (default 0.5)")
    outcomes.add_argument(
        "--max-delay-days",
        type=float,
        default=30.0,
        metavar="DAYS",
        help="feedback later than this after its decision is kept apart as late (default 30)",
    )
    outcomes.add_argument(
        "--include-fallbacks", action="store_true", help="keep decisions the tree made because the learned path could not (propensity 1)"
    )
    outcomes.add_argument("--json", action="store_true", help="print the join report as one JSON object")

    drift = sub.add_parser("drift", help="compare a decision log with the bundle's training distributions")
    drift.add_argument("--bundle", required=True, metavar="DIR", help="the bundle that served the logged decisions")
    drift.add_argument("--log", nargs="+", required=True, metavar="FILE.jsonl", help="decision logs (serve --decision-log)")
    drift.add_argument("--out", default=None, metavar="DIR", help="new folder for drift.json (default runs/drift-<time>)")
    drift.add_argument("--fail-on-drift", action="store_true", help="exit 4 when anything is flagged (for alerting)")
    drift.add_argument("--json", action="store_true", help="print the report as one JSON object")

    rollback = sub.add_parser("rollback", help="make the previous champion the champion again")
    add_tracking_option(rollback, "of the registry")
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

    _quiet()
    config = GateConfig(quality_tolerance=args.quality_tolerance, cost_tolerance=args.cost_tolerance, flip_tolerance=args.flip_tolerance)
    result = promote_version(tracking_store(args, "the gate's registry"), args.version, tuple(args.data), config, out_dir=args.out)
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

    _quiet()
    result = rollback(tracking_store(args, "rollback's registry"))
    if args.json:
        print(json.dumps({"schema_version": 1, **result}, indent=2), file=out)
    else:
        print(f"champion is version {result['champion']} again (version {result['previous_champion']} is now previous_champion)", file=out)
    return 0


def _print_join(report: dict[str, Any], out: TextIO) -> None:
    print(
        f"{report['rows']:,} outcome rows from {report['decisions']:,} decisions and {report['feedback_lines']:,} feedback "
        f"lines (+{report['auto_feedback']:,} automatic): {report['matched_requests']:,} matched, "
        f"{report['unmatched_decisions']:,} decisions without feedback, {report['unmatched_feedback']:,} feedback for "
        "unknown ids",
        file=out,
    )
    apart = {
        k: report[k]
        for k in ("duplicate", "conflicting", "late", "superseded", "duplicate_decision_id", "unreadable_decision", "unreadable_feedback")
        if report[k]
    }
    print("  kept apart: " + (", ".join(f"{k} {v}" for k, v in apart.items()) or "nothing"), file=out)
    print("  excluded decisions: " + (", ".join(f"{k} {v}" for k, v in report["excluded"].items()) or "none"), file=out)
    if report.get("feature_rows"):
        print(f"  feature-only rows (privacy mode: the logged vector, no prompt): {report['feature_rows']:,}", file=out)
    print(f"  rows: {report['out']}; kept apart: {report['apart']}", file=out)


def _cmd_outcomes(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.lifecycle.outcomes import OutcomesConfig, join_outcomes

    config = OutcomesConfig(
        decisions=tuple(args.decisions),
        feedback=tuple(args.feedback or ()),
        correct_threshold=args.correct_threshold,
        max_delay_days=args.max_delay_days,
        include_fallbacks=args.include_fallbacks,
    )
    report = join_outcomes(config, args.out)
    if args.json:
        print(json.dumps(report, indent=2), file=out)
    else:
        _print_join(report, out)
    return 0


def _cmd_retrain(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.errors import ConfigError
    from tierroute.pipelines.lifecycle.retrain import RetrainConfig, run_retrain
    from tierroute.progress import Progress

    _quiet()
    if args.feedback and not args.decisions:
        raise ConfigError("--feedback needs --decisions (the decision logs the feedback is about). Pass both.")
    config = RetrainConfig(
        logs=tuple(args.logs),
        decisions=tuple(args.decisions),
        feedback=tuple(args.feedback),
        previous=None if args.previous is None else tuple(args.previous),
        window_days=args.window_days,
        previous_weight=args.previous_weight,
        engine=args.engine,
        scheduler=args.scheduler,
        holdout_fraction=args.holdout_fraction,
        seed=args.seed,
        tracking_uri=tracking_store(args, "retrain (the champion and its registry)"),
        out_dir=args.out,
    )
    result = run_retrain(config, progress=Progress(enabled=not args.json))
    if args.json:
        print(json.dumps(result.summary(), indent=2, default=str), file=out)
    else:
        verdict = "promoted to champion" if result.gate.promote else "refused; the champion stays"
        if result.join is not None:
            _print_join(result.join, out)
        print(f"challenger version {result.version} (run {result.run_id}): {verdict}", file=out)
        for reason in result.gate.reasons:
            print(f"  - {reason}", file=out)
        figures = result.gate.figures
        if figures.get("logged_requests"):
            print(f"  held-out figures are {figures['estimator']} estimates ({figures['logged_requests']} logged requests):", file=out)
            for name, est in figures["off_policy"].items():
                if isinstance(est, dict):
                    acc = est["accuracy"]
                    print(
                        f"    {name:<11} accuracy dr {acc['dr']['value']:.4f} [{acc['dr']['ci_low']:.4f}, {acc['dr']['ci_high']:.4f}]"
                        f"  ips {acc['ips']['value']:.4f}  cost/query dr {est['cost_per_query']['dr']['value']:.6g}",
                        file=out,
                    )
        print(f"rows: {result.rows}; outputs in {result.out_dir}/", file=out)
    return 0 if result.gate.promote else 3


def _cmd_drift(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.lifecycle.drift import DriftConfig, run_drift

    result = run_drift(DriftConfig(bundle=args.bundle, logs=tuple(args.log), out_dir=args.out))
    report, folder, bundle_id = result.report, result.out_dir, result.bundle_id
    if args.json:
        print(json.dumps({"schema_version": 1, "out_dir": str(folder), **report}, indent=2), file=out)
    else:
        print(
            f"{report['requests']:,} logged decisions vs {report['reference_requests']:,} training requests (bundle {bundle_id})", file=out
        )
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


LIFECYCLE_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {
    "promote": _cmd_promote,
    "rollback": _cmd_rollback,
    "drift": _cmd_drift,
    "retrain": _cmd_retrain,
    "outcomes": _cmd_outcomes,
}

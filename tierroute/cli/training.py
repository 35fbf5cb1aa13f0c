"""The training commands of the ``tierroute`` CLI: ``train`` (fit the learned router, judge it
against the baselines, track it in MLflow) and ``evaluate`` (judge a trained router on other
outcome data). :mod:`tierroute.cli` registers them."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TextIO

from tierroute.cli.options import add_engine_options, add_tracking_option, progress_for, quiet_datasets, quiet_mlflow, tracking_store

__all__ = ["add_training_commands", "print_evaluation", "TRAINING_COMMANDS"]


def add_training_commands(sub: Any) -> None:
    from tierroute.models.policy import POLICY_KINDS
    from tierroute.pipelines.data.adapters import FORMATS
    from tierroute.pipelines.training.train import ENCODER_CHOICES, KIND_CHOICES

    train = sub.add_parser("train", help="fit the learned router and judge it against the baselines (MLflow-tracked)")
    train.add_argument("--data", nargs="+", default=[], metavar="PATH", help="outcome files/folders (default: built-in synthetic workload)")
    train.add_argument("--format", default="auto", choices=FORMATS)
    train.add_argument(
        "--catalogue",
        default=None,
        metavar="FILE",
        help="candidate catalogue (default: the built-in listing every model, else one read off the data's costs)",
    )
    train.add_argument(
        "--encoder",
        default="auto",
        choices=ENCODER_CHOICES,
        help="prompt embedding (default auto: chosen with the kind by out-of-fold AIQ on the training data)",
    )
    train.add_argument(
        "--static-dims",
        type=int,
        default=None,
        metavar="N",
        help="width of the static embedding (default 64 when pinned; auto tries 64 and 256)",
    )
    train.add_argument("--eval-data", nargs="+", default=[], metavar="PATH", help="held-out outcomes (default: 25%% of --data)")
    train.add_argument(
        "--kind",
        default="auto",
        choices=KIND_CHOICES,
        help="router family (default auto: chosen by out-of-fold AIQ on the training data; pooled: one "
        "LightGBM over candidates, per_candidate: one each, knn, lowrank)",
    )
    train.add_argument(
        "--select-budget-min",
        type=float,
        default=None,
        metavar="MIN",
        help="time budget of the family selection and the chosen family's refit (default: 8 at 10k requests "
        "x 10 candidates, in proportion below, at least 1.5); families that would overrun it are skipped",
    )
    train.add_argument("--policy", default="lambda", choices=POLICY_KINDS, help="decision policy (default lambda)")
    train.add_argument(
        "--objective",
        default="match-best",
        metavar="OBJECTIVE",
        help="operating point: match-best (default: the cheapest point at the best single candidate's "
        "accuracy), match-heuristic, max-accuracy or budget=USD_PER_QUERY",
    )
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--synthetic-requests", type=int, default=3000, metavar="N", help="size of the built-in workload (default 3000)")
    train.add_argument(
        "--stability-requests",
        type=int,
        default=300,
        metavar="N",
        help="held-out requests perturbed to measure decision stability (flip rates; default 300, 0: off)",
    )
    add_tracking_option(train, "to log the run and register the model in")
    train.add_argument("--out", default=None, metavar="DIR", help="new folder for the run (default runs/train-<time>)")
    add_engine_options(train)
    train.add_argument("--json", action="store_true", help="print one JSON object")

    evaluate = sub.add_parser("evaluate", help="judge a trained router on outcome data")
    evaluate.add_argument("--model", required=True, metavar="RUN_ID|DIR", help="MLflow run id or a train run's folder")
    evaluate.add_argument("--data", nargs="+", required=True, metavar="PATH", help="outcome files or folders")
    evaluate.add_argument("--format", default="auto", choices=FORMATS)
    add_tracking_option(evaluate, "a run id is read from")
    evaluate.add_argument("--out", default=None, metavar="DIR", help="new folder for the report (default runs/evaluate-<time>)")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")


def print_evaluation(report: dict[str, Any], out: TextIO) -> None:
    """The evaluation table: the served point, the tree, every objective's point, every single
    candidate (cheapest first), random and the oracle; then AIQ and ECE."""
    b = report["baselines"]
    served = next((o["objective"] for o in report.get("objectives", []) if o["chosen"]), None)
    rows = [(f"learned ({served})" if served else "learned", report["learned"]), ("heuristic (the article's tree)", b["heuristic"])]
    rows += [
        (f"  objective {o['objective']}" + ("" if o["reached_out_of_fold"] else " (not reached out of fold)"), o)
        for o in report.get("objectives", [])
    ]
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
    if report.get("stability"):  # flip rates under meaning-preserving prompt perturbations (stability.py)
        s = report["stability"]
        learned, tree = ("n/a" if v is None else f"{v:.3f}" for v in (s["learned"]["flip_rate"], s["heuristic"]["flip_rate"]))
        print(
            f"decision stability on {s['requests']:,} requests: flip rate {learned} (heuristic {tree}) under prompt "
            "perturbations; table in report.md",
            file=out,
        )
    if report.get("logged_requests"):
        print(
            f"figures are {report['estimator']} estimates ({report['logged_requests']:,} logged requests judged by "
            "doubly-robust pseudo-outcomes; IPS/SNIPS/DR per router in metrics.json 'off_policy')",
            file=out,
        )


def _cmd_train(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.models.learned import LearnedConfig
    from tierroute.models.policy import Policy
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.training.train import TrainConfig, run_train

    # before LightGBM loads OpenMP: threads that spin while waiting made the family selection's many
    # small fits ~4x slower on a busy 2-core machine; passive waiting changes no result
    os.environ.setdefault("OMP_WAIT_POLICY", "passive")
    quiet_datasets()
    quiet_mlflow()
    config = TrainConfig(
        data=tuple(args.data),
        format=args.format,
        catalogue=args.catalogue,
        encoder=args.encoder,
        eval_data=tuple(args.eval_data),
        out_dir=args.out,
        static_dims=args.static_dims,
        seed=args.seed,
        learned=LearnedConfig(router=RouterParams(seed=args.seed), policy=args.policy, objective=args.objective),
        kind=args.kind,
        select_budget_min=args.select_budget_min,
        tracking_uri=tracking_store(args),  # '' = no MLflow run
        synthetic_requests=args.synthetic_requests,
        engine=args.engine,
        scheduler=args.scheduler,
        stability_requests=args.stability_requests,
    )
    result = run_train(config, progress=progress_for(args))
    if args.json:
        print(json.dumps(result.summary(), indent=2), file=out)
        return 0
    print_evaluation(result.report, out)
    family = result.report.get("family")
    if family:
        how = "chosen by out-of-fold AIQ on the training data; table in evaluation/report.md" if family["selected"] else "pinned"
        print(f"family {family['name']} ({how})", file=out)
    policy = Policy(**result.report["learned"]["policy"])
    print(f"{policy.label}: {policy.rule(result.report['candidates'])}", file=out)
    print(f"run {result.run_id}; outputs in {result.out_dir}/", file=out)
    return 0


def _cmd_evaluate(args: argparse.Namespace, out: TextIO) -> int:
    from tierroute.pipelines.evaluation.job import EvaluateConfig, run_evaluate

    quiet_datasets()
    quiet_mlflow()
    result = run_evaluate(
        EvaluateConfig(model=args.model, data=tuple(args.data), format=args.format, tracking_uri=tracking_store(args), out_dir=args.out)
    )
    report = result.report
    if report["overlap_with_training"]:
        print(
            f"warning: {report['overlap_with_training']:,} of {report['requests']:,} evaluated requests were in the "
            "training data; their figures are not held-out figures.",
            file=sys.stderr,
        )
    if args.json:
        print(json.dumps(result.summary(), indent=2), file=out)
        return 0
    print_evaluation(report, out)
    print(f"report in {result.out_dir}/", file=out)
    return 0


TRAINING_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO], int]] = {"train": _cmd_train, "evaluate": _cmd_evaluate}

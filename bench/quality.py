"""Routing quality on the real shared data, per dataset and per held-out task: does the family that
`tierroute train` selects (on training data only) hold across datasets and on tasks it never saw?

    python bench/quality.py [--data ../shared/data] [--only routerbench|routellm|mt_bench|d|e...]
                            [--outcomes PATH [PATH ...]]... [--catalogue NAME_OR_TOML]
                            [--protocol all|split|loto] [--families pooled/none,per_candidate/static-64,...]
                            [--budget-min MIN] [--cache runs/cache] [--quick]

Datasets (every one under --data):
(a) RouterBench (ARC-C, MBPP, Winogrande; 11 models; cost = the data's USD per call). Split: train
    on the three *_train.csv, test on the three *_test.csv (the shared split).
(b) RouteLLM MMLU + GSM8K (GPT-4-1106 vs Mixtral-8x7B; contaminated prompts dropped; cost per call
    GPT-4 1.0, Mixtral 0.06 units, stated, not USD). Tasks: gsm8k and MMLU's 57 subjects in the MMLU
    paper's four groups (STEM, humanities, social sciences, other; hendrycks/test categories.py).
    Split: a seeded 50/50 split per task.
(c) MT-Bench (RouteLLM's judgements): checked, and skipped with the reason printed (too few
    questions, judge scores rather than outcomes).
(d), (e), ...: any other entry under --data, and each --outcomes group: outcome files or folders in
    any format `tierroute ingest` reads (canonical JSONL/CSV/Parquet with request_id, prompt, model,
    quality or correct, cost_usd, task), priced and tiered by --catalogue, else a built-in listing
    every model, else the data's own costs (as `tierroute train` does). Split: a seeded 50/50 split
    per task; LOTO over its tasks (none with one task). A dataset that cannot be read is reported
    as skipped, with the reason, and the others still run.

Protocols: "split" as above, with `tierroute train`'s defaults (5 folds); "LOTO" (leave one task
out): for each task, train on the other tasks' requests and test on every request of that one (a
task the router never saw). To keep the default run near 40 min on 2 cores, LOTO fits use 3 folds
(--loto-folds) and at most 5,000 training requests, a seeded stratified sample (--loto-max-train),
for the selection and every family alike.

Per split: the zero router (the non-decreasing hull of the single candidates, i.e. no router), the
article's tree (models/heuristic.py), and every family of the selection pool, each fitted on the
training requests with `tierroute train`'s defaults; the family the selection picks (out-of-fold AIQ
on the training requests only; pipelines/training/selection.py) is marked `*`, the best on the test set `+`.
Test AIQ, the cost at the tree's and at the best single's accuracy (read off the test curve's hull,
as a ratio to theirs), APGR / CPT(50%) with two candidates. Targets are printed REACHED / NOT
REACHED (they are the issue's done-means, never tuned here).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
# OpenMP threads that spin while waiting make LightGBM several times slower on a shared machine
# (measured: 4x on 2 busy cores); passive waiting changes no result, only the wall time
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

# MMLU subject -> group (the MMLU paper's categories: hendrycks/test, categories.py)
_SUB = {
    "math": "STEM",
    "physics": "STEM",
    "chemistry": "STEM",
    "biology": "STEM",
    "computer science": "STEM",
    "engineering": "STEM",
    "history": "humanities",
    "philosophy": "humanities",
    "law": "humanities",
    "politics": "social sciences",
    "culture": "social sciences",
    "economics": "social sciences",
    "geography": "social sciences",
    "psychology": "social sciences",
    "other": "other",
    "business": "other",
    "health": "other",
}
MMLU_SUBJECTS = {
    "abstract_algebra": "math",
    "anatomy": "health",
    "astronomy": "physics",
    "business_ethics": "business",
    "clinical_knowledge": "health",
    "college_biology": "biology",
    "college_chemistry": "chemistry",
    "college_computer_science": "computer science",
    "college_mathematics": "math",
    "college_medicine": "health",
    "college_physics": "physics",
    "computer_security": "computer science",
    "conceptual_physics": "physics",
    "econometrics": "economics",
    "electrical_engineering": "engineering",
    "elementary_mathematics": "math",
    "formal_logic": "philosophy",
    "global_facts": "other",
    "high_school_biology": "biology",
    "high_school_chemistry": "chemistry",
    "high_school_computer_science": "computer science",
    "high_school_european_history": "history",
    "high_school_geography": "geography",
    "high_school_government_and_politics": "politics",
    "high_school_macroeconomics": "economics",
    "high_school_mathematics": "math",
    "high_school_microeconomics": "economics",
    "high_school_physics": "physics",
    "high_school_psychology": "psychology",
    "high_school_statistics": "math",
    "high_school_us_history": "history",
    "high_school_world_history": "history",
    "human_aging": "health",
    "human_sexuality": "culture",
    "international_law": "law",
    "jurisprudence": "law",
    "logical_fallacies": "philosophy",
    "machine_learning": "computer science",
    "management": "business",
    "marketing": "business",
    "medical_genetics": "health",
    "miscellaneous": "other",
    "moral_disputes": "philosophy",
    "moral_scenarios": "philosophy",
    "nutrition": "health",
    "philosophy": "philosophy",
    "prehistory": "history",
    "professional_accounting": "other",
    "professional_law": "law",
    "professional_medicine": "health",
    "professional_psychology": "psychology",
    "public_relations": "politics",
    "security_studies": "politics",
    "sociology": "culture",
    "us_foreign_policy": "politics",
    "virology": "health",
    "world_religions": "philosophy",
}


@dataclass
class Dataset:
    key: str
    title: str
    data: Any  # RoutingData, tasks = the LOTO task labels
    catalogue: Any  # the Catalogue that prices and tiers it
    split: tuple[np.ndarray, np.ndarray]  # the "split" protocol's train / test indices
    note: str


def ingest(paths: Sequence[Path]) -> Any:
    from tierroute.pipelines.data.dataset import RoutingData

    return RoutingData.from_frame(ingest_frame(paths))


def ingest_frame(paths: Sequence[Path]) -> Any:
    """The canonical outcome frame of ``paths`` (any format `tierroute ingest` reads)."""
    import datasets

    from tierroute.pipelines.data.ingest import IngestConfig, run_ingest

    datasets.disable_progress_bars()
    with tempfile.TemporaryDirectory(prefix="tierroute-bench-") as tmp:  # the frame is read into memory before it goes
        return run_ingest(IngestConfig(paths=tuple(map(str, paths)), out_dir=str(Path(tmp) / "ingest"))).to_pandas()


def half_per_task(tasks: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) indices: a seeded half of each task's requests to train on, the rest to test."""
    rng = np.random.default_rng(seed)
    train_idx = []
    for task in np.unique(tasks):
        idx = np.flatnonzero(tasks == task)
        train_idx.append(rng.permutation(idx)[: len(idx) // 2])
    train = np.sort(np.concatenate(train_idx))
    return train, np.setdiff1d(np.arange(len(tasks)), train)


def load_outcomes(key: str, paths: Sequence[Path], catalogue: str | None, quick: bool) -> Dataset:
    """Any outcome data (files or folders `tierroute ingest` reads): the requests every model
    answered, priced and tiered by --catalogue, a built-in, or the data's own costs (as `tierroute
    train` does); split = a seeded 50/50 per task; LOTO over its ``task`` column."""
    from tierroute.pipelines.data.catalogues import pick_catalogue
    from tierroute.pipelines.data.dataset import RoutingData

    frame = ingest_frame(paths)
    chosen, derived = pick_catalogue(catalogue, frame)
    data = RoutingData.from_frame(frame)
    both = data.complete()
    if quick:
        both = both.subset(_quick(both, 1200))
    dropped = data.n_requests - both.n_requests
    note = (
        f"{len(both.candidates)} models, cost = the data's cost_usd; catalogue {chosen.name}"
        + (" (tiers and prices read off the data's costs)" if derived else "")
        + "; split = seeded 50/50 per task"
        + (f"; {dropped:,} requests without an outcome for every model left out" if dropped else "")
    )
    return Dataset(key, f"({key}) outcomes {', '.join(p.name for p in paths)}", both, chosen, half_per_task(both.tasks), note)


def _quick(data: Any, n: int, seed: int = 0) -> np.ndarray:
    """A seeded subsample of ~n request indices, each task in proportion (--quick)."""
    from tierroute.pipelines.training.selection import _subsample

    return _subsample(data.tasks, n, seed)


def load_routerbench(root: Path, quick: bool) -> Dataset:
    from tierroute.models.catalogue import builtin_catalogue

    rb = root / "routerbench" / "routerbench_zs"
    names = ("arc_challenge", "mbpp", "winograde")
    train = ingest([rb / f"{f}_train.csv" for f in names]).complete()
    test = ingest([rb / f"{f}_test.csv" for f in names]).complete()
    if quick:
        train, test = train.subset(_quick(train, 300)), test.subset(_quick(test, 150))
    both = _concat(train, test)
    split = (np.arange(train.n_requests), np.arange(train.n_requests, both.n_requests))
    return Dataset(
        "routerbench",
        "(a) RouterBench",
        both,
        builtin_catalogue("routerbench"),
        split,
        "11 models, cost = the data's USD per call; split = the shared *_train / *_test files",
    )


def load_routellm(root: Path, quick: bool) -> Dataset:
    import pandas as pd

    from tierroute.hashing import prompt_hash
    from tierroute.models.catalogue import builtin_catalogue

    rl = root / "routellm"
    both = ingest([rl / "mmlu" / "responses", rl / "gsm8k"]).complete()
    unit = np.array([[1.0 if "gpt-4" in m else 0.06 for m in both.candidates]])
    subject = {}
    for path in sorted((rl / "mmlu" / "responses").glob("mmlu_*.csv")):
        name = path.stem.removeprefix("mmlu_")
        for prompt in pd.read_csv(path, usecols=["prompt"])["prompt"].astype(str):
            subject.setdefault(prompt_hash(prompt), name)
    groups = []
    for request, task in zip(both.requests, both.tasks):
        if task == "mmlu":
            groups.append(f"mmlu {_SUB[MMLU_SUBJECTS[subject[prompt_hash(request.prompt)]]]}")
        else:
            groups.append(str(task))
    both = dataclasses.replace(both, cost=np.broadcast_to(unit, both.cost.shape).copy(), tasks=np.array(groups))
    if quick:
        both = both.subset(_quick(both, 1200))
    return Dataset(
        "routellm",
        "(b) RouteLLM MMLU+GSM8K",
        both,
        builtin_catalogue("routellm"),
        half_per_task(both.tasks),
        "GPT-4-1106 vs Mixtral-8x7B, cost units GPT-4 1.0 / Mixtral 0.06; tasks: gsm8k + MMLU's 57 subjects in "
        "the MMLU paper's 4 groups; split = seeded 50/50 per task",
    )


def mt_bench_reason(root: Path) -> str:
    """Why MT-Bench is not benchmarked, from the data itself."""
    folder = root / "routellm" / "mt_bench"
    rows = [json.loads(line) for line in (folder / "judgements.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    contaminated = sum(1 for line in (folder / "contaminated_prompts.jsonl").read_text(encoding="utf-8").splitlines() if line.strip())
    first = {(r["question_id"], r["model"]): float(r["score"]) for r in rows if int(r["turn"]) == 1}
    questions = sorted({q for q, _ in first})
    models = sorted({m for _, m in first})
    differ = sum(len({first.get((q, m), 0) >= 8 for m in models}) > 1 for q in questions)
    return (
        f"MT-Bench skipped: {len(questions)} questions x {len(models)} models ({contaminated} contaminated), GPT-4-judge "
        f"scores 1-10 rather than correct/incorrect; at a pass mark of 8 the two models disagree on {differ} questions. "
        f"Leave-one-category-out folds would test ~{len(questions) // 8} questions each (one question moves accuracy by "
        f"~{8 / len(questions):.2f}), far too few to tell families apart by 0.01 AIQ."
    )


def other_datasets(root: Path) -> list[list[Path]]:
    """Every entry under ``root`` besides routerbench/ and routellm/ (and its notes): a dataset each."""
    if not root.is_dir():
        return []
    known = {"routerbench", "routellm"}
    return [
        [p]
        for p in sorted(root.iterdir())
        if p.name not in known and not p.name.startswith(".") and p.suffix.lower() not in (".md", ".txt")
    ]


def _concat(a: Any, b: Any) -> Any:
    from tierroute.pipelines.data.dataset import RoutingData

    def cat(x: Any, y: Any) -> Any:
        return None if x is None or y is None else np.concatenate([x, y])

    return RoutingData(
        a.request_ids + b.request_ids,
        a.requests + b.requests,
        np.concatenate([a.tasks, b.tasks]),
        a.candidates,
        np.vstack([a.correct, b.correct]),
        np.vstack([a.quality, b.quality]),
        np.vstack([a.cost, b.cost]),
        cat(a.latency, b.latency),
        cat(a.logged, b.logged),
        cat(a.propensity, b.propensity),
        cat(a.weight, b.weight),
    )


def _fmt(x: float | None, spec: str = ".4f", none: str = "n/a") -> str:
    return none if x is None else format(x, spec)


def _ratio(at: dict[str, Any]) -> str:
    return "not reached" if at["cost_ratio"] is None else f"{at['cost_ratio']:.3f}x"


def run_split(ds: Dataset, label: str, train: Any, test: Any, args: argparse.Namespace, n_folds: int = 5) -> dict[str, Any]:
    from task_router import task_references

    from tierroute.features.embeddings import EmbeddingCache
    from tierroute.models.learned import LearnedConfig, LearnedRouter
    from tierroute.models.router import RouterParams
    from tierroute.pipelines.evaluation.evaluate import evaluate
    from tierroute.pipelines.evaluation.metrics import aiq
    from tierroute.pipelines.training.selection import EncoderSet, SelectConfig, family_config, select_family

    clock = time.perf_counter()
    catalogue = ds.catalogue
    cache_dir = Path(args.cache)
    base = LearnedConfig(router=RouterParams(n_estimators=100, n_folds=3) if args.quick else RouterParams(n_folds=n_folds))
    config = SelectConfig(pool=args.pool, budget_min=args.budget_min, n_boot=50 if args.quick else 200)
    selection = select_family(train, catalogue, config, cache_dir, base=base)
    encoders = EncoderSet([r.prompt for r in train.requests], cache_dir, None, max((s.dims or 0 for s in args.pool), default=64))
    encoders.built.update(selection.encoders)
    full = selection.router is not None  # the selection fitted every family on all training requests, final parameters
    rows = []
    for spec in args.pool:
        result = selection.result(spec)
        router, note = (result.router if full else None), ""
        if router is None:
            note = "" if not full else f"not in the selection ({result.status}); fitted here"
            try:
                encoder, _ = encoders.get(spec)
                router = LearnedRouter(family_config(base, spec), encoder, EmbeddingCache(cache_dir / "embeddings")).fit(train, catalogue)
            except Exception as exc:  # noqa: BLE001 - a bench row, not a crash
                rows.append({"family": spec.name, "status": f"failed: {exc}", "report": None, "oof": result})
                continue
        rows.append(
            {
                "family": spec.name,
                "status": result.status,
                "note": note,
                "report": evaluate(router, test, catalogue),
                "oof": result,
                "chosen": spec == selection.chosen,
            }
        )
    first = next(r["report"] for r in rows if r["report"] is not None)
    singles = first["baselines"]["singles"]
    costs = [s["cost_per_query"] for s in singles]
    zero = aiq([(s["cost_per_query"], s["accuracy"]) for s in singles], min(costs), max(costs))
    tree, best_single = first["baselines"]["heuristic"], first["baselines"]["best_single"]
    scored = [r for r in rows if r["report"] is not None]
    best = max(scored, key=lambda r: r["report"]["aiq"])
    chosen = next(r for r in rows if r.get("chosen"))
    two = len(train.candidates) == 2
    print(
        f"\n== {ds.title} · {label}: train {train.n_requests:,} / test {test.n_requests:,} requests, "
        f"{len(train.candidates)} candidates ({time.perf_counter() - clock:.0f} s)"
    )
    print(
        f"zero router (hull of the singles): AIQ {zero:.4f} | tree: {100 * tree['accuracy']:.2f}% at "
        f"{tree['cost_per_query']:.6g}/query | best single {best_single['name']}: {100 * best_single['accuracy']:.2f}% at "
        f"{best_single['cost_per_query']:.6g}/query"
    )
    references = task_references(train, test)
    for name, ref in references.items():
        print(
            f"{name} ({_REFERENCE[name]}): AIQ {ref['aiq']:.4f}, "
            f"best single's accuracy at {_fmt(ref['cost_ratio_at_best'], '.3f')}x its cost"
            + (f", APGR {ref['apgr']:.4f}, CPT(50%) {100 * ref['cpt50']:.1f}%" if two else "")
        )
    print(f"selection: {selection.seconds:.0f} s on {selection.mode}; chosen {selection.chosen.name}")
    head = f"   {'family':<26} {'selection':<18} {'OOF AIQ [95% CI]':<25} {'test AIQ':>8} {'@tree acc':>11} {'@best acc':>11}"
    print(head + (f" {'APGR':>6} {'CPT50':>6}" if two else "") + f" {'fit s':>6} {'serve us':>9}")
    for r in rows:
        o, rep = r["oof"], r["report"]
        mark = ("*" if r.get("chosen") else " ") + ("+" if r is best else " ")
        oof = "" if o.aiq is None else f"{o.aiq:.4f} [{o.aiq_low:.4f}, {o.aiq_high:.4f}]"
        if rep is None:
            print(f"{mark} {r['family']:<26} {r['status']}")
            continue
        line = (
            f"{mark} {r['family']:<26} {r['status'][:18]:<18} {oof:<25} {rep['aiq']:>8.4f} "
            f"{_ratio(rep['at_heuristic_accuracy']):>11} {_ratio(rep['at_best_single_accuracy']):>11}"
        )
        if two:
            line += f" {rep['apgr']:>6.3f} {100 * rep['cpt50']:>5.1f}%"
        print(line + f" {_fmt(o.fit_seconds, '6.1f', ''):>6} {_fmt(o.serve_us, '9.0f', ''):>9}" + (f"  {r['note']}" if r["note"] else ""))
    gap = best["report"]["aiq"] - chosen["report"]["aiq"]
    print(
        f"selected {chosen['family']}: test AIQ {chosen['report']['aiq']:.4f}; best in pool {best['family']} "
        f"{best['report']['aiq']:.4f} (gap {gap:.4f}: {'within 0.01' if gap <= 0.01 else 'NOT within 0.01'}); "
        f"vs zero router {chosen['report']['aiq'] - zero:+.4f} ({'>= zero' if chosen['report']['aiq'] >= zero else 'BELOW zero'})"
    )
    point = chosen["report"]["learned"]
    print(
        f"selected family's operating point (train's default objective): {100 * point['accuracy']:.2f}% at "
        f"{point['cost_per_query']:.6g}/query; tree {100 * tree['accuracy']:.2f}% at {tree['cost_per_query']:.6g}/query "
        f"({'at or above' if point['accuracy'] >= tree['accuracy'] else 'BELOW'} the tree's accuracy)"
    )
    if label == "split" and args.detail:
        print(table(chosen["report"]))
    return {
        "dataset": ds.title,
        "fold": label,
        "selected": chosen["family"],
        "selected_aiq": chosen["report"]["aiq"],
        "best": best["family"],
        "best_aiq": best["report"]["aiq"],
        "zero_aiq": zero,
        "point_accuracy": chosen["report"]["learned"]["accuracy"],
        "point_cost": chosen["report"]["learned"]["cost_per_query"],
        "tree_accuracy": tree["accuracy"],
        "tree_cost": tree["cost_per_query"],
        "report": chosen["report"],
        "references": references,
        "seconds": time.perf_counter() - clock,
    }


_REFERENCE = {
    "task router": "knows each request's task, routes on the training requests' per-task figures",
    "task oracle": "the same on the test requests' own per-task figures: the most routing by task can reach",
    "prior router": "a task unseen in training: one candidate for all per knob value, on the training requests' overall figures",
}


def table(report: dict[str, Any]) -> str:
    """The selected family against the baselines, on the split's test requests."""
    b = report["baselines"]
    rows = [(f"single: {s['name']}", s) for s in sorted(b["singles"], key=lambda s: s["cost_per_query"])]
    rows += [
        ("oracle", b["oracle"]),
        ("random", b["random"]),
        ("heuristic (article's tree)", b["heuristic"]),
        ("learned (its out-of-fold operating point)", report["learned"]),
    ]
    out = [f"   {'router':<48} {'accuracy':>8} {'cost/query':>11} {'cost/correct':>12}"]
    for label, r in rows:
        if r.get("accuracy") is None:
            continue
        cpc = "n/a" if r.get("cost_per_correct") is None else f"{r['cost_per_correct']:.6g}"
        out.append(f"   {label:<48} {100 * r['accuracy']:>7.2f}% {r['cost_per_query']:>11.6g} {cpc:>12}")
    return "\n".join(out)


def _bound(result: dict[str, Any], second: str) -> str:
    """The task oracle's figures beside a target (what routing by the task label alone reaches)."""
    ref = (result.get("references") or {}).get("task oracle")
    if ref is None:
        return ""
    more = {
        "cost_ratio_at_best": f"best single's accuracy at {_fmt(ref['cost_ratio_at_best'], '.3f')}x",
        "apgr": f"APGR {_fmt(ref.get('apgr'))}, CPT(50%) {_fmt(None if ref.get('cpt50') is None else 100 * ref['cpt50'], '.1f')}%",
    }[second]
    return f" (the task oracle: AIQ {ref['aiq']:.4f}, {more})"


def targets(results: list[dict[str, Any]]) -> list[str]:
    """The issue's done-means, REACHED or NOT REACHED."""

    def say(ok: bool) -> str:
        return "REACHED" if ok else "NOT REACHED"

    lines = []
    for r in results:
        if r["fold"] != "split":
            continue
        rep = r["report"]
        if r["dataset"].startswith("(a)"):
            ratio = rep["at_best_single_accuracy"]["cost_ratio"]
            lines.append(
                f"RouterBench (default flags, shared split): AIQ {rep['aiq']:.4f} >= 0.86: {say(rep['aiq'] >= 0.86)}; "
                f"best single's accuracy at {_ratio(rep['at_best_single_accuracy'])} its cost <= 0.6x: "
                f"{say(ratio is not None and ratio <= 0.6)}{_bound(r, 'cost_ratio_at_best')}"
            )
        if r["dataset"].startswith("(b)"):
            lines.append(
                f"RouteLLM MMLU+GSM8K (split): APGR {rep['apgr']:.4f} >= 0.68: {say(rep['apgr'] >= 0.68)}; "
                f"CPT(50%) {100 * rep['cpt50']:.1f}% <= 25%: {say(rep['cpt50'] <= 0.25)}{_bound(r, 'apgr')}"
            )
    loto = [r for r in results if r["fold"] != "split"]
    if loto:
        below = [f"{r['dataset']} {r['fold']}" for r in loto if r["selected_aiq"] < r["zero_aiq"]]
        lines.append(
            f"LOTO: selected AIQ >= zero router's on every fold ({len(loto)}): {say(not below)}"
            + (f" (below on: {', '.join(below)})" if below else "")
        )
    under = [f"{r['dataset']} {r['fold']}" for r in results if r["point_accuracy"] < r["tree_accuracy"]]
    lines.append(
        f"the selected family's operating point at or above the tree's test accuracy on every dataset and fold ({len(results)}): "
        f"{say(not under)}" + (f" (below on: {', '.join(under)})" if under else "")
    )
    far = [f"{r['dataset']} {r['fold']}" for r in results if r["best_aiq"] - r["selected_aiq"] > 0.01]
    lines.append(
        f"selected within 0.01 test AIQ of the best family in its pool on every dataset and fold ({len(results)}): "
        f"{say(not far)}" + (f" (not on: {', '.join(far)})" if far else "")
    )
    return lines


def main() -> int:
    from tierroute.pipelines.training.selection import FamilySpec, default_pool

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("TIERROUTE_SHARED_DATA", str(ROOT.parent / "shared" / "data")))
    parser.add_argument("--only", default=None, metavar="KEY", help="one dataset: routerbench, routellm, mt_bench or an outcomes key")
    parser.add_argument(
        "--outcomes",
        action="append",
        nargs="+",
        default=[],
        metavar="PATH",
        help="one more dataset: outcome files or folders (any format `tierroute ingest` reads); repeat for several",
    )
    parser.add_argument("--catalogue", default=None, help="prices and tiers for --outcomes data (default: a built-in, else its costs)")
    parser.add_argument("--protocol", choices=["all", "split", "loto"], default="all")
    parser.add_argument(
        "--families",
        default=None,
        metavar="NAMES",
        help="comma-separated subset of the pool (e.g. pooled/none,per_candidate/static-64); default: all",
    )
    parser.add_argument(
        "--budget-min",
        type=float,
        default=None,
        help="the selection's time budget per split (default: train's, scaled with the data: 8 min at 10k x 10)",
    )
    parser.add_argument("--cache", default=str(ROOT / "runs" / "cache"), help="encoders and embeddings (reused across runs)")
    parser.add_argument("--quick", action="store_true", help="a small subsample and fewer trees: a smoke run, not figures")
    parser.add_argument("--loto-folds", type=int, default=3, help="folds of the LOTO fits (default 3; the split uses 5)")
    parser.add_argument("--loto-max-train", type=int, default=5000, help="LOTO training requests at most (default 5,000)")
    parser.add_argument("--no-detail", dest="detail", action="store_false", help="omit the baselines table of each split")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pool = default_pool()
    if args.families:
        wanted = [n.strip() for n in args.families.split(",") if n.strip()]
        unknown = sorted(set(wanted) - {s.name for s in pool})
        if unknown:
            print(f"error: unknown families {unknown}; the pool is {[s.name for s in pool]}", file=sys.stderr)
            return 2
        pool = tuple(s for s in pool if s.name in wanted)
    args.pool = tuple(sorted(pool, key=FamilySpec.fit_rank))
    data = Path(args.data)
    extra = [[Path(p) for p in group] for group in args.outcomes] + other_datasets(data)
    if not (data / "routerbench").is_dir() and not extra:
        print(
            f"error: {data} has no routerbench/ folder and no --outcomes were given; pass --data or set TIERROUTE_SHARED_DATA",
            file=sys.stderr,
        )
        return 2
    clock = time.perf_counter()
    budget = "train's default (scaled with the data)" if args.budget_min is None else f"{args.budget_min:g} min"
    print(
        f"pool ({len(args.pool)}): {', '.join(s.name for s in args.pool)}; selection budget {budget} per split; "
        f"LOTO: {args.loto_folds} folds, at most {args.loto_max_train:,} training requests"
        + ("; QUICK: subsampled data, 100 trees, 3 folds (a smoke run, not figures)" if args.quick else "")
    )
    results = []
    loaders: dict[str, Any] = {}
    if (data / "routerbench").is_dir():
        loaders["routerbench"] = lambda: load_routerbench(data, args.quick)
    if (data / "routellm").is_dir():
        loaders["routellm"] = lambda: load_routellm(data, args.quick)
    for i, paths in enumerate(extra):  # (d), (e), ...: (c) is MT-Bench's line
        key = chr(ord("d") + i)
        loaders[key] = lambda key=key, paths=paths: load_outcomes(key, paths, args.catalogue, args.quick)
    if args.only not in (None, "mt_bench", *loaders):
        print(f"error: --only {args.only!r}: the datasets here are {[*loaders, 'mt_bench']}", file=sys.stderr)
        return 2
    for key, load in loaders.items():
        if args.only not in (None, key):
            continue
        try:
            ds = load()
        except Exception as exc:  # noqa: BLE001 - one unreadable dataset is reported, the others still run
            print(f"\n#### ({key}) skipped: {type(exc).__name__}: {exc}")
            continue
        tasks = np.unique(ds.data.tasks)
        if len(tasks) < 2 and args.protocol in ("all", "loto"):
            print(f"\n#### {ds.title}: one task only ({tasks[0] if len(tasks) else 'none'}): no leave-one-task-out folds")
        print(
            f"\n#### {ds.title}: {ds.data.n_requests:,} requests; {ds.note}; tasks for leave-one-task-out: "
            + ", ".join(f"{t} ({int((ds.data.tasks == t).sum()):,})" for t in tasks)
        )
        if args.protocol in ("all", "split"):
            results.append(run_split(ds, "split", ds.data.subset(ds.split[0]), ds.data.subset(ds.split[1]), args))
        if args.protocol in ("all", "loto") and len(tasks) > 1:
            for task in tasks:
                held = ds.data.tasks == task
                train = ds.data.subset(~held)
                if train.n_requests > args.loto_max_train:
                    train = train.subset(_quick(train, args.loto_max_train))
                results.append(run_split(ds, f"LOTO {task}", train, ds.data.subset(held), args, args.loto_folds))
    if args.only in (None, "mt_bench") and (data / "routellm" / "mt_bench").is_dir():
        print(f"\n#### (c) {mt_bench_reason(data)}")
    print(f"\n== summary ({time.perf_counter() - clock:.0f} s in all)")
    print(
        f"   {'dataset':<26} {'fold':<28} {'selected':<24} {'AIQ':>7} {'best in pool':<24} {'AIQ':>7} {'gap':>7} {'zero':>7}"
        f" {'point acc':>9} {'tree acc':>8} {'point cost':>10} {'tree cost':>10}"
    )
    for r in results:
        gap = r["best_aiq"] - r["selected_aiq"]
        print(
            f"   {r['dataset']:<26} {r['fold']:<28} {r['selected']:<24} {r['selected_aiq']:>7.4f} {r['best']:<24} "
            f"{r['best_aiq']:>7.4f} {gap:>7.4f} {r['zero_aiq']:>7.4f} {100 * r['point_accuracy']:>8.2f}% "
            f"{100 * r['tree_accuracy']:>7.2f}% {r['point_cost']:>10.4g} {r['tree_cost']:>10.4g}"
        )
    for line in targets(results):
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

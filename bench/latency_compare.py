"""route() before and after: this checkout's Router beside another tierroute version, same bundle.

    python bench/latency_compare.py --baseline-commit 607ad05 [--bundle DIR] [--rounds 4] [--reps 15]
    python bench/latency_compare.py --baseline-path SITE [--bundle DIR] ...
    python bench/latency_compare.py --baseline-commit A --current-commit B ...   (two other versions)

The baseline is a git commit of this repository (checked out into a temporary worktree and
installed there with ``pip install --no-deps --target``; nothing else changes) or a folder where
``import tierroute`` finds another version (``--baseline-path``, put first on PYTHONPATH).
``--current-commit`` puts another commit, installed the same way, in this checkout's place (e.g. to
time one step of a history on its own).
Without --bundle, a bundle is trained first on the built-in synthetic workload (static encoder);
both versions load that same bundle, so only the code differs.

Each round runs one baseline process and one process of this checkout, the baseline first in
even rounds and second in odd ones, so both see the machine's drift alike. A process times, for ~30, ~400 and ~2,000-token prompts with and
without an output schema, ``reps`` batches of calls of the Router and of the tree
(HeuristicPolicy.route) interleaved, and keeps each one's fastest batch mean (the least disturbed
by other load). Printed: per prompt, the best over rounds of each version's learned and tree
times, the change from baseline to now, each version's learned/tree ratio (the median over
rounds of the per-round ratios) and its learned - tree difference (the median over rounds: the
learned path's own work, which a faster tree leaves unchanged where the ratio rises).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROMPTS = [(tokens, schema) for tokens in (30, 400, 2000) for schema in (False, True)]


def worker(bundle: str, reps: int) -> dict[str, list[float]]:
    """{prompt key: [learned us, tree us]} for the tierroute this interpreter imports."""
    from latency import SCHEMA, make_prompt

    from tierroute.models.catalogue import Catalogue
    from tierroute.serving import HeuristicPolicy, Router

    router = Router.load(bundle, strict=True)
    tree = HeuristicPolicy(catalogue=Catalogue.from_dict(router.bundle.catalogue.to_dict()))
    out = {}
    for tokens, schema in PROMPTS:
        request = {"prompt": make_prompt(tokens), "output_schema": SCHEMA if schema else None, "latency_sla_ms": 800}
        for _ in range(300):
            tree.route(request), router.route(request)
        calls = 100 if tokens >= 2000 else 300
        learned, heuristic = [], []
        for _ in range(reps):
            start = time.perf_counter()
            for _ in range(calls):
                router.route(request)
            learned.append((time.perf_counter() - start) / calls * 1e6)
            start = time.perf_counter()
            for _ in range(calls):
                tree.route(request)
            heuristic.append((time.perf_counter() - start) / calls * 1e6)
        out[_key(tokens, schema)] = [min(learned), min(heuristic)]
    return out


def _key(tokens: int, schema: bool) -> str:
    return f"~{tokens} tokens, {'schema' if schema else 'no schema'}"


def install_commit(commit: str, folder: Path) -> Path:
    """This repository at ``commit``, installed (no dependencies) into ``folder``/site."""
    source = folder / "src"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(source), commit], check=True)
    try:
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "install",
                "-q",
                "--no-deps",
                "--no-build-isolation",
                "--target",
                str(folder / "site"),
                str(source),
            ],
            check=True,
        )
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(source)], check=False)
    return folder / "site"


def train_with(pythonpath: str, out: Path) -> Path:
    """A bundle trained by the baseline's own ``tierroute train`` (static encoder, pooled, 3,000
    synthetic requests): the newer version must load what the older one made, not the reverse."""
    print(f"training a bundle with the baseline in {out} ...", flush=True)
    argv = ["train", "--encoder", "static", "--kind", "pooled", "--synthetic-requests", "3000"]
    argv += ["--tracking-uri", f"sqlite:///{out.parent / 'mlflow.db'}", "--out", str(out)]
    code = f"import sys; from tierroute.cli import main; sys.exit(main({argv!r}))"
    env = dict(os.environ, HF_HUB_OFFLINE="1", PYTHONPATH=pythonpath)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"the baseline's tierroute train failed:\n{done.stderr[-2000:]}")
    return out / "bundle"


def run_worker(bundle: Path, reps: int, pythonpath: str | None, role: str) -> dict[str, list[float]]:
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    env.pop("PYTHONPATH", None)
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    done = subprocess.run(
        [sys.executable, __file__, "--worker", "--bundle", str(bundle), "--reps", str(reps)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"a {role} worker failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def report(rounds: list[tuple[dict[str, list[float]], dict[str, list[float]]]]) -> None:
    print(
        f"{'prompt':<24} {'learned base':>12} {'now':>8} {'change':>7} | {'tree base':>9} {'now':>7} {'change':>7} | "
        f"{'learned/tree base':>17} {'now':>5} {'change':>7} | {'learned-tree base':>16} {'now':>7} {'change':>7}"
    )
    for tokens, schema in PROMPTS:
        key = _key(tokens, schema)
        base_l, now_l = min(b[key][0] for b, _ in rounds), min(n[key][0] for _, n in rounds)
        base_t, now_t = min(b[key][1] for b, _ in rounds), min(n[key][1] for _, n in rounds)
        base_r = statistics.median(b[key][0] / b[key][1] for b, _ in rounds)
        now_r = statistics.median(n[key][0] / n[key][1] for _, n in rounds)
        # the learned path's own work (what it does beyond the tree), per round, median over rounds
        base_d = statistics.median(b[key][0] - b[key][1] for b, _ in rounds)
        now_d = statistics.median(n[key][0] - n[key][1] for _, n in rounds)
        print(
            f"{key:<24} {base_l:>11.1f}u {now_l:>7.1f}u {now_l / base_l - 1:>+7.1%} | {base_t:>8.1f}u {now_t:>6.1f}u "
            f"{now_t / base_t - 1:>+7.1%} | {base_r:>16.2f}x {now_r:>4.2f}x {now_r / base_r - 1:>+7.1%} | "
            f"{base_d:>15.1f}u {now_d:>6.1f}u {now_d / base_d - 1:>+7.1%}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline-commit", default=None, help="a commit of this repository to compare against")
    parser.add_argument("--baseline-path", default=None, help="a folder where `import tierroute` finds the baseline")
    parser.add_argument("--current-commit", default=None, help="time this commit in place of this checkout")
    parser.add_argument("--bundle", default=None, help="a bundle both versions load (default: train one on synthetic data)")
    parser.add_argument("--rounds", type=int, default=4, help="baseline/current process pairs (default 4)")
    parser.add_argument("--reps", type=int, default=15, help="timed batches per prompt and process (default 15)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.bundle, args.reps)))
        return 0
    if (args.baseline_commit is None) == (args.baseline_path is None):
        parser.error("give one of --baseline-commit or --baseline-path")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    with tempfile.TemporaryDirectory(prefix="tierroute-latency-compare-") as tmp:
        site = install_commit(args.baseline_commit, Path(tmp) / "baseline") if args.baseline_commit else Path(args.baseline_path)
        current = str(install_commit(args.current_commit, Path(tmp) / "current")) if args.current_commit else None
        bundle = Path(args.bundle) if args.bundle else train_with(str(site), Path(tmp) / "train")
        label = args.baseline_commit or str(site)
        print(
            f"baseline {label} vs {args.current_commit or 'this checkout'}; bundle {bundle}; "
            f"{args.rounds} rounds x {args.reps} batches per prompt"
        )
        rounds = []
        for i in range(args.rounds):
            if i % 2 == 0:  # the order alternates too: no version always runs first
                base = run_worker(bundle, args.reps, str(site), "baseline")
                rounds.append((base, run_worker(bundle, args.reps, current, "current")))
            else:
                now = run_worker(bundle, args.reps, current, "current")
                rounds.append((run_worker(bundle, args.reps, str(site), "baseline"), now))
            print(f"  round {i + 1}/{args.rounds} done", flush=True)
        print("\n== route(), one thread: fastest batch mean per call (us), baseline vs now")
        report(rounds)
    return 0


if __name__ == "__main__":
    sys.exit(main())

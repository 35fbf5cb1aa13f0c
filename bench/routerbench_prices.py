"""Recover the per-1k-token prices behind RouterBench's per-call costs, and check the catalogue.

RouterBench records, for every prompt and model, the USD cost of the call (``<model>|total_cost``)
but not the token counts. Its costs are token counts times a list price, so fitting
``cost ~ a * prompt_tokens + b * response_tokens`` per model (non-negative least squares,
weighted so every row counts by its relative error) gives the prices back. The builtin
``routerbench`` catalogue holds the nearest round public list prices consistent with the fit;
this script prints both, and the median of actual cost / catalogue-predicted cost.

The fit is approximate: we count tokens with ``o200k_base`` (bpe-openai), not with each vendor's
own tokenizer (Claude, Llama, Mistral, Yi and WizardLM all tokenize differently), and the exact
chat template RouterBench sent is not in the data. On the routerbench_zs files the fitted prices
still land within 2% of the round list prices and the median ratio is 1.00-1.01 for every model,
which suggests RouterBench counted all models' tokens with one OpenAI-style BPE; a ratio far from
1 after editing the catalogue means a price is wrong.

Usage (from the repository root)::

    python bench/routerbench_prices.py
    python bench/routerbench_prices.py --data /path/to/routerbench_zs --catalogue my.toml

The data folder defaults to ``../shared/data/routerbench/routerbench_zs`` beside the repository;
``TIERROUTE_SHARED_DATA`` (the folder holding ``routerbench/`` and ``routellm/``) overrides that
default and ``--data`` overrides both. Runs in a few seconds.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from scipy.optimize import nnls

from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.catalogue import Catalogue, load_catalogue
from tierroute.pipelines.data.adapters.routerbench import routerbench_prompt_text

FILES = (
    "arc_challenge_train.csv",
    "arc_challenge_test.csv",
    "mbpp_train.csv",
    "mbpp_test.csv",
    "winograde_train.csv",
    "winograde_test.csv",
)
REPO_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """``$TIERROUTE_SHARED_DATA/routerbench/routerbench_zs``, else ``../shared/data/...`` beside the repo."""
    shared = os.environ.get("TIERROUTE_SHARED_DATA")
    base = Path(shared) if shared else REPO_ROOT.parent / "shared" / "data"
    return base / "routerbench" / "routerbench_zs"


def read_rows(data_dir: Path, models: Sequence[str], count: Callable[[str], int]) -> dict[str, list[tuple[int, int, float]]]:
    """Per model: (prompt tokens, response tokens, cost) for every row with a finite cost."""
    csv.field_size_limit(sys.maxsize)
    rows: dict[str, list[tuple[int, int, float]]] = {m: [] for m in models}
    for name in FILES:
        with (data_dir / name).open(newline="", encoding="utf-8") as fh:
            for rec in csv.DictReader(fh):
                n_in = count(routerbench_prompt_text(rec["prompt"]))
                for model in models:
                    raw = rec.get(f"{model}|total_cost") or ""
                    cost = float(raw) if raw else math.nan
                    if not math.isfinite(cost):
                        continue
                    n_out = count(routerbench_prompt_text(rec.get(f"{model}|model_response") or ""))
                    rows[model].append((n_in, n_out, cost))
    return rows


def fit(samples: list[tuple[int, int, float]]) -> tuple[float, float]:
    """Non-negative (a, b) in USD per 1k tokens with cost ~ a*in/1000 + b*out/1000, relative-error weighted."""
    arr = np.asarray([s for s in samples if s[2] > 0], dtype=float)
    weights = 1.0 / arr[:, 2]
    design = arr[:, :2] / 1000.0 * weights[:, None]
    coef, _ = nnls(design, arr[:, 2] * weights)
    return float(coef[0]), float(coef[1])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=None, help="folder holding the six routerbench_zs CSVs")
    parser.add_argument("--catalogue", default="routerbench", help="builtin name or TOML path to compare with")
    args = parser.parse_args(argv)
    data_dir = args.data or default_data_dir()
    catalogue: Catalogue = load_catalogue(args.catalogue)
    absent = [name for name in FILES if not (data_dir / name).is_file()]
    if absent:
        print(
            f"error: {data_dir} lacks {', '.join(absent)}; pass --data (the folder holding the routerbench_zs "
            "CSVs) or set TIERROUTE_SHARED_DATA (the folder holding routerbench/ and routellm/).",
            file=sys.stderr,
        )
        return 2

    tok = BpeTokenCounter("o200k_base")  # the counter tierroute's features use
    started = time.perf_counter()
    with open(data_dir / FILES[0], newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    models = [c.split("|")[0] for c in header if c.endswith("|total_cost")]
    rows = read_rows(data_dir, models, tok.count)
    print(f"data: {data_dir}  ({len(FILES)} files, tokens counted with o200k_base)")
    print(f"catalogue: {catalogue.source}")
    head = f"{'model':36} {'rows':>5} {'fit in':>9} {'fit out':>9} {'cat in':>9} {'cat out':>9} {'tier':>6}  median actual/cat [p10, p90]"
    print(head)
    print("-" * len(head))

    def order(model: str) -> tuple[int, float, str]:
        if not catalogue.covers([model]):
            return (len(catalogue.tiers), 0.0, model)
        cand = catalogue.candidate(model)
        return (catalogue.tier_rank(cand.tier), cand.input_per_1k + cand.output_per_1k, model)

    for model in sorted(models, key=order):
        samples = rows[model]
        a, b = fit(samples)
        line = f"{model:36} {len(samples):5d} {a:9.6f} {b:9.6f}"
        if catalogue.covers([model]):
            cand = catalogue.candidate(model)
            pred = np.asarray([cand.cost(i, o) for i, o, _ in samples])
            actual = np.asarray([c for _, _, c in samples])
            ok = pred > 0
            ratio = actual[ok] / pred[ok]
            p10, p50, p90 = np.percentile(ratio, [10, 50, 90])
            line += f" {cand.input_per_1k:9.6f} {cand.output_per_1k:9.6f} {cand.tier:>6}  {p50:.3f} [{p10:.3f}, {p90:.3f}]"
        else:
            line += f" {'(not in catalogue)':>33}"
        print(line)
    print(f"prices in USD per 1k tokens; {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

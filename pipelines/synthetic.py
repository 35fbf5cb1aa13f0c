"""The built-in default data: a seeded, SYNTHETIC workload modelled on the article's task classes.

Three tiers at the article's per-request costs (the built-in ``article`` catalogue's defaults),
eight task classes with realistic prompt lengths, output schemas and latency SLAs, and outcome
probabilities that depend on each request in ways the article's tree cannot fully see: a hidden
difficulty that shows in the prompt's content (nesting, ambiguity, several languages or
documents, tricky code) rather than in its length or keywords. Its figures illustrate the tool;
never quote them as measurements of real models.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from tierroute._params import check_int, check_number
from tierroute.models.catalogue import builtin_catalogue

__all__ = ["SyntheticConfig", "generate", "write_jsonl", "production_log", "TASKS"]

# task -> (tier1, tier2, tier3 base log-odds of a correct answer, difficulty penalty per tier)
TASKS: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "classify": ((2.6, 2.9, 3.2), (2.5, 2.0, 1.5)),
    "extract": ((2.2, 2.6, 3.0), (3.0, 2.4, 1.6)),
    "summarize": ((0.6, 2.0, 2.6), (2.4, 2.0, 1.4)),
    "translate": ((1.0, 2.2, 2.7), (2.6, 2.0, 1.2)),
    "convert": ((1.4, 2.4, 2.8), (2.8, 2.0, 1.4)),
    "reason": ((-0.6, 0.6, 2.0), (2.2, 2.4, 2.0)),
    "code": ((-1.0, 0.4, 2.0), (2.0, 2.6, 2.2)),
    "synthesize": ((-0.8, 0.6, 1.8), (2.0, 2.4, 2.0)),
}
_MIX = {"classify": 0.24, "extract": 0.22, "summarize": 0.12, "translate": 0.08, "convert": 0.08,
        "reason": 0.10, "code": 0.09, "synthesize": 0.07}
_OUT_TOKENS = {"classify": 5, "extract": 40, "summarize": 180, "translate": 150, "convert": 200,
               "reason": 400, "code": 500, "synthesize": 600}
_PRODUCTS = ["router", "headset", "monitor", "laptop", "invoice", "subscription", "refund", "parcel"]
_WORDS = ("account billing charge delivery error firmware latency network order payment policy quota "
          "region renewal server shipment ticket update warranty").split()
_LANGS = ["German", "French", "Japanese", "Spanish", "Portuguese"]


@dataclass(frozen=True)
class SyntheticConfig:
    """``n_requests`` requests, each with an outcome for the three default article models."""

    n_requests: int = 3000
    seed: int = 0

    def __post_init__(self) -> None:
        check_int(self.n_requests, "n_requests", "SyntheticConfig", 10, 5_000_000)
        check_int(self.seed, "seed", "SyntheticConfig", 0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _filler(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words))


def _request(task: str, rng: random.Random) -> tuple[str, Any, float | None, float]:
    """(prompt, output schema, SLA, hidden difficulty in [0, 1])."""
    hard = rng.random()
    product = rng.choice(_PRODUCTS)
    if task == "classify":
        ambiguous = hard > 0.7
        text = f"Customer wrote: '{_filler(rng, rng.randint(8, 60))} my {product}" + (
            " was charged twice but also arrived broken and I want it fixed or refunded" if ambiguous else " has an issue"
        ) + "'. Which category is this?"
        # mostly budgets a model can meet; 150 ms shows the tree's latency-sensitive quirk
        return text, ["billing", "technical", "shipping", "other"], rng.choice([150.0, 1500.0, 3000.0, None]), hard
    if task == "extract":
        nested = hard > 0.6
        schema: Any = {"order_id": "string", "customer_id": "string", "issue_type": "billing | technical | shipping | other"}
        if nested:
            schema = {"type": "object", "required": ["order", "items"], "properties": {
                "order": {"type": "object", "properties": {"id": {"type": "string"}, "date": {"type": "string"}}},
                "items": {"type": "array", "items": {"type": "object", "properties": {
                    "sku": {"type": "string"}, "qty": {"type": "integer"}}}}}}
        body = "\n".join(f"Line {i}: {_filler(rng, rng.randint(5, 25))} ORD-{rng.randint(10000, 99999)}"
                         for i in range(rng.randint(2, 40 if nested else 12)))
        return f"Extract the fields from this message.\n{body}", schema, rng.choice([1500.0, 2000.0, None]), hard
    if task == "summarize":
        turns = rng.randint(6, 120)
        text = "Summarize this thread in three sentences.\n" + "\n".join(
            f"{'Agent' if i % 2 else 'Customer'}: {_filler(rng, rng.randint(10, 40))}" for i in range(turns))
        return text, None, rng.choice([None, 2000.0]), min(1.0, hard * 0.6 + turns / 200)
    if task == "translate":
        langs = rng.sample(_LANGS, 2 if hard > 0.6 else 1)
        return (f"Translate into {' and '.join(langs)}, keeping the product names: "
                f"'{_filler(rng, rng.randint(10, 120))}'", None, rng.choice([2000.0, 3000.0, None]), hard)
    if task == "convert":
        rows = rng.randint(3, 60)
        text = "Convert this CSV to JSON lines.\n" + "\n".join(
            ",".join(rng.choice(_WORDS) + ('"' if hard > 0.7 and rng.random() < 0.3 else "") for _ in range(4)) for _ in range(rows))
        return text, None, rng.choice([2000.0, None]), hard
    if task == "reason":
        steps = rng.randint(2, 9)
        ask = rng.choice(["Work out", "Determine", "Figure out"]) if rng.random() < 0.6 else "Analyze step by step and explain why"
        text = f"{ask}: a warehouse ships {steps} batches; " + "; ".join(
            f"batch {i} has {rng.randint(3, 90)} parcels and {rng.randint(0, 9)} are late" for i in range(steps)) + ". What share is late?"
        return text, None, rng.choice([None, 150.0, 5000.0]), min(1.0, 0.5 * hard + steps / 12)
    if task == "code":
        lines = rng.randint(8, 160)
        tricky = hard > 0.5
        code = "\n".join(f"    total += item.price * item.qty  # {rng.choice(_WORDS)}" for _ in range(lines))
        if tricky:
            code += "\n    for i in range(len(items) - 1):\n        cache[i] = cache.get(i + 1, total)"
        ask = "Fix this function" if rng.random() < 0.5 else "Debug this function"
        return f"{ask}.\n```python\ndef total(items):\n    total = 0\n{code}\n    return total\n```", None, rng.choice([None, 5000.0]), hard
    docs = rng.randint(2, 6)
    text = "Using all the documents, write one brief.\n" + "\n\n".join(
        f"Document {i}:\n" + _filler(rng, rng.randint(120, 500)) for i in range(docs))
    return text, None, None, min(1.0, 0.5 * hard + docs / 8)


def generate(config: SyntheticConfig) -> Iterator[dict[str, Any]]:
    """Canonical outcome rows (request x model), seeded and reproducible."""
    from tierroute.features.tokens import BpeTokenCounter

    rng = random.Random(config.seed)
    catalogue = builtin_catalogue("article")
    models = [catalogue.default_model(t) for t in catalogue.tiers]
    counter = BpeTokenCounter()
    tasks, weights = zip(*_MIX.items())
    for n in range(config.n_requests):
        task = rng.choices(tasks, weights)[0]
        prompt, schema, sla, hard = _request(task, rng)
        tokens = counter.count(prompt)
        base, penalty = TASKS[task]
        for tier_index, model in enumerate(models):
            logit = base[tier_index] - 2.0 * penalty[tier_index] * (hard - 0.5) - 0.3 * max(0.0, math.log(tokens / 800)) * (2 - tier_index)
            correct = rng.random() < 1 / (1 + math.exp(-logit))
            candidate = catalogue.candidate(model)
            out_tokens = max(1, int(_OUT_TOKENS[task] * rng.uniform(0.5, 1.5)))
            p95 = candidate.p95_latency_ms or 1000.0
            yield {
                "request_id": f"syn-{config.seed}-{n:06d}", "prompt": prompt, "output_schema": schema,
                "latency_sla_ms": sla, "task": task, "model": model,
                "quality": 1.0 if correct else round(rng.uniform(0.0, 0.45), 3), "correct": correct,
                "cost_usd": round(candidate.cost(tokens, out_tokens), 8),
                "latency_ms": round(p95 * rng.uniform(0.3, 1.0) * (1 + tokens / 8000), 1),
                "timestamp": 1_767_225_600 + 60 * n, "chosen": None, "propensity": None,
            }


def write_jsonl(config: SyntheticConfig, path: str | Path) -> Path:
    """Write :func:`generate`'s rows to ``path`` (JSONL) and return it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with target.open("w", encoding="utf-8") as fh:
        for row in generate(config):
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    return target


def production_log(config: SyntheticConfig, epsilon: float = 0.1, seed: int = 0) -> Iterator[dict[str, Any]]:
    """What a production log of the same workload holds: per request, only the outcome of the model
    the serving policy chose, with ``chosen`` and ``propensity``. The logging policy is the article's
    tree (what serves before a learned router) with an epsilon-uniform exploration slice, as
    ``tierroute serve --explore`` logs it: propensity (1 - epsilon) [tree's pick] + epsilon / 3."""
    from tierroute.models.heuristic import HeuristicTree
    from tierroute.request import Request

    check_number(epsilon, "epsilon", "production_log", 0.0, 1.0)
    rng = random.Random(seed)
    catalogue = builtin_catalogue("article")
    tree = HeuristicTree()
    rows = list(generate(config))
    for start in range(0, len(rows), 3):  # generate() yields each request's three models in a row
        group = rows[start : start + 3]
        first = group[0]
        schema = first["output_schema"]
        request = Request(first["prompt"], schema, first["latency_sla_ms"])
        greedy = catalogue.serving_model(tree.route(request).tier)
        models = [r["model"] for r in group]
        pick = rng.choice(models) if rng.random() < epsilon else greedy
        propensity = (1 - epsilon) * (pick == greedy) + epsilon / len(models)
        row = dict(group[models.index(pick)])
        row.update(chosen=True, propensity=round(propensity, 12))
        yield row

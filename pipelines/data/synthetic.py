"""The built-in default data: a seeded, SYNTHETIC workload built from the routing article's figures.

The article is ``../shared/seed/routing-article.txt``; ``docs/synthetic-workload.md`` sets every
number below beside the sentence it comes from. In short:

* nine task classes, the article's three per tier ("The 5 Task Classes"), at its request mix where
  it states one (classification + extraction "account for ~60% of inference calls");
* per class, the mean chance that each tier's default model answers correctly (:data:`TASKS`).
  Article figures: extraction tier1 0.91 vs frontier 0.94 ("Quantized Llama-3 70B (Q4_K_M):
  F1 = 0.91" / "GPT-4o: F1 = 0.94"); tool execution within 3 points of the frontier ("Haiku for
  tool execution ... Accuracy delta was under 3%"); classification and extraction need no frontier
  model ("Neither benefits from a 200B+ parameter model"); a class sits in the cheapest tier within
  5 points of the frontier ("Measure F1 delta — if < 5 points, route to Tier 1"), so tier-2 classes
  lose >= 5 points on tier1 and tier-3 classes ("Frontier only") >= 5 points on tiers 1 and 2;
* prices from the ``article`` catalogue (its per-request figures: ~$0.003 / $0.01-0.03 /
  $0.10-0.15, GPT-4o ~$0.12), charged per token of each request.

Everything else is an ASSUMPTION, stated where it is made and listed in the docs: the exact odds
where the article gives only a class's tier, the request mix beyond the 60%, how difficulty varies
within a class, prompt lengths and wording, SLAs, latencies and output lengths. The data is shaped
neither for nor against any router: one seeded world, every candidate's outcome for every request,
and the article's tree, each single model and the learned router are all judged on those rows.

Per-request difficulty ``d`` is uniform on [0, 1] within each class; the prompt shows it with
noise (longer, more nested, more fields, more documents, more languages, distractors). Every
tier's log-odds of a correct answer fall by the same :data:`SLOPE` from ``d`` = 0 to 1, so the tiers
never cross and, for classes every tier mostly gets right, the gap between them is small on easy
requests and grows on hard ones. Each (class, tier) intercept is solved (closed form + bisection)
so that the mean over ``d`` equals the table exactly.

Never quote these figures as measurements of real models.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from statistics import NormalDist
from typing import Any

from tierroute._params import check_int, check_number
from tierroute.models.catalogue import builtin_catalogue
from tierroute.pipelines.data.synthetic_prompts import LATENCY_SENSITIVE_SHARE, MAKERS

__all__ = [
    "SyntheticConfig",
    "TaskClass",
    "TASKS",
    "SLOPE",
    "INTERCEPTS",
    "OUTCOME_CORRELATION",
    "VISIBLE_NOISE",
    "LATENCY_SENSITIVE_SHARE",
    "outcome_probability",
    "mean_outcome_probability",
    "generate",
    "write_jsonl",
    "production_log",
]


@dataclass(frozen=True)
class TaskClass:
    """One of the article's task classes.

    ``accuracy``: mean P(correct) of the tier1, tier2 and tier3 default models (``claude-3-haiku``,
    ``gpt-4o-mini``, ``gpt-4o``) over the class's requests. ``article_tier``: where the article puts
    the class. ``share``: its share of requests.
    """

    name: str
    article_tier: str
    share: float
    accuracy: tuple[float, float, float]


# Odds, line by line against the article (A = the article says it; ASSUMPTION = ours):
#  extract   tier1 0.91, tier3 0.94: A "Quantized Llama-3 70B (Q4_K_M): F1 = 0.91" / "GPT-4o: F1 = 0.94"
#            (F1 read as P(correct); the Haiku default taken to score as the benchmarked Llama: the
#            article puts both in one tier, "Haiku / quantized Llama"). tier2 0.925: ASSUMPTION (between).
#  classify  gap under 3 points: A "Neither needs chain-of-thought reasoning. Neither benefits from a
#            200B+ parameter model pondering an order number." Values 0.93/0.94/0.95: ASSUMPTION.
#  tool_call gap under 3 points: A "frontier model only for planning, Haiku for tool execution [...]
#            Accuracy delta was under 3%." Values 0.93/0.94/0.955: ASSUMPTION.
#  summarize, convert, translate: A tier2 ("Tier 2 — Summarization & Transformation") and the rule
#            "Measure F1 delta — if < 5 points, route to Tier 1": tier1 >= 5 points below the frontier.
#            Values (tier1 12 points and tier2 3 points below the frontier): ASSUMPTION.
#  reason, code, synthesize: A tier3 ("Tier 3 — Multi-step Reasoning", "Models: Frontier only"): tiers 1
#            and 2 >= 5 points below. Values (tier2 15-20 and tier1 35-40 points below): ASSUMPTION.
# Shares: classify + extract = 0.60, A "Together they account for ~60% of inference calls." The
# 32/28 split and every other share: ASSUMPTION (a customer-support system, the article's example).
TASKS: dict[str, TaskClass] = {
    t.name: t
    for t in (
        TaskClass("classify", "tier1", 0.32, (0.93, 0.94, 0.95)),
        TaskClass("extract", "tier1", 0.28, (0.91, 0.925, 0.94)),
        TaskClass("tool_call", "tier1", 0.08, (0.93, 0.94, 0.955)),
        TaskClass("summarize", "tier2", 0.08, (0.80, 0.89, 0.92)),
        TaskClass("convert", "tier2", 0.06, (0.83, 0.92, 0.95)),
        TaskClass("translate", "tier2", 0.04, (0.81, 0.90, 0.93)),
        TaskClass("reason", "tier3", 0.06, (0.50, 0.70, 0.88)),
        TaskClass("code", "tier3", 0.04, (0.42, 0.62, 0.82)),
        TaskClass("synthesize", "tier3", 0.04, (0.50, 0.68, 0.86)),
    )
}

#: ASSUMPTION: how far every tier's log-odds of a correct answer fall from the easiest (d = 0) to the
#: hardest (d = 1) request of a class. One slope for all tiers: the tiers' odds curves are parallel in
#: log-odds, so they never cross, and the gap in P(correct) is small on easy requests where every
#: tier is near-certain ("Neither benefits from a 200B+ parameter model pondering an order number")
#: and grows on harder ones. Each (class, tier) intercept is solved so the class mean equals the table.
SLOPE = 3.0
#: ASSUMPTION: correlation (Gaussian copula) of the three tiers' outcomes on one request beyond what
#: ``d`` explains: a request that trips one model tends to trip the others.
OUTCOME_CORRELATION = 0.5
#: ASSUMPTION: the prompt shows the difficulty with this much noise (SD on the [0, 1] scale); the
#: rest of the difficulty is hidden from every router.
VISIBLE_NOISE = 0.15


def _softplus(x: float) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


def _mean_sigmoid(intercept: float, slope: float) -> float:
    """Mean of sigmoid(intercept - slope d) over d ~ U(0, 1), in closed form."""
    if slope < 1e-12:
        return 1.0 / (1.0 + math.exp(-intercept))
    return (_softplus(intercept) - _softplus(intercept - slope)) / slope


def _solve_intercept(target: float, slope: float) -> float:
    lo, hi = -30.0, 30.0
    for _ in range(200):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if _mean_sigmoid(mid, slope) < target else (lo, mid)
    return (lo + hi) / 2


#: per class, each tier's log-odds on the easiest request (d = 0)
INTERCEPTS: dict[str, tuple[float, float, float]] = {
    name: tuple(_solve_intercept(p, SLOPE) for p in task.accuracy)  # type: ignore[misc]
    for name, task in TASKS.items()
}


def outcome_probability(task: str, tier_index: int, difficulty: float) -> float:
    """P(correct) of the tier's default model on a request of ``task`` with hidden difficulty in [0, 1]."""
    x = INTERCEPTS[task][tier_index] - SLOPE * difficulty
    return 1.0 / (1.0 + math.exp(-x))


def mean_outcome_probability(task: str, tier_index: int) -> float:
    """The class mean of :func:`outcome_probability` over d ~ U(0, 1) (``TASKS[task].accuracy[tier_index]``)."""
    return _mean_sigmoid(INTERCEPTS[task][tier_index], SLOPE)


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


# -- request text (ASSUMPTIONS throughout: a customer-support company's traffic) ----------------


def generate(config: SyntheticConfig) -> Iterator[dict[str, Any]]:
    """Canonical outcome rows (request x model, the three tier defaults in tier order), seeded."""
    from tierroute.features.tokens import BpeTokenCounter

    rng = random.Random(config.seed)
    catalogue = builtin_catalogue("article")
    models = [catalogue.default_model(t) for t in catalogue.tiers]
    candidates = [catalogue.candidate(m) for m in models]
    counter = BpeTokenCounter()
    normal = NormalDist()
    names = list(TASKS)
    weights = [TASKS[t].share for t in names]
    shared, own = math.sqrt(OUTCOME_CORRELATION), math.sqrt(1 - OUTCOME_CORRELATION)
    for n in range(config.n_requests):
        task = rng.choices(names, weights)[0]
        difficulty = rng.random()
        visible = min(1.0, max(0.0, difficulty + rng.gauss(0.0, VISIBLE_NOISE)))
        prompt, schema, sla, out_tokens = MAKERS[task](rng, visible)
        tokens = counter.count(prompt)
        billed = tokens + (0 if schema is None else counter.count(json.dumps(schema)))  # a schema is sent too
        z = rng.gauss(0.0, 1.0)
        for tier_index, (model, candidate) in enumerate(zip(models, candidates)):
            u = normal.cdf(shared * z + own * rng.gauss(0.0, 1.0))
            correct = u < outcome_probability(task, tier_index, difficulty)
            out = max(1, round(out_tokens * rng.uniform(0.8, 1.25)))
            p95 = candidate.p95_latency_ms or 1000.0
            # ASSUMPTION: the catalogue's p95 is for its 600-in/100-out request; time grows mostly with output
            scale = 0.4 + 0.6 * (0.2 * billed / 600 + 0.8 * out / 100)
            yield {
                "request_id": f"syn-{config.seed}-{n:06d}",
                "prompt": prompt,
                "output_schema": schema,
                "latency_sla_ms": sla,
                "task": task,
                "model": model,
                "quality": 1.0 if correct else round(rng.uniform(0.0, 0.45), 3),
                "correct": correct,
                "cost_usd": round(candidate.cost(billed, out), 8),
                "latency_ms": round(p95 * rng.uniform(0.3, 1.0) * scale, 1),
                "timestamp": 1_767_225_600 + 60 * n,
                "chosen": None,
                "propensity": None,
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

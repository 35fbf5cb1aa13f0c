"""Writes examples/outcomes.jsonl: a small, SYNTHETIC outcome log for trying tierroute.

A customer-support workload of five call types over the article's three default models (one per
tier), seeded, with a handful of deliberately broken rows so the quarantine shows up. Its numbers
illustrate the tool; they are not measurements of any model.

    python examples/make_example_log.py            # rewrites examples/outcomes.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from tierroute.features.tokens import BpeTokenCounter
from tierroute.models.catalogue import builtin_catalogue

SEED = 7
PER_TASK = {"classify_ticket": 30, "extract_order": 26, "summarize_thread": 14, "translate_reply": 10, "debug_code": 8}
# P(correct) per task for tier1 / tier2 / tier3 defaults (illustrative).
P_CORRECT = {
    "classify_ticket": (0.93, 0.95, 0.96),
    "extract_order": (0.90, 0.92, 0.94),
    "summarize_thread": (0.62, 0.84, 0.90),
    "translate_reply": (0.70, 0.88, 0.91),
    "debug_code": (0.35, 0.55, 0.86),
}
PRODUCTS = ["router", "headset", "monitor", "keyboard", "webcam", "dock"]
ISSUES = ["was charged twice", "never arrived", "stopped working after a week", "arrived damaged", "has the wrong colour"]


def prompt_for(task: str, rng: random.Random) -> tuple[str, object, float | None]:
    order = f"ORD-{rng.randint(10000, 99999)}"
    product, issue = rng.choice(PRODUCTS), rng.choice(ISSUES)
    if task == "classify_ticket":
        text = f"Customer message: 'My {product} {issue}. Order {order}.' Classify the ticket."
        return text, ["billing", "technical", "shipping", "other"], rng.choice([150.0, 300.0, None])
    if task == "extract_order":
        text = (
            f"From this email, pull the order id and customer id.\n\n"
            f"Hi, I'm customer C-{rng.randint(100, 999)}. My {product} (order {order}) {issue}."
        )
        schema = {"order_id": "string", "customer_id": "string", "issue_type": "billing | technical | shipping | other"}
        return text, schema, rng.choice([300.0, None])
    if task == "summarize_thread":
        turns = "\n".join(
            f"{'Agent' if i % 2 else 'Customer'}: about the {product}, it {issue}; ticket {order}." for i in range(rng.randint(6, 30))
        )
        return f"Summarize this support thread in three sentences.\n\n{turns}", None, None
    if task == "translate_reply":
        return f"Translate into German: 'We are sorry your {product} {issue}. A replacement for order {order} ships today.'", None, 800.0
    code = "\n".join(f"    total += item.price * item.qty  # line {i}" for i in range(rng.randint(20, 120)))
    text = (
        f"Debug this function step by step and explain why the totals are wrong.\n"
        f"```python\ndef total(items):\n    total = 0\n{code}\n    return total\n```"
    )
    return text, None, rng.choice([None, 150.0])


def main() -> None:
    rng = random.Random(SEED)
    catalogue = builtin_catalogue("article")
    models = [catalogue.default_model(t) for t in ("tier1", "tier2", "tier3")]
    counter = BpeTokenCounter()
    rows = []
    n = 0
    for task, count in PER_TASK.items():
        for _ in range(count):
            n += 1
            prompt, schema, sla = prompt_for(task, rng)
            tokens = counter.count(prompt)
            for tier_index, model in enumerate(models):
                candidate = catalogue.candidate(model)
                correct = rng.random() < P_CORRECT[task][tier_index]
                out_tokens = 20 if schema else rng.randint(80, 400)
                rows.append(
                    {
                        "request_id": f"req-{n:04d}",
                        "prompt": prompt,
                        "output_schema": schema,
                        "latency_sla_ms": sla,
                        "task": task,
                        "model": model,
                        "quality": 1.0 if correct else round(rng.uniform(0.0, 0.4), 3),
                        "correct": correct,
                        "cost_usd": round(candidate.cost(tokens, out_tokens), 6),
                        "latency_ms": round(rng.uniform(0.5, 1.0) * (candidate.p95_latency_ms or 1000), 1),
                        "timestamp": f"2026-11-{1 + n % 27:02d}T{n % 24:02d}:15:00Z",
                        "chosen": None,
                        "propensity": None,
                    }
                )
    # Deliberately broken rows: each must be quarantined with its reason, never dropped silently.
    rows.append({**rows[0], "request_id": "bad-1", "cost_usd": -0.01})
    rows.append({**rows[1], "request_id": "bad-2", "quality": 1.7})
    rows.append({k: v for k, v in rows[2].items() if k != "model"} | {"request_id": "bad-3"})
    rows.append(dict(rows[3]))  # duplicate request x model
    path = Path(__file__).with_name("outcomes.jsonl")
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    print(f"wrote {len(rows)} rows ({n} requests x {len(models)} models + 4 broken) to {path}")


if __name__ == "__main__":
    main()

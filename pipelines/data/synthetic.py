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
TASKS: dict[str, TaskClass] = {t.name: t for t in (
    TaskClass("classify", "tier1", 0.32, (0.93, 0.94, 0.95)),
    TaskClass("extract", "tier1", 0.28, (0.91, 0.925, 0.94)),
    TaskClass("tool_call", "tier1", 0.08, (0.93, 0.94, 0.955)),
    TaskClass("summarize", "tier2", 0.08, (0.80, 0.89, 0.92)),
    TaskClass("convert", "tier2", 0.06, (0.83, 0.92, 0.95)),
    TaskClass("translate", "tier2", 0.04, (0.81, 0.90, 0.93)),
    TaskClass("reason", "tier3", 0.06, (0.50, 0.70, 0.88)),
    TaskClass("code", "tier3", 0.04, (0.42, 0.62, 0.82)),
    TaskClass("synthesize", "tier3", 0.04, (0.50, 0.68, 0.86)),
)}

#: ASSUMPTION: how far every tier's log-odds of a correct answer fall from the easiest (d = 0) to the
#: hardest (d = 1) request of a class. One slope for all tiers: the tiers' odds curves are parallel in
#: log-odds, so they never cross, and the gap in P(correct) is small on easy requests where every
#: tier is near-certain ("Neither benefits from a 200B+ parameter model pondering an order number")
#: and grows on harder ones. Each (class, tier) intercept is solved so the class mean equals the table.
SLOPE = 3.0
#: ASSUMPTION: correlation (Gaussian copula) of the three tiers' outcomes on one request beyond what
#: ``d`` explains: a request that trips one model tends to trip the others.
OUTCOME_CORRELATION = 0.5
#: ASSUMPTION: the share of tier-1 requests (classify, extract, tool_call) with an SLA under 200 ms.
LATENCY_SENSITIVE_SHARE = 0.1
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
    name: tuple(_solve_intercept(p, SLOPE) for p in task.accuracy) for name, task in TASKS.items()  # type: ignore[misc]
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

_PRODUCTS = ["router", "headset", "monitor", "laptop", "smart plug", "webcam", "dock", "keyboard"]
_NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jun"]
_LANGS = ["German", "French", "Japanese", "Spanish", "Portuguese"]
_SAY = {
    "billing": ["I was charged twice for my {p}.", "The invoice shows the wrong amount for order {o}.",
                "My card was billed again after I cancelled the {p} subscription.",
                "Why did my renewal cost more this month?", "I need a receipt for order {o} for my expenses.",
                "The refund for order {o} never reached my account."],
    "technical": ["The {p} keeps dropping the connection every few minutes.",
                  "After the firmware update the {p} will not turn on.", "The app crashes when I open the settings page.",
                  "I get error 0x{h} when I sign in.", "The {p} has been very slow since yesterday.",
                  "The {p} does not pair with my phone any more."],
    "shipping": ["Order {o} still has not arrived.", "The tracking page for {o} has not moved in five days.",
                 "The parcel was delivered to the wrong address.", "The box arrived damaged and the {p} is scratched.",
                 "Can you send order {o} to my office instead?"],
    "other": ["Do you have a store in Lyon?", "I would like to leave feedback about your agent.",
              "Can I change the name on my account?", "What are your opening hours on Sunday?"],
}
_CHATTER = ["Hi,", "Thanks in advance.", "This is the third time I am writing about this.",
            "I have been a customer for years.", "Please help.", "Regards, {n}.", "Sorry for the long message.",
            "My colleague had the same problem last week.", "I already tried turning it off and on again.",
            "Your chat bot could not help me."]
_AGENT = ["Thanks for reaching out, {n}.", "I have checked order {o} in our system.",
          "The replacement {p} ships within two working days.", "I have issued a refund of {a} EUR.",
          "Could you send a photo of the serial number on the {p}?", "I am sorry for the trouble with your {p}.",
          "Your ticket has been passed to our technical team.", "The courier confirms delivery on Tuesday.",
          "Please restart the {p} while holding the reset button for ten seconds.",
          "Your subscription renews on the first of each month."]
_REPORT = ["Returns of the {p} rose {a}% this quarter, mostly from one batch.",
           "Support tickets about billing fell after the new invoice layout.",
           "Customers in the north region wait {a} hours longer for a first reply.",
           "The {p} firmware 2.{a} fixed the pairing fault for most users.",
           "Shipping costs grew faster than order volume in the last two months.",
           "Agents resolve {a}% of technical tickets on first contact.",
           "The survey ranks delivery speed above price for repeat buyers.",
           "A competitor cut the price of its {p} by {a} EUR.",
           "Refund requests cluster in the week after each promotion.",
           "Night-shift staffing covers only half of the ticket volume."]
_TOOLS = {
    "get_order": {"order_id": {"type": "string"}},
    "refund_order": {"order_id": {"type": "string"}, "amount": {"type": "number"},
                     "reason": {"type": "string", "enum": ["damaged", "late", "duplicate", "other"]}},
    "update_address": {"order_id": {"type": "string"}, "address": {"type": "string"}},
    "create_ticket": {"summary": {"type": "string"},
                      "priority": {"type": "string", "enum": ["low", "normal", "high"]}},
    "search_kb": {"query": {"type": "string"}},
    "check_inventory": {"sku": {"type": "string"}, "warehouse": {"type": "string"}},
    "cancel_subscription": {"customer_id": {"type": "string"}, "at_period_end": {"type": "boolean"}},
    "escalate_to_human": {"reason": {"type": "string"}},
    "get_invoice": {"invoice_id": {"type": "string"}},
    "schedule_callback": {"customer_id": {"type": "string"}, "time": {"type": "string"}},
    "track_parcel": {"tracking_number": {"type": "string"}},
    "apply_coupon": {"order_id": {"type": "string"}, "code": {"type": "string"}},
}
_CONSTRAINTS = ["no warehouse may exceed 120% of its current volume", "the south region must stay under 5% late",
                "vouchers are capped at 4,000 EUR a month", "Warehouse A closes on Sundays"]
_CODE = ["total += item.price * item.qty", "if item.discount:", "    total -= item.discount",
         "rows = [r for r in rows if r.get('status') == 'open']", "cache[key] = value", "key = (user.id, day)",
         "for i in range(len(items) - 1):", "    pairs.append((items[i], items[i + 1]))",
         "result = sorted(result, key=lambda r: r['date'])", "if not orders:", "    return []",
         "amount = round(amount * rate, 2)", "seen.add(order.id)", "logger.info('processed %s', order.id)"]


def _fill(template: str, rng: random.Random) -> str:
    return template.format(p=rng.choice(_PRODUCTS), o=f"#{rng.randint(10000, 99999)}", n=rng.choice(_NAMES),
                           h=f"{rng.randint(0, 0xFFFF):04X}", a=rng.randint(2, 40))


def _message(rng: random.Random, v: float, topics: list[str]) -> str:
    """A customer message: one topic and a few sentences when easy; more topics, more chatter and
    more sentences when hard."""
    parts = [_fill(rng.choice(_SAY[t]), rng) for t in topics for _ in range(1 + int(v * 3 * rng.random()))]
    parts += [_fill(rng.choice(_CHATTER), rng) for _ in range(1 + int(v * 8 * rng.random()))]
    rng.shuffle(parts)
    return " ".join(parts)


def _topics(rng: random.Random, v: float) -> list[str]:
    n = 1 + (v > 0.55) + (v > 0.8)
    return rng.sample(list(_SAY), n)


# Instructions sent with each request (a production prompt carries them: they count in the tree's
# token count and in the bill). ASSUMPTION, sized so each class's mean cost on its article tier lands
# near the article's per-request figures (see docs/synthetic-workload.md).
_TRIAGE = ("You are the triage step of a customer-support pipeline. Read the customer's message and pick the "
           "queue that should handle it. Labels: billing (charges, invoices, refunds, renewals, receipts); technical "
           "(devices, apps, errors, firmware, pairing); shipping (delivery, tracking, damaged parcels, addresses); "
           "other (anything else). When a message raises several issues, pick the one the customer most wants "
           "solved. Answer with the label only.")
_EXAMPLES = [f"Example: \"{s.format(p='router', o='#48213', h='1F3A', n='Ana', a=12)}\" -> {t}"
             for t, says in _SAY.items() for s in says[:2]]
_EXTRACT = ("You extract fields for the ticketing system. Return JSON that matches the schema exactly; use null "
            "for a field the text does not state. Order IDs look like #12345 and customer IDs like C-1234. Never "
            "guess an ID: copy it from the text.")


def _sla(rng: random.Random, others: list[float | None]) -> float | None:
    """ASSUMPTION: one tier-1 request in ten (real-time triage, extraction and agent steps) states an
    SLA under the article's 200 ms; the rest a looser budget or none. Other classes never do."""
    return 150.0 if rng.random() < LATENCY_SENSITIVE_SHARE else rng.choice(others)


def _classify(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    msg = _message(rng, v, _topics(rng, v))
    shots = "\n".join(rng.sample(_EXAMPLES, rng.randint(0, 6)))
    ask = rng.choice(["Is this billing or technical? Ticket: {m}", "Classify this support ticket.\n{m}",
                      "Which category does this message belong to?\n\"{m}\"",
                      "Customer wrote: '{m}'. Which category is this?"]).format(m=msg)
    labels = ["billing", "technical", "shipping", "other"]
    if v > 0.6 and rng.random() < 0.5:  # a finer label set is harder
        labels = ["billing", "refund", "technical", "account", "shipping", "returns", "other"]
    prompt = "\n".join(x for x in (_TRIAGE, shots, ask) if x)
    return prompt, labels, _sla(rng, [1000.0, 3000.0, None]), rng.randint(2, 8)


def _extract(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    sla = _sla(rng, [1000.0, 2000.0, None])
    if rng.random() < 0.6:  # support messages, with the article's example schema
        if v < 0.2:  # one-line calls, the article's "pull the order ID"
            order = f"#{rng.randint(10000, 99999)}"
            prompt = rng.choice([f"Pull the order ID: {order}", f"Pull the order id from: my {rng.choice(_PRODUCTS)} "
                                 f"order {order} is late", f"Extract the order ID. Message: where is order {order}?"])
            return prompt, {"order_id": "string"}, sla, rng.randint(8, 15)
        schema: Any = {"order_id": "string", "customer_id": "string",
                       "issue_type": "billing | technical | shipping | other"}
        msg = _message(rng, v, _topics(rng, v))
        if v > 0.5:  # distractors: other order numbers in the message
            msg += (f" My previous order #{rng.randint(10000, 99999)} was fine."
                    f" Customer number C-{rng.randint(1000, 9999)}.")
        if v > 0.7:  # the whole thread pasted in
            thread = [f"{'Agent' if i % 2 else 'Customer'}: {_fill(rng.choice(_AGENT if i % 2 else _CHATTER), rng)}"
                      for i in range(rng.randint(4, 24))]
            msg = "\n".join([*thread, f"Customer: {msg}"])
        return f"{_EXTRACT}\nExtract the fields from this support message.\n{msg}", schema, sla, rng.randint(60, 140)
    # financial documents (the article's benchmark: "extraction task from financial documents")
    lines = 4 + int(v * 36 * rng.uniform(0.6, 1.3))
    body = "\n".join(f"{rng.choice(['Item', 'Fee', 'Service', 'Adjustment'])} {i}: {rng.choice(_PRODUCTS)} "
                     f"x{rng.randint(1, 9)}  {rng.randint(5, 900)}.{rng.randint(0, 99):02d} EUR" for i in range(lines))
    head = (f"INVOICE INV-{rng.randint(100000, 999999)}  Date 2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}\n"
            f"Vendor: {rng.choice(_NAMES)} Trading GmbH  Due in {rng.choice([14, 30, 60])} days\n"
            f"Bill to: {rng.choice(_NAMES)} {rng.choice(['Ltd', 'SA', 'BV'])}, {rng.randint(1, 200)} Harbour Road\n"
            f"VAT {rng.choice([7, 19, 20, 21])}%  IBAN DE{rng.randint(10, 99)} {rng.randint(1000, 9999)} "
            f"{rng.randint(1000, 9999)}")
    fields = {"invoice_number": "string", "date": "string", "total": "number", "currency": "string",
              "vendor": "string", "due_date": "string", "vat": "number", "iban": "string"}
    n_fields = 2 + int(v * 6)
    schema = dict(list(fields.items())[:n_fields])
    if v > 0.6:  # nested: line items as an array of objects
        schema = {"type": "object", "required": ["invoice", "items"], "properties": {
            "invoice": {"type": "object", "properties": {k: {"type": t} for k, t in schema.items()}},
            "items": {"type": "array", "items": {"type": "object", "properties": {
                "description": {"type": "string"}, "qty": {"type": "integer"}, "amount": {"type": "number"}}}}}}
    out = 20 + 10 * n_fields + (12 * lines if v > 0.6 else 0)  # nested: every line item comes back
    return f"{_EXTRACT}\nExtract the fields from this financial document.\n{head}\n{body}", schema, sla, out


def _tool_call(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    names = rng.sample(list(_TOOLS), min(len(_TOOLS), 2 + int(v * 10)))
    tools = [{"type": "function",
              "function": {"name": n, "parameters": {"type": "object", "properties": _TOOLS[n]}}} for n in names]
    history = [f"Assistant: {_fill(rng.choice(_AGENT), rng)}" if i % 2
               else f"User: {_fill(rng.choice(_SAY[rng.choice(list(_SAY))]), rng)}"
               for i in range(2 + int(v * 14 * rng.uniform(0.5, 1.3)))]
    if v > 0.4:
        status = rng.choice(["shipped", "held", "refunded"])
        history.append(f'Tool result: {{"order": "#{rng.randint(10000, 99999)}", "status": "{status}"}}')
    last = _message(rng, v, _topics(rng, v))
    prompt = ("Step of a support agent loop. The planner has decided the next action is a tool call. Call the one tool "
              "that handles the user's last message, with arguments copied from the conversation.\n") + "\n".join(
        [*history, f"User: {last}"])
    return prompt, tools, _sla(rng, [500.0, 2000.0, None]), rng.randint(30, 90)


def _summarize(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    turns = 8 + int(v * 70 * rng.uniform(0.6, 1.3))
    thread = "\n".join(f"Agent: {_fill(rng.choice(_AGENT), rng)}" if i % 2
                       else f"Customer: {_message(rng, v / 2, [rng.choice(list(_SAY))])}" for i in range(turns))
    ask = rng.choice(["Summarize this thread in three sentences.",
                      "Write a short summary of this support conversation for the next agent."])
    return f"{ask}\n{thread}", None, rng.choice([None, 2000.0, 5000.0]), rng.randint(80, 220)


def _translate(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    text = " ".join(_fill(rng.choice(_AGENT), rng) for _ in range(3 + int(v * 18 * rng.uniform(0.6, 1.3))))
    if v > 0.6:
        text += " " + rng.choice(["It is not rocket science, promise.", "We will bend over backwards to fix it.",
                                  "That ship has sailed, I am afraid.", "Hang tight, we are on it."])
    langs = rng.sample(_LANGS, 1 + (v > 0.55) + (v > 0.85))
    prompt = (f"Translate this support reply into {' and '.join(langs)}. Keep product names, order numbers and amounts "
              f"as they are, keep the tone friendly, and return one block per language.\n'{text}'")
    return prompt, None, rng.choice([None, 2000.0, 3000.0]), int(len(text.split()) * 1.6 * len(langs))


def _convert(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    rows, cols = 3 + int(v * 30 * rng.uniform(0.6, 1.3)), 3 + int(v * 5)
    header = ["order_id", "customer", "product", "qty", "amount", "status", "note", "region"][:cols]

    def cell(name: str) -> str:
        value = {"order_id": f"{rng.randint(10000, 99999)}", "customer": rng.choice(_NAMES),
                 "product": rng.choice(_PRODUCTS), "qty": str(rng.randint(1, 9)),
                 "amount": f"{rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
                 "status": rng.choice(["open", "shipped", "refunded"]), "region": rng.choice(["north", "south", "EU"]),
                 "note": rng.choice(["", "gift", "call first"])}[name]
        if v > 0.6 and rng.random() < 0.2:  # quoted fields with commas and quotes
            value = f'"{value}, see ""{rng.choice(_NAMES)}"""'
        return value

    csv = "\n".join([",".join(header)] + [",".join(cell(h) for h in header) for _ in range(rows)])
    nested = v > 0.75
    ask = ("Convert this CSV export to JSON: one object per customer with their orders nested, amounts as numbers."
           if nested else "Convert this CSV export to JSON lines, one object per row, amounts as numbers.")
    schema = None
    if rng.random() < 0.25:  # ASSUMPTION: a quarter of conversions send a target JSON Schema
        schema = {"type": "array", "items": {"type": "object", "properties": {h: {"type": "string"} for h in header}}}
    return f"{ask}\n{csv}", schema, rng.choice([None, 2000.0]), int(rows * cols * 3.5)


def _reason(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    facts = 2 + int(v * 8 * rng.uniform(0.6, 1.3))
    lines = [f"- Warehouse {chr(65 + i)} ships {rng.randint(50, 900)} parcels a day at {rng.randint(2, 9)}."
             f"{rng.randint(0, 99):02d} EUR each; {rng.randint(1, 15)}% arrive late and each late parcel costs a "
             f"{rng.randint(3, 20)} EUR voucher." for i in range(facts)]
    lines += [f"- Constraint: {rng.choice(_CONSTRAINTS)}." for _ in range(int(v * 4 * rng.random()))]
    if v > 0.75:  # a pasted table of daily volumes
        lines += [f"  day {d}: " + ", ".join(str(rng.randint(40, 950)) for _ in range(facts))
                  for d in range(rng.randint(5, 25))]
    # ASSUMPTION: harder problems more often carry the article's reasoning keywords
    if rng.random() < 0.4 + 0.4 * v:
        ask = rng.choice(["Analyze the options step by step and recommend one.",
                          "Compare the warehouses and explain why one is cheaper overall.",
                          "Evaluate which warehouse should take the extra volume.",
                          "Think step by step: which option costs least?"])
    else:
        ask = rng.choice(["Work out which warehouse should take the extra volume.",
                          "Which option costs least per delivered parcel?", "Determine the cheapest plan for next month."])
    return (f"We need to move 600 extra parcels a day from next month. {ask} Give the answer first, then the working.\n"
            + "\n".join(lines)), None, rng.choice([None, 5000.0, 10000.0]), rng.randint(100, 250)


def _code(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    n = 8 + int(v * 55 * rng.uniform(0.6, 1.3))
    body = "\n".join("    " + rng.choice(_CODE) for _ in range(n))
    code = f"```python\ndef process(orders, rate, cache):\n    total = 0\n{body}\n    return total\n```"
    if v > 0.4:
        error = rng.choice(["KeyError: (17, 3)", "TypeError: unsupported operand", "IndexError: list index out of range"])
        code += (f"\nTraceback (most recent call last):\n  File \"billing.py\", line {rng.randint(10, 200)}, "
                 f"in process\n{error}")
    ask = rng.choice(["Debug this function; the nightly report is wrong.", "Fix this function.",
                      "This code fails in production; find and fix the bug.", "Rewrite this function so the tests pass."])
    prompt = f"{ask} Reply with the corrected lines only and one sentence on the cause.\n{code}"
    return prompt, None, rng.choice([None, 10000.0]), rng.randint(80, 220)


def _synthesize(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    docs = 2 + int(v * 4 * rng.uniform(0.7, 1.2))
    text = "\n\n".join(f"Document {i + 1}:\n" + " ".join(
        _fill(rng.choice(_REPORT), rng) for _ in range(4 + int(v * 10 * rng.uniform(0.6, 1.3)))) for i in range(docs))
    ask = rng.choice(["Synthesize these reports into one brief for the operations lead.",
                      "Compare the documents and write one recommendation.",
                      "Using all the documents, write one brief."])
    return f"{ask}\n{text}", None, None, rng.randint(80, 200)


_MAKERS = {"classify": _classify, "extract": _extract, "tool_call": _tool_call, "summarize": _summarize,
           "convert": _convert, "translate": _translate, "reason": _reason, "code": _code, "synthesize": _synthesize}


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
        prompt, schema, sla, out_tokens = _MAKERS[task](rng, visible)
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
                "request_id": f"syn-{config.seed}-{n:06d}", "prompt": prompt, "output_schema": schema,
                "latency_sla_ms": sla, "task": task, "model": model,
                "quality": 1.0 if correct else round(rng.uniform(0.0, 0.45), 3), "correct": correct,
                "cost_usd": round(candidate.cost(billed, out), 8),
                "latency_ms": round(p95 * rng.uniform(0.3, 1.0) * scale, 1),
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

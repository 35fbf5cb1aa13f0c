"""The synthetic workload's prompts: per task class, a seeded request whose wording shows its
difficulty with noise (longer, more nested, more fields, more documents, more languages,
distractors), with its output schema, latency SLA and expected output length. The odds of a correct
answer, the request mix and the rows themselves are :mod:`tierroute.pipelines.data.synthetic`'s.

Every wording, length and SLA here is an ASSUMPTION (listed in ``docs/synthetic-workload.md``).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from tierroute.pipelines.data.synthetic_phrases import AGENT, CHATTER, CODE, CONSTRAINTS, LANGS, NAMES, PRODUCTS, REPORT, SAY, TOOLS

__all__ = ["MAKERS", "LATENCY_SENSITIVE_SHARE"]

#: ASSUMPTION: the share of tier-1 requests (classify, extract, tool_call) with an SLA under 200 ms.
LATENCY_SENSITIVE_SHARE = 0.1


def _fill(template: str, rng: random.Random) -> str:
    return template.format(
        p=rng.choice(PRODUCTS),
        o=f"#{rng.randint(10000, 99999)}",
        n=rng.choice(NAMES),
        h=f"{rng.randint(0, 0xFFFF):04X}",
        a=rng.randint(2, 40),
    )


def _message(rng: random.Random, v: float, topics: list[str]) -> str:
    """A customer message: one topic and a few sentences when easy; more topics, more chatter and
    more sentences when hard."""
    parts = [_fill(rng.choice(SAY[t]), rng) for t in topics for _ in range(1 + int(v * 3 * rng.random()))]
    parts += [_fill(rng.choice(CHATTER), rng) for _ in range(1 + int(v * 8 * rng.random()))]
    rng.shuffle(parts)
    return " ".join(parts)


def _topics(rng: random.Random, v: float) -> list[str]:
    n = 1 + (v > 0.55) + (v > 0.8)
    return rng.sample(list(SAY), n)


# Instructions sent with each request (a production prompt carries them: they count in the tree's
# token count and in the bill). ASSUMPTION, sized so each class's mean cost on its article tier lands
# near the article's per-request figures (see docs/synthetic-workload.md).
_TRIAGE = (
    "You are the triage step of a customer-support pipeline. Read the customer's message and pick the "
    "queue that should handle it. Labels: billing (charges, invoices, refunds, renewals, receipts); technical "
    "(devices, apps, errors, firmware, pairing); shipping (delivery, tracking, damaged parcels, addresses); "
    "other (anything else). When a message raises several issues, pick the one the customer most wants "
    "solved. Answer with the label only."
)
_EXAMPLES = [f'Example: "{s.format(p="router", o="#48213", h="1F3A", n="Ana", a=12)}" -> {t}' for t, says in SAY.items() for s in says[:2]]
_EXTRACT = (
    "You extract fields for the ticketing system. Return JSON that matches the schema exactly; use null "
    "for a field the text does not state. Order IDs look like #12345 and customer IDs like C-1234. Never "
    "guess an ID: copy it from the text."
)


def _sla(rng: random.Random, others: list[float | None]) -> float | None:
    """ASSUMPTION: one tier-1 request in ten (real-time triage, extraction and agent steps) states an
    SLA under the article's 200 ms; the rest a looser budget or none. Other classes never do."""
    return 150.0 if rng.random() < LATENCY_SENSITIVE_SHARE else rng.choice(others)


def _classify(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    msg = _message(rng, v, _topics(rng, v))
    shots = "\n".join(rng.sample(_EXAMPLES, rng.randint(0, 6)))
    ask = rng.choice(
        [
            "Is this billing or technical? Ticket: {m}",
            "Classify this support ticket.\n{m}",
            'Which category does this message belong to?\n"{m}"',
            "Customer wrote: '{m}'. Which category is this?",
        ]
    ).format(m=msg)
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
            prompt = rng.choice(
                [
                    f"Pull the order ID: {order}",
                    f"Pull the order id from: my {rng.choice(PRODUCTS)} order {order} is late",
                    f"Extract the order ID. Message: where is order {order}?",
                ]
            )
            return prompt, {"order_id": "string"}, sla, rng.randint(8, 15)
        schema: Any = {"order_id": "string", "customer_id": "string", "issue_type": "billing | technical | shipping | other"}
        msg = _message(rng, v, _topics(rng, v))
        if v > 0.5:  # distractors: other order numbers in the message
            msg += f" My previous order #{rng.randint(10000, 99999)} was fine. Customer number C-{rng.randint(1000, 9999)}."
        if v > 0.7:  # the whole thread pasted in
            thread = [
                f"{'Agent' if i % 2 else 'Customer'}: {_fill(rng.choice(AGENT if i % 2 else CHATTER), rng)}"
                for i in range(rng.randint(4, 24))
            ]
            msg = "\n".join([*thread, f"Customer: {msg}"])
        return f"{_EXTRACT}\nExtract the fields from this support message.\n{msg}", schema, sla, rng.randint(60, 140)
    # financial documents (the article's benchmark: "extraction task from financial documents")
    lines = 4 + int(v * 36 * rng.uniform(0.6, 1.3))
    body = "\n".join(
        f"{rng.choice(['Item', 'Fee', 'Service', 'Adjustment'])} {i}: {rng.choice(PRODUCTS)} "
        f"x{rng.randint(1, 9)}  {rng.randint(5, 900)}.{rng.randint(0, 99):02d} EUR"
        for i in range(lines)
    )
    head = (
        f"INVOICE INV-{rng.randint(100000, 999999)}  Date 2025-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}\n"
        f"Vendor: {rng.choice(NAMES)} Trading GmbH  Due in {rng.choice([14, 30, 60])} days\n"
        f"Bill to: {rng.choice(NAMES)} {rng.choice(['Ltd', 'SA', 'BV'])}, {rng.randint(1, 200)} Harbour Road\n"
        f"VAT {rng.choice([7, 19, 20, 21])}%  IBAN DE{rng.randint(10, 99)} {rng.randint(1000, 9999)} "
        f"{rng.randint(1000, 9999)}"
    )
    fields = {
        "invoice_number": "string",
        "date": "string",
        "total": "number",
        "currency": "string",
        "vendor": "string",
        "due_date": "string",
        "vat": "number",
        "iban": "string",
    }
    n_fields = 2 + int(v * 6)
    schema = dict(list(fields.items())[:n_fields])
    if v > 0.6:  # nested: line items as an array of objects
        schema = {
            "type": "object",
            "required": ["invoice", "items"],
            "properties": {
                "invoice": {"type": "object", "properties": {k: {"type": t} for k, t in schema.items()}},
                "items": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "properties": {"description": {"type": "string"}, "qty": {"type": "integer"}, "amount": {"type": "number"}},
                    },
                },
            },
        }
    out = 20 + 10 * n_fields + (12 * lines if v > 0.6 else 0)  # nested: every line item comes back
    return f"{_EXTRACT}\nExtract the fields from this financial document.\n{head}\n{body}", schema, sla, out


def _tool_call(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    names = rng.sample(list(TOOLS), min(len(TOOLS), 2 + int(v * 10)))
    tools = [{"type": "function", "function": {"name": n, "parameters": {"type": "object", "properties": TOOLS[n]}}} for n in names]
    history = [
        f"Assistant: {_fill(rng.choice(AGENT), rng)}" if i % 2 else f"User: {_fill(rng.choice(SAY[rng.choice(list(SAY))]), rng)}"
        for i in range(2 + int(v * 14 * rng.uniform(0.5, 1.3)))
    ]
    if v > 0.4:
        status = rng.choice(["shipped", "held", "refunded"])
        history.append(f'Tool result: {{"order": "#{rng.randint(10000, 99999)}", "status": "{status}"}}')
    last = _message(rng, v, _topics(rng, v))
    prompt = (
        "Step of a support agent loop. The planner has decided the next action is a tool call. Call the one tool "
        "that handles the user's last message, with arguments copied from the conversation.\n"
    ) + "\n".join([*history, f"User: {last}"])
    return prompt, tools, _sla(rng, [500.0, 2000.0, None]), rng.randint(30, 90)


def _summarize(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    turns = 8 + int(v * 70 * rng.uniform(0.6, 1.3))
    thread = "\n".join(
        f"Agent: {_fill(rng.choice(AGENT), rng)}" if i % 2 else f"Customer: {_message(rng, v / 2, [rng.choice(list(SAY))])}"
        for i in range(turns)
    )
    ask = rng.choice(
        ["Summarize this thread in three sentences.", "Write a short summary of this support conversation for the next agent."]
    )
    return f"{ask}\n{thread}", None, rng.choice([None, 2000.0, 5000.0]), rng.randint(80, 220)


def _translate(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    text = " ".join(_fill(rng.choice(AGENT), rng) for _ in range(3 + int(v * 18 * rng.uniform(0.6, 1.3))))
    if v > 0.6:
        text += " " + rng.choice(
            [
                "It is not rocket science, promise.",
                "We will bend over backwards to fix it.",
                "That ship has sailed, I am afraid.",
                "Hang tight, we are on it.",
            ]
        )
    langs = rng.sample(LANGS, 1 + (v > 0.55) + (v > 0.85))
    prompt = (
        f"Translate this support reply into {' and '.join(langs)}. Keep product names, order numbers and amounts "
        f"as they are, keep the tone friendly, and return one block per language.\n'{text}'"
    )
    return prompt, None, rng.choice([None, 2000.0, 3000.0]), int(len(text.split()) * 1.6 * len(langs))


def _convert(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    rows, cols = 3 + int(v * 30 * rng.uniform(0.6, 1.3)), 3 + int(v * 5)
    header = ["order_id", "customer", "product", "qty", "amount", "status", "note", "region"][:cols]

    def cell(name: str) -> str:
        value = {
            "order_id": f"{rng.randint(10000, 99999)}",
            "customer": rng.choice(NAMES),
            "product": rng.choice(PRODUCTS),
            "qty": str(rng.randint(1, 9)),
            "amount": f"{rng.randint(5, 900)}.{rng.randint(0, 99):02d}",
            "status": rng.choice(["open", "shipped", "refunded"]),
            "region": rng.choice(["north", "south", "EU"]),
            "note": rng.choice(["", "gift", "call first"]),
        }[name]
        if v > 0.6 and rng.random() < 0.2:  # quoted fields with commas and quotes
            value = f'"{value}, see ""{rng.choice(NAMES)}"""'
        return value

    csv = "\n".join([",".join(header)] + [",".join(cell(h) for h in header) for _ in range(rows)])
    nested = v > 0.75
    ask = (
        "Convert this CSV export to JSON: one object per customer with their orders nested, amounts as numbers."
        if nested
        else "Convert this CSV export to JSON lines, one object per row, amounts as numbers."
    )
    schema = None
    if rng.random() < 0.25:  # ASSUMPTION: a quarter of conversions send a target JSON Schema
        schema = {"type": "array", "items": {"type": "object", "properties": {h: {"type": "string"} for h in header}}}
    return f"{ask}\n{csv}", schema, rng.choice([None, 2000.0]), int(rows * cols * 3.5)


def _reason(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    facts = 2 + int(v * 8 * rng.uniform(0.6, 1.3))
    lines = [
        f"- Warehouse {chr(65 + i)} ships {rng.randint(50, 900)} parcels a day at {rng.randint(2, 9)}."
        f"{rng.randint(0, 99):02d} EUR each; {rng.randint(1, 15)}% arrive late and each late parcel costs a "
        f"{rng.randint(3, 20)} EUR voucher."
        for i in range(facts)
    ]
    lines += [f"- Constraint: {rng.choice(CONSTRAINTS)}." for _ in range(int(v * 4 * rng.random()))]
    if v > 0.75:  # a pasted table of daily volumes
        lines += [f"  day {d}: " + ", ".join(str(rng.randint(40, 950)) for _ in range(facts)) for d in range(rng.randint(5, 25))]
    # ASSUMPTION: harder problems more often carry the article's reasoning keywords
    if rng.random() < 0.4 + 0.4 * v:
        ask = rng.choice(
            [
                "Analyze the options step by step and recommend one.",
                "Compare the warehouses and explain why one is cheaper overall.",
                "Evaluate which warehouse should take the extra volume.",
                "Think step by step: which option costs least?",
            ]
        )
    else:
        ask = rng.choice(
            [
                "Work out which warehouse should take the extra volume.",
                "Which option costs least per delivered parcel?",
                "Determine the cheapest plan for next month.",
            ]
        )
    return (
        (f"We need to move 600 extra parcels a day from next month. {ask} Give the answer first, then the working.\n" + "\n".join(lines)),
        None,
        rng.choice([None, 5000.0, 10000.0]),
        rng.randint(100, 250),
    )


def _code(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    n = 8 + int(v * 55 * rng.uniform(0.6, 1.3))
    body = "\n".join("    " + rng.choice(CODE) for _ in range(n))
    code = f"```python\ndef process(orders, rate, cache):\n    total = 0\n{body}\n    return total\n```"
    if v > 0.4:
        error = rng.choice(["KeyError: (17, 3)", "TypeError: unsupported operand", "IndexError: list index out of range"])
        code += f'\nTraceback (most recent call last):\n  File "billing.py", line {rng.randint(10, 200)}, in process\n{error}'
    ask = rng.choice(
        [
            "Debug this function; the nightly report is wrong.",
            "Fix this function.",
            "This code fails in production; find and fix the bug.",
            "Rewrite this function so the tests pass.",
        ]
    )
    prompt = f"{ask} Reply with the corrected lines only and one sentence on the cause.\n{code}"
    return prompt, None, rng.choice([None, 10000.0]), rng.randint(80, 220)


def _synthesize(rng: random.Random, v: float) -> tuple[str, Any, float | None, int]:
    docs = 2 + int(v * 4 * rng.uniform(0.7, 1.2))
    text = "\n\n".join(
        f"Document {i + 1}:\n" + " ".join(_fill(rng.choice(REPORT), rng) for _ in range(4 + int(v * 10 * rng.uniform(0.6, 1.3))))
        for i in range(docs)
    )
    ask = rng.choice(
        [
            "Synthesize these reports into one brief for the operations lead.",
            "Compare the documents and write one recommendation.",
            "Using all the documents, write one brief.",
        ]
    )
    return f"{ask}\n{text}", None, None, rng.randint(80, 200)


#: per task class: (rng, visible difficulty) -> (prompt, output schema, latency SLA ms, output tokens)
MAKERS: dict[str, Callable[[random.Random, float], tuple[str, Any, float | None, int]]] = {
    "classify": _classify,
    "extract": _extract,
    "tool_call": _tool_call,
    "summarize": _summarize,
    "convert": _convert,
    "translate": _translate,
    "reason": _reason,
    "code": _code,
    "synthesize": _synthesize,
}

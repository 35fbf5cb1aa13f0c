"""The requests of a conformance file: a few hundred real-looking routing requests, seeded.

Prompts from 0 to about 3,000 o200k tokens, of the article's task kinds (extraction,
classification, summaries, code, reasoning, translation), with and without output schemas of every
accepted form and latency SLAs; plus the edges a runtime gets wrong first: the empty prompt,
whitespace, emoji (ZWJ sequences, flags, skin tones), CJK, right-to-left scripts, combining marks,
fullwidth and Greek question marks, CRLF lines, tabs, code fences, OpenAI special-token text
(``<|endoftext|>``, counted as plain text), keywords in capitals and inside longer words, and a
few malformed requests (which every runtime must refuse, not route).

    requests = conformance_requests(seed=0)          # a list of request objects (plain dicts)
"""

from __future__ import annotations

import random
from typing import Any

__all__ = ["conformance_requests", "EDGE_PROMPTS", "MALFORMED_REQUESTS"]

_SENTENCES = (
    "Extract the order id, the customer's email and the refund amount from the message below.",
    "Classify this support ticket as billing, technical, account or other.",
    "Summarize the following meeting notes in three bullet points for the leadership team.",
    "Translate the paragraph into French, keeping the product names in English.",
    "Write a Python function that parses ISO-8601 dates and returns a datetime in UTC.",
    "Debug this stack trace: TypeError: 'NoneType' object is not subscriptable at line 42.",
    "Compare the two vendor proposals and explain why one is cheaper over three years.",
    "Analyze the quarterly revenue table and evaluate whether the growth is sustainable.",
    "Step by step, work out how many widgets the factory ships in a 31-day month.",
    "Critique the argument in the essay and synthesize the strongest counter-argument.",
    'Convert this CSV row to JSON: 1042,"Smith, Jane",2024-03-07,149.99,EUR',
    "Hi team — the deploy on 2024-05-02 failed twice; see https://ci.example.com/build/88231 for logs.",
    "My card was charged twice for order #88231 (EUR 49.90). Please refund one of the charges?",
    "Route the call to get_weather(city, unit) when the user asks about the forecast.",
    "Use chain of thought, then give only the final answer on the last line.",
    "The re-analyzed samples were evaluated again; nobody compared them to the baseline.",
)
_PARAGRAPHS = (
    "Customer: I ordered the blue kettle (SKU KT-2291) on March 3rd and it arrived with a cracked lid. "
    "I'd like a replacement, not a refund. My order number is 55-1029-A and my email is jo@example.org.",
    "def total(items):\n    s = 0\n    for it in items:\n        s += it['price'] * it['qty']\n    return s\n",
    "```python\nimport json\nprint(json.dumps({'a': 1}))\n```",
    "1. Open the dashboard\n2. Click *Export*\n3) Choose CSV\n- check the totals\n* send it to finance\n(a) archive",
    "Q3 revenue rose 12% to $4.2M while costs rose 18%; churn fell from 3.1% to 2.7%. Headcount: 41 -> 47.",
    "La réunion de jeudi a été reportée ; merci de confirmer vos disponibilités avant vendredi midi.",
    "東京の天気は明日晴れの予報です。会議は午後三時から始まります。資料を事前に確認してください。",
    "请总结以下内容：公司第三季度收入增长百分之十二，成本增长百分之十八。",
    "서울에서 부산까지 기차로 얼마나 걸리나요？",
    "مرحبا، هل يمكنك مساعدتي في ترجمة هذه الرسالة؟",
    "Привет! Сравни эти два варианта и объясни почему.",
    "Τι ώρα είναι η συνάντηση; Θα είμαι εκεί στις 10.",
    "Emoji check 🎉🚀 👩‍💻 👍🏽 🇫🇷 ✅ — done.",
    "function f(x) {\n\treturn x * 2;\n}\nconst y = f(21);",
)
EDGE_PROMPTS: tuple[str, ...] = (
    "",
    " ",
    "\n",
    "\t\t",
    "\r\n\r\n",
    "?",
    "？",
    "🎉",
    "👩‍👩‍👧‍👦",
    "🇯🇵🇺🇸",
    "日本語",
    "한국어",
    "中文",
    "é",
    "e\u0301",
    "ANALYZE THIS. COMPARE THAT. EXPLAIN WHY.",
    "re-analyze, evaluated, debugging, step-by-step",
    "analyzeanalyze",
    "hello <|endoftext|> world <|im_start|>",
    "\u200b\u200d\ufeff",
    "a" * 2000,
    "ab " * 700,
    "1234567890" * 50,
    "İstanbul ΣΟΦΙΑ straße",
    "x;\n",
    "{\n",
    "    indented code",
    "http://a.b https://c.d/e?f=g",
    "~~~\nfenced\n~~~",
    "Line one\rLine two\u2028Line three\u2029Line four\x85Line five",
    "\x1c\x1d\x1e\x1f separators",
    "a\x00b",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 math ١٢٣ ٤٥٦ digits",
    "Why? Why? Why?" * 3,
    "(a) first\n(b) second\n(ç) third",
)
_SCHEMAS: tuple[Any, ...] = (
    None,
    None,
    None,
    {"order_id": "string", "issue_type": "billing | technical | other"},
    ["billing", "technical", "account", "other"],
    {"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]},
    {
        "type": "json_schema",
        "json_schema": {
            "name": "ticket",
            "schema": {
                "type": "object",
                "properties": {
                    "priority": {"enum": ["low", "high"]},
                    "tags": {"type": "array", "items": {"type": "object", "properties": {"label": {"type": "string"}}}},
                },
            },
        },
    },
    {"type": "json_object"},
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"enum": ["c", "f"]}},
                    "required": ["city"],
                },
            },
        }
    ],
    {"tools": [{"name": "lookup", "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}}}]},
    '{"answer": "yes | no"}',
    {
        "$defs": {"Addr": {"type": "object", "properties": {"street": {"type": "string"}}}},
        "type": "object",
        "properties": {"home": {"$ref": "#/$defs/Addr"}, "kind": {"const": "x"}},
    },
    {"type": "text"},
    {"items": [{"sku": "string", "qty": "integer"}], "total": "number"},
    {"anyOf": [{"type": "string"}, {"type": "null"}]},
)
_SLAS: tuple[Any, ...] = (None, None, None, 0, 100, 150, 199.9, 200, 800, 1200, 1300, 2000, 4000, 5000, 1e12)
_OBJECTIVES = ("match-best", "match-heuristic", "max-accuracy", "budget=0", "budget=0.01", "budget=1")
MALFORMED_REQUESTS: tuple[Any, ...] = (
    {"prompt": "x", "output_schema": {"properties": 3}},
    {"prompt": "x", "output_schema": []},
    {"prompt": "x", "output_schema": {}},
    {"prompt": "x", "output_schema": "{not json"},
    {"prompt": "x", "latency_sla_ms": -1},
    {"prompt": "x", "latency_sla_ms": "fast"},
    {"prompt": 42},
    {"messages": []},
    {"prompt": "x", "colour": "blue"},
    {},
)


def _prompt(rng: random.Random, target_chars: int) -> str:
    """Text of about ``target_chars`` characters, sentences and paragraphs mixed."""
    parts: list[str] = [rng.choice(_SENTENCES)]
    size = len(parts[0])
    while size < target_chars:
        piece = rng.choice(_PARAGRAPHS) if rng.random() < 0.5 else rng.choice(_SENTENCES)
        parts.append(piece)
        size += len(piece) + 1
    return rng.choice(("\n", " ", "\n\n")).join(parts)


def _lengths(rng: random.Random, n: int) -> list[int]:
    """Target prompt sizes in characters: mostly short, a tail to ~12,000 (about 3,000 tokens),
    and a few around the tree's 500 / 1,000 / 3,000 token thresholds."""
    fixed = [1900, 2000, 2100, 3900, 4000, 4200, 11500, 12000, 12500]
    drawn = [int(rng.lognormvariate(5.5, 1.1)) for _ in range(n - len(fixed))]
    return (fixed + [min(d, 12500) for d in drawn])[:n]


def conformance_requests(seed: int = 0, n: int = 260, objectives: bool = True) -> list[dict[str, Any]]:
    """``n`` generated requests plus every edge prompt and every malformed request (last), seeded;
    with ``objectives``, some carry an ``objective`` (for bundles with a knob curve)."""
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    for i, size in enumerate(_lengths(rng, n)):
        item: dict[str, Any] = {"id": f"c{i}"}
        if i % 11 == 5:
            turns: list[dict[str, Any]] = [
                {"role": "system", "content": "You are a careful assistant."},
                {"role": "user", "content": _prompt(rng, size)},
            ]
            if i % 22 == 5:
                turns.append({"role": "assistant", "content": [{"type": "text", "text": "Sure."}, {"type": "image"}]})
            item["messages"] = turns
        else:
            item["prompt"] = _prompt(rng, size)
        schema = rng.choice(_SCHEMAS)
        if schema is not None:
            item["output_schema"] = schema
        sla = rng.choice(_SLAS)
        if sla is not None:
            item["latency_sla_ms"] = sla
        if objectives and i % 7 == 3:
            item["objective"] = rng.choice(_OBJECTIVES)
        out.append(item)
    for j, prompt in enumerate(EDGE_PROMPTS):
        item = {"id": f"edge{j}", "prompt": prompt}
        if j % 3 == 1:
            item["output_schema"] = _SCHEMAS[3 + j % (len(_SCHEMAS) - 3)]
        if j % 4 == 2:
            item["latency_sla_ms"] = _SLAS[j % len(_SLAS)]
        out.append(item)
    out.extend({"id": f"bad{k}", **bad} if isinstance(bad, dict) else bad for k, bad in enumerate(MALFORMED_REQUESTS))
    return out

"""The synthetic workload's phrase tables: products, names and languages; customer sentences per
topic, chatter, agent replies and report lines; the support tools' parameters; planning constraints
and code lines. :mod:`tierroute.pipelines.data.synthetic_prompts` builds the prompts from them.

Every wording here is an ASSUMPTION (listed in ``docs/synthetic-workload.md``).
"""

from __future__ import annotations

__all__ = ["PRODUCTS", "NAMES", "LANGS", "SAY", "CHATTER", "AGENT", "REPORT", "TOOLS", "CONSTRAINTS", "CODE"]

PRODUCTS = ["router", "headset", "monitor", "laptop", "smart plug", "webcam", "dock", "keyboard"]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emma", "Farid", "Greta", "Hugo", "Ines", "Jun"]
LANGS = ["German", "French", "Japanese", "Spanish", "Portuguese"]
SAY = {
    "billing": [
        "I was charged twice for my {p}.",
        "The invoice shows the wrong amount for order {o}.",
        "My card was billed again after I cancelled the {p} subscription.",
        "Why did my renewal cost more this month?",
        "I need a receipt for order {o} for my expenses.",
        "The refund for order {o} never reached my account.",
    ],
    "technical": [
        "The {p} keeps dropping the connection every few minutes.",
        "After the firmware update the {p} will not turn on.",
        "The app crashes when I open the settings page.",
        "I get error 0x{h} when I sign in.",
        "The {p} has been very slow since yesterday.",
        "The {p} does not pair with my phone any more.",
    ],
    "shipping": [
        "Order {o} still has not arrived.",
        "The tracking page for {o} has not moved in five days.",
        "The parcel was delivered to the wrong address.",
        "The box arrived damaged and the {p} is scratched.",
        "Can you send order {o} to my office instead?",
    ],
    "other": [
        "Do you have a store in Lyon?",
        "I would like to leave feedback about your agent.",
        "Can I change the name on my account?",
        "What are your opening hours on Sunday?",
    ],
}
CHATTER = [
    "Hi,",
    "Thanks in advance.",
    "This is the third time I am writing about this.",
    "I have been a customer for years.",
    "Please help.",
    "Regards, {n}.",
    "Sorry for the long message.",
    "My colleague had the same problem last week.",
    "I already tried turning it off and on again.",
    "Your chat bot could not help me.",
]
AGENT = [
    "Thanks for reaching out, {n}.",
    "I have checked order {o} in our system.",
    "The replacement {p} ships within two working days.",
    "I have issued a refund of {a} EUR.",
    "Could you send a photo of the serial number on the {p}?",
    "I am sorry for the trouble with your {p}.",
    "Your ticket has been passed to our technical team.",
    "The courier confirms delivery on Tuesday.",
    "Please restart the {p} while holding the reset button for ten seconds.",
    "Your subscription renews on the first of each month.",
]
REPORT = [
    "Returns of the {p} rose {a}% this quarter, mostly from one batch.",
    "Support tickets about billing fell after the new invoice layout.",
    "Customers in the north region wait {a} hours longer for a first reply.",
    "The {p} firmware 2.{a} fixed the pairing fault for most users.",
    "Shipping costs grew faster than order volume in the last two months.",
    "Agents resolve {a}% of technical tickets on first contact.",
    "The survey ranks delivery speed above price for repeat buyers.",
    "A competitor cut the price of its {p} by {a} EUR.",
    "Refund requests cluster in the week after each promotion.",
    "Night-shift staffing covers only half of the ticket volume.",
]
TOOLS = {
    "get_order": {"order_id": {"type": "string"}},
    "refund_order": {
        "order_id": {"type": "string"},
        "amount": {"type": "number"},
        "reason": {"type": "string", "enum": ["damaged", "late", "duplicate", "other"]},
    },
    "update_address": {"order_id": {"type": "string"}, "address": {"type": "string"}},
    "create_ticket": {"summary": {"type": "string"}, "priority": {"type": "string", "enum": ["low", "normal", "high"]}},
    "search_kb": {"query": {"type": "string"}},
    "check_inventory": {"sku": {"type": "string"}, "warehouse": {"type": "string"}},
    "cancel_subscription": {"customer_id": {"type": "string"}, "at_period_end": {"type": "boolean"}},
    "escalate_to_human": {"reason": {"type": "string"}},
    "get_invoice": {"invoice_id": {"type": "string"}},
    "schedule_callback": {"customer_id": {"type": "string"}, "time": {"type": "string"}},
    "track_parcel": {"tracking_number": {"type": "string"}},
    "apply_coupon": {"order_id": {"type": "string"}, "code": {"type": "string"}},
}
CONSTRAINTS = [
    "no warehouse may exceed 120% of its current volume",
    "the south region must stay under 5% late",
    "vouchers are capped at 4,000 EUR a month",
    "Warehouse A closes on Sundays",
]
CODE = [
    "total += item.price * item.qty",
    "if item.discount:",
    "    total -= item.discount",
    "rows = [r for r in rows if r.get('status') == 'open']",
    "cache[key] = value",
    "key = (user.id, day)",
    "for i in range(len(items) - 1):",
    "    pairs.append((items[i], items[i + 1]))",
    "result = sorted(result, key=lambda r: r['date'])",
    "if not orders:",
    "    return []",
    "amount = round(amount * rate, 2)",
    "seen.add(order.id)",
    "logger.info('processed %s', order.id)",
]
